"""Reproduce the paper's findings on the demo dataset: tables (CSV + Markdown) and figures (PNG) under results/.

    python experiments.py                          # CPU budget on data/demo, 5 seeds (~2 h on 2 cores)
    python experiments.py --full                   # the original's settings (200 epochs of 10,000; for a GPU)
    python experiments.py --configs random balanced --seeds 0 --extra="--n_epochs 1 --epoch_size 128"   # a small part
    python experiments.py --converge               # Tab1's trio trained to a plateau, under results/convergence

1. Sampling (paper Tab1): random, balanced, balanced-weighted; acoustic model.
2. Information source (Tab2 + category figure): cultural (cf), acoustic (spec), hybrid, and the hybrid with its item
   factors standardised (not in the paper); balanced-weighted.
3. Word embeddings (Tab3): nearest neighbours of tags in the general and the music vectors, and the MAP of the
   acoustic model trained with each.
4. Learning curves: valid MAP against step for the runs of table 1.
5. Beyond the paper: triplet vs InfoNCE with zero-shot tags (seen vs unseen MAP).
6. Each claim as a paired difference per tag and seed with a bootstrap interval and a verdict (report.py).

--converge trains random, balanced and balanced-weighted until the valid MAP levels off (no gain above
0.001 for 10 validations in a row, 3,200 steps at most), with the same budget otherwise; each run also keeps and
TESTs the checkpoint the 384-step budget would have selected, so the verdicts at the budget and at convergence come
from the same runs (convergence_report.py).

Every run is `main.py --mode TRAIN` then `--mode TEST` in a subprocess, under results/runs/CONFIG/seedS/. It resumes:
a finished run (its test/ outputs all written) is skipped, an interrupted one continues from its last.ckpt (written
after every epoch), exactly where it stopped. The data's
checksums are recorded in results/data_checksums.json (and RUN_INFO.md): a results folder made on other data is
refused, so one table never mixes runs of two dataset builds.
Every run is also tracked in one MLflow experiment (--experiment_name, --mlflow_uri: the project's mlruns.db),
named CONFIG-sSEED; finished runs the store does not hold (older ones, or a clone's) are imported from their files. To compare them:
    mlflow ui --backend-store-uri sqlite:///mlruns.db --host 127.0.0.1 --port 5000
"""
import argparse
import glob
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

import tracking
from cli_args import HelpFormatter, non_negative_int, public_argv, usage_examples
from convergence_report import BUDGET_STEPS, CONVERGE_CONFIGS, make_convergence_report
from errors import UserError, exit_on_user_error
from workers import kill_me_when_parent_dies
from report import make_report
from run_precision import check_seed_precisions, cpu_info, train_precision, warn_if_bf16_is_emulated

