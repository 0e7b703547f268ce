"""Tables (CSV + Markdown), figures (PNG) and paired verdicts from the runs of experiments.py.

    python experiments.py --report_only            # rebuilds everything below from results/runs
    from report import make_report; make_report('results', 'data/demo')

- table1_sampling, table2_source, table3_embedding, table_category, table_zeroshot: mean ± std over seeds.
- table_paired: each of the paper's claims as a paired difference (the same seeds and test songs on both sides,
  per tag), its bootstrap 95% interval over tags and seeds (paired_stats.py) and a verdict.
- learning_curves.png and table_curves: valid MAP against step, and whether it has levelled off.
"""
import csv
import glob
import json
import os

import numpy as np

from paired_stats import last_third_slope, paired_bootstrap, verdict

PAPER = {  # MAP, P@10 (MSD100, Tab1 and Tab2)
    'random': (.1658, .2990), 'balanced': (.1675, .3160), 'balanced_weighted': (.1852, .3500),
    'cultural': (.1155, .3200), 'hybrid': (.1775, .3120), 'acoustic': (.1852, .3500)}
# (claim, A, B, tags (group, value) or None for all, the paper's direction of A - B: +1, -1, or 0 for no claim)
CLAIMS = [
    ('balanced-weighted > random (Tab1)', 'balanced_weighted', 'random', None, +1),
    ('balanced > random (Tab1)', 'balanced', 'random', None, +1),
    ('balanced-weighted > balanced (Tab1)', 'balanced_weighted', 'balanced', None, +1),
    ('acoustic > cultural (Tab2)', 'balanced_weighted', 'cultural', None, +1),
    ('acoustic > cultural on genre (category figure)', 'balanced_weighted', 'cultural', ('category', 'genre'), +1),
    ('acoustic > cultural on mood (category figure)', 'balanced_weighted', 'cultural', ('category', 'mood'), +1),
    ('acoustic < cultural on location (category figure)', 'balanced_weighted', 'cultural',
     ('category', 'location'), -1),
] + [(f'acoustic - cultural on {c} (no claim)', 'balanced_weighted', 'cultural', ('category', c), 0)
     for c in ('era', 'instrument', 'theme')] + [
    ('hybrid < acoustic (Tab2)', 'hybrid', 'balanced_weighted', None, -1),
    ('hybrid > cultural (Tab2)', 'hybrid', 'cultural', None, +1),
    ('hybrid, standardised item factors - raw (not in the paper)', 'hybrid_standardised', 'hybrid', None, 0),
    ('hybrid, standardised item factors - acoustic (not in the paper)', 'hybrid_standardised', 'balanced_weighted',
     None, 0),
    ('hybrid, standardised item factors - cultural (not in the paper)', 'hybrid_standardised', 'cultural', None, 0),
    ('music > general word vectors (Tab3)', 'music_w2v', 'balanced_weighted', None, +1),
    ('InfoNCE > triplet, seen tags (Doh et al. 2023)', 'zeroshot_infonce', 'zeroshot_triplet', ('zeroshot', 'seen'),
     +1),
    ('InfoNCE > triplet, unseen tags (Doh et al. 2023)', 'zeroshot_infonce', 'zeroshot_triplet',
     ('zeroshot', 'unseen'), +1),
]
CURVES = ['random', 'balanced', 'balanced_weighted']
SOURCES = ['cultural', 'balanced_weighted', 'hybrid', 'hybrid_standardised']
LEVEL = 0.005  # valid MAP gained over the last third of the budget below which a curve counts as levelled off




# ------------------------------------------------------------------------------------------------ tables
def load_summaries(out, name):
    found = []
    for path in sorted(glob.glob(os.path.join(out, 'runs', name, 'seed*', 'test', 'summary.json'))):
        with open(path) as f:
            found.append(json.load(f)['means'])
    return found


def mean_std(values):
    values = np.asarray(values, dtype=float)
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def fmt(values):
    m, s = mean_std(values)
    return f'{m:.4f} ± {s:.4f}'


