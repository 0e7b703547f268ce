"""The files of a search index: their names, formats, writing (atomic, disk errors as one line) and reading.

    from search_store import read_index, IndexFiles
    files = read_index('search_index')        # meta, FAISS index, tracks, query encoder weights, tag vectors

Every file is a format that cannot run code when read: JSON, .npy / .npz read with allow_pickle=False, and
FAISS' own binary format. A damaged or missing file stops with one line naming it and the command that rebuilds
the index; an index written by an older search.py (pickled tag vectors, a torch-pickled query encoder) is refused
without being opened.
"""
import contextlib
import errno
import os
from dataclasses import dataclass

import numpy as np

from errors import UserError
from file_io import WRITE_ERRORS, atomic_write, atomic_write_bytes, read_json, write_error, write_json

INDEX_FILE = 'songs.faiss'
EMBEDDINGS_FILE = 'embeddings.npy'
PARTIAL_FILE = '.embeddings.partial.npy'
PROGRESS_FILE = '.progress.json'
LOCK_FILE = '.build.lock'
EMBEDDINGS_META_FILE = 'embeddings.json'
TRACKS_FILE = 'tracks.npz'
META_FILE = 'meta.json'
ENCODER_FILE = 'query_encoder.npz'
TAG_VECTORS_FILE = 'tag_vectors.npz'
OLD_FORMAT_FILES = ('query_encoder.pt', 'tag_vectors.pkl')  # pickles: never opened
MEL_DIR = 'mel'
FORMAT_VERSION = 2
TAG_BRANCH = ('fc1', 'bn1', 'fc2')


def rebuild_hint(index_path, meta=None):
    checkpoint = (meta or {}).get('checkpoint') or 'CKPT'
    return f'rebuild it with python search.py index --force --model_load_path {checkpoint} --index_path {index_path}'


# ---------------------------------------------------------------------------------------------- writing
@contextlib.contextmanager
def output_errors(index_path):
    """OSError while writing the index -> one line: a full disk, a read-only place, a file where a folder goes."""
    try:
        yield
    except OSError as error:
        where = error.filename or index_path
        if error.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
            raise UserError(f'--index_path {index_path} must be a folder, but {where} is in the way (a file '
                            'where a folder is expected); pass another --index_path') from None
        if error.errno in WRITE_ERRORS:  # a full disk, a read-only place: the songs already embedded are kept
            raise write_error(where, error) from None
        raise


@contextlib.contextmanager
def build_lock(index_path):
    """One build per index folder at a time: a second one stops instead of interleaving its files."""
    import fcntl
    with output_errors(index_path):
        os.makedirs(index_path, exist_ok=True)
        handle = open(os.path.join(index_path, LOCK_FILE), 'a+')
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f'another search.py index is building {index_path}; wait for it to finish') from None
        yield
    finally:
        handle.close()


def write_index_files(index_path, faiss_index, tracks, encoder_state, tags, tag_vectors, meta):
    """All files of a built index; meta.json last, so that its presence means the rest is complete."""
    import faiss
    atomic_write_bytes(os.path.join(index_path, INDEX_FILE), faiss.serialize_index(faiss_index).tobytes())
    atomic_write(os.path.join(index_path, TRACKS_FILE), lambda f: np.savez(f, **tracks))
    encoder = {k: v.detach().cpu().numpy() for k, v in encoder_state.items() if k.split('.')[0] in TAG_BRANCH}
    atomic_write(os.path.join(index_path, ENCODER_FILE), lambda f: np.savez(f, **encoder))
    tag_file = os.path.join(index_path, TAG_VECTORS_FILE)
    if tag_vectors is not None:
        atomic_write(tag_file, lambda f: np.savez(f, tags=np.asarray(tags, dtype=str),
                                                   vectors=np.asarray(tag_vectors, dtype=np.float32)))
    elif os.path.isfile(tag_file):
        os.remove(tag_file)
    for old in OLD_FORMAT_FILES:
        if os.path.isfile(os.path.join(index_path, old)):
            os.remove(os.path.join(index_path, old))
    write_json(os.path.join(index_path, META_FILE), meta)


