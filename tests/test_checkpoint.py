"""Checkpoints and credentials: the original's checkpoints of every model score as the original's forward pass
computes, a crafted checkpoint cannot run code when it is read, and a Neptune API key given on the command line
reaches no file and no console output of TRAIN, TEST or search.py index."""
import os
import pickle
import subprocess
import sys

import pytest
import numpy as np
import torch
import torch.nn.functional as F
from synthetic_data import CreatesFile
from test_core import evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ['--n_channels', '8', '--batch_size', '32', '--epoch_size', '64', '--num_chunk', '4']
KEY = 'KEY-b7f3e21c-RECOGNISABLE-91d0'


def cli(script, *argv, cwd=None, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *[str(a) for a in argv]], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=600)


def assert_refused(result, marker):
    assert result.returncode == 2, result.stderr
    assert 'Traceback' not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1, result.stderr
    assert not os.path.exists(marker)
    return errors[0]


# ---------------------------------------------------------------------------------------------- the original's
def original_state(input_type, word_dim, cf_dim, n_channels=8):
    """A checkpoint's state_dict in the original's format (Lightning 0.9: `model.` keys, the original's parameter
    names, checked in test_core) with random values, running BN statistics included, so eval mode matters."""
    from model import build_model
    torch.manual_seed(1)
    state = {}
    for name, value in build_model(input_type, word_dim=word_dim, cf_dim=cf_dim, n_channels=n_channels).state_dict(
            ).items():
        if name.endswith('num_batches_tracked'):
            state[name] = torch.tensor(100)
        elif name.endswith('running_var') or ('bn' in name and name.endswith('weight')):
            state[name] = torch.rand(value.shape) + 0.5
        elif value.dim() > 1:  # fc and conv weights, scaled by their fan-in
            state[name] = torch.randn(value.shape) * (2 / value[0].numel()) ** 0.5
        else:
            state[name] = torch.randn(value.shape) * 0.1
    return state


def bn(x, s, name):
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return (x - s[f'{name}.running_mean'].view(shape)) / torch.sqrt(s[f'{name}.running_var'].view(shape) + 1e-5) \
        * s[f'{name}.weight'].view(shape) + s[f'{name}.bias'].view(shape)


def mlp(x, s, fc1, bn1, fc2):
    """The original's Linear -> BN -> ReLU -> Dropout -> Linear in eval mode, written out."""
    return torch.relu(bn(x @ s[f'{fc1}.weight'].T + s[f'{fc1}.bias'], s, bn1)) @ s[f'{fc2}.weight'].T + s[f'{fc2}.bias']


