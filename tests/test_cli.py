"""The command line: TRAIN and TEST print the configuration once, the progress bar and the result table (none of
Lightning's tips, restated defaults or its internal deprecation warnings; a real message of Lightning's still shows),
credentials never, and the original's flags read as the original read them."""
import logging
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--n_channels', '8', '--batch_size', '16', '--epoch_size', '32', '--num_chunk', '2', '--n_epochs', '1',
        '--logger', 'none', '--accelerator', 'cpu']
NOISE = ['Tip:', 'litlogger', 'litmodels', 'GPU available', 'TPU available', 'was configured so 100%',
         'Seed set to', 'LeafSpec', 'is deprecated', '`Trainer.fit` stopped', "{'num_workers'", 'Total FLOPs',
         'exists and is not empty']


def console(*argv):
    # bytes, not text=True: universal newlines would turn each of the progress bar's '\r' redraws into a line
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), *argv], capture_output=True, cwd=ROOT)
    stdout, stderr = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 0, stderr[-2000:]
    return stdout + stderr


def test_train_and_test_consoles_hold_no_noise(dataset, tmp_path):
    # a logger that writes into the run folder, as run.sh's default does (Lightning then finds it not empty)
    train = console('--data_path', dataset['root'], '--model_save_path', str(tmp_path / 'ck'), *TINY, '--logger', 'csv')
    test = console('--mode', 'TEST', '--data_path', dataset['root'], '--model_load_path',
                   str(tmp_path / 'ck' / 'best.ckpt'), *TINY)
    for name, text in (('TRAIN', train), ('TEST', test)):
        found = [n for n in NOISE if n in text]
        assert not found, f'{name} printed {found}:\n{text}'
        assert text.count('--data_path') == 1, text  # the configuration once, on one line
        lines = [line for line in text.splitlines() if line.strip()]
        assert lines[0].startswith(f'{name} spec: ') and '--n_channels 8' in lines[0]
    assert 'trained 2 steps; best valid map 0.' in train and 'model: AudioModel, ' in train
    assert 'random scores (expected)' in test and 'category: genre' in test
    # what a terminal shows: a progress bar redraws its line with '\r', however often it refreshes
    shown = [line.split('\r')[-1] for line in test.split('\n')]
    assert len([line for line in shown if line.strip()]) <= 12, test


def test_real_lightning_messages_still_show(capsys):
    from console import quiet_lightning
    quiet_lightning()
    logger = logging.getLogger('pytorch_lightning.utilities.rank_zero')
    handler = logging.StreamHandler(sys.stderr)
    parent = logging.getLogger('pytorch_lightning')
    level = parent.level
    parent.setLevel(logging.INFO)  # as Lightning sets it outside pytest
    parent.addHandler(handler)
    quiet_lightning()  # the filter reaches handlers added later too, and adding it twice is harmless
    try:
        logger.info('Restoring states from the checkpoint path at last.ckpt')
        logger.info('💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]')
        logger.info('GPU available: False, used: False')
    finally:
        parent.removeHandler(handler)
        parent.setLevel(level)
    err = capsys.readouterr().err
    assert 'Restoring states from the checkpoint path at last.ckpt' in err
    assert 'Tip' not in err and 'GPU available' not in err


def test_config_line_redacts_passwords_in_uris(monkeypatch):
    import main as cli
    monkeypatch.setenv('NEPTUNE_API_TOKEN', '')  # take_neptune_key moves the key there; undone after the test
    from console import config_line
    parser = cli.build_parser()
    args = parser.parse_args(['--mlflow_uri', 'http://bob:s3cret@127.0.0.1:5000', '--neptune_api_key', 'KEY123'])
    cli.take_neptune_key(args)
    line = config_line(args, parser)
    assert 's3cret' not in line and 'KEY123' not in line and 'bob' not in line
    assert '--mlflow_uri http://<redacted>@127.0.0.1:5000' in line and line.startswith('TRAIN spec: ')


@pytest.mark.parametrize('gpu_id,devices', [('-1', -1), ('0', [0]), ('0,1', [0, 1]), ('1', [1])])
def test_gpu_id_reads_as_the_originals(gpu_id, devices, monkeypatch):
    """The original passed --gpu_id to Lightning as a string: '-1' every GPU, otherwise a list of indices."""
    import torch

    import main as cli
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    config = cli.build_parser().parse_args(['--gpu_id', gpu_id])
    assert cli.resolve_devices(config) == ('gpu', devices)


def test_run_sh_twice_resumes_instead_of_failing(dataset, tmp_path):
    """README's first command must work a second time: the run folder then holds the first run's checkpoints, which
    main.py refuses to mix with a new run; run.sh resumes from last.ckpt instead (a finished run trains no further)."""
    env = {**os.environ, 'DATA_PATH': dataset['root'], 'MODEL_SAVE_PATH': str(tmp_path / 'run'), 'LOGGER': 'none',
           'EXTRA_ARGS': ' '.join(TINY[:-4])}
    first = subprocess.run(['bash', 'run.sh'], cwd=ROOT, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    best = (tmp_path / 'run' / 'best.ckpt').read_bytes()
    second = subprocess.run(['bash', 'run.sh'], cwd=ROOT, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    assert '--ckpt_path' in second.stdout and 'trained 2 steps' in second.stdout, second.stdout[-2000:]
    assert (tmp_path / 'run' / 'best.ckpt').read_bytes() == best  # nothing of the first run lost
    assert (tmp_path / 'run' / 'test' / 'summary.json').is_file() and 'random scores (expected)' in second.stdout