HERE = os.path.dirname(os.path.abspath(__file__))
BW = ['--is_balanced', 'True', '--is_weighted', 'True']
# name -> (table, main.py flags)
CONFIGS = {
    'random': ('sampling', ['--input_type', 'spec', '--is_balanced', 'False', '--is_weighted', 'False']),
    'balanced': ('sampling', ['--input_type', 'spec', '--is_balanced', 'True', '--is_weighted', 'False']),
    'balanced_weighted': ('sampling', ['--input_type', 'spec'] + BW),
    'cultural': ('source', ['--input_type', 'cf'] + BW),
    'hybrid': ('source', ['--input_type', 'hybrid'] + BW),
    'hybrid_standardised': ('source', ['--input_type', 'hybrid', '--cf_standardise', 'True'] + BW),
    'music_w2v': ('embedding', ['--input_type', 'spec', '--w2v_type', 'music'] + BW),
    # zero-shot on the cultural branch (the same 8 unseen tags for every seed, drawn with seed 0)
    'zeroshot_triplet': ('beyond', ['--input_type', 'cf', '--zeroshot_tags', '{zeroshot_file}'] + BW),
    'zeroshot_infonce': ('beyond', ['--input_type', 'cf', '--zeroshot_tags', '{zeroshot_file}',
                                    '--loss', 'infonce', '--is_balanced', 'True']),
}
ONE_SEED = set()
# 2-core CPU budget: a narrower CNN (base width 32 instead of 128), batch 64, 12 epochs of 2,048 samples, lr 1e-3;
# TRAIN on the fast path (bf16 autocast, channels-last) with validation (model selection) on 4 chunks a song;
# TEST in float32 on the original's 8 chunks, so the reported metrics are computed at full precision
CPU_BUDGET = ['--n_channels', '32', '--batch_size', '64', '--epoch_size', '2048', '--n_epochs', '12', '--lr', '1e-3']
CPU_TRAIN_ONLY = ['--num_chunk', '4', '--precision', 'bf16-mixed', '--channels_last', 'True']
# to a plateau: the budget's epochs become a ceiling (100 x 32 = 3,200 steps) and the plateau rule ends each run;
# the checkpoint the budget run would have kept (best valid MAP up to 12 x 2,048 / 64 = 384 steps) is kept too, so
# the verdicts at the budget and at convergence come from the same runs on the same data
PLATEAU = ['--early_stop_patience', '10', '--early_stop_min_delta', '0.001', '--max_steps', '3200']
CONVERGE_EPOCHS = '100'
DATA_FILES = ['tags.npy', 'binaries.npy', 'train_ids.npy', 'valid_ids.npy', 'test_ids.npy', 'train_tag_to_ix.pkl',
              'tag_categories.tsv', 'google_emb.pkl', 'music_emb.pkl', 'ix_to_cf.npy']
def run_dir(out, name, seed):
    return os.path.join(out, 'runs', name, f'seed{seed}')


def run_one(name, seed, args):
    folder = run_dir(args.out, name, seed)
    # TEST writes summary.json last; outputs present and non-empty are a finished run, anything less is redone.
    # scores.npy may be absent: git leaves it out, and a clone of finished results must not train them again
    outputs = [os.path.join(folder, result, name) for _, result in args.tests
               for name in ('per_tag.csv', 'summary.json')]
    scores = [os.path.join(folder, result, 'scores.npy') for _, result in args.tests]
    if all(os.path.isfile(path) and os.path.getsize(path) > 0 for path in outputs) and \
            all(os.path.getsize(path) > 0 for path in scores if os.path.isfile(path)):
        with open(os.path.join(folder, 'config.json')) as f:
            run_id = json.load(f).get('mlflow_run_id')
        # finished before runs were tracked, or tracked in a store this machine does not have (results/ comes with
        # a clone, mlruns.db does not): its files become an MLflow run of the same name
        if not tracking.has_run(args.mlflow_uri, run_id):
            tracking.import_finished_run(folder, f'{name}-s{seed}', args.mlflow_uri, args.experiment_name)
        return 'done before'
    started = time.time()
    flags = [f.format(zeroshot_file=os.path.join(args.out, 'zeroshot_tags.txt')) for f in CONFIGS[name][1]]
    common = ['--data_path', args.data_path, '--seed', str(seed)] + flags + args.budget + shlex.split(args.extra)
    last = os.path.join(folder, 'last.ckpt')
    if not os.path.isfile(os.path.join(folder, 'best.ckpt')) or os.path.isfile(last):
        resume = ['--ckpt_path', last] if os.path.isfile(last) else []
        record_provenance(folder, 'TRAIN' + (' (resumed)' if resume else '') + f' at commit {args.provenance}; '
                          f'precision {train_precision(args.train_only + shlex.split(args.extra))}')
        train = [sys.executable, '-u', os.path.join(HERE, 'main.py'), '--mode', 'TRAIN', '--model_save_path', folder,
                 *mlflow_flags(name, seed, args)] + common[:-len(shlex.split(args.extra)) or None] + \
            args.train_only + shlex.split(args.extra) + resume
        _call(train, os.path.join(folder, 'train.log'))
        if os.path.isfile(last):  # finished: last.ckpt stays, but TRAIN is not repeated on a rerun
            os.replace(last, os.path.join(folder, 'last_finished.ckpt'))
    for pattern, result in args.tests:
        test = [sys.executable, '-u', os.path.join(HERE, 'main.py'), '--mode', 'TEST', '--model_load_path',
                one_checkpoint(folder, pattern), '--result_path', os.path.join(folder, result)] + common
        _call(test, os.path.join(folder, f'{result}.log'))
    record_provenance(folder, f'TRAIN + TEST finished in {time.time() - started:.0f} s')
    return 'ran'


