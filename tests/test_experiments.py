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
               '--configs', 'random', 'balanced_weighted', '--seeds', '0', '--extra', TOY,
               '--mlflow_uri', f'sqlite:///{tmp_path}/mlruns.db', '--experiment_name', 'grid']
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = list(csv.reader(open(out / 'table1_sampling.csv')))
    assert [r[0] for r in rows] == ['model', 'random', 'balanced_weighted']
    assert all(0 <= float(r[2].split(' ± ')[0]) <= 1 for r in rows[1:])
    assert (out / 'learning_curves.png').stat().st_size > 1000
    assert '| random |' in (out / 'RESULTS.md').read_text()
    assert 'wall time' in (out / 'RUN_INFO.md').read_text()
    # every run of the grid is one MLflow run of one experiment, named by configuration and seed, TEST included
    from mlflow import MlflowClient
    client = MlflowClient(f'sqlite:///{tmp_path}/mlruns.db')
    runs = client.search_runs([client.get_experiment_by_name('grid').experiment_id])
    assert sorted(r.info.run_name for r in runs) == ['balanced_weighted-s0', 'random-s0']
    assert all(0 <= r.data.metrics['test/map'] <= 1 for r in runs)
    # a second call resumes: both runs are found finished and nothing is retrained
    second = subprocess.run(command, capture_output=True, text=True)
    assert second.returncode == 0 and second.stdout.count('done before') == 2
