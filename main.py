"""Train or test a tag-based music retrieval model: wires the DataModule, the Solver and a Lightning Trainer.

    python -u main.py --mode TRAIN --data_path data/demo --input_type spec --is_balanced True --is_weighted True
    python -u main.py --mode TEST  --data_path data/demo --model_load_path checkpoints/best.ckpt

Every flag of the original keeps its name and default; `python main.py --help` lists them all.
"""
import argparse
import json
import os
import sys

import numpy as np

from errors import UserError, exit_on_user_error

TRUE_WORDS = ('true', '1', 'yes', 'y', 't', 'on')
FALSE_WORDS = ('false', '0', 'no', 'n', 'f', 'off')


def str2bool(value):
    """The original's `type=bool` made "False" true; this accepts True/False/1/0/yes/no in any case."""
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f'expected True/False/1/0/yes/no, got {value!r}')


def int_or_float(value):
    """Lightning's limit_*_batches: an int is a number of batches, a float a fraction of them."""
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a number of batches or a fraction, got {value!r}')


def devices_arg(value):
    if value == 'auto':
        return value
    try:
        return int(value)
    except ValueError:
        try:
            return [int(v) for v in value.split(',') if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a count, "auto" or a list like 0,1; got {value!r}')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add('--num_workers', type=int, default=0, help='DataLoader worker processes')
    add('--mode', type=str, default='TRAIN', choices=['TRAIN', 'TEST'], help='train, or test a checkpoint')

    model = parser.add_argument_group('model parameters (the original\'s)')
    model.add_argument('--batch_size', type=int, default=128, help='triplets per step (eval: batch_size // num_chunk songs)')
    model.add_argument('--num_chunk', type=int, default=8, help='chunks averaged per song in evaluation')
    model.add_argument('--input_length', type=int, default=173, help='frames per chunk (173 = ~4 s)')
    model.add_argument('--margin', type=float, default=0.4, help='cosine triplet margin')
    model.add_argument('--input_type', type=str, default='spec', choices=['spec', 'cf', 'hybrid'],
                       help='song branch: acoustic, cultural (CF) or both')
    model.add_argument('--w2v_type', type=str, default='google', choices=['google', 'music'],
                       help='word vectors of the tags: <w2v_type>_emb.pkl')
    model.add_argument('--is_balanced', type=str2bool, default=False, help='draw anchor tags uniformly')
    model.add_argument('--is_weighted', type=str2bool, default=False, help='distance-weighted negatives')
    model.add_argument('--is_subset', type=str2bool, default=False, help='read the sub_* split files')

    train = parser.add_argument_group('training parameters (the original\'s)')
    train.add_argument('--n_epochs', type=int, default=200, help='epochs of --epoch_size samples')
    train.add_argument('--gpu_id', type=str, default='0', help='GPU indices (e.g. 0 or 0,1); CPU when none')
    train.add_argument('--lr', type=float, default=1e-4, help='Adam learning rate')
    train.add_argument('--model_save_path', type=str, default='./checkpoints',
                       help='best.ckpt, last.ckpt, config.json and logs go here')
    train.add_argument('--model_load_path', type=str, default='.', help='checkpoint to TEST')
    train.add_argument('--data_path', type=str, default='.', help='folder of the split files (README: data layout)')
    train.add_argument('--neptune_project', type=str, default='.', help='workspace/project; enables Neptune')
    train.add_argument('--neptune_api_key', type=str, default='.', help='enables Neptune')

    new = parser.add_argument_group('added by this reimplementation')
    new.add_argument('--seed', type=int, default=0, help='seeds torch, numpy and every training draw')
    new.add_argument('--epoch_size', type=int, default=10000, help='training samples per epoch')
    new.add_argument('--n_channels', type=int, default=128, help='CNN base width (layers use 1x,2x,4x)')
    new.add_argument('--weight_decay', type=float, default=1e-4, help='Adam weight decay')
    new.add_argument('--loss', type=str, default='triplet', choices=['triplet', 'infonce'],
                     help='cosine triplet margin loss, or InfoNCE over in-batch songs')
    new.add_argument('--temperature', type=float, default=0.07, help='initial InfoNCE temperature (learned)')
    new.add_argument('--zeroshot_tags', type=str, default=None,
                     help='file of tags (one a line) or a count drawn with --seed: never training anchors')
    new.add_argument('--accelerator', type=str, default='auto', help='auto, cpu, gpu, cuda, mps...')
    new.add_argument('--devices', type=devices_arg, default=None,
                     help='count or list; None: --gpu_id on a GPU, 1 on CPU')
    new.add_argument('--num_nodes', type=int, default=1, help='machines for multi-node DDP')
    new.add_argument('--strategy', type=str, default='auto', help='auto, ddp, ddp_spawn, ...')
    new.add_argument('--precision', type=str, default='32-true', help='32-true, 16-mixed, bf16-mixed')
    new.add_argument('--channels_last', type=str2bool, default=False,
                     help='channels-last (NHWC) CNN tensors: the same model, faster convolutions')
    new.add_argument('--cf_standardise', type=str2bool, default=False,
                     help='item factors to zero mean, unit variance per dimension (the original: raw)')
    new.add_argument('--ckpt_path', type=str, default=None, help='resume TRAIN from this checkpoint')
    new.add_argument('--logger', type=str, default=None, choices=['tensorboard', 'csv', 'neptune', 'none'],
                     help='None: neptune when --neptune_project/--neptune_api_key are given, else tensorboard')
    new.add_argument('--neptune_mode', type=str, default='async', choices=['async', 'offline', 'debug'],
                     help='offline records under .neptune/ with no network')
    new.add_argument('--result_path', type=str, default=None,
                     help='where TEST writes per_tag.csv, summary.json, scores.npy; None: <checkpoint dir>/test')
    new.add_argument('--max_steps', type=int, default=-1, help='stop after this many steps (-1: no limit)')
    new.add_argument('--limit_train_batches', type=int_or_float, default=1.0, help='batches (int) or fraction per epoch')
    new.add_argument('--limit_val_batches', type=int_or_float, default=1.0, help='batches (int) or fraction per validation')
    new.add_argument('--limit_test_batches', type=int_or_float, default=1.0, help='batches (int) or fraction in TEST')
    return parser


def resolve_devices(config):
    import torch
    accelerator = config.accelerator
    if accelerator == 'auto':
        accelerator = 'gpu' if torch.cuda.is_available() else 'cpu'
    if accelerator in ('gpu', 'cuda') and not torch.cuda.is_available():
        raise UserError(f'--accelerator {config.accelerator}: no CUDA device is visible; use --accelerator cpu')
    devices = config.devices
    if devices is None:
        devices = [int(g) for g in config.gpu_id.split(',') if g.strip()] if accelerator in ('gpu', 'cuda') else 1
    return accelerator, devices


def make_logger(config):
    from pytorch_lightning.loggers import CSVLogger, NeptuneLogger, TensorBoardLogger
    kind = config.logger
    if kind is None:
        neptune_given = config.neptune_project != '.' or config.neptune_api_key != '.'
        kind = 'neptune' if neptune_given else 'tensorboard'
    if kind == 'none':
        return False
    if kind == 'tensorboard':
        return TensorBoardLogger(save_dir=config.model_save_path, name='logs')
    if kind == 'csv':
        return CSVLogger(save_dir=config.model_save_path, name='logs')
    try:
        logger = NeptuneLogger(project=None if config.neptune_project == '.' else config.neptune_project,
                               api_key=None if config.neptune_api_key == '.' else config.neptune_api_key,
                               mode=config.neptune_mode, log_model_checkpoints=False)
        logger.experiment  # start the run now, so a failure stops before training
    except Exception as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f'Neptune ({config.neptune_mode} mode) failed: {type(e).__name__}: {first_line}. Neptune\'s '
                        'hosted service was sunset: use --neptune_mode offline (records under .neptune/), '
                        '--logger tensorboard, or check --neptune_project/--neptune_api_key')
    return logger