def one_checkpoint(folder, pattern):
    """The checkpoint of a run that `pattern` names (best_until_*.ckpt: whatever step --extra set)."""
    found = sorted(glob.glob(os.path.join(folder, pattern)))
    if len(found) != 1:
        raise UserError(f'expected one {pattern} in {folder}, found {len(found)}; remove the stale ones or the run '
                        'folder to retrain it')
    return found[0]


def mlflow_flags(name, seed, args):
    """Every run of the grid goes into one MLflow experiment, named by configuration and seed."""
    return ['--logger', 'mlflow', '--experiment_name', args.experiment_name, '--run_name', f'{name}-s{seed}',
            '--mlflow_uri', tracking.resolve_uri(args.mlflow_uri)]


def _call(command, log):
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, 'a') as f:
        f.write('$ ' + shlex.join(public_argv(command)) + '\n')
        f.flush()
        # the child dies with this process, even by SIGKILL: a rerun never trains beside an orphan
        code = subprocess.call(command, stdout=f, stderr=subprocess.STDOUT, preexec_fn=kill_me_when_parent_dies)
    if code:
        raise UserError(f'{shlex.join(command[1:4])}... failed with exit code {code}; see {log}')


# ------------------------------------------------------------------------------------------------ provenance
def sha256_of(path, digest=None):
    digest = digest or hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest


def data_checksums(data_path):
    """sha256 of every file training reads, and one over all spectrograms (their relative paths and bytes)."""
    sums = {name: sha256_of(os.path.join(data_path, name)).hexdigest() for name in DATA_FILES
            if os.path.isfile(os.path.join(data_path, name))}
    spec_root = os.path.join(data_path, 'spec')
    files = sorted(os.path.relpath(os.path.join(d, f), spec_root) for d, _, names in os.walk(spec_root) for f in names
                   if f.endswith('.npy'))
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b'\0')
        sha256_of(os.path.join(spec_root, name), digest)
    sums[f'spec/ ({len(files)} files)'] = digest.hexdigest()
    return sums


def machine():
    """The CPU model and the torch build: bf16 and oneDNN kernels differ between CPUs, and so may the last digits."""
    import platform

    import torch
    names, flags = cpu_info()
    vector = [f for f in ('avx2', 'avx512f', 'avx512_bf16', 'amx_bf16') if f in flags]
    cpu = f'{names[0]} x {len(names)} ({" ".join(vector) or "no AVX2"})' if names else \
        platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'
    return f'{cpu}; {gpu}; torch {torch.__version__}, {torch.get_num_threads()} threads'


def check_same_data(out, data_path, allow_other_data):
    """Records the data's checksums on the first run into `out`; refuses a folder made on other data."""
    current = data_checksums(data_path)
    record = os.path.join(out, 'data_checksums.json')
    if not os.path.isfile(record):
        if glob.glob(os.path.join(out, 'runs', '*', 'seed*', 'test', 'summary.json')) and not allow_other_data:
            raise UserError(f'{out} holds runs made on data of unknown checksums (no {record}); pass another --out, '
                            f'or --allow_other_data to add runs on {data_path} to them knowingly')
        with open(record, 'w') as f:
            json.dump(current, f, indent=1)
        return current
    with open(record) as f:
        recorded = json.load(f)
    changed = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
    if changed and not allow_other_data:
        raise UserError(f'{data_path} differs from the data the runs in {out} were made on ({", ".join(changed)}; '
                        f'see {record}); pass another --out, or --allow_other_data to mix them knowingly')
    return current


