"""Training to a plateau (--early_stop_patience), exact resume across it, the sampler's diagnostics, and the
convergence report of experiments.py --converge."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from solver import negative_diagnostics, sample_negatives, triplet_loss
from test_resume import TINY, kill_once_last_checkpoint_exists, run, weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# no gain can exceed 1: after the first validation every one counts as no improvement, so with patience 2 TRAIN
# stops after its third validation (epoch 2), whatever the MAP does: 3 epochs of 128 / 16 = 8 steps
PLATEAU = ['--early_stop_patience', '2', '--early_stop_min_delta', '1', '--n_epochs', '10']


def test_plateau_stops_training_and_a_killed_run_resumes_to_the_same_stop(dataset, tmp_path):
    data = dataset['root']
    reference = run('--data_path', data, '--model_save_path', tmp_path / 'ref', *TINY, *PLATEAU,
                    '--keep_best_until_step', '16')
    config = json.load(open(tmp_path / 'ref' / 'config.json'))
    assert config['stopped_early'] is True and config['trained_steps'] == 24
    assert config['early_stop_patience'] == 2
    # the checkpoint kept up to step 16 is the one a 2-epoch run (16 steps) selects, bit for bit
    budget = run('--data_path', data, '--model_save_path', tmp_path / 'budget', *TINY, '--n_epochs', '2')
    a, b = weights(tmp_path / 'ref' / 'best_until_16.ckpt'), weights(budget.best_model_path)
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel()) == 0
    # killed after its first epoch: the restored counters (best MAP, validations without gain) must stop the resumed
    # run at the same validation; counters started afresh would run one epoch longer (32 steps)
    last = kill_once_last_checkpoint_exists(data, str(tmp_path / 'killed'), *PLATEAU)
    assert torch.load(last, map_location='cpu', weights_only=True)['epoch'] < 2
    resumed = run('--data_path', data, '--model_save_path', tmp_path / 'killed', *TINY, *PLATEAU, '--ckpt_path', last)
    assert json.load(open(tmp_path / 'killed' / 'config.json'))['trained_steps'] == 24
    for name in ('last_model_path', 'best_model_path'):
        a, b = weights(getattr(reference, name)), weights(getattr(resumed, name))
        assert max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel()) == 0


def test_without_patience_training_runs_its_epochs(dataset, tmp_path):
    run('--data_path', dataset['root'], '--model_save_path', tmp_path / 'ck', *TINY, '--n_epochs', '2',
        '--logger', 'csv')
    config = json.load(open(tmp_path / 'ck' / 'config.json'))
    assert config['stopped_early'] is False and config['trained_steps'] == 16
    # the sampler's diagnostics are logged once an epoch
    rows = list(csv.DictReader(open(tmp_path / 'ck' / 'logs' / 'version_0' / 'metrics.csv')))
    drawn = [float(r['train/negative_cos']) for r in rows if r.get('train/negative_cos')]
    zero = [float(r['train/zero_loss_rows']) for r in rows if r.get('train/zero_loss_rows')]
    assert len(drawn) == 2 and all(-1 <= d <= 1 for d in drawn) and all(0 <= z <= 1 for z in zero)


def test_negative_diagnostics_are_the_exact_means():
    torch.manual_seed(0)
    tag_emb, song_emb = torch.randn(5, 4), torch.randn(5, 4)
    tag_index = torch.tensor([0, 1, 2, 0, 1])
    labels = torch.zeros(5, 3)
    labels[torch.arange(5), tag_index] = 1
    labels[1, 0] = 1  # song 1 also carries tag 0: no negative of rows 0 and 3
    negative = torch.tensor([2, 0, 4, 4, 3])
    has_negative = torch.tensor([True, True, True, True, False])
    losses = triplet_loss(tag_emb, song_emb, song_emb[negative], 0.4)[has_negative]
    got = negative_diagnostics(tag_emb, song_emb, tag_index, labels, negative, has_negative, losses)
    cos = torch.nn.functional.cosine_similarity(tag_emb[:, None], song_emb[None], dim=-1)
    drawn = [cos[i, negative[i]] for i in range(4)]
    uniform = [cos[i][labels[:, tag_index[i]] == 0].mean() for i in range(4)]
    assert got['negative_cos'].item() == pytest.approx(torch.stack(drawn).mean().item(), abs=1e-6)
    assert got['uniform_negative_cos'].item() == pytest.approx(torch.stack(uniform).mean().item(), abs=1e-6)
    assert got['zero_loss_rows'].item() == pytest.approx((losses == 0).float().mean().item())


def test_weighted_sampling_draws_harder_negatives_than_uniform():
    """Over many draws the weighted sampler's negatives are closer to the tag than a uniform draw's, and the
    diagnostics see it; the uniform sampler's drawn and expected cosines agree."""
    torch.manual_seed(1)
    n = 64
    tag_emb, song_emb = torch.randn(n, 8), torch.randn(n, 8)
    tag_index = torch.arange(n) % 4
    labels = torch.nn.functional.one_hot(tag_index, 4).float()
    gaps = {}
    for weighted in (False, True):
        total = torch.zeros(())
        for _ in range(200):
            negative, has = sample_negatives(tag_emb, song_emb, tag_index, labels, weighted)
            losses = triplet_loss(tag_emb, song_emb, song_emb[negative], 0.4)[has]
            d = negative_diagnostics(tag_emb, song_emb, tag_index, labels, negative, has, losses)
            total += d['negative_cos'] - d['uniform_negative_cos']
        gaps[weighted] = (total / 200).item()
    assert abs(gaps[False]) < 0.01 and gaps[True] > 0.05, gaps