def read_checkpoint(path):
    """(model state_dict without the `model.` prefix, hyper_parameters) of ours or of the original's."""
    import torch
    if not os.path.isfile(path):
        raise UserError(f'checkpoint {path!r} not found; pass a .ckpt file with --model_load_path / --ckpt_path')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:
        raise UserError(f'{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {e})')
    state = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise UserError(f'{path} holds no state_dict; pass a Lightning checkpoint of this project or the original')
    model_state = {k[len('model.'):]: v for k, v in state.items() if k.startswith('model.')} or state
    hparams = checkpoint.get('hyper_parameters') or {}
    return model_state, dict(hparams) if isinstance(hparams, dict) else {}


def check_checkpoint_fits(path, model_state, config, data):
    from model import input_type_of_state_dict
    found = input_type_of_state_dict(model_state)
    if found is None:
        raise UserError(f'{path} has none of the parameters of AudioModel, CFModel or HybridModel')
    if found != config.input_type:
        raise UserError(f'{path} is a checkpoint of input_type {found!r} but --input_type is '
                        f'{config.input_type!r}; pass --input_type {found}')
    ckpt_word_dim = model_state['fc1.weight'].shape[1]
    if ckpt_word_dim != data.word_dim:
        raise UserError(f'{path} expects {ckpt_word_dim}-d word vectors but {config.w2v_type}_emb.pkl has '
                        f'{data.word_dim}-d ones; pass the --w2v_type the model was trained with')
    ckpt_cf_dim = model_dims(model_state, {})['cf_dim'] if found != 'spec' else None
    if ckpt_cf_dim is not None and ckpt_cf_dim != data.cf_dim:
        raise UserError(f'{path} expects {ckpt_cf_dim}-d item factors but ix_to_cf.npy of {data.data_path} has '
                        f'{data.cf_dim}-d ones; use the data the model was trained on')