def record_provenance(folder, event):
    """Each run folder says which commit and machine trained it (a resumed grid may span several commits) and how
    long it took."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, 'provenance.txt'), 'a') as f:
        f.write(f'{time.strftime("%Y-%m-%d %H:%M:%S")} {event}\n')


def compute_seconds(out):
    """(summed wall time of the finished runs' TRAIN + TEST, number of runs that recorded theirs)."""
    total, counted = 0, 0
    for path in glob.glob(os.path.join(out, 'runs', '*', 'seed*', 'provenance.txt')):
        with open(path) as f:
            times = [float(line.split(' finished in ')[1].split()[0]) for line in f if ' finished in ' in line]
        total, counted = total + sum(times), counted + bool(times)
    return total, counted


def commits_of_runs(out):
    """The distinct commits that trained the runs under `out`, from their provenance.txt."""
    found = set()
    for path in glob.glob(os.path.join(out, 'runs', '*', 'seed*', 'provenance.txt')):
        with open(path) as f:
            found.update(line.split(' at commit ')[1].split(';')[0].strip() for line in f if ' at commit ' in line)
    return sorted(found)


def git_commit():
    def git(*argv):
        return subprocess.run(['git', *argv], cwd=HERE, capture_output=True, text=True).stdout.strip()
    dirty = git('status', '--porcelain', '--untracked-files=no')
    return (git('rev-parse', 'HEAD') or 'unknown') + (' (with uncommitted changes)' if dirty else '')


def apply_mode(args):
    """The defaults that depend on --converge and --full: output folder, experiment, configurations, budget."""
    suffix = '-convergence' if args.converge else ''
    args.out = args.out or os.path.join(HERE, 'results', *(['convergence'] if args.converge else []))
    args.experiment_name = args.experiment_name or 'tag-retrieval-grid' + suffix
    args.configs = args.configs or (list(CONVERGE_CONFIGS) if args.converge else list(CONFIGS))
    args.budget = [] if args.full else list(CPU_BUDGET)
    args.train_only = [] if args.full else list(CPU_TRAIN_ONLY)
    args.tests = [('best.ckpt', 'test')]  # (checkpoint file pattern, result folder) pairs TESTed after TRAIN
    if args.converge:
        if args.full:
            raise UserError('--converge runs the CPU budget to a plateau; with --full pass the plateau flags to '
                            'main.py through --extra, e.g. --extra "--early_stop_patience 10"')
        # the epoch count becomes a ceiling; the plateau rule and the step cap end the run
        args.budget[args.budget.index('--n_epochs') + 1] = CONVERGE_EPOCHS
        args.train_only += PLATEAU + ['--keep_best_until_step', str(BUDGET_STEPS)]
        args.tests.append(('best_until_*.ckpt', 'test_budget'))


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=usage_examples(__doc__),
                                     formatter_class=HelpFormatter)
    parser.add_argument('--data_path', default=os.path.join(HERE, 'data', 'demo'), help='dataset of every run')
    parser.add_argument('--out', default=None,
                        help='tables, figures and runs/ go here; None: results/ (results/convergence/ with --converge)')
    parser.add_argument('--seeds', type=non_negative_int, nargs='+', default=[0, 1, 2, 3, 4],
                        help='seeds of every configuration')
    parser.add_argument('--configs', nargs='+', choices=list(CONFIGS), default=None,
                        help='configurations to run; None: all (the sampling trio with --converge)')
    parser.add_argument('--full', action='store_true', help="the original's settings instead of the CPU budget")
    parser.add_argument('--converge', action='store_true',
                        help='train each run until the valid MAP levels off (' + ' '.join(PLATEAU) + '), not for '
                             'a fixed budget; later --extra flags override these')
    parser.add_argument('--extra', default='', help='more main.py flags for every run, e.g. "--max_steps 2"')
    parser.add_argument('--mlflow_uri', default=None,
                        help=f'MLflow store or server for the runs; None: sqlite:///{tracking.DEFAULT_STORE}')
    parser.add_argument('--experiment_name', default=None,
                        help='MLflow experiment of the grid; None: tag-retrieval-grid (-convergence with --converge)')
    parser.add_argument('--report_only', action='store_true', help='only rebuild tables and figures')
    parser.add_argument('--allow_other_data', action='store_true',
                        help='add runs to a results folder made on data with other checksums')
    return parser


