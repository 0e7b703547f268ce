"""The experiment grid at toy size: 2 configurations, 1 seed, a few steps; tables and figures come out."""
import csv
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = '--n_channels 8 --batch_size 32 --epoch_size 64 --n_epochs 1 --num_chunk 4 --max_steps 2'


def test_grid_at_toy_size_writes_tables_and_figures(dataset, tmp_path):
    out = tmp_path / 'results'
    command = [sys.executable, os.path.join(ROOT, 'experiments.py'), '--data_path', dataset['root'], '--out', str(out),
               '--configs', 'random', 'balanced_weighted', '--seeds', '0', '--extra', TOY]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = list(csv.reader(open(out / 'table1_sampling.csv')))
    assert [r[0] for r in rows] == ['model', 'random', 'balanced_weighted']
    assert all(0 <= float(r[2].split(' ± ')[0]) <= 1 for r in rows[1:])
    assert (out / 'learning_curves.png').stat().st_size > 1000
    assert '| random |' in (out / 'RESULTS.md').read_text()
    assert 'wall time' in (out / 'RUN_INFO.md').read_text()
    # a second call resumes: both runs are found finished and nothing is retrained, except the TEST of a run whose
    # outputs are incomplete (a 0-byte scores.npy beside its summary.json, as a full disk once left)
    scores = out / 'runs' / 'random' / 'seed0' / 'test' / 'scores.npy'
    scores.write_bytes(b'')
    second = subprocess.run(command, capture_output=True, text=True)
    assert second.returncode == 0 and second.stdout.count('done before') == 1, second.stdout
    assert scores.stat().st_size > 0
