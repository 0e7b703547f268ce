"""Checks of a dataset's values before training: word vectors, item factors and spectrograms that hold NaN or
infinite values, and spectrograms that are empty or unreadable, each stopped with one line naming the file and the
fix. Called by data_loader.SplitData once its arrays are loaded.

    from data_checks import refuse_non_finite
    refuse_non_finite(split_data, ('train', 'valid'))
"""
import contextlib
import hashlib
import os

import numpy as np

from errors import UserError
from preprocess_utils import spec_path


def refuse_non_finite(data, splits):
    """Stop before training when word vectors, item factors or a spectrogram of `splits` hold NaN or inf (a run
    would end with NaN weights and a plausible-looking score); also refuses an unreadable or truncated
    spectrogram. `data` is a data_loader.SplitData; missing spectrograms are left to its own check."""
    fix_of = {'word vectors': f'rebuild {data.data_path}/*_emb.pkl with step2_word_embedding.py',
              'item factors': 'rebuild ix_to_cf.npy with step3_taste_profile.py'}
    for what, values in (('word vectors', data.tag_vectors), ('item factors', data.cf)):
        if values is not None and not np.isfinite(values).all():
            rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
            raise UserError(f'{what} of {data.data_path} hold NaN or infinite values ({len(rows)} row(s), first: row '
                f'{rows[0]}{", tag " + str(data.tags[rows[0]]) if what == "word vectors" else ""}); {fix_of[what]}')
    if data.input_type in ('spec', 'hybrid'):
        refuse_bad_spectrograms(data.data_path, [t for split in splits for t in data.ids[split][1]])


SPECTROGRAMS_CHECKED = '.spectrograms_checked'  # one line per set of spectrograms already read in full and found sound


def refuse_bad_spectrograms(data_path, track_ids):
    """Read every spectrogram of `track_ids` in full once: empty, unreadable or non-finite ones stop the run. A set
    found sound is remembered in DATA_PATH/.spectrograms_checked by the paths, sizes and modification times of its
    files, so that later runs on the same files (at MSD scale, tens of GB) read only their directory entries; any
    file written since is read again. A read-only dataset is read in full on every run."""
    from tqdm import tqdm
    paths = [path for path in (spec_path(data_path, t) for t in track_ids) if os.path.isfile(path)]
    stamp = spectrogram_stamp(data_path, paths)
    record = os.path.join(data_path, SPECTROGRAMS_CHECKED)
    if os.path.isfile(record):
        with open(record) as f:
            if stamp in f.read().split():
                return
    fix = 'delete it and recompute it with step0_mel_spectrogram.py'
    for path in tqdm(paths, desc='check spectrograms', unit='file', disable=len(paths) < 5000):
        if os.path.getsize(path) == 0:
            raise UserError(f'{path} is empty (0 bytes); {fix}')
        try:
            spec = np.load(path, mmap_mode='r')
        except (OSError, ValueError, EOFError) as error:
            raise UserError(f'{path} is not a readable .npy array ({error}); {fix}')
        if not np.isfinite(spec).all():
            raise UserError(f'{path} holds NaN or infinite values; {fix}')
    with contextlib.suppress(OSError):  # only a cache: without it the next run reads the files again
        with open(record, 'a') as f:
            f.write(stamp + '\n')


def spectrogram_stamp(data_path, paths):
    """sha256 of (path under data_path, size, modification time in ns) of each file: changes when any file does."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        stat = os.stat(path)
        digest.update(f'{os.path.relpath(path, data_path)}\t{stat.st_size}\t{stat.st_mtime_ns}\n'.encode())
    return digest.hexdigest()


def check_tag_to_ix(data, path):
    """When `path` (the release's train_tag_to_ix.pkl, which the original sampled balanced anchors' songs from) is
    there, it must list for every tag exactly the training songs that binaries.npy marks with it: this loader derives
    those lists from binaries.npy, so a disagreeing file would mean sampling from other songs than the original."""
    if 'train' not in data.ids or not os.path.isfile(path):
        return
    from safe_pickle import load_pickle
    fix = 'rebuild the split with step1_data_split.py, or remove the file (the loader needs only binaries.npy)'
    listed = load_pickle(path, 'songs of each tag in the training split', fix)
    if not isinstance(listed, dict):
        raise UserError(f'{path} holds a {type(listed).__name__}, expected a dict of tag -> ["IX//TRACK_ID", ...]; '
                        f'{fix}')
    rows, track_ids = data.ids['train']
    entries = np.array([f'{ix}//{track}' for ix, track in zip(rows, track_ids)])
    carries = data.binaries[rows] > 0
    differing = []
    for column, tag in enumerate(data.tags):
        expected = set(entries[carries[:, column]].tolist())
        found = set(str(e) for e in listed.get(tag, []))
        if found != expected:
            differing.append(f'{tag} ({len(found)} listed, {len(expected)} in binaries.npy, '
                             f'{len(found ^ expected)} differ)')
    extra = sorted(set(map(str, listed)) - set(data.tags.tolist()))
    if differing or extra:
        what = differing[:3] + [f'tags not in tags.npy: {", ".join(extra[:3])}'] * bool(extra)
        raise UserError(f'{path} disagrees with binaries.npy and train_ids.npy for {len(differing) + bool(extra)} '
                        f'tag(s): {"; ".join(what)}; {fix}')
