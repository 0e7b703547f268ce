"""A TRAIN process killed with SIGKILL and resumed from its last.ckpt ends exactly where the uninterrupted run
ends: the same weights (bit for bit), the same summary.json means and the same per_tag.csv."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

import main as cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# spec input: dropout, weighted negatives and the CNN all draw or depend on every earlier draw
TINY = ['--input_type', 'spec', '--is_balanced', 'True', '--is_weighted', 'True', '--n_channels', '8',
        '--batch_size', '16', '--epoch_size', '128', '--num_chunk', '2', '--n_epochs', '3', '--seed', '3',
        '--lr', '1e-3', '--logger', 'none',
        '--accelerator', 'cpu']  # bit-equal weights need deterministic kernels; CUDA's RNG is saved the same way


def run(*argv):
    return cli.main(cli.build_parser().parse_args([str(a) for a in argv]))


def weights(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def finished_pid():
    process = subprocess.Popen(['true'])
    process.wait()
    return process.pid


def kill_once_last_checkpoint_exists(data, folder, *extra, timeout=120):
    """Start TRAIN in a process of its own; SIGKILL it as soon as the first last.ckpt is in place."""
    command = [sys.executable, os.path.join(ROOT, 'main.py'), '--data_path', data, '--model_save_path', folder, *TINY,
               *extra]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = os.path.join(folder, 'last.ckpt')
    deadline = time.time() + timeout
    while not os.path.exists(last):
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.time() < deadline, 'no last.ckpt in time'
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    return last


def test_kill_9_then_resume_equals_the_uninterrupted_run(dataset, tmp_path):
    data = dataset['root']
    reference = run('--data_path', data, '--model_save_path', tmp_path / 'ref', *TINY)
    last = kill_once_last_checkpoint_exists(data, str(tmp_path / 'killed'))
    killed_at = torch.load(last, map_location='cpu', weights_only=True)
    assert killed_at['epoch'] < 2, 'the process finished before it was killed: the test proves nothing'
    (tmp_path / 'killed' / f'.last.ckpt.partial-{finished_pid()}').write_bytes(b'cut short')  # a write killed
    resumed = run('--data_path', data, '--model_save_path', tmp_path / 'killed', *TINY, '--ckpt_path', last)
    assert not [f for f in os.listdir(tmp_path / 'killed') if '.partial' in f]

    for name in ('last_model_path', 'best_model_path'):
        a, b = weights(getattr(reference, name)), weights(getattr(resumed, name))
        assert a.keys() == b.keys()
        difference = max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel())
        assert difference == 0, f'{name}: largest weight difference {difference}'
    assert torch.load(resumed.last_model_path, weights_only=True)['global_step'] == \
        torch.load(reference.last_model_path, weights_only=True)['global_step']

    results = {}
    for run_name, ckpt in (('ref', reference), ('resumed', resumed)):
        out = tmp_path / f'test_{run_name}'
        run('--mode', 'TEST', '--data_path', data, '--model_load_path', ckpt.best_model_path, '--result_path', out,
            *TINY)
        results[run_name] = (json.load(open(out / 'summary.json'))['means'], (out / 'per_tag.csv').read_text())
    assert results['ref'][0] == results['resumed'][0]
    assert results['ref'][1] == results['resumed'][1]


def test_last_checkpoint_follows_every_epoch(dataset, tmp_path):
    """last.ckpt is the state of the last finished epoch even when the valid MAP did not improve."""
    out = tmp_path / 'ck'
    result = run('--data_path', dataset['root'], '--model_save_path', out, *TINY, '--lr', '1e-9')
    assert torch.load(result.last_model_path, weights_only=True)['epoch'] == 2
    assert torch.load(result.best_model_path, weights_only=True)['epoch'] < 2  # no improvement after the first
    assert os.path.isfile(out / 'best.ckpt') and not any(f.startswith('.') for f in os.listdir(out))