# ---------------------------------------------------------------------------------------------- reading
@dataclass
class IndexFiles:
    path: str
    meta: dict
    faiss_index: object
    track_ids: np.ndarray
    tag_indptr: np.ndarray
    tag_indices: np.ndarray
    tags: np.ndarray
    paths: object  # audio files of an --audio_dir index, else None
    encoder_state: dict
    tag_names: list
    tag_vectors: object  # (n_tags, word_dim) float32 or None

    def embeddings(self):
        """(n_songs, 256) unit song embeddings, memory-mapped."""
        return load_npz_or_npy(os.path.join(self.path, EMBEDDINGS_FILE), self.path, self.meta, mmap_mode='r')


def load_npz_or_npy(file, index_path, meta, **kwargs):
    if not os.path.isfile(file):
        raise UserError(f'{file} is missing: the search index is incomplete; {rebuild_hint(index_path, meta)}')
    try:
        return np.load(file, allow_pickle=False, **kwargs)
    except Exception as error:  # truncated, not an array, or pickled objects (refused: they could run code)
        raise UserError(f'{file} is damaged or not a plain array file ({type(error).__name__}: '
                        f'{str(error).splitlines()[0] if str(error) else ""}); {rebuild_hint(index_path, meta)}') \
            from None


def read_arrays(file, index_path, meta, names):
    """{name: array} of an .npz of the index, every member read now (a damaged member fails here, not later)."""
    archive = load_npz_or_npy(file, index_path, meta)
    try:
        with archive:
            return {name: archive[name] for name in (names or archive.files) if name in archive.files}
    except Exception as error:
        raise UserError(f'{file} is damaged ({type(error).__name__}: {error}); {rebuild_hint(index_path, meta)}') \
            from None


def read_meta(index_path):
    meta_file = os.path.join(index_path, META_FILE)
    if not os.path.isfile(meta_file):
        raise UserError(f'no search index at {index_path} ({META_FILE} missing); build it with python search.py '
                        f'index --model_load_path CKPT --data_path DATA --index_path {index_path}')
    meta = read_json(meta_file, 'search index metadata', rebuild_hint(index_path))
    old = [f for f in OLD_FORMAT_FILES if os.path.exists(os.path.join(index_path, f))]
    if not isinstance(meta, dict) or meta.get('format') != FORMAT_VERSION or old:
        found = meta.get('format') if isinstance(meta, dict) else None
        raise UserError(f'{index_path} was written by an older search.py (format {found}'
                        + (f', with pickled {", ".join(old)}' if old else '') + f'; this one reads format '
                        f'{FORMAT_VERSION}, which holds no pickles); {rebuild_hint(index_path, meta)}')
    missing = [k for k in ('word_dim', 'w2v_type', 'index', 'n_songs') if k not in meta]
    if missing:
        raise UserError(f'{meta_file} lacks {", ".join(missing)}; {rebuild_hint(index_path, meta)}')
    wrong = [f'{key} {meta.get(key)!r}' for key, ok in META_TYPES.items() if key in meta and not ok(meta[key])]
    if wrong:
        raise UserError(f'{meta_file} holds {"; ".join(wrong[:3])}, not what search.py index writes; '
                        f'{rebuild_hint(index_path)}')
    return meta


