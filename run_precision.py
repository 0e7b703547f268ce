"""The precision of a training run: what its flags ask for, what a run folder was trained in, and whether this CPU
runs the budget's bf16 autocast natively. experiments.py uses it so that a seed's runs, which the verdicts compare
pairwise, all train in one precision, and so that a researcher hears before hours go by that bf16 is emulated."""
import json
import os
import re
import sys

from errors import UserError

# main.py accepts Lightning's short spellings; a run's config.json keeps what was typed
SAME_PRECISION = {'32': '32-true', '64': '64-true', '16': '16-mixed', 'bf16': 'bf16-mixed'}


def normalised(value):
    return SAME_PRECISION.get(str(value), str(value))


def train_precision(flags):
    """The precision TRAIN gets from these flags: the last --precision wins, as in argparse (default 32-true)."""
    values = [flags[i + 1] for i, flag in enumerate(flags[:-1]) if flag == '--precision']
    return normalised(values[-1] if values else '32-true')


def recorded_precision(folder):
    """The precision a run was trained in: its config.json (finished) or its provenance (started), else None."""
    config_file, provenance = os.path.join(folder, 'config.json'), os.path.join(folder, 'provenance.txt')
    if os.path.isfile(config_file):
        with open(config_file) as f:
            return normalised(json.load(f).get('precision', '32-true'))
    if os.path.isfile(provenance):
        with open(provenance) as f:
            found = re.findall(r'; precision (\S+)$', f.read(), flags=re.M)
        return found[-1] if found else None
    return None


def check_seed_precisions(jobs, configs, folder_of, wanted):
    """A seed's runs are compared pairwise (report.py), so they must all train in one precision: refuse to start
    one in `wanted` where a run of the same seed (folder_of(config, seed)) already has another."""
    for name, seed in jobs:
        if os.path.isfile(os.path.join(folder_of(name, seed), 'test', 'summary.json')):
            continue  # finished: nothing will train
        for other in configs:
            have = recorded_precision(folder_of(other, seed))
            if have is not None and have != wanted:
                raise UserError(f'{name} seed {seed} would train in {wanted}, but {other} seed {seed} in '
                                f'{os.path.dirname(folder_of(other, seed))} was trained in {have}: the runs of a seed '
                                f'are compared pairwise, so they must share one precision; pass --extra="--precision '
                                f'{have}" (or remove {other} seed {seed} to start that seed anew)')


def cpu_info():
    """(model names, one per core; flags) from /proc/cpuinfo; ([], []) where there is none."""
    if not os.path.isfile('/proc/cpuinfo'):
        return [], []
    with open('/proc/cpuinfo') as f:
        lines = f.read().splitlines()
    names = [line.split(':', 1)[1].strip() for line in lines if line.startswith('model name')]
    flags = next((line.split(':', 1)[1].split() for line in lines if line.startswith('flags')), [])
    return names, flags


def warn_if_bf16_is_emulated(train_flags):
    """The CPU budget trains in bf16 autocast, 3x faster than float32 on a CPU with bf16 instructions; on one
    without them, 2.7x slower (bench.py --only train: 4.6 s against 1.7 s a step at width 32, batch 64)."""
    import torch
    _, flags = cpu_info()
    if train_precision(train_flags) != 'bf16-mixed' or \
            torch.cuda.is_available() or not flags or {'avx512_bf16', 'amx_bf16'} & set(flags):
        return
    print('warning: this CPU has no bf16 instructions (avx512_bf16 or amx_bf16), so the runs\' bf16 autocast is '
          'emulated: about 3x slower than float32 here (a CPU with them runs it 3x faster); expect hours a run, not '
          'minutes, or train in float32 with --extra="--precision 32 --channels_last False"', file=sys.stderr,
          flush=True)