def cnn(spec, s):
    """The original's spec_to_embedding in eval mode: input BN, 7 x (3x3 conv, BN, ReLU, 2x2 max-pool), a 1x1 conv
    block, max over time."""
    x = bn(spec.unsqueeze(1), s, 'spec_bn')
    for i in range(1, 9):
        weight = s[f'layer{i}.conv.weight']
        x = torch.relu(bn(F.conv2d(x, weight, s[f'layer{i}.conv.bias'], padding=weight.shape[-1] // 2), s,
                          f'layer{i}.bn'))
        x = F.max_pool2d(x, 2) if i < 8 else x
    return x.squeeze(2).max(dim=-1).values


@pytest.mark.parametrize('input_type', ['cf', 'spec', 'hybrid'])
def test_original_checkpoint_loads_and_scores_as_the_original_computes(dataset, tmp_path, input_type):
    from data_loader import EvalDataset, SplitData
    root = dataset['root']
    s = original_state(input_type, word_dim=12, cf_dim=10)
    path = tmp_path / 'original.ckpt'
    torch.save({'epoch': 10, 'global_step': 790, 'state_dict': {f'model.{k}': v for k, v in s.items()}}, path)
    evaluate(root, path, tmp_path / 'res', '--input_type', input_type)
    # the original's song_to_emb: the mean of the chunks' CNN embeddings, concatenated with the raw factor (hybrid)
    songs = EvalDataset(SplitData(root, input_type=input_type, splits=('test',)), 'test', 173, 4)
    cf = torch.tensor(np.load(os.path.join(root, 'ix_to_cf.npy'))[songs.rows])
    if input_type != 'cf':
        chunks = torch.tensor(np.stack([songs[i]['spec'] for i in range(len(songs))]))
        spec_emb = cnn(chunks.flatten(0, 1), s).view(len(songs), 4, -1).mean(dim=1)
    song_emb = {'cf': lambda: mlp(cf, s, 'cf_fc1', 'cf_bn1', 'cf_fc2'), 'spec': lambda: spec_emb,
                'hybrid': lambda: mlp(torch.cat([spec_emb, cf], dim=1), s, 'cat_fc1', 'cat_bn1', 'cat_fc2')}
    vectors = pickle.load(open(os.path.join(root, 'google_emb.pkl'), 'rb'))
    tags = np.load(os.path.join(root, 'tags.npy'))
    tag_emb = mlp(torch.tensor(np.stack([vectors[t] for t in tags])), s, 'fc1', 'bn1', 'fc2')
    expected = F.normalize(tag_emb, dim=1) @ F.normalize(song_emb[input_type](), dim=1).T
    assert np.allclose(np.load(tmp_path / 'res' / 'scores.npy'), expected.numpy(), atol=1e-5)


@pytest.fixture(scope='module')
def trained(dataset, tmp_path_factory):
    """A TRAIN with a recognisable Neptune key (Neptune offline, so its own run data is written too)."""
    out = tmp_path_factory.mktemp('keyrun')
    env = {k: v for k, v in os.environ.items() if k != 'NEPTUNE_API_TOKEN'}
    result = cli('main.py', '--data_path', dataset['root'], '--model_save_path', out / 'ck', '--n_epochs', 1,
                 '--logger', 'neptune', '--neptune_mode', 'offline', '--neptune_project', 'lab/tags',
                 '--neptune_api_key', KEY, *FAST, cwd=out, env=env)
    assert result.returncode == 0, result.stderr
    return out, result


def test_crafted_checkpoint_is_refused_for_test_resume_and_index(dataset, tmp_path):
    marker = tmp_path / 'marker'
    crafted = tmp_path / 'crafted.ckpt'
    torch.save({'state_dict': {}, 'hyper_parameters': {'config': CreatesFile(str(marker))}}, crafted)
    commands = [
        ('main.py', '--mode', 'TEST', '--data_path', dataset['root'], '--model_load_path', crafted, *FAST),
        ('main.py', '--data_path', dataset['root'], '--ckpt_path', crafted, '--model_save_path', tmp_path / 'ck',
         '--logger', 'none', *FAST),
        ('search.py', 'index', '--model_load_path', crafted, '--data_path', dataset['root'],
         '--index_path', tmp_path / 'index'),
    ]
    for command in commands:
        line = assert_refused(cli(*command), marker)
        assert str(crafted) in line and 'trusted source' in line


def test_checkpoints_load_without_unpickling_objects(trained):
    """Ours hold only tensors, containers, strings and numbers: they load with weights_only=True as they are."""
    out, _ = trained
    for name in ('best.ckpt', 'last.ckpt'):
        checkpoint = torch.load(out / 'ck' / name, weights_only=True)
        assert checkpoint['hyper_parameters']['config']['neptune_api_key'] == '<redacted>'


def test_api_key_reaches_no_file_and_no_output(dataset, trained):
    out, train_result = trained
    test_result = cli('main.py', '--mode', 'TEST', '--data_path', dataset['root'], '--model_load_path',
                      out / 'ck' / 'best.ckpt', '--neptune_api_key', KEY, *FAST, cwd=out)
    assert test_result.returncode == 0, test_result.stderr
    index_result = cli('search.py', 'index', '--model_load_path', out / 'ck' / 'best.ckpt', '--index_path',
                       out / 'index', cwd=out)
    assert index_result.returncode == 0, index_result.stderr
    for result in (train_result, test_result, index_result):
        assert KEY not in result.stdout + result.stderr
    written = [os.path.join(d, f) for d, _, files in os.walk(out) for f in files]
    assert any(f.endswith('summary.json') for f in written) and any('.neptune' in f for f in written)
    assert any(f.endswith('meta.json') for f in written) and any(f.endswith('config.json') for f in written)
    for path in written:
        with open(path, 'rb') as f:
            assert KEY.encode() not in f.read(), path


def test_environment_token_wins_and_flag_is_not_echoed(monkeypatch):
    from argparse import Namespace

    from cli_args import public_config, take_neptune_key
    monkeypatch.setenv('NEPTUNE_API_TOKEN', 'from-env')
    config = take_neptune_key(Namespace(neptune_api_key='from-flag', neptune_project='lab/tags'))
    assert os.environ['NEPTUNE_API_TOKEN'] == 'from-env'
    assert 'from-flag' not in repr(public_config(config))
    monkeypatch.delenv('NEPTUNE_API_TOKEN')
    config = take_neptune_key(Namespace(neptune_api_key='from-flag'))
    assert os.environ['NEPTUNE_API_TOKEN'] == 'from-flag' and config.neptune_api_key == '<redacted>'
    assert take_neptune_key(Namespace(neptune_api_key='.')).neptune_api_key == '.'


def test_original_pickled_checkpoint_fields_still_load(tmp_path):
    """The original's Lightning 0.9 checkpoints carry plain fields beside the state_dict; numpy values that a
    hand-made checkpoint may hold are admitted by the allow-list."""
    import numpy as np

    from checkpoint import read_checkpoint
    state = {'model.fc1.weight': torch.zeros(512, 12)}
    path = tmp_path / 'old.ckpt'
    torch.save({'epoch': 3, 'global_step': 237, 'pytorch-lightning_version': '0.9.0',
                'checkpoint_callback_best_model_score': torch.tensor(0.18),
                'optimizer_states': [{'state': {}, 'param_groups': [{'lr': 1e-4}]}], 'lr_schedulers': [],
                'state_dict': state, 'hyper_parameters': {'note': np.float32(1.5), 'array': np.arange(3)}}, path)
    model_state, hparams = read_checkpoint(str(path))
    assert list(model_state) == ['fc1.weight'] and hparams['note'] == 1.5 and list(hparams['array']) == [0, 1, 2]
    assert pickle.dumps(hparams)  # plain values, nothing bound to the file
