"""Checkpoints, ours and the original's: read them safely, check they fit the data, build a ready model.

    from checkpoint import load_model
    model, info = load_model('checkpoints/best.ckpt')        # eval mode, on CPU
    info.input_type, info.dims, info.config                  # 'spec', {'word_dim': 300, ...}, training config

A checkpoint is read with `torch.load(weights_only=True)`: tensors, plain containers, strings and numbers
only, so a crafted file cannot run code when it is opened (a full unpickle would execute any object's
`__reduce__`). Both the original's Lightning 0.9 checkpoints and ours hold nothing else; numpy scalars and
arrays, which a hand-made checkpoint may carry in its hyper-parameters, are admitted through an explicit
allow-list. The architecture is read from the parameters themselves, because the original stored none.
"""
import os
from dataclasses import dataclass, field

from errors import UserError


def _numpy_safe_globals():
    """numpy's array and scalar reconstructors (module path differs between numpy 1.x and 2.x)."""
    import numpy as np
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(t)) for t in ('f2', 'f4', 'f8', 'i4', 'i8', 'u1', 'u4', 'u8', 'b1')]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtypes]


def read_checkpoint(path):
    """(model state_dict without the `model.` prefix, hyper_parameters dict) of ours or of the original's."""
    import pickle

    import torch
    if not os.path.isfile(path):
        raise UserError(f'checkpoint {path!r} not found; pass a .ckpt file with --model_load_path / --ckpt_path')
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        refused = str(e).split('Unsupported global: ')[-1].split('\n')[0].strip() if 'Unsupported global' in str(e) \
            else 'an object that is not a tensor, container, string or number'
        raise UserError(f'{path} holds {refused}, which a checkpoint of this project or of the original never '
                        'does; it was refused so that it cannot run code. Use a checkpoint from a trusted source')
    except Exception as e:
        raise UserError(f'{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e}); '
                        'pass a .ckpt file written by this project or the original')
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise UserError(f'{path} holds no state_dict; pass a Lightning checkpoint of this project or the original')
    model_state = {k[len('model.'):]: v for k, v in state.items() if k.startswith('model.')} or state
    hparams = checkpoint.get('hyper_parameters') or {}
    if not isinstance(hparams, dict) or not isinstance(hparams.get('config') or {}, dict):
        bad = hparams if not isinstance(hparams, dict) else hparams['config']
        raise UserError(f'{path}: its hyper-parameters or their config hold a {type(bad).__name__}, not a mapping; '
                        'pass a checkpoint written by this project or the original')
    refuse_nonsense_weights(path, model_state)
    return model_state, dict(hparams)


RANKS = {'fc1.weight': 2, 'cf_fc1.weight': 2, 'cat_fc1.weight': 2, 'layer1.conv.weight': 4}  # read by model_dims


def refuse_nonsense_weights(path, model_state):
    """Weights that would score nonsense (a NaN checkpoint ranks songs by noise and scored MAP 0.54, above random):
    non-tensors, NaN or infinite values, and the parameters the architecture is read from at the wrong rank."""
    import torch
    fix = 'pass a checkpoint of a run that trained normally (an earlier last.ckpt or best.ckpt)'
    for name, value in model_state.items():
        if not isinstance(value, torch.Tensor):
            raise UserError(f'{path}: parameter {name} is a {type(value).__name__}, not a tensor; {fix}')
        if value.is_floating_point() and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise UserError(f'{path}: parameter {name} holds {bad} NaN or infinite value(s); {fix}')
        if name in RANKS and value.dim() != RANKS[name]:
            raise UserError(f'{path}: parameter {name} has shape {tuple(value.shape)}, expected {RANKS[name]} '
                            f'dimensions; {fix}')


def model_dims(model_state, hparams=None):
    """Architecture read from the checkpoint's parameters, so the original's (which stored none) load too."""
    if 'cf_fc1.weight' in model_state:
        cf_dim = model_state['cf_fc1.weight'].shape[1]
    elif 'cat_fc1.weight' in model_state:
        cf_dim = model_state['cat_fc1.weight'].shape[1] // 2
    else:
        cf_dim = (hparams or {}).get('cf_dim', 200)
    n_channels = model_state['layer1.conv.weight'].shape[0] if 'layer1.conv.weight' in model_state else 128
    return {'word_dim': model_state['fc1.weight'].shape[1], 'cf_dim': cf_dim, 'n_channels': n_channels}


