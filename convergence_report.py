"""The paper's Tab1 at convergence: where each run stopped, the paired verdicts at the budget and at the plateau side
by side, and what the distance-weighted sampler did over training (experiments.py --converge writes these).

    python experiments.py --converge --report_only
    from convergence_report import make_convergence_report; make_convergence_report('results/convergence')

- table_stopping: per run, the step it stopped at, whether the plateau rule (not the step cap) ended it, the step
  and value of its best valid MAP, where the running mean of 5 validations peaks (the trend under the noise), and
  its TEST MAP.
- table_budget_vs_converged: the three Tab1 claims as paired differences (report.paired_difference: the same seeds
  and test songs, per tag, bootstrap over tags and seeds) at the budget (each run's best checkpoint up to the
  budget's step, TESTed into test_budget/) and at convergence (its best checkpoint, test/), and the change.
- sampler_diagnostics.png and table_sampler: the mean cosine between a tag and the negative drawn for it, minus
  the mean cosine of a uniformly drawn valid negative (> 0: the sampler prefers harder negatives than chance), and
  the share of triplets whose loss is already zero, over training.
"""
import glob
import json
import os

import numpy as np

from paired_stats import paired_bootstrap, verdict
from report import CLAIMS, curve_points, paired_difference, save_figure, write_table
from run_precision import recorded_precision

CONVERGE_CONFIGS = ('random', 'balanced', 'balanced_weighted')
# the grid's budget: 12 epochs of 2,048 samples in batches of 64; each run also keeps its best checkpoint up to here
BUDGET_STEPS = 384
TAB1_CLAIMS = [c for c in CLAIMS if c[0].endswith('(Tab1)')]
DIAGNOSTICS = ('train/negative_cos', 'train/uniform_negative_cos', 'train/zero_loss_rows')


def run_folders(out, name):
    """{seed: folder} of the runs of one configuration."""
    return {int(os.path.basename(folder)[len('seed'):]): folder
            for folder in glob.glob(os.path.join(out, 'runs', name, 'seed*'))}


SMOOTHING = 5  # validations in the running mean that shows a curve's trend under its epoch-to-epoch noise


