"""Credentials in any form never reach a file or the console: a password inside --mlflow_uri (to a real MLflow
server over HTTP) and a key passed through experiments.py --extra. Every file the runs wrote is searched."""
import json
import os
import subprocess
import sys

from test_tracking import mlflow_server, rest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--input_type', 'cf', '--n_channels', '8', '--batch_size', '32', '--num_chunk', '4', '--n_epochs', '1',
        '--epoch_size', '64']


def files_holding(secret, *roots):
    """Every file under `roots` whose bytes hold `secret` (the MLflow store's SQLite file and artifacts included)."""
    found = []
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                with open(path, 'rb') as f:
                    if secret.encode() in f.read():
                        found.append(path)
    return found


def main_py(*argv):
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), *map(str, argv)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


def test_a_password_in_the_mlflow_uri_is_stored_nowhere(dataset, tmp_path):
    secret = 'Pw-4242-never-stored'
    with mlflow_server(f'sqlite:///{tmp_path}/server.db', tmp_path) as url:
        uri = url.replace('http://', f'http://alice:{secret}@')
        console = main_py('--data_path', dataset['root'], '--model_save_path', tmp_path / 'run', '--logger', 'mlflow',
                          '--mlflow_uri', uri, '--experiment_name', 'exp', *TINY)
        config = json.load(open(tmp_path / 'run' / 'config.json'))
        assert config['mlflow_tracking_uri'] == url.replace('http://', 'http://<redacted>@')
        # TEST finds the run from the redacted record and the real uri given again on its command line
        console += main_py('--mode', 'TEST', '--data_path', dataset['root'], '--model_load_path',
                           tmp_path / 'run' / 'best.ckpt', '--result_path', tmp_path / 'test', '--mlflow_uri', uri,
                           *TINY)
        metrics = {m['key'] for m in rest(url, 'runs/get', run_id=config['mlflow_run_id'])['run']['data']['metrics']}
        assert 'test/map' in metrics and 'TEST results attached to MLflow run' in console
    assert secret not in console
    assert (tmp_path / 'run' / 'last.ckpt').is_file() and (tmp_path / 'test' / 'summary.json').is_file()
    assert not files_holding(secret, tmp_path)


def test_a_key_in_experiments_extra_reaches_no_file(dataset, tmp_path):
    secret = 'Key-7373-never-stored'
    out = tmp_path / 'results'
    extra = ('--n_channels 8 --batch_size 32 --epoch_size 64 --n_epochs 1 --num_chunk 4 --max_steps 2 '
             f'--neptune_api_key {secret}')
    command = [sys.executable, os.path.join(ROOT, 'experiments.py'), '--data_path', dataset['root'], '--out', str(out),
               '--configs', 'cultural', '--seeds', '0', '--extra', extra,
               '--mlflow_uri', f'sqlite:///{tmp_path}/mlruns.db']
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '--neptune_api_key <redacted>' in (out / 'RUN_INFO.md').read_text()
    assert '--neptune_api_key <redacted>' in (out / 'runs' / 'cultural' / 'seed0' / 'train.log').read_text()
    assert secret not in done.stdout + done.stderr
    assert not files_holding(secret, tmp_path)