def test_converge_grid_writes_stopping_verdict_and_sampler_tables(dataset, tmp_path):
    out = tmp_path / 'convergence'
    toy = '--n_channels 8 --batch_size 32 --epoch_size 64 --num_chunk 4 --early_stop_patience 1 ' \
          '--early_stop_min_delta 1 --max_steps 50 --keep_best_until_step 2'
    command = [sys.executable, os.path.join(ROOT, 'experiments.py'), '--converge', '--data_path', dataset['root'],
               '--out', str(out), '--configs', 'random', 'balanced_weighted',
               '--seeds', '0', '--extra', toy, '--mlflow_uri', f'sqlite:///{tmp_path}/mlruns.db']
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    stops = list(csv.DictReader(open(out / 'table_stopping.csv')))
    # patience 1: the second validation ends each run, after 2 epochs of 64 / 32 = 2 steps
    assert [(r['model'], r['stopped at step'], r['ended by']) for r in stops] == \
        [('random', '4', 'plateau'), ('balanced_weighted', '4', 'plateau')]
    pairs = list(csv.DictReader(open(out / 'table_budget_vs_converged.csv')))
    row = next(r for r in pairs if r['claim'].startswith('balanced-weighted > random'))
    assert row['budget seeds'] == row['converged seeds'] == '1'
    change = float(row['converged A - B']) - float(row['budget A - B'])
    assert float(row['change of A - B']) == pytest.approx(change, abs=2e-4)
    for name in ('random', 'balanced_weighted'):  # both checkpoints of every run were TESTed
        run_folder = out / 'runs' / name / 'seed0'
        assert (run_folder / 'test_budget' / 'summary.json').is_file() and (run_folder / 'best_until_2.ckpt').is_file()
        assert (run_folder / 'test' / 'summary.json').is_file()
    sampler = list(csv.DictReader(open(out / 'table_sampler.csv')))
    assert {r['model'] for r in sampler} == {'random', 'balanced_weighted'}
    assert (out / 'sampler_diagnostics.png').stat().st_size > 1000
    assert 'Where each run stopped' in (out / 'CONVERGENCE.md').read_text()
    assert '--early_stop_patience' in (out / 'runs' / 'random' / 'seed0' / 'train.log').read_text()


