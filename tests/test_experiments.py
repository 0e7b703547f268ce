"""The experiment grid at toy size: 2 configurations, 1 seed, a few steps; tables and figures come out."""
import csv
import os
import shutil
import subprocess
import sys

import numpy as np

from paired_stats import paired_bootstrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = '--n_channels 8 --batch_size 32 --epoch_size 64 --n_epochs 1 --num_chunk 4 --max_steps 2'


def grid_command(data, out, store, *configs, experiment='grid'):
    """experiments.py on a toy grid: the configurations given, seed 0, a few steps each, tracked in `store`."""
    return [sys.executable, os.path.join(ROOT, 'experiments.py'), '--data_path', str(data), '--out', str(out),
            '--configs', *configs, '--seeds', '0', '--extra', TOY, '--mlflow_uri', store, '--experiment_name',
            experiment]


def test_grid_at_toy_size_writes_tables_and_figures(dataset, tmp_path):
    out = tmp_path / 'results'
    command = grid_command(dataset['root'], out, f'sqlite:///{tmp_path}/mlruns.db', 'random', 'balanced_weighted')
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = list(csv.reader(open(out / 'table1_sampling.csv')))
    assert [r[0] for r in rows] == ['model', 'random', 'balanced_weighted']
    assert all(0 <= float(r[2].split(' ± ')[0]) <= 1 for r in rows[1:])
    assert (out / 'learning_curves.png').stat().st_size > 1000
    assert '| random |' in (out / 'RESULTS.md').read_text()
    run_info = (out / 'RUN_INFO.md').read_text()
    assert 'wall time' in run_info and 'machine:' in run_info and 'ix_to_cf.npy' in run_info
    provenance = (out / 'runs' / 'random' / 'seed0' / 'provenance.txt').read_text()
    assert 'TRAIN at commit' in provenance and 'TRAIN + TEST finished in' in provenance
    assert f'(the 2 runs under {out}: ' in run_info and ' min of TRAIN + TEST in all)' in run_info
    paired = list(csv.DictReader(open(out / 'table_paired.csv')))
    assert paired[0]['A'] == 'balanced_weighted' and paired[0]['B'] == 'random' and paired[0]['seeds'] == '1'
    # the claim balanced_weighted > random, recomputed from the two runs' per-tag AP: difference, interval, verdict
    ap = {name: {r['tag']: float(r['ap']) for r in csv.DictReader(open(out / 'runs' / name / 'seed0' / 'test' /
                                                                       'per_tag.csv'))}
          for name in ('balanced_weighted', 'random')}
    mean, low, high = paired_bootstrap([[ap['balanced_weighted'][t] - ap['random'][t] for t in sorted(ap['random'])]])
    assert (paired[0]['MAP A - B'], paired[0]['95% interval']) == (f'{mean:+.4f}', f'[{low:+.4f}, {high:+.4f}]')
    assert paired[0]['verdict'] == ('reproduced' if low > 0 else 'opposite' if high < 0 else 'inconclusive')
    # every run of the grid is one MLflow run of one experiment, named by configuration and seed, TEST included
    from mlflow import MlflowClient
    client = MlflowClient(f'sqlite:///{tmp_path}/mlruns.db')
    runs = client.search_runs([client.get_experiment_by_name('grid').experiment_id])
    assert sorted(r.info.run_name for r in runs) == ['balanced_weighted-s0', 'random-s0']
    assert all(0 <= r.data.metrics['test/map'] <= 1 for r in runs)
    # a second call resumes: both runs are found finished and nothing is retrained, except the TEST of a run whose
    # outputs are incomplete (a 0-byte scores.npy beside its summary.json, as a full disk once left)
    scores = out / 'runs' / 'random' / 'seed0' / 'test' / 'scores.npy'
    scores.write_bytes(b'')
    second = subprocess.run(command, capture_output=True, text=True)
    assert second.returncode == 0 and second.stdout.count('done before') == 1, second.stdout
    assert scores.stat().st_size > 0
    # a clone brings results/ but not the store, nor scores.npy (git leaves it out): the finished runs are not
    # trained again, and they are imported into a store that lacks them
    for path in out.glob('runs/*/seed0/test/scores.npy'):
        path.unlink()
    fresh = f'sqlite:///{tmp_path}/fresh.db'
    third = subprocess.run(command[:-4] + ['--mlflow_uri', fresh, '--experiment_name', 'grid'], capture_output=True,
                           text=True)
    assert third.returncode == 0 and third.stdout.count('done before') == 2, third.stderr[-2000:]
    client = MlflowClient(fresh)
    runs = client.search_runs([client.get_experiment_by_name('grid').experiment_id])
    assert sorted(r.info.run_name for r in runs) == ['balanced_weighted-s0', 'random-s0']


def test_results_made_on_other_data_are_refused(dataset, tmp_path):
    data = tmp_path / 'data'
    shutil.copytree(dataset['root'], data)
    out = tmp_path / 'results'
    command = [sys.executable, os.path.join(ROOT, 'experiments.py'), '--data_path', str(data), '--out', str(out),
               '--configs', 'cultural', '--seeds', '0', '--extra', TOY,
               '--mlflow_uri', f'sqlite:///{tmp_path}/mlruns.db']
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0
    assert 'spec/ (96 files)' in (out / 'data_checksums.json').read_text()
    cf = np.load(data / 'ix_to_cf.npy')
    np.save(data / 'ix_to_cf.npy', cf * 2)  # a rebuilt dataset with other item factors
    second = subprocess.run(command, capture_output=True, text=True)
    assert second.returncode == 2 and 'ix_to_cf.npy' in second.stderr and 'differs' in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