def _count(value, low=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _path_or_none(value):
    return value is None or isinstance(value, str)


META_TYPES = {  # what a tampered or damaged meta.json must not bring to the query path
    'word_dim': lambda v: _count(v, 1), 'n_songs': _count, 'input_length': lambda v: _count(v, 1),
    'num_chunk': lambda v: _count(v, 1), 'w2v_type': lambda v: v in ('google', 'music'),
    'index': lambda v: isinstance(v, dict) and isinstance(v.get('type'), str), 'w2v_path': _path_or_none,
    'data_path': _path_or_none, 'checkpoint': _path_or_none}


def check_arrays(index_path, meta, tracks, encoder, tag_vectors):
    """Every array of the index of the kind, rank and range the query path indexes with: else one line (an
    IndexError or a TypeError deep in a query otherwise, or NaN scores from non-finite weights)."""
    n = len(tracks['track_ids']) if tracks['track_ids'].ndim == 1 else -1
    checks = [(TRACKS_FILE, 'track_ids', tracks['track_ids'], 'US', 1, None),
              (TRACKS_FILE, 'tags', tracks['tags'], 'US', 1, None),
              (TRACKS_FILE, 'tag_indptr', tracks['tag_indptr'], 'iu', 1, n + 1),
              (TRACKS_FILE, 'tag_indices', tracks['tag_indices'], 'iu', 1, None)]
    checks += [(TRACKS_FILE, 'paths', tracks['paths'], 'US', 1, n)] if tracks.get('paths') is not None else []
    checks += [(ENCODER_FILE, name, value, 'fiu', None, None) for name, value in encoder.items()]  # + BN counters
    checks += [(TAG_VECTORS_FILE, 'vectors', tag_vectors, 'fiu', 2, None)] if tag_vectors is not None else []
    for file, name, value, kinds, ndim, length in checks:
        if value.dtype.kind not in kinds or (ndim and value.ndim != ndim) or (length is not None and
                                                                                len(value) != length):
            raise UserError(f'{os.path.join(index_path, file)}: {name} is a {value.dtype} array of shape {value.shape},'
                            f' not what search.py index writes; {rebuild_hint(index_path, meta)}')
        if value.dtype.kind == 'f' and not np.isfinite(value).all():
            raise UserError(f'{os.path.join(index_path, file)}: {name} holds NaN or infinite values; '
                            f'{rebuild_hint(index_path, meta)}')
    indptr, indices = tracks['tag_indptr'], tracks['tag_indices']
    if (indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any()
            or (len(indices) and (indices.min() < 0 or indices.max() >= len(tracks['tags'])))):
        raise UserError(f'{os.path.join(index_path, TRACKS_FILE)}: the tags of the songs point outside its arrays; '
                        f'{rebuild_hint(index_path, meta)}')


def read_faiss(index_path, meta):
    import faiss
    file = os.path.join(index_path, INDEX_FILE)
    if not os.path.isfile(file):
        raise UserError(f'{file} is missing: the search index is incomplete; {rebuild_hint(index_path, meta)}')
    try:
        return faiss.read_index(file)
    except RuntimeError as e:
        raise UserError(f'{file} is not a readable FAISS index ({str(e).strip().splitlines()[-1]}); '
                        f'{rebuild_hint(index_path, meta)}') from None


def read_index(index_path):
    """IndexFiles of a built index, every file checked; one UserError naming the first bad file otherwise."""
    meta = read_meta(index_path)
    faiss_index = read_faiss(index_path, meta)
    tracks_file = os.path.join(index_path, TRACKS_FILE)
    tracks = read_arrays(tracks_file, index_path, meta, ('track_ids', 'tag_indptr', 'tag_indices', 'tags', 'paths'))
    if not {'track_ids', 'tag_indptr', 'tag_indices', 'tags'} <= set(tracks):
        raise UserError(f'{tracks_file} lacks some of its arrays; {rebuild_hint(index_path, meta)}')
    if tracks['track_ids'].ndim != 1 or faiss_index.ntotal != len(tracks['track_ids']):
        raise UserError(f'{index_path}: the FAISS index holds {faiss_index.ntotal} songs but {TRACKS_FILE} '
                        f'{tracks["track_ids"].size}; {rebuild_hint(index_path, meta)}')
    encoder = read_arrays(os.path.join(index_path, ENCODER_FILE), index_path, meta, None)
    tag_names, tag_vectors = [], None
    tag_file = os.path.join(index_path, TAG_VECTORS_FILE)
    if os.path.isfile(tag_file):
        stored = read_arrays(tag_file, index_path, meta, ('tags', 'vectors'))
        tag_vectors = stored.get('vectors')
        tag_names = [str(t) for t in np.atleast_1d(stored.get('tags', []))]
        if tag_vectors is None or tag_vectors.ndim != 2 or tag_vectors.shape != (len(tag_names), meta['word_dim']):
            raise UserError(f'{tag_file} does not hold one vector per tag; {rebuild_hint(index_path, meta)}')
    check_arrays(index_path, meta, tracks, encoder, tag_vectors)
    return IndexFiles(index_path, meta, faiss_index, tracks['track_ids'], tracks['tag_indptr'],
                      tracks['tag_indices'], tracks['tags'], tracks.get('paths'), encoder, tag_names, tag_vectors)
