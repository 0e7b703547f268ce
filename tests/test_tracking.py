"""Experiment tracking on MLflow: TRAIN + TEST into a SQLite store read back with MlflowClient (no network), a real
tracking server reached over HTTP and read through its REST API, and the UI of a grid in headless Chromium
driven through WebDriver (tests/mlflow_ui.py).

    SCREENSHOT_TO=docs/mlflow_grid.png python -m pytest -q tests/test_tracking.py -k browser   # keeps the screenshot
"""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from mlflow import MlflowClient

import main as cli
import tracking
from test_experiments import grid_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['--input_type', 'cf', '--n_channels', '8', '--batch_size', '32', '--num_chunk', '4', '--n_epochs', '1']
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
CHROMEDRIVER = shutil.which('chromedriver')
SERVER_START_S = 180  # starting mlflow's server on 2 busy cores can take a minute
LOCAL_HOSTS = ('127.0.0.1', '::1', 'localhost')
SAMPLING = ['random', 'balanced', 'balanced_weighted']  # experiments.py's table 1


def run(*argv):
    return cli.main(cli.build_parser().parse_args([str(a) for a in argv]))


@pytest.fixture
def outbound_connections(monkeypatch):
    """Every attempt to reach another machine from this process, recorded and refused."""
    attempts = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOCAL_HOSTS:
            attempts.append(address)
            raise OSError(f'no network in this test ({address})')
        return real_connect(sock, address)
    monkeypatch.setattr(socket.socket, 'connect', connect)
    return attempts


def train_and_test(dataset, tmp_path, uri, *extra):
    checkpoint = run('--data_path', dataset['root'], '--model_save_path', tmp_path / 'cf-run', '--logger', 'mlflow',
                     '--mlflow_uri', uri, '--experiment_name', 'exp', *TINY, *extra)
    run('--mode', 'TEST', '--data_path', dataset['root'], '--model_load_path', checkpoint.best_model_path,
        '--result_path', tmp_path / 'test', *TINY)
    with open(tmp_path / 'cf-run' / 'config.json') as f:
        return checkpoint, json.load(f)


def test_train_and_test_are_one_mlflow_run(dataset, tmp_path, outbound_connections):
    uri = f'sqlite:///{tmp_path}/store/mlruns.db'
    checkpoint, config = train_and_test(dataset, tmp_path, uri, '--epoch_size', 640, '--neptune_api_key', 'SECRET-42')
    client = MlflowClient(uri)
    [found] = client.search_runs([client.get_experiment_by_name('exp').experiment_id])
    run_id = found.info.run_id
    assert config['mlflow_run_id'] == run_id and found.info.run_name == 'cf-run'
    assert found.info.status == 'FINISHED'
    params, metrics = found.data.params, found.data.metrics
    assert params['config/epoch_size'] == '640' and params['margin'] == '0.4' and params['input_type'] == 'cf'
    # a credential never leaves the command line: not in the run, not in config.json
    assert {params[k] for k in params if 'key' in k} == {'<redacted>'} and 'SECRET-42' not in json.dumps(params)
    assert 'SECRET-42' not in json.dumps(config) and config['neptune_api_key'] == '<redacted>'
    # 20 steps of training, the loss logged every 10
    loss = client.get_metric_history(run_id, 'train/loss_step')
    assert [m.step for m in loss] == [9, 19] and all(0 <= m.value < 2 for m in loss)
    assert metrics['train/rows_without_negative'] >= 0
    assert metrics['map'] == pytest.approx(float(checkpoint.best_model_score))
    assert all(0 <= metrics[f'valid/map/category/{c}'] <= 1 for c in ('genre', 'mood', 'instrument'))
    assert 0 <= metrics['p_at_10'] <= 1 and 0 <= metrics['roc_auc'] <= 1
    assert found.data.tags['best_checkpoint'] == os.path.abspath(checkpoint.best_model_path)
    # TEST joined the training run: its metrics and files
    with open(tmp_path / 'test' / 'summary.json') as f:
        summary = json.load(f)['means']
    assert metrics['test/map'] == pytest.approx(summary['all']['map'])
    assert metrics['test/map/category/mood'] == pytest.approx(summary['category']['mood']['map'])
    assert metrics['test/random_map'] == pytest.approx(summary['random_baseline']['map'])
    assert [a.path for a in client.list_artifacts(run_id, 'test')] == ['test/per_tag.csv', 'test/summary.json']
    copy = client.download_artifacts(run_id, 'test/per_tag.csv', str(tmp_path))
    assert open(copy).read() == open(tmp_path / 'test' / 'per_tag.csv').read()
    assert (tmp_path / 'store' / 'mlartifacts' / run_id).is_dir()  # artifacts beside the store
    assert outbound_connections == []