def write_table(out, stem, header, rows, note=''):
    with open(os.path.join(out, stem + '.csv'), 'w', newline='') as f:
        csv.writer(f).writerows([header] + rows)
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    with open(os.path.join(out, stem + '.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n' + (f'\n{note}\n' if note else ''))
    return '\n'.join(lines)


def metric_rows(out, names, labels):
    rows = []
    for name, label in zip(names, labels):
        runs = load_summaries(out, name)
        if not runs:
            continue
        paper = PAPER.get(label if label in PAPER else name, (None, None))
        baseline = [r['random_baseline']['map'] for r in runs]
        rows.append([label, len(runs), fmt([r['all']['map'] for r in runs]), fmt([r['all']['p@10'] for r in runs]),
                     fmt([r['all']['roc_auc'] for r in runs]), f'{np.mean(baseline):.4f}',
                     '' if paper[0] is None else f'{paper[0]:.4f} / {paper[1]:.4f}'])
    return rows


HEADER = ['model', 'seeds', 'MAP', 'P@10', 'ROC-AUC', 'random MAP', 'paper MAP / P@10 (MSD100)']


def save_figure(fig, ax, path, xlabel, ylabel, title):
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def category_figure(out, names, labels):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    per_model = {}
    for name, label in zip(names, labels):
        runs = load_summaries(out, name)
        if runs and 'category' in runs[0]:
            per_model[label] = {c: [r['category'][c]['map'] for r in runs] for c in runs[0]['category']}
    if not per_model:
        return None
    categories = sorted(next(iter(per_model.values())))
    width = 0.8 / len(per_model)
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for k, (label, by_cat) in enumerate(per_model.items()):
        means, stds = zip(*(mean_std(by_cat[c]) for c in categories))
        ax.bar(np.arange(len(categories)) + (k - (len(per_model) - 1) / 2) * width, means, width, yerr=stds,
               label=label, capsize=2)
    ax.set_xticks(np.arange(len(categories)), categories)
    path = save_figure(fig, ax, os.path.join(out, 'category_map.png'), None, 'MAP',
                       'MAP per tag category (demo dataset, mean ± std over seeds)')
    rows = [[c] + [fmt(per_model[label][c]) for label in per_model] for c in categories]
    write_table(out, 'table_category', ['category'] + list(per_model), rows)
    return path


def curve_points(folder, column='map'):
    """{step: value} of one logged metric of a run (default: valid MAP), from its CSV logs (a resumed run has
    several versions)."""
    points = {}
    logs = glob.glob(os.path.join(folder, 'logs', 'version_*', 'metrics.csv'))
    for metrics in sorted(logs, key=lambda path: int(path.split('version_')[-1].split(os.sep)[0])):  # 2 before 10
        with open(metrics) as f:
            for row in csv.DictReader(f):
                if row.get(column):
                    points[int(row['step'])] = float(row[column])
    return points


def learning_curves(out, names):
    """Draws learning_curves.png; returns a row per model: seeds, last valid MAP, last-third slope and gain."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.6))
    rows = []
    for k, name in enumerate(names):
        slopes, spans, last = [], [], []
        for s, folder in enumerate(sorted(glob.glob(os.path.join(out, 'runs', name, 'seed*')))):
            points = curve_points(folder)
            if not points:
                continue
            steps = sorted(points)
            ax.plot(steps, [points[x] for x in steps], marker='o', color=f'C{k}', alpha=0.8,
                    label=name.replace('_', '-') if s == 0 else None)
            slope = last_third_slope(steps, [points[x] for x in steps])
            if slope is not None:
                slopes.append(slope)
                spans.append((steps[-1] - steps[0]) / 3 / 1000)
            last.append(points[steps[-1]])
        if slopes:
            gain = float(np.mean(slopes) * np.mean(spans))
            rows.append([name, len(last), fmt(last), f'{np.mean(slopes):+.4f}', f'{gain:+.4f}',
                         'yes' if gain < LEVEL else 'no'])
    save_figure(fig, ax, os.path.join(out, 'learning_curves.png'), 'training step', 'valid MAP',
                'Learning curves (each line one seed)')
    return rows


def per_tag_ap(out, name, result='test'):
    """{seed: {tag: AP}} and {tag: {group: value}} from the runs' per_tag.csv (in each run's `result` folder)."""
    by_seed, groups = {}, {}
    for path in glob.glob(os.path.join(out, 'runs', name, 'seed*', result, 'per_tag.csv')):
        seed = int(os.path.basename(os.path.dirname(os.path.dirname(path)))[len('seed'):])
        with open(path) as f:
            rows = list(csv.DictReader(f))
        by_seed[seed] = {r['tag']: float(r['ap']) if r['ap'] not in ('', 'nan') else np.nan for r in rows}
        for r in rows:
            groups[r['tag']] = {g: r[g] for g in ('category', 'zeroshot') if g in r}
    return by_seed, groups


def paired_difference(out, a, b, subset, result='test'):
    """(n_seeds, n_tags) AP of a minus AP of b over the seeds both ran, on the tags of `subset`; and the seeds."""
    ap_a, groups = per_tag_ap(out, a, result)
    ap_b, groups_b = per_tag_ap(out, b, result)
    seeds = sorted(set(ap_a) & set(ap_b))
    if not seeds:
        return None, []
    groups = {**groups_b, **groups}
    tags = [t for t in sorted(ap_a[seeds[0]]) if subset is None or groups[t].get(subset[0]) == subset[1]]
    diff = np.array([[ap_a[s][t] - ap_b[s][t] for t in tags] for s in seeds])
    return (diff if diff.size else None), seeds


PAIRED_HEADER = ['claim', 'A', 'B', 'tags', 'seeds', 'MAP A - B', '95% interval', 'verdict']
PAIRED_NOTE = ('A - B: mean over seeds and tags of the per-tag AP difference, the same seed and test songs on both '
               'sides; interval: bootstrap over tags and seeds (10,000 resamples, seeded). Verdict: reproduced when '
               'the interval excludes 0 in the direction the claim states, opposite when it excludes 0 the other '
               'way, otherwise inconclusive.')


def paired_rows(out):
    rows = []
    for claim, a, b, subset, direction in CLAIMS:
        diff, seeds = paired_difference(out, a, b, subset)
        if diff is None:
            continue
        mean, low, high = paired_bootstrap(diff)
        rows.append([claim, a, b, int(np.isfinite(diff).all(axis=0).sum()), len(seeds), f'{mean:+.4f}',
                     f'[{low:+.4f}, {high:+.4f}]', verdict(low, high, direction)])
    return rows


def zeroshot_rows(out):
    rows = []
    for name in ('zeroshot_triplet', 'zeroshot_infonce'):
        runs = load_summaries(out, name)
        if runs and 'zeroshot' in runs[0]:
            rows.append([name.split('_')[1], len(runs), fmt([r['all']['map'] for r in runs]),
                         fmt([r['zeroshot']['seen']['map'] for r in runs]),
                         fmt([r['zeroshot']['unseen']['map'] for r in runs]),
                         fmt([r['zeroshot']['unseen']['p@10'] for r in runs]),
                         f"{np.mean([r['random_baseline']['map'] for r in runs]):.4f}",
                         f"{np.mean([r['random_baseline']['zeroshot']['unseen'] for r in runs]):.4f}"])
    return rows


def make_report(out, data_path):
    sections = []
    t1 = metric_rows(out, ['random', 'balanced', 'balanced_weighted'], ['random', 'balanced', 'balanced_weighted'])
    if t1:
        sections.append('### 1. Sampling (Tab1), acoustic model\n\n' + write_table(out, 'table1_sampling', HEADER, t1))
    sources, source_labels = SOURCES, ['cultural', 'acoustic', 'hybrid', 'hybrid_standardised']
    t2 = metric_rows(out, sources, source_labels)
    if t2:
        sections.append('### 2. Information source (Tab2)\n\n' + write_table(out, 'table2_source', HEADER, t2))
        figure = category_figure(out, sources, source_labels)
        if figure:
            with open(os.path.join(out, 'table_category.md')) as f:
                sections.append('MAP per category:\n\n' + f.read() + '\n![category](category_map.png)')
    t3 = metric_rows(out, ['balanced_weighted', 'music_w2v'], ['google (GloVe)', 'music (Word2Vec)'])
    if t3:
        text = '### 3. Word embeddings (Tab3)\n\n' + write_table(out, 'table3_embedding', HEADER[:6], [r[:6] for r in t3])
        neighbours = os.path.join(data_path, 'nearest_neighbours.md')
        if os.path.isfile(neighbours):
            with open(neighbours) as f, open(os.path.join(out, 'table3_neighbours.md'), 'w') as g:
                table = f.read()
                g.write(table)
            text += '\n\nNearest neighbours (`table3_neighbours.md`):\n\n' + table.split('\n', 2)[2]
        sections.append(text)
    if t1:
        curves = learning_curves(out, CURVES)
        sections.append('### 4. Learning curves\n\n![curves](learning_curves.png)' if not curves else
                        '### 4. Learning curves\n\n![curves](learning_curves.png)\n\n' + write_table(
            out, 'table_curves', ['model', 'seeds', 'last valid MAP', 'last-third slope (MAP / 1,000 steps)',
                                  'gain over the last third', 'levelled off'], curves,
            f'Levelled off: the mean valid MAP gained over the last third of the steps is below {LEVEL}.'))
    zs = zeroshot_rows(out)
    if zs:
        sections.append('### 5. Beyond the paper: triplet vs InfoNCE, seen vs unseen tags\n\n' + write_table(
            out, 'table_zeroshot', ['loss', 'seeds', 'MAP all', 'MAP seen', 'MAP unseen', 'P@10 unseen',
                                    'random MAP all', 'random MAP unseen'], zs))
    paired = paired_rows(out)
    if paired:
        sections.insert(0, '### Paired differences and verdicts\n\n' + write_table(
            out, 'table_paired', PAIRED_HEADER, paired, PAIRED_NOTE))
    with open(os.path.join(out, 'RESULTS.md'), 'w') as f:
        f.write('\n\n'.join(sections) + '\n')
    return sections