def smoothed_peak(points, width=SMOOTHING):
    """(step, value) where the running mean of `width` consecutive validations peaks, the step being the middle
    one's; a peak near the run's last step says the trend was still rising when the plateau rule stopped it (a single
    lucky validation can set the best score that the next ten fail to beat)."""
    steps = sorted(points)
    if len(steps) < width:
        return None
    means = np.convolve([points[s] for s in steps], np.ones(width) / width, mode='valid')
    peak = int(np.argmax(means))
    return steps[peak + width // 2], float(means[peak])


def stopping_rows(out):
    rows = []
    for name in CONVERGE_CONFIGS:
        for seed, folder in sorted(run_folders(out, name).items()):
            summary_file = os.path.join(folder, 'test', 'summary.json')
            config_file = os.path.join(folder, 'config.json')
            points = curve_points(folder)
            if not (os.path.isfile(summary_file) and os.path.isfile(config_file) and points):
                continue  # still training
            with open(config_file) as f:
                config = json.load(f)
            with open(summary_file) as f:
                test_map = json.load(f)['means']['all']['map']
            best_step = max(points, key=lambda step: (points[step], -step))
            trend_step, trend = smoothed_peak(points) or (best_step, points[best_step])
            rows.append([name, seed, config.get('trained_steps', max(points)),
                         'plateau' if config.get('stopped_early') else 'step cap', best_step,
                         f'{points[best_step]:.4f}', trend_step, f'{trend:.4f}', f'{test_map:.4f}',
                         recorded_precision(folder)])
    return rows


def claim_cells(out, a, b, direction, result):
    """[seeds, mean, interval, verdict] of A - B from the runs' `result` folders, or blanks when a side has none."""
    diff, seeds = paired_difference(out, a, b, None, result)
    if diff is None:
        return ['0', '', '', ''], None
    mean, low, high = paired_bootstrap(diff)
    return [str(len(seeds)), f'{mean:+.4f}', f'[{low:+.4f}, {high:+.4f}]', verdict(low, high, direction)], mean


def budget_vs_converged_rows(out):
    rows = []
    for claim, a, b, _, direction in TAB1_CLAIMS:
        budget, budget_mean = claim_cells(out, a, b, direction, 'test_budget')
        converged, converged_mean = claim_cells(out, a, b, direction, 'test')
        change = '' if budget_mean is None or converged_mean is None else f'{converged_mean - budget_mean:+.4f}'
        rows.append([claim] + budget + converged + [change])
    return rows


def diagnostic_points(folder):
    """{step: (drawn negative cos, uniform negative cos, share of zero-loss rows)} of one run, from its CSV logs."""
    series = [curve_points(folder, column) for column in DIAGNOSTICS]
    return {step: tuple(s[step] for s in series) for step in sorted(set.intersection(*map(set, series)))}


def sampler_rows_and_figure(out):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    rows = []
    for k, name in enumerate(CONVERGE_CONFIGS):
        by_phase = {'first epoch': [], 'middle': [], 'last epoch': []}
        for s, (seed, folder) in enumerate(sorted(run_folders(out, name).items())):
            points = diagnostic_points(folder)
            if not points:
                continue
            steps = sorted(points)
            label = name.replace('_', '-') if s == 0 else None
            left.plot(steps, [points[x][0] - points[x][1] for x in steps], color=f'C{k}', alpha=0.7, label=label)
            right.plot(steps, [points[x][2] for x in steps], color=f'C{k}', alpha=0.7, label=label)
            for phase, step in zip(by_phase, (steps[0], steps[len(steps) // 2], steps[-1])):
                by_phase[phase].append(points[step])
        for phase, values in by_phase.items():
            if values:
                drawn, uniform, zero = np.mean(values, axis=0)
                rows.append([name, phase, len(values), f'{drawn:+.4f}', f'{uniform:+.4f}', f'{drawn - uniform:+.4f}',
                             f'{zero:.3f}'])
    left.axhline(0, color='grey', lw=0.5)
    save_figure(fig, left, os.path.join(out, 'sampler_diagnostics.png'), 'training step',
                'cos(tag, drawn neg.) - cos(tag, uniform neg.)', 'How much harder the drawn negatives are')
    save_figure(fig, right, os.path.join(out, 'sampler_diagnostics.png'), 'training step',
                'share of triplets with zero loss', 'Triplets that teach nothing')
    plt.close(fig)
    return rows


def make_convergence_report(out):
    """Writes the tables and the figure above into `out`; returns their Markdown sections."""
    sections = []
    stops = stopping_rows(out)
    if stops:
        sections.append('### Where each run stopped\n\n' + write_table(
            out, 'table_stopping', ['model', 'seed', 'stopped at step', 'ended by', 'best valid MAP at step',
                                    'best valid MAP', f'{SMOOTHING}-validation mean peaks at step', 'its peak',
                                    'TEST MAP', 'trained in'], stops,
            f'The {SMOOTHING}-validation running mean shows the trend under the epoch-to-epoch noise: where it peaks '
            'within a few epochs of the stop, the curve may still have been rising. trained in: the precision of TRAIN '
            '(TEST is float32 for all). A seed\'s three runs share one precision and one demo build, so every paired '
            'difference compares like with like.') +
            '\n\n![curves](learning_curves.png)\n\n'
            f'Valid MAP of every run to its stop; the budget ends at step {BUDGET_STEPS}.')
    pairs = budget_vs_converged_rows(out)
    if any(row[5] != '0' for row in pairs):
        sections.append('### Tab1 at the budget and at convergence\n\n' + write_table(
            out, 'table_budget_vs_converged',
            ['claim', 'budget seeds', 'budget A - B', 'budget 95% interval', 'budget verdict', 'converged seeds',
             'converged A - B', 'converged 95% interval', 'converged verdict', 'change of A - B'], pairs,
            'A - B: mean per-tag AP difference over the seeds both sides ran (report.py method). Budget: each run\'s '
            'best checkpoint up to the budget\'s last step (test_budget/); converged: its best checkpoint (test/). '
            'The same runs, seeds and test songs on both sides.'))
    sampler = sampler_rows_and_figure(out)
    if sampler:
        sections.append('### What the sampler draws\n\n' + write_table(
            out, 'table_sampler', ['model', 'phase', 'seeds', 'cos(tag, drawn negative)', 'cos(tag, uniform negative)',
                                   'drawn - uniform', 'zero-loss share'], sampler,
            'Means over the seeds of each epoch\'s mean; a triplet has zero loss when '
            'cos(tag, negative) + margin <= cos(tag, positive).') + '\n\n![sampler](sampler_diagnostics.png)')
    if sections:
        with open(os.path.join(out, 'CONVERGENCE.md'), 'w') as f:
            f.write('\n\n'.join(sections) + '\n')
    return sections
