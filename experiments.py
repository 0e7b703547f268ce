"""Reproduce the paper's findings on the demo dataset: tables (CSV + Markdown) and figures (PNG) under results/.

    python experiments.py                          # CPU budget on data/demo, 3 seeds (~60 min on 2 cores)
    python experiments.py --full                   # the original's settings (200 epochs of 10,000; for a GPU)
    python experiments.py --configs random balanced --seeds 0 --extra="--max_steps 2"   # a small part

1. Sampling (paper Tab1): random, balanced, balanced-weighted; acoustic model.
2. Information source (Tab2 + category figure): cultural (cf), acoustic (spec), hybrid; balanced-weighted.
3. Word embeddings (Tab3): nearest neighbours of tags in the general and the music vectors, and the MAP of the
   acoustic model trained with each.
4. Learning curves: valid MAP against step for the runs of table 1.
5. Beyond the paper: triplet vs InfoNCE with zero-shot tags (seen vs unseen MAP), one seed.

Every run is `main.py --mode TRAIN` then `--mode TEST` in a subprocess, under results/runs/CONFIG/seedS/. It resumes:
a finished run (its test/ outputs all written) is skipped, an interrupted one continues from its last.ckpt (written
after every epoch), exactly where it stopped.
"""
import argparse
import csv
import glob
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BW = ['--is_balanced', 'True', '--is_weighted', 'True']
# name -> (table, main.py flags)
CONFIGS = {
    'random': ('sampling', ['--input_type', 'spec', '--is_balanced', 'False', '--is_weighted', 'False']),
    'balanced': ('sampling', ['--input_type', 'spec', '--is_balanced', 'True', '--is_weighted', 'False']),
    'balanced_weighted': ('sampling', ['--input_type', 'spec'] + BW),
    'cultural': ('source', ['--input_type', 'cf'] + BW),
    'hybrid': ('source', ['--input_type', 'hybrid'] + BW),
    'music_w2v': ('embedding', ['--input_type', 'spec', '--w2v_type', 'music'] + BW),
    # zero-shot on the cultural branch: cheap enough on 2 cores for 3 seeds (the same 8 unseen tags, drawn with seed 0)
    'zeroshot_triplet': ('beyond', ['--input_type', 'cf', '--zeroshot_tags', '{zeroshot_file}'] + BW),
    'zeroshot_infonce': ('beyond', ['--input_type', 'cf', '--zeroshot_tags', '{zeroshot_file}',
                                    '--loss', 'infonce', '--is_balanced', 'True']),
}
ONE_SEED = set()
# 2-core CPU budget: a narrower CNN (base width 32 instead of 128), batch 64, 3 epochs of 2,048 samples, lr 1e-3;
# validation (model selection) on 4 chunks a song, TEST on the original's 8
CPU_BUDGET = ['--n_channels', '32', '--batch_size', '64', '--epoch_size', '2048', '--n_epochs', '3', '--lr', '1e-3']
CPU_TRAIN_ONLY = ['--num_chunk', '4']
PAPER = {  # MAP, P@10 (MSD100, Tab1 and Tab2)
    'random': (.1658, .2990), 'balanced': (.1675, .3160), 'balanced_weighted': (.1852, .3500),
    'cultural': (.1155, .3200), 'hybrid': (.1775, .3120), 'acoustic': (.1852, .3500)}


def run_dir(out, name, seed):
    return os.path.join(out, 'runs', name, f'seed{seed}')


def run_one(name, seed, args):
    folder = run_dir(args.out, name, seed)
    # TEST writes summary.json last; all three present and non-empty is a finished run, anything less is redone
    outputs = [os.path.join(folder, 'test', name) for name in ('scores.npy', 'per_tag.csv', 'summary.json')]
    if all(os.path.isfile(path) and os.path.getsize(path) > 0 for path in outputs):
        return 'done before'
    flags = [f.format(zeroshot_file=os.path.join(args.out, 'zeroshot_tags.txt')) for f in CONFIGS[name][1]]
    common = ['--data_path', args.data_path, '--seed', str(seed)] + flags + args.budget + shlex.split(args.extra)
    last = os.path.join(folder, 'last.ckpt')
    if not os.path.isfile(os.path.join(folder, 'best.ckpt')) or os.path.isfile(last):
        resume = ['--ckpt_path', last] if os.path.isfile(last) else []
        train = [sys.executable, '-u', os.path.join(HERE, 'main.py'), '--mode', 'TRAIN', '--model_save_path', folder,
                 '--logger', 'csv'] + common[:-len(shlex.split(args.extra)) or None] + args.train_only + \
            shlex.split(args.extra) + resume
        _call(train, os.path.join(folder, 'train.log'))
        if os.path.isfile(last):  # finished: last.ckpt stays, but TRAIN is not repeated on a rerun
            os.replace(last, os.path.join(folder, 'last_finished.ckpt'))
    test = [sys.executable, '-u', os.path.join(HERE, 'main.py'), '--mode', 'TEST', '--model_load_path',
            os.path.join(folder, 'best.ckpt'), '--result_path', os.path.join(folder, 'test')] + common
    _call(test, os.path.join(folder, 'test.log'))
    return 'ran'


def _call(command, log):
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, 'a') as f:
        f.write('$ ' + shlex.join(command) + '\n')
        f.flush()
        code = subprocess.call(command, stdout=f, stderr=subprocess.STDOUT)
    if code:
        sys.exit(f'error: {shlex.join(command[1:4])}... failed with exit code {code}; see {log}')


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