def model_dims(model_state, hparams):
    """Architecture read from the checkpoint itself, so the original's (which stored none) load too."""
    if 'cf_fc1.weight' in model_state:
        cf_dim = model_state['cf_fc1.weight'].shape[1]
    elif 'cat_fc1.weight' in model_state:
        cf_dim = model_state['cat_fc1.weight'].shape[1] // 2
    else:
        cf_dim = hparams.get('cf_dim', 200)
    n_channels = model_state['layer1.conv.weight'].shape[0] if 'layer1.conv.weight' in model_state else 128
    return {'word_dim': model_state['fc1.weight'].shape[1], 'cf_dim': cf_dim, 'n_channels': n_channels}


def resolve_zeroshot(config, data, checkpoint_config=None):
    """--zeroshot_tags FILE or COUNT -> sorted tag list; TEST falls back to the checkpoint's list."""
    spec = config.zeroshot_tags
    if spec is None:
        return list((checkpoint_config or {}).get('unseen_tags') or [])
    if os.path.isfile(spec):
        with open(spec) as f:
            tags = [line.strip().lower() for line in f if line.strip() and not line.startswith('#')]
    elif spec.isdigit():
        count = int(spec)
        if not 0 < count < len(data.tags):
            raise UserError(f'--zeroshot_tags {spec}: choose between 1 and {len(data.tags) - 1} tags')
        tags = np.random.default_rng(config.seed).choice(data.tags, size=count, replace=False).tolist()
    else:
        raise UserError(f'--zeroshot_tags {spec!r} is neither a file nor a count; pass a file of tags or a number')
    return sorted(tags)


def print_summary(summary, title):
    print(f'\n{title}')
    print(f'{"":<24}{"MAP":>8}{"P@10":>8}{"ROC-AUC":>9}{"tags":>6}')
    rows = [('all', summary['all'])] + [(f'{g}: {k}', v) for g, d in summary.items()
                                         if g not in ('all', 'random_baseline') for k, v in d.items()]
    for name, m in rows:
        print(f'{name:<24}{m["map"]:>8.4f}{m["p@10"]:>8.4f}{m["roc_auc"]:>9.4f}{m["n_tags"]:>6}')
    baseline = summary.get('random_baseline', {}).get('map')
    if baseline is not None:
        print(f'{"random scores (expected)":<24}{baseline:>8.4f}{baseline:>8.4f}{0.5:>9.4f}')