@pytest.mark.parametrize('flags, warned', [(['fpu', 'avx2'], True), (['avx2', 'avx512_bf16'], False),
                                           (['avx2', 'amx_bf16'], False)])
def test_grid_warns_when_the_cpu_emulates_bf16(monkeypatch, capsys, flags, warned):
    """The grid's budget trains in bf16 autocast: on a CPU without bf16 instructions that is ~3x slower than float32,
    and a researcher should hear it before hours go by."""
    import experiments
    import run_precision
    monkeypatch.setattr(run_precision, 'cpu_info', lambda: (['AMD EPYC'] * 2, flags))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    run_precision.warn_if_bf16_is_emulated(experiments.CPU_TRAIN_ONLY)
    assert ('no bf16 instructions' in capsys.readouterr().err) == warned
    run_precision.warn_if_bf16_is_emulated(['--num_chunk', '4'])  # float32 runs: nothing to say
    assert capsys.readouterr().err == ''
    # --extra="--precision 32" comes after the budget's flags and wins, as it does in main.py's argparse
    run_precision.warn_if_bf16_is_emulated(experiments.CPU_TRAIN_ONLY + ['--precision', '32'])
    assert capsys.readouterr().err == ''


def test_a_seed_keeps_one_precision(tmp_path):
    """A seed's runs are paired in the verdicts: a run may not start in another precision than its seed's others
    (seeds 0 and 1 of the study trained in bf16; later seeds on a CPU without bf16 train in float32)."""
    import json

    import experiments
    import run_precision
    from errors import UserError
    for name, seed, precision in (('random', 0, 'bf16-mixed'), ('random', 2, '32')):
        folder = tmp_path / 'runs' / name / f'seed{seed}'
        (folder / 'test').mkdir(parents=True)
        (folder / 'config.json').write_text(json.dumps({'precision': precision}))
        (folder / 'test' / 'summary.json').write_text('{}')
    started = tmp_path / 'runs' / 'balanced' / 'seed2'
    started.mkdir(parents=True)
    (started / 'provenance.txt').write_text('2026-12-07 20:19:50 TRAIN at commit abc; precision 32-true\n')
    configs = ['random', 'balanced', 'balanced_weighted']
    jobs = [(name, seed) for seed in (0, 2) for name in configs]

    def check(jobs, wanted):
        run_precision.check_seed_precisions(jobs, configs, lambda name, seed: experiments.run_dir(tmp_path, name, seed),
                                            run_precision.train_precision(experiments.CPU_TRAIN_ONLY + wanted))
    with pytest.raises(UserError, match=r'balanced seed 0 would train in 32-true, but random seed 0 .* was trained '
                                        r'in bf16-mixed: .* pass --extra="--precision bf16-mixed"'):
        check(jobs, ['--precision', '32'])
    check([j for j in jobs if j[1] == 2], ['--precision', '32'])  # '32' is '32-true': no conflict
    # the budget's bf16 for seed 2: refused, the provenance of a started run counts too
    with pytest.raises(UserError, match=r'balanced seed 2 would train in bf16-mixed, but random seed 2'):
        check([j for j in jobs if j[1] == 2], [])
    assert run_precision.recorded_precision(str(started)) == '32-true'
    assert run_precision.recorded_precision(str(tmp_path / 'runs' / 'random' / 'seed2')) == '32-true'
    assert run_precision.train_precision(['--precision', 'bf16-mixed', '--precision', '32']) == '32-true'