def learning_curves(out, names):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for k, name in enumerate(names):
        for s, folder in enumerate(sorted(glob.glob(os.path.join(out, 'runs', name, 'seed*')))):
            points = {}
            for metrics in sorted(glob.glob(os.path.join(folder, 'logs', 'version_*', 'metrics.csv'))):
                with open(metrics) as f:
                    for row in csv.DictReader(f):
                        if row.get('map'):
                            points[int(row['step'])] = float(row['map'])
            if points:
                steps = sorted(points)
                ax.plot(steps, [points[x] for x in steps], marker='o', color=f'C{k}', alpha=0.8,
                        label=name.replace('_', '-') if s == 0 else None)
    return save_figure(fig, ax, os.path.join(out, 'learning_curves.png'), 'training step', 'valid MAP',
                       'Learning curves (each line one seed)')


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


def make_report(args):
    out = args.out
    sections = []
    t1 = metric_rows(out, ['random', 'balanced', 'balanced_weighted'], ['random', 'balanced', 'balanced_weighted'])
    if t1:
        sections.append('### 1. Sampling (Tab1), acoustic model\n\n' + write_table(out, 'table1_sampling', HEADER, t1))
    t2 = metric_rows(out, ['cultural', 'balanced_weighted', 'hybrid'], ['cultural', 'acoustic', 'hybrid'])
    if t2:
        sections.append('### 2. Information source (Tab2)\n\n' + write_table(out, 'table2_source', HEADER, t2))
        figure = category_figure(out, ['cultural', 'balanced_weighted', 'hybrid'], ['cultural', 'acoustic', 'hybrid'])
        if figure:
            with open(os.path.join(out, 'table_category.md')) as f:
                sections.append('MAP per category:\n\n' + f.read() + '\n![category](category_map.png)')
    t3 = metric_rows(out, ['balanced_weighted', 'music_w2v'], ['google (GloVe)', 'music (Word2Vec)'])
    if t3:
        text = '### 3. Word embeddings (Tab3)\n\n' + write_table(out, 'table3_embedding', HEADER[:6], [r[:6] for r in t3])
        neighbours = os.path.join(args.data_path, 'nearest_neighbours.md')
        if os.path.isfile(neighbours):
            with open(neighbours) as f, open(os.path.join(out, 'table3_neighbours.md'), 'w') as g:
                table = f.read()
                g.write(table)
            text += '\n\nNearest neighbours (`table3_neighbours.md`):\n\n' + table.split('\n', 2)[2]
        sections.append(text)
    if t1:
        learning_curves(out, ['random', 'balanced', 'balanced_weighted'])
        sections.append('### 4. Learning curves\n\n![curves](learning_curves.png)')
    zs = zeroshot_rows(out)
    if zs:
        sections.append('### 5. Beyond the paper: triplet vs InfoNCE, seen vs unseen tags\n\n' + write_table(
            out, 'table_zeroshot', ['loss', 'seeds', 'MAP all', 'MAP seen', 'MAP unseen', 'P@10 unseen',
                                    'random MAP all', 'random MAP unseen'], zs))
    with open(os.path.join(out, 'RESULTS.md'), 'w') as f:
        f.write('\n\n'.join(sections) + '\n')
    return sections


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--data_path', default=os.path.join(HERE, 'data', 'demo'))
    parser.add_argument('--out', default=os.path.join(HERE, 'results'))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--configs', nargs='+', choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument('--full', action='store_true', help="the original's settings instead of the CPU budget")
    parser.add_argument('--extra', default='', help='more main.py flags for every run, e.g. "--max_steps 2"')
    parser.add_argument('--report_only', action='store_true', help='only rebuild tables and figures')
    args = parser.parse_args()
    args.budget = [] if args.full else CPU_BUDGET
    args.train_only = [] if args.full else CPU_TRAIN_ONLY
    if not os.path.isfile(os.path.join(args.data_path, 'tags.npy')):
        sys.exit(f'error: no dataset at {args.data_path}; build it with `python make_demo_data.py` or pass --data_path')
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    unseen_file = os.path.join(args.out, 'zeroshot_tags.txt')
    if not os.path.isfile(unseen_file):  # the same unseen tags for every seed and loss
        tags = np.load(os.path.join(args.data_path, 'tags.npy'))
        unseen = sorted(np.random.default_rng(0).choice(tags, size=min(8, len(tags) // 4), replace=False).tolist())
        with open(unseen_file, 'w') as f:
            f.write('\n'.join(unseen) + '\n')
    if not args.report_only:
        jobs = [(name, seed) for seed in args.seeds for name in args.configs
                if not (name in ONE_SEED and seed != args.seeds[0])]
        for k, (name, seed) in enumerate(jobs):
            t = time.time()
            status = run_one(name, seed, args)
            print(f'[{k + 1}/{len(jobs)}] {name} seed {seed}: {status} ({time.time() - t:.0f} s)', flush=True)
    sections = make_report(args)
    commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=HERE, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(args.out, 'RUN_INFO.md'), 'a') as f:
        f.write(f'- {time.strftime("%Y-%m-%d %H:%M:%S")}: `{shlex.join([os.path.basename(sys.argv[0])] + sys.argv[1:])}`'
                f' at commit {commit or "unknown"}, wall time {time.time() - start:.0f} s, budget flags '
                f'`{" ".join(args.budget + args.train_only) or "none (original settings)"}` {args.extra}\n')
    print('\n\n'.join(sections))


if __name__ == '__main__':
    main()