@exit_on_user_error
def main(config):
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import ModelCheckpoint

    from data_loader import TagRetrievalDataModule
    from solver import Solver

    pl.seed_everything(config.seed, workers=True)
    accelerator, devices = resolve_devices(config)
    dm = TagRetrievalDataModule(config.data_path, config.input_type, config.w2v_type, config.is_subset,
                                config.is_balanced, config.batch_size, config.num_workers, config.input_length,
                                config.num_chunk, config.epoch_size, config.seed,
                                cf_standardise=config.cf_standardise)
    testing = config.mode == 'TEST'
    data = dm.load(('test',) if testing else ('train', 'valid'))  # checks every input before any work

    checkpoint_path = config.model_load_path if testing else config.ckpt_path
    model_state, hparams = ({}, {})
    if checkpoint_path:
        model_state, hparams = read_checkpoint(checkpoint_path)
        check_checkpoint_fits(checkpoint_path, model_state, config, data)
    dm.unseen_tags = resolve_zeroshot(config, data, hparams.get('config'))
    dims = model_dims(model_state, hparams) if testing else \
        {'word_dim': data.word_dim, 'cf_dim': data.cf_dim or 200, 'n_channels': config.n_channels}
    run_config = dict(vars(config), unseen_tags=dm.unseen_tags, accelerator=accelerator, devices=devices)
    result_path = config.result_path or os.path.join(os.path.dirname(os.path.abspath(config.model_load_path)),
                                                     'test')
    training = {k: getattr(config, k) for k in ('margin', 'lr', 'weight_decay', 'is_weighted', 'loss', 'temperature')}
    if testing:  # record how the checkpoint was trained, not this command's training defaults
        training.update({k: v for k, v in hparams.items() if k in training})
        run_config['checkpoint_config'] = hparams.get('config')
    solver = Solver(input_type=config.input_type, result_path=result_path if testing else None, config=run_config,
                    channels_last=config.channels_last, **training, **dims)
    if testing:
        try:
            solver.model.load_state_dict(model_state)
        except RuntimeError as e:
            raise UserError(f'{checkpoint_path} does not fit the model: {str(e).splitlines()[0]}')

    checkpoint_cb = ModelCheckpoint(dirpath=config.model_save_path, filename='best', monitor='map', mode='max',
                                    save_top_k=1, save_last=True, enable_version_counter=False)
    trainer = pl.Trainer(default_root_dir=config.model_save_path, accelerator=accelerator, devices=devices,
                         num_nodes=config.num_nodes, strategy=config.strategy, precision=config.precision,
                         max_epochs=config.n_epochs, max_steps=config.max_steps,
                         limit_train_batches=config.limit_train_batches, limit_val_batches=config.limit_val_batches,
                         limit_test_batches=config.limit_test_batches,
                         logger=make_logger(config) if not testing else False,
                         callbacks=[checkpoint_cb], reload_dataloaders_every_n_epochs=1, num_sanity_val_steps=0,
                         log_every_n_steps=10, enable_model_summary=not testing)
    if testing:
        trainer.test(solver, datamodule=dm, verbose=False)
        if not trainer.is_global_zero:
            return None
        # with ddp_spawn the evaluation ran in child processes: its record is the summary they wrote
        with open(os.path.join(result_path, 'summary.json')) as f:
            summary = json.load(f)['means']
        print_summary(summary, f'TEST of {checkpoint_path} on {len(data.ids["test"][0])} songs -> {result_path}')
        return solver.last_eval or {'summary': summary}
    trainer.fit(solver, datamodule=dm, ckpt_path=config.ckpt_path)
    if trainer.is_global_zero:
        with open(os.path.join(config.model_save_path, 'config.json'), 'w') as f:
            json.dump(run_config, f, indent=1, default=str)
        print(f'best valid map {checkpoint_cb.best_model_score} -> {checkpoint_cb.best_model_path}; '
              f'last -> {checkpoint_cb.last_model_path}')
    return checkpoint_cb


if __name__ == '__main__':
    args = build_parser().parse_args()
    print(args)
    main(args)
    sys.exit(0)
