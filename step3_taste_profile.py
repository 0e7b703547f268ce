"""Step 3: collaborative-filtering item factors -> ix_to_cf.npy (row IX = row IX of binaries.npy).

    python -u step3_taste_profile.py run DATA_PATH
        [--factors_path DATA_PATH/item_factors_MSD.npy] [--index_path DATA_PATH/items_index_MSD.tsv]
        [--allow_missing] [--prefix sub_]
    python -u step3_taste_profile.py run DATA_PATH --taste_profile train_triplets.txt
        [--factors 200] [--iterations 15] [--regularization 0.01] [--alpha 1.0]
        [--confidence log|linear] [--seed 0] [--num_threads 2]

Reads the song rows from DATA_PATH/<prefix>{train,valid,test}_ids.npy ("IX//TRACK_ID", written by
step 1) and checks them against <prefix>binaries.npy. Default mode (the original): the released
item_factors_MSD.npy (n_items, dim) and items_index_MSD.tsv (one track id per line, the factor rows'
order) are joined on track id. A track without factors stops the step (exit 2) with the count and a
few ids, all of them listed in the report; --allow_missing gives such tracks a zero row instead (and
says how many).
--taste_profile FILE (Echo Nest Taste Profile format, lines "user<TAB>item<TAB>play_count"; item ids
must be the track ids of the split files: the real Taste Profile lists MSD song ids (SO...), map them
to track ids (TR...) first): factorises the user x item play-count matrix with implicit's ALS first and
writes <prefix>item_factors_MSD.npy + <prefix>items_index_MSD.tsv into DATA_PATH (or --factors_path /
--index_path), then joins as above. Repeated (user, item) lines are summed. Confidence of an observed
pair (Hu et al. 2008): c = 1 + alpha * log1p(plays) (--confidence log) or 1 + alpha * plays (linear);
unobserved pairs have confidence 1 and preference 0. implicit takes the matrix values as c directly,
so its own alpha is left at 1.
Writes DATA_PATH/<prefix>ix_to_cf.npy (float32 (n_songs, dim)) and <prefix>step3_report.txt/.json.
"""
import csv
import os
import sys

import numpy as np
import pandas as pd
from scipy import sparse

from errors import exit_on_user_error
from errors import UserError
from file_io import atomic_save_npy, atomic_write_bytes, load_array, require_file
from steps import Report, SPLIT_FILES, make_cli


def read_song_rows(data_path, prefix):
    """Track id of every row IX, from the split files; checked against binaries.npy's row count."""
    frames = []
    for name in SPLIT_FILES:
        path = os.path.join(data_path, prefix + name)
        ids = pd.Series(load_array(path, 'split file', 'run step1_data_split.py first (with the same --prefix)'),
                        dtype=str)
        parts = ids.str.split('//', n=1, expand=True).reindex(columns=[0, 1])
        ix = pd.to_numeric(parts[0], errors='coerce')
        if ix.isna().any() or parts[1].isna().any():
            bad = ids[ix.isna() | parts[1].isna()].iloc[0]
            raise UserError(f'{path} holds {bad!r}, expected "IX//TRACK_ID"; rerun step1_data_split.py')
        frames.append(pd.DataFrame({'ix': ix.astype(np.int64), 'track_id': parts[1]}))
    rows = pd.concat(frames).sort_values('ix')
    binaries_path = os.path.join(data_path, prefix + 'binaries.npy')
    n_songs = len(load_array(binaries_path, 'binaries', 'rerun step1_data_split.py', mmap_mode='r')
                  if os.path.isfile(binaries_path) else rows)
    if not np.array_equal(rows.ix.to_numpy(), np.arange(n_songs)):
        raise UserError(f'the IX of {prefix}train/valid/test_ids.npy are not each row 0..{n_songs - 1} of '
            f'{prefix}binaries.npy exactly once; rerun step1_data_split.py')
    return rows.track_id.to_numpy()


