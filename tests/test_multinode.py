"""Multi-node DDP for real: two "nodes" (two processes of main.py, --num_nodes 2 --devices 1 --strategy ddp
--accelerator cpu) meet on 127.0.0.1 through the variables Lightning reads (MASTER_ADDR, MASTER_PORT, NODE_RANK,
WORLD_SIZE), train and validate; TEST of their checkpoint on two nodes equals TEST in one process; a node that
cannot meet the others fails with one line, in bounded time."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from ports import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ['--n_channels', '8', '--batch_size', '16', '--num_chunk', '2', '--accelerator', 'cpu']
NODES = ['--num_nodes', '2', '--devices', '1', '--strategy', 'ddp']
LIMIT_S = 240  # each process; a hang fails the test instead of stalling it


def start_node(rank, port, args, ddp_timeout=60):
    env = dict(os.environ, MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), NODE_RANK=str(rank), WORLD_SIZE='2',
               OMP_NUM_THREADS='1')
    env.pop('RANK', None), env.pop('LOCAL_RANK', None)
    return subprocess.Popen([sys.executable, 'main.py', *map(str, args), *NODES, '--ddp_timeout', str(ddp_timeout)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_all(processes):
    """(exit code, stdout, stderr) of each; every process is stopped by the end, whatever happens."""
    results = []
    try:
        deadline = time.time() + LIMIT_S
        for process in processes:
            out, err = process.communicate(timeout=max(1, deadline - time.time()))
            results.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    return results


def run_nodes(args_of_rank):
    port = free_port()
    return wait_all([start_node(rank, port, args) for rank, args in enumerate(args_of_rank)])


def test_two_nodes_train_and_test_like_one_process(dataset, tmp_path):
    store = f'sqlite:///{tmp_path}/mlruns.db'
    # 65 samples an epoch: 32 a rank, the odd one left out (Lightning's default sampler would give rank 1 a
    # repeat of rank 0's first sample to make 33)
    train = ['--mode', 'TRAIN', '--data_path', dataset['root'], *SMALL, '--epoch_size', '65', '--n_epochs', '2',
             '--logger', 'mlflow', '--mlflow_uri', store, '--run_name', 'two-nodes']
    # each node its own --model_save_path, as on machines without a shared disk: what node 1 writes stays apart
    (code0, out0, err0), (code1, out1, err1) = run_nodes([train + ['--model_save_path', tmp_path / 'node0'],
                                                          train + ['--model_save_path', tmp_path / 'node1']])
    assert code0 == 0 and code1 == 0, err0[-3000:] + err1[-3000:]
    print(out0[-1500:])
    for epoch in (0, 1):  # the ranks trained on 2 x 32 samples of the epoch, none on both
        assert f'epoch {epoch}: 2 ranks trained on 64 samples (32 each), 64 distinct' in out0, out0[-2000:]
    assert 'best valid map' in out0 and 'best valid map' not in out1
    assert sorted(os.listdir(tmp_path / 'node0')) == ['best.ckpt', 'config.json', 'last.ckpt', 'logs']
    assert os.listdir(tmp_path / 'node1') == []  # rank 1 wrote no checkpoint, config or log
    with sqlite3.connect(tmp_path / 'mlruns.db') as db:  # one run for both nodes, with the valid MAP of rank 0
        assert db.execute('select name from runs').fetchall() == [('two-nodes',)]
        assert db.execute("select count(*) from metrics where key = 'map'").fetchone()[0] == 2

    checkpoint = tmp_path / 'node0' / 'best.ckpt'
    test = ['--mode', 'TEST', '--data_path', dataset['root'], *SMALL, '--model_load_path', checkpoint,
            '--logger', 'none']
    (code0, out0, err0), (code1, out1, err1) = run_nodes([test + ['--result_path', tmp_path / 'two'],
                                                          test + ['--result_path', tmp_path / 'two_node1']])
    assert code0 == 0 and code1 == 0, err0[-3000:] + err1[-3000:]
    with sqlite3.connect(tmp_path / 'mlruns.db') as db:  # TEST joined the training run, from rank 0 alone
        assert db.execute('select count(*) from runs').fetchone()[0] == 1
        assert db.execute("select count(*) from metrics where key = 'test/map'").fetchone()[0] == 1
    one = subprocess.run([sys.executable, 'main.py', *map(str, test), '--result_path', tmp_path / 'one'], cwd=ROOT,
                         capture_output=True, text=True, timeout=LIMIT_S)
    assert one.returncode == 0, one.stderr[-3000:]
    two, single = (json.loads((tmp_path / name / 'summary.json').read_text()) for name in ('two', 'one'))
    assert two['n_test_songs'] == single['n_test_songs'] == len(dataset['splits']['test'])
    for name in ('map', 'p@10', 'roc_auc'):
        assert two['means']['all'][name] == pytest.approx(single['means']['all'][name], abs=1e-6)
    # every song once, in split order, though each node embedded half of them (one padded with a repeat)
    np.testing.assert_allclose(np.load(tmp_path / 'two' / 'scores.npy'), np.load(tmp_path / 'one' / 'scores.npy'),
                               atol=1e-5)
    assert os.listdir(tmp_path / 'two_node1') == []


@pytest.mark.parametrize('rank', [0, 1])
def test_a_node_alone_fails_with_one_line(dataset, tmp_path, rank):
    """Node 1 with nobody listening at MASTER_ADDR:MASTER_PORT, or node 0 whose peer never comes: one error line
    naming the address and port, exit 2, within --ddp_timeout and start-up (not Lightning's half hour)."""
    port = free_port()
    args = ['--mode', 'TRAIN', '--data_path', dataset['root'], *SMALL, '--epoch_size', '32', '--n_epochs', '1',
            '--logger', 'none', '--model_save_path', tmp_path / 'out']
    started = time.time()
    process = start_node(rank, port, args, ddp_timeout=5)
    [(code, out, err)] = wait_all([process])
    elapsed = time.time() - started
    errors = [line for line in err.splitlines() if 'error' in line.lower()]
    assert code == 2 and len(errors) == 1 and errors[0].startswith('error: '), err[-3000:]
    assert f'DDP node {rank} of 2 could not meet the others at the rendezvous 127.0.0.1:{port} within ' \
           '--ddp_timeout 5 s' in errors[0]
    assert 'Traceback' not in err and 'frame #' not in err
    assert elapsed < 90, f'{elapsed:.0f} s'