def write_unseen_tags(out, data_path):
    """The zero-shot runs' unseen tags, drawn once: the same for every seed and loss."""
    unseen_file = os.path.join(out, 'zeroshot_tags.txt')
    if not os.path.isfile(unseen_file):
        tags = np.load(os.path.join(data_path, 'tags.npy'))
        unseen = sorted(np.random.default_rng(0).choice(tags, size=min(8, len(tags) // 4), replace=False).tolist())
        with open(unseen_file, 'w') as f:
            f.write('\n'.join(unseen) + '\n')


def run_all(args):
    jobs = [(name, seed) for seed in args.seeds for name in args.configs
            if not (name in ONE_SEED and seed != args.seeds[0])]
    check_seed_precisions(jobs, args.configs, lambda name, seed: run_dir(args.out, name, seed),
                          train_precision(args.train_only + shlex.split(args.extra)))
    for k, (name, seed) in enumerate(jobs):
        t = time.time()
        status = run_one(name, seed, args)
        print(f'[{k + 1}/{len(jobs)}] {name} seed {seed}: {status} ({time.time() - t:.0f} s)', flush=True)


def record_run_info(args, checksums, start):
    """One line in RUN_INFO.md: the command (no credential of --extra), commit, time, budget, machine, data."""
    commit = git_commit()
    commits = commits_of_runs(args.out)
    if len(commits) > 1:
        print(f'WARNING: the runs under {args.out} were trained at {len(commits)} commits: {", ".join(commits)}',
              file=sys.stderr)
    data = ', '.join(f'{name} {digest[:12]}' for name, digest in checksums.items())
    seconds, counted = compute_seconds(args.out)
    grid_time = f' (the {counted} runs under {args.out}: {seconds / 60:.0f} min of TRAIN + TEST in all)' if counted else ''
    command = shlex.join(public_argv([os.path.basename(sys.argv[0])] + sys.argv[1:]))
    with open(os.path.join(args.out, 'RUN_INFO.md'), 'a') as f:
        f.write(f'- {time.strftime("%Y-%m-%d %H:%M:%S")}: `{command}`'
                f' at commit {commit}, wall time {time.time() - start:.0f} s{grid_time}, budget flags '
                f'`{" ".join(args.budget + args.train_only) or "none (original settings)"}` '
                f'{" ".join(public_argv(args.extra.split()))}; '
                f'machine: {machine()}' + (f'; data {args.data_path} sha256: {data}' if data else '') +
                (f'; WARNING: runs trained at {len(commits)} commits: {", ".join(commits)}' if len(commits) > 1 else '')
                + '\n')


@exit_on_user_error
def main():
    args = build_parser().parse_args()
    apply_mode(args)
    if not os.path.isfile(os.path.join(args.data_path, 'tags.npy')):
        raise UserError(f'no dataset at {args.data_path}; build it with `python make_demo_data.py` or pass --data_path')
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    checksums = {} if args.report_only else check_same_data(args.out, args.data_path, args.allow_other_data)
    args.provenance = f'{git_commit()}; machine: {machine()}'
    write_unseen_tags(args.out, args.data_path)
    if not args.report_only:
        warn_if_bf16_is_emulated(args.train_only + shlex.split(args.extra))
        run_all(args)
    sections = make_report(args.out, args.data_path)
    if args.converge:
        sections += make_convergence_report(args.out)
    record_run_info(args, checksums, start)
    print('\n\n'.join(sections))


if __name__ == '__main__':
    main()