def read_taste_profile(path):
    require_file(path, 'taste profile', 'pass a "user<TAB>item<TAB>play_count" file with --taste_profile')
    try:
        plays = pd.read_csv(path, sep='\t', header=None, dtype=str, quoting=csv.QUOTE_NONE,
                            keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise UserError(f'{path} is empty (expected "user<TAB>item<TAB>play_count" lines)')
    except pd.errors.ParserError as error:
        raise UserError(f'{path} is not a 3-column tab-separated file ({error})')
    if plays.shape[1] != 3:
        raise UserError(f'{path} has {plays.shape[1]} columns, expected 3: user<TAB>item<TAB>play_count')
    plays.columns = ['user', 'item', 'plays']
    count = pd.to_numeric(plays.plays, errors='coerce')
    bad = count.isna() | (count <= 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f'{path} line {row + 1}: play count {plays.plays.iloc[row]!r} is not a positive number; '
            'fix the 3rd column')
    plays['plays'] = count.astype(np.float64)
    return plays


def factorise(plays, factors, iterations, regularization, alpha, confidence, seed, num_threads):
    """ALS item factors (n_items, factors), the item ids of their rows, and the (users x items) confidence matrix."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    users = pd.Categorical(plays.user)
    items = pd.Categorical(plays.item)  # sorted categories: row order independent of line order
    # implicit >= 0.5 wants user_items (users x items); building CSR sums repeated (user, item) lines
    user_items = sparse.csr_matrix((plays.plays.to_numpy(), (users.codes, items.codes)),
                                   shape=(len(users.categories), len(items.categories)))
    scaled = np.log1p(user_items.data) if confidence == 'log' else user_items.data
    user_items.data = (1 + alpha * scaled).astype(np.float32)
    with threadpool_limits(1, 'blas'):  # implicit's own threads do the work; nested BLAS threads slow it
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=1.0,
                                        iterations=iterations, random_state=seed, num_threads=num_threads)
        model.fit(user_items, show_progress=True)
    return np.asarray(model.item_factors, dtype=np.float32), np.asarray(items.categories, dtype=str), user_items


def read_factor_table(factors_path, index_path):
    factors = load_array(factors_path, 'item factors', 'pass --factors_path, or compute them with --taste_profile')
    require_file(index_path, 'item index', 'pass --index_path (one track id per line, factor row order)')
    try:
        index = pd.read_csv(index_path, sep='\t', header=None, usecols=[0], dtype=str,
                            quoting=csv.QUOTE_NONE, keep_default_na=False)[0].to_numpy()
    except pd.errors.EmptyDataError:
        raise UserError(f'{index_path} is empty (expected one track id per line)')
    if factors.ndim != 2 or len(factors) != len(index):
        raise UserError(f'{factors_path} has shape {factors.shape} but {index_path} lists {len(index)} ids; '
            'they must be a (n_items, dim) array and its n_items ids')
    if not np.isfinite(factors).all():  # else they reach ix_to_cf.npy, and training refuses them only later
        rows = np.flatnonzero(~np.isfinite(factors).all(axis=1))
        raise UserError(f'{factors_path} holds NaN or infinite values in {len(rows)} row(s) (first: row {rows[0]}, track '
            f'{index[rows[0]]}); recompute the factors')
    return factors, index


def run(data_path, factors_path=None, index_path=None, allow_missing=False, prefix='',
        taste_profile=None, factors=200, iterations=15, regularization=0.01, alpha=1.0,
        confidence='log', seed=0, num_threads=2):
    report = Report('step3')
    track_ids = read_song_rows(data_path, prefix)
    report.log(f'songs (rows of {prefix}binaries.npy): {len(track_ids)}', n_songs=len(track_ids))
    if taste_profile:
        factors_path = factors_path or os.path.join(data_path, prefix + 'item_factors_MSD.npy')
        index_path = index_path or os.path.join(data_path, prefix + 'items_index_MSD.tsv')
        als = {'factors': factors, 'iterations': iterations, 'regularization': regularization, 'alpha': alpha,
               'confidence': confidence, 'seed': seed}
        write_factor_table(report, taste_profile, factors_path, index_path, als, num_threads)
    else:
        factors_path = factors_path or os.path.join(data_path, 'item_factors_MSD.npy')
        index_path = index_path or os.path.join(data_path, 'items_index_MSD.tsv')

    item_factors, index = read_factor_table(factors_path, index_path)
    position, missing = factor_rows(report, item_factors, index, track_ids)
    if len(missing) and not allow_missing:
        report_file = report.save(data_path, prefix)
        hint = (f'; no id matches at all: the index holds ids like {index[0]!r}, the songs are track ids like '
                f'{track_ids[0]!r}' if len(missing) == len(track_ids) and len(index) else '')
        raise UserError(f'{len(missing)} of {len(track_ids)} songs have no item factor in {index_path} '
            f'(e.g. {", ".join(missing[:5])}; all listed in {report_file}{hint}); '
            'pass --allow_missing to give them zero rows')

    ix_to_cf = np.zeros((len(track_ids), item_factors.shape[1]), dtype=np.float32)
    ix_to_cf[position >= 0] = item_factors[position[position >= 0]]
    out = os.path.join(data_path, prefix + 'ix_to_cf.npy')
    atomic_save_npy(out, ix_to_cf)
    report.log(f'wrote {out} {ix_to_cf.shape}' + (f'; {len(missing)} rows are zeros (--allow_missing)'
                                                  if len(missing) else ''), zero_rows=len(missing))
    report.save(data_path, prefix)
    return 0


def write_factor_table(report, taste_profile, factors_path, index_path, als, num_threads):
    """ALS on a play-count file: the item factors and their ids, written where step 3 then reads them."""
    plays = read_taste_profile(taste_profile)
    item_factors, items, user_items = factorise(plays, als['factors'], als['iterations'], als['regularization'],
                                                als['alpha'], als['confidence'], als['seed'], num_threads)
    atomic_save_npy(factors_path, item_factors)
    atomic_write_bytes(index_path, ''.join(f'{item}\n' for item in items).encode())
    report.log(f'ALS on {taste_profile}: {len(plays)} lines, {user_items.shape[0]} users, '
               f'{user_items.shape[1]} items, {user_items.nnz} user-item pairs; '
               + ' '.join(f'{k}={v}' for k, v in als.items()) + f'; wrote {factors_path} and {index_path}',
               taste_profile=taste_profile, users=user_items.shape[0], items=user_items.shape[1],
               pairs=user_items.nnz, als=als)


def factor_rows(report, item_factors, index, track_ids):
    """Each song's row in the factor table (-1: none) and the songs without one; a repeated id keeps its first row."""
    row_of_id = pd.Series(np.arange(len(index)), index=index)
    repeated = row_of_id.index.duplicated()
    row_of_id = row_of_id[~repeated]
    report.log(f'item factors: {item_factors.shape[0]} items x {item_factors.shape[1]} dims '
               f'({int(repeated.sum())} repeated ids ignored)', factors_shape=item_factors.shape)
    position = row_of_id.reindex(track_ids).fillna(-1).to_numpy(dtype=np.int64)
    missing = track_ids[position < 0]
    report.log(f'songs with factors: {len(track_ids) - len(missing)}; without: {len(missing)}'
               + (f' (e.g. {", ".join(missing[:5])})' if len(missing) else ''), missing=missing.tolist())
    return position, missing


@exit_on_user_error
def main(argv=None):
    parser, run_parser = make_cli(__doc__)
    run_parser.add_argument('data_path', help='folder with the split files of step 1')
    run_parser.add_argument('--factors_path', help='item factor array, read or (with --taste_profile) written '
                            '(default DATA_PATH/[PREFIX]item_factors_MSD.npy, PREFIX with --taste_profile only)')
    run_parser.add_argument('--index_path', help='track id per factor row, read or written '
                            '(default DATA_PATH/[PREFIX]items_index_MSD.tsv)')
    run_parser.add_argument('--allow_missing', action='store_true', help='zero rows for songs without factors')
    run_parser.add_argument('--prefix', default='', help="split-file and output name prefix ('sub_' for --is_subset)")
    als = run_parser.add_argument_group('ALS from a taste profile')
    als.add_argument('--taste_profile', help='user<TAB>item<TAB>play_count file to factorise first')
    als.add_argument('--factors', type=int, default=200, help='dimension of the item factors')
    als.add_argument('--iterations', type=int, default=15, help='ALS sweeps')
    als.add_argument('--regularization', type=float, default=0.01, help='L2 weight of the factors')
    als.add_argument('--alpha', type=float, default=1.0, help='confidence slope: c = 1 + alpha * f(plays)')
    als.add_argument('--confidence', choices=['log', 'linear'], default='log', help='f = log1p or identity')
    als.add_argument('--seed', type=int, default=0, help='random_state of the factor initialisation')
    als.add_argument('--num_threads', type=int, default=2, help="implicit's threads (0: all cores)")
    args = parser.parse_args(argv)
    if args.factors < 1 or args.iterations < 1 or args.num_threads < 0 or args.regularization < 0 or args.alpha < 0:
        raise UserError('--factors and --iterations must be >= 1; --num_threads, --regularization and --alpha >= 0')
    return run(args.data_path, factors_path=args.factors_path, index_path=args.index_path,
               allow_missing=args.allow_missing, prefix=args.prefix, taste_profile=args.taste_profile,
               factors=args.factors, iterations=args.iterations, regularization=args.regularization,
               alpha=args.alpha, confidence=args.confidence, seed=args.seed, num_threads=args.num_threads)


if __name__ == '__main__':
    sys.exit(main())