def input_type_of(path, model_state):
    from model import input_type_of_state_dict
    found = input_type_of_state_dict(model_state)
    if found is None or 'fc1.weight' not in model_state:
        raise UserError(f'{path} has none of the parameters of AudioModel, CFModel or HybridModel; pass a '
                        'checkpoint of this project or the original')
    return found


def check_fits(path, model_state, input_type, w2v_type, data, n_channels=None):
    """Stop with one line when the checkpoint cannot run on this data and these flags, naming both sides."""
    found = input_type_of(path, model_state)
    if found != input_type:
        raise UserError(f'{path} is a checkpoint of input_type {found!r} but --input_type is {input_type!r}; '
                        f'pass --input_type {found}')
    dims = model_dims(model_state)
    if dims['word_dim'] != data.word_dim:
        raise UserError(f'{path} expects {dims["word_dim"]}-d word vectors but {w2v_type}_emb.pkl has '
                        f'{data.word_dim}-d ones; pass the --w2v_type the model was trained with')
    if found != 'spec' and dims['cf_dim'] != data.cf_dim:
        raise UserError(f'{path} expects {dims["cf_dim"]}-d item factors but ix_to_cf.npy of {data.data_path} has '
                        f'{data.cf_dim}-d ones; use the data the model was trained on')
    if n_channels is not None and found != 'cf' and dims['n_channels'] != n_channels:
        raise UserError(f'{path} has a CNN of base width {dims["n_channels"]} but --n_channels is {n_channels}; '
                        f'pass --n_channels {dims["n_channels"]} to resume it')


def load_state(model, path, model_state):
    try:
        model.load_state_dict(model_state)
    except RuntimeError as e:
        raise UserError(f'{path} does not fit the model: {str(e).splitlines()[0]}; pass a checkpoint of this '
                        'project or the original')
    return model


RUN_FILES = ('config.json', 'hparams.yaml')  # with *.ckpt and test/: what a TRAIN leaves in its folder


def claim_run_folder(folder, ckpt_path, overwrite):
    """TRAIN writes best.ckpt and last.ckpt into `folder`: another run's checkpoints there would be mixed with
    this one's (a best.ckpt of the old run kept beside a last.ckpt of the new). Allowed: an empty folder, a resume
    from a checkpoint of this folder, or --overwrite True, which first removes the old run's checkpoints, config and
    default test/ results."""
    import glob
    import shutil
    found = sorted(glob.glob(os.path.join(glob.escape(folder), '*.ckpt')))
    resuming = ckpt_path and os.path.realpath(os.path.dirname(os.path.abspath(ckpt_path))) == os.path.realpath(folder)
    if not found or resuming:
        return
    if not overwrite:
        names = ', '.join(os.path.basename(path) for path in found[:3])
        raise UserError(f'--model_save_path {folder} holds another run\'s checkpoints ({names}); '
                        f'resume it with --ckpt_path {os.path.join(folder, "last.ckpt")}, pass a new folder, or '
                        '--overwrite True to delete them first')
    for path in found + [os.path.join(folder, name) for name in RUN_FILES]:
        if os.path.isfile(path):
            os.remove(path)
    shutil.rmtree(os.path.join(folder, 'test'), ignore_errors=True)


@dataclass
class CheckpointInfo:
    path: str
    input_type: str
    dims: dict
    hparams: dict = field(default_factory=dict)

    @property
    def config(self):
        """The training run's config saved with the checkpoint ({} for the original's)."""
        return dict(self.hparams.get('config') or {})


def load_model(path, device='cpu'):
    """(model in eval mode on `device`, CheckpointInfo) of a checkpoint, ours or the original's."""
    from model import build_model
    model_state, hparams = read_checkpoint(path)
    input_type = input_type_of(path, model_state)
    dims = model_dims(model_state, hparams)
    model = load_state(build_model(input_type, **dims), path, model_state)
    return model.to(device).eval(), CheckpointInfo(path, input_type, dims, hparams)