def test_a_killed_run_with_a_step_cap_resumes_to_the_same_stop(dataset, tmp_path, recwarn):
    # a step cap makes Lightning restart on the saved epoch's end and run its end hooks again, with no validation
    # metrics this time: the plateau check must not fail on the missing MAP, nor count that epoch twice
    data, capped = dataset['root'], [*PLATEAU, '--max_steps', '80']
    reference = run('--data_path', data, '--model_save_path', tmp_path / 'ref', *TINY, *capped)
    last = kill_once_last_checkpoint_exists(data, str(tmp_path / 'killed'), *capped)
    saved = torch.load(last, map_location='cpu', weights_only=True)
    assert saved['epoch'] < 2
    # saved under EarlyStopping's own key, so checkpoints written with plain EarlyStopping restore their counters
    assert "EarlyStopping{'monitor': 'map', 'mode': 'max'}" in saved['callbacks']
    resumed = run('--data_path', data, '--model_save_path', tmp_path / 'killed', *TINY, *capped, '--ckpt_path', last)
    assert not [w for w in recwarn if 'could not find the monitored key' in str(w.message)]  # nothing is wrong
    for folder in ('ref', 'killed'):
        assert json.load(open(tmp_path / folder / 'config.json'))['trained_steps'] == 24
    for name in ('last_model_path', 'best_model_path'):
        a, b = weights(getattr(reference, name)), weights(getattr(resumed, name))
        assert max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel()) == 0


def test_a_resumed_runs_logs_are_read_in_the_order_they_were_written(tmp_path):
    """A step logged by two versions (a partial epoch run again after a kill) keeps the later version's value, and
    version_10 is later than version_2."""
    from report import curve_points
    for version, value in ((2, 0.1), (10, 0.3), (9, 0.2)):
        folder = tmp_path / 'logs' / f'version_{version}'
        folder.mkdir(parents=True)
        (folder / 'metrics.csv').write_text(f'epoch,map,step\n0,{value},31\n0,{value + 0.5},{version}\n')
    assert curve_points(str(tmp_path)) == {31: 0.3, 2: 0.6, 9: 0.7, 10: 0.8}


def test_the_smoothed_peak_follows_the_trend_not_one_lucky_validation():
    from convergence_report import smoothed_peak
    # a rising trend with one lucky early validation (1.5 at step 64): the best single score is early, the trend's
    # peak is at the end: the 5-validation mean of steps 192-320 (the middle one, 256)
    points = {32 * k: 0.1 * k for k in range(1, 11)}
    points[64] = 1.5
    assert max(points, key=points.get) == 64
    step, value = smoothed_peak(points)
    assert step == 32 * 8 and value == pytest.approx((0.6 + 0.7 + 0.8 + 0.9 + 1.0) / 5)
    assert smoothed_peak({32: 0.1, 64: 0.2}) is None  # fewer validations than the window


def test_a_run_stopped_by_the_rule_extends_to_a_stricter_one_by_resuming(dataset, tmp_path):
    # the stopping rule does not touch the training, so patience 2 resumed with patience 4 is the patience-4 run;
    # Lightning restores the checkpoint's patience, which would stop the extension after one more epoch (32 steps)
    # (with the study's step cap, so the resume takes the path that reruns the saved epoch's end)
    capped = [*PLATEAU, '--max_steps', '80']
    data, stricter = dataset['root'], [*capped[:1], '4', *capped[2:]]
    reference = run('--data_path', data, '--model_save_path', tmp_path / 'ref', *TINY, *stricter)
    run('--data_path', data, '--model_save_path', tmp_path / 'ext', *TINY, *capped)
    assert json.load(open(tmp_path / 'ext' / 'config.json'))['trained_steps'] == 24
    extended = run('--data_path', data, '--model_save_path', tmp_path / 'ext', *TINY, *stricter,
                   '--ckpt_path', tmp_path / 'ext' / 'last.ckpt')
    for folder in ('ref', 'ext'):
        assert json.load(open(tmp_path / folder / 'config.json'))['trained_steps'] == 40
    for name in ('last_model_path', 'best_model_path'):
        a, b = weights(getattr(reference, name)), weights(getattr(extended, name))
        assert max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel()) == 0