def test_resumed_train_continues_its_mlflow_run(dataset, tmp_path):
    """A TRAIN resumed from last.ckpt logs into the run it continues: one run, the loss curve going on, the first
    parameter values kept (MLflow refuses to change one) and what the resume changed kept as a tag."""
    uri = f'sqlite:///{tmp_path}/mlruns.db'
    common = ['--data_path', dataset['root'], '--model_save_path', tmp_path / 'cf-run', '--logger', 'mlflow',
              '--mlflow_uri', uri, '--experiment_name', 'exp', *TINY, '--epoch_size', 320]
    first = run(*common)
    resumed = run(*common, '--n_epochs', 2, '--ckpt_path', first.last_model_path)
    client = MlflowClient(uri)
    [found] = client.search_runs([client.get_experiment_by_name('exp').experiment_id])
    assert found.info.status == 'FINISHED'
    assert found.data.params['config/ckpt_path'] == 'None' and found.data.params['config/n_epochs'] == '1'
    assert found.data.tags['resumed/config/ckpt_path'] == str(first.last_model_path)
    assert found.data.tags['resumed/config/n_epochs'] == '2'
    assert [m.step for m in client.get_metric_history(found.info.run_id, 'train/loss_step')] == [9, 19]
    assert [m.step for m in client.get_metric_history(found.info.run_id, 'map')] == [9, 19]
    import torch
    assert torch.load(resumed.last_model_path, map_location='cpu', weights_only=True)['global_step'] == 20


# ------------------------------------------------------------------------------------------ a real server
def free_port():
    with socket.socket() as s:
        try:
            s.bind(('127.0.0.1', 0))
        except OSError as e:
            pytest.skip(f'cannot bind a port on 127.0.0.1 for an MLflow server: {e}')
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(store, folder):
    """`mlflow server` on 127.0.0.1 in a process group of its own (uvicorn, job runner, huey: all stopped)."""
    port = free_port()
    log_path = folder / 'server.log'
    command = [os.path.join(os.path.dirname(sys.executable), 'mlflow'), 'server', '--backend-store-uri', store,
               '--host', '127.0.0.1', '--port', str(port), '--workers', '1']
    with open(log_path, 'w') as log:
        server = subprocess.Popen(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                  env=dict(os.environ, MLFLOW_DISABLE_TELEMETRY='true',
                                           MLFLOW_SERVER_ENABLE_JOB_EXECUTION='false'))  # no GenAI job runners
    url = f'http://127.0.0.1:{port}'
    try:
        deadline = time.time() + SERVER_START_S
        while not answers(url + '/health'):
            if server.poll() is not None:
                text = log_path.read_text()
                if 'address already in use' in text.lower():
                    pytest.skip(f'port {port} on 127.0.0.1 could not be bound by the MLflow server')
                pytest.fail(f'mlflow server exited with {server.returncode}: {text[-1500:]}')
            assert time.time() < deadline, f'mlflow server gave no answer in {SERVER_START_S} s'
            time.sleep(0.5)
        yield url
    finally:
        stop_group(server)


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


def stop_group(process):
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.time() + wait_s
        while time.time() < deadline:
            process.poll()
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
    raise AssertionError(f'processes of group {process.pid} outlived SIGKILL')


def rest(url, endpoint, **query):
    with urllib.request.urlopen(f'{url}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}',
                                timeout=30) as response:
        return json.load(response)


