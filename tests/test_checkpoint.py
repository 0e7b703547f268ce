"""Checkpoints and credentials: a crafted checkpoint cannot run code when it is read, and a Neptune API key given
on the command line reaches no file and no console output of TRAIN, TEST or search.py index."""
import os
import pickle
import subprocess
import sys

import pytest
import torch
from synthetic_data import CreatesFile

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
