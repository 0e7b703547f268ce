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
from file_io import spec_path


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
        if spec.dtype.kind not in 'fiu' or spec.ndim != 2 or spec.shape[1] == 0:  # complex, bool, str, structured
            raise UserError(f'{path} holds a {spec.dtype} array of shape {spec.shape}, expected real numbers of shape '
                            f'(128, n_frames >= 1); {fix}')
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


def real_matrix(array, path, what, fix):
    """A 2-D array of real numbers (bool, int or float) as float32; any other dtype or rank is refused (np.float32
    of a str array raises ValueError, of a complex one drops the imaginary part with only a warning)."""
    if array.dtype.kind not in 'biuf' or array.ndim != 2:
        raise UserError(f'{path} holds a {array.dtype} array of shape {array.shape}; {what} must be a 2-D array of '
                        f'real numbers: {fix}')
    return array.astype(np.float32)


def text_vector(array, path, what, fix):
    """A 1-D array of strings (numpy str, or bytes of UTF-8 text) as str; anything else is refused."""
    if array.dtype.kind not in 'US' or array.ndim != 1:
        raise UserError(f'{path} holds a {array.dtype} array of shape {array.shape}; {what} must be a 1-D array of '
                        f'strings: {fix}')
    if array.dtype.kind == 'U':
        return array.astype(str)
    texts = []
    for i, value in enumerate(array.tolist()):  # numpy would decode bytes as ASCII only, with a traceback
        try:
            texts.append(value.decode('utf-8'))
        except UnicodeDecodeError:
            raise UserError(f'{path} entry {i} is {value!r}, bytes that are not UTF-8 text; {what} must be strings: '
                            f'{fix}') from None
    return np.array(texts, dtype=str)


def require_utf8(path, fix):
    """A text file that is not UTF-8 stops with the first undecodable line named (else a UnicodeDecodeError
    traceback, or with another codec silently wrong tag names)."""
    with open(path, 'rb') as f:
        for number, line in enumerate(f, 1):
            try:
                line.decode('utf-8')
            except UnicodeDecodeError as error:
                raise UserError(f'{path} line {number} is not UTF-8 text (byte {line[error.start]:#04x} at column '
                                f'{error.start + 1}); save the file as UTF-8. {fix}'.rstrip())


def read_utf8_lines(path, fix=''):
    require_utf8(path, fix)
    with open(path, encoding='utf-8') as f:
        return f.read().splitlines()


def refuse_bad_tag_names(tags, path):
    """Two columns of one name, or a blank name, cannot be queried or given a word vector apart."""
    names, counts = np.unique(tags, return_counts=True)
    if (counts > 1).any() or any(not n.strip() for n in names):
        bad = [repr(str(n)) for n in names[counts > 1]] + ["''"] * any(not n.strip() for n in names)
        raise UserError(f"{path} holds duplicate or empty tag names ({', '.join(bad[:5])}); every column needs its "
                        'own non-empty name: rebuild the split with step1_data_split.py')


def refuse_meaningless(data, splits):
    """Values that load and have the right shapes but mean nothing to train or score on, each stopped with one line
    naming the file and the first offending values: labels other than 0/1, duplicate or empty tag names, a track
    in two splits or twice in one, an empty split, word vectors all zero or equal for two tags, and a validation
    split on which no tag has both a positive and a negative song (its MAP and ROC-AUC are undefined)."""
    fix = 'rebuild the split with step1_data_split.py'
    path = lambda name: os.path.join(data.data_path, data.prefix + name)  # noqa: E731
    odd = np.flatnonzero(~np.isin(data.binaries, (0, 1)).all(axis=1))
    if len(odd):
        values = sorted(set(data.binaries[odd[0]].tolist()) - {0.0, 1.0})
        raise UserError(f"{path('binaries.npy')} holds labels other than 0/1 in {len(odd)} row(s) (first: row "
                        f'{odd[0]}, values {values[:3]}); labels must be 0 or 1: {fix}')
    seen = {}
    for split in splits:
        rows, track_ids = data.ids[split]
        if not len(rows):
            raise UserError(f"{path(split + '_ids.npy')} lists no song; every split needs songs: {fix}")
        for track in track_ids:
            if track in seen:
                raise UserError(f"track {track} is listed twice: in {path(seen[track] + '_ids.npy')} and "
                                f"{path(split + '_ids.npy')}; a track belongs to one split once: {fix}")
            seen[track] = split
    for split in sorted({'train', 'valid', 'test'} - set(splits)):  # the splits this mode does not load, too
        with contextlib.suppress(OSError, ValueError, EOFError):  # unreadable: its own mode reports it
            both = set(seen) & {str(e).partition('//')[2] for e in np.load(path(split + '_ids.npy')).ravel()}
            if both:
                track = sorted(both)[0]
                raise UserError(f"track {track} is in both {path(seen[track] + '_ids.npy')} and "
                                f"{path(split + '_ids.npy')} ({len(both)} such tracks); the splits must not share "
                                f'tracks: {fix}')
    refuse_degenerate_vectors(data)
    if 'valid' in splits:
        labels = data.binaries[data.ids['valid'][0]]
        if not ((labels.sum(axis=0) > 0) & (labels.sum(axis=0) < len(labels))).any():
            raise UserError(f"{path('valid_ids.npy')}: no tag has both a positive and a negative song among its "
                            f'{len(labels)} songs, so no tag can be scored; {fix} with more validation songs')


def refuse_degenerate_vectors(data):
    """Word vectors that are all zero (no direction: cosine undefined) or equal for two different tags (the model
    cannot tell them apart)."""
    vectors, where = data.tag_vectors, f'the {data.w2v_file} word vectors'
    fix = 'rebuild them with step2_word_embedding.py'
    zero = np.flatnonzero(~vectors.any(axis=1))
    if len(zero):
        raise UserError(f'{where} of {len(zero)} tag(s) are all zero (first: {str(data.tags[zero[0]])!r}); {fix}')
    _, first, counts = np.unique(vectors, axis=0, return_index=True, return_counts=True)
    if (counts > 1).any():
        row = first[np.argmax(counts > 1)]
        twins = [str(data.tags[i]) for i in np.flatnonzero((vectors == vectors[row]).all(axis=1))]
        raise UserError(f'{where} of tags {", ".join(twins[:5])} are identical; each tag needs its own vector: {fix}')