def test_runs_logged_over_http_to_a_tracking_server(dataset, tmp_path):
    with mlflow_server(f'sqlite:///{tmp_path}/server.db', tmp_path) as url:
        _, config = train_and_test(dataset, tmp_path, url, '--epoch_size', 64)
        assert config['mlflow_tracking_uri'] == url
        found = rest(url, 'runs/get', run_id=config['mlflow_run_id'])['run']
        assert found['info']['run_name'] == 'cf-run' and found['info']['status'] == 'FINISHED'
        params = {p['key']: p['value'] for p in found['data']['params']}
        metrics = {m['key']: m['value'] for m in found['data']['metrics']}
        assert params['config/epoch_size'] == '64' and 0 <= metrics['map'] <= 1
        with open(tmp_path / 'test' / 'summary.json') as f:
            assert metrics['test/map'] == pytest.approx(json.load(f)['means']['all']['map'])
        files = rest(url, 'artifacts/list', run_id=config['mlflow_run_id'], path='test')['files']
        assert sorted(f['path'] for f in files) == ['test/per_tag.csv', 'test/summary.json']
    assert (tmp_path / 'mlartifacts').is_dir()  # the server stored the uploaded files under its own folder
    assert not answers(url + '/health')


# ------------------------------------------------------------------------------------------ a real browser
def log_grid(dataset, tmp_path, store):
    """A toy grid run by experiments.py itself: random and balanced_weighted finished first in a store this test
    then drops (as a clone brings results/ without mlruns.db), then the three sampling configurations into `store`:
    balanced is trained and tested there, the two finished runs are imported from their files. GRID_RESULTS=results
    imports a real grid's 9 sampling runs instead, as experiments.py would (how the README's screenshot is taken)."""
    if os.environ.get('GRID_RESULTS'):
        names = [f'{name}-s{seed}' for name in SAMPLING for seed in (0, 1, 2)]
        for run_name in names:
            name, seed = run_name.rsplit('-s', 1)
            tracking.import_finished_run(os.path.join(os.environ['GRID_RESULTS'], 'runs', name, f'seed{seed}'),
                                         run_name, store, 'tag-retrieval-grid')
        return names
    out = tmp_path / 'results'
    for uri, configs in ((f'sqlite:///{tmp_path}/elsewhere.db', SAMPLING[::2]), (store, SAMPLING)):
        done = subprocess.run(grid_command(dataset['root'], out, uri, *configs, experiment='tag-retrieval-grid'),
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count('done before') == 2 and 'balanced seed 0: ran' in done.stdout, done.stdout
    return [f'{name}-s0' for name in SAMPLING]


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason='no Chromium or chromedriver on PATH: apt-get install chromium chromium-driver')
def test_grid_compared_in_the_mlflow_ui_in_a_browser(dataset, tmp_path):
    """The runs experiments.py tracked, live or imported, in MLflow's own UI under the names it gives them, and
    their curves, validation MAP and training loss side by side, as Chromium shows them driven over WebDriver."""
    import mlflow_ui  # selenium (requirements.txt): only this test needs it
    store = f'sqlite:///{tmp_path}/mlruns.db'
    names = log_grid(dataset, tmp_path, store)
    experiment_id = MlflowClient(store).get_experiment_by_name('tag-retrieval-grid').experiment_id
    shot = tmp_path / 'grid.png'
    with mlflow_server(store, tmp_path) as url, mlflow_ui.chromium(CHROMIUM, CHROMEDRIVER, tmp_path / 'profile') as \
            browser:
        page = mlflow_ui.curves_side_by_side(browser, f'{url}/#/experiments/{experiment_id}/runs', names, shot)
    assert page['table'] == names, f'the runs page shows {page["table"]} of {names}'
    assert list(page['charts']) == list(mlflow_ui.CURVES), f'charts shown: {list(page["charts"])}'
    for chart, runs in page['charts'].items():
        assert runs == names, f'the {chart} chart draws the curves of {runs} of {names}'
    left, right = page['boxes']
    assert left['y'] == right['y'] and left['x'] + left['width'] <= right['x'], f'not side by side: {left} {right}'
    assert not page['assistant'], 'the MLflow Assistant panel is still open'
    with open(shot, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert 20_000 < shot.stat().st_size < 600_000
    if os.environ.get('SCREENSHOT_TO'):
        shutil.copyfile(shot, os.environ['SCREENSHOT_TO'])


def test_unreachable_neptune_names_its_shutdown_and_mlflow(monkeypatch):
    monkeypatch.delenv('NEPTUNE_API_TOKEN', raising=False)
    config = cli.build_parser().parse_args(['--neptune_project', 'lab/tags'])
    with pytest.raises(tracking.UserError) as error:
        tracking.make_logger(config)
    message = str(error.value)
    assert message.startswith('Neptune (async mode) failed')
    assert 'shut down on 5 March 2026' in message and '--logger mlflow' in message
