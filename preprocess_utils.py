"""Helpers shared by the preprocessing steps (step0_mel_spectrogram.py ... step3_taste_profile.py).

Not run directly. One definition of each helper: error exit, report writing, atomic writes (and their
one-line errors on a full or read-only disk), word-vector vocabulary access, spectrogram paths,
worker pools that die with their parent, and the `run` sub-command CLI.
"""
import argparse
import contextlib
import errno
import hashlib
import io
import json
import mmap
import os
import pickle
import re
import signal
import sys
import threading

import numpy as np

from cli_args import HelpFormatter, usage_examples
from errors import UserError

SCORE_MIN = 50  # Last.fm tag score threshold of the original (keep score >= 50)
SPLIT_BOUNDS = (0.7, 0.85)  # step 1's artist shuffle cut points: 70% train, 15% valid, 15% test
SPLIT_FILES = ('train_ids.npy', 'valid_ids.npy', 'test_ids.npy')
NPY_MAGIC = b'\x93NUMPY'


def require_file(path, what, fix):
    if not os.path.isfile(path):
        raise UserError(f'{path} not found ({what}); {fix}')


def load_array(path, what, fix, **kwargs):
    """np.load with a one-line error naming the file for a missing or unreadable array."""
    require_file(path, what, fix)
    with open(path, 'rb') as f:
        magic = f.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:  # else np.load takes any other bytes for a pickle and says so
        reason = 'an empty file' if not magic else 'no .npy header: not written by numpy.save'
        raise UserError(f'{path} is not a readable .npy array ({reason}); {fix}')
    try:
        return np.load(path, **kwargs)
    except (OSError, ValueError, EOFError) as error:
        raise UserError(f'{path} is not a readable .npy array ({error}); {fix}')


def make_cli(doc, prog=None):
    """An argparse parser whose only sub-command is `run` (the original used fire's `run`, and its command lines
    keep working). Returns (parser, run_parser); add the step's arguments to run_parser."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=HelpFormatter,
                                     epilog=f'The options are those of the `run` command: {prog or "%(prog)s"} '
                                            'run --help')
    commands = parser.add_subparsers(dest='command', required=True)
    run = commands.add_parser('run', help='run this preprocessing step (run --help lists its options)',
                              description=doc.strip().splitlines()[0], epilog=usage_examples(doc),
                              formatter_class=HelpFormatter)
    return parser, run


class Report:
    """Collects what a step kept and dropped: prints each line and saves .txt + .json together."""

    def __init__(self, step):
        self.step = step
        self.lines = []
        self.data = {}

    def log(self, line, **data):
        print(line, flush=True)
        self.lines.append(line)
        self.data.update(data)

    def save(self, directory, prefix=''):
        """Write <prefix><step>_report.txt (the printed lines) and .json (lines + counts)."""
        base = os.path.join(directory, f'{prefix}{self.step}_report')
        atomic_write_bytes(base + '.txt', ('\n'.join(self.lines) + '\n').encode())
        payload = {'step': self.step, 'lines': self.lines, **self.data}
        atomic_write_bytes(base + '.json', json.dumps(payload, indent=1, default=_json_default).encode())
        return base + '.txt'


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ---------------------------------------------------------------- atomic writes
PARTIAL_MARK = '.partial-'


def partial_path(path, pid=None):
    """Temporary name beside `path`, unique to the writing process: `.NAME.partial-PID` (hidden, so readers
    skip it). Two processes writing one folder never rename each other's files."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f'.{name}{PARTIAL_MARK}{os.getpid() if pid is None else pid}')


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def remove_stale_partials(root, owned=None):
    """Delete the temporary files of writers that died (killed mid-write) under `root`; returns how many. With
    `owned` (a predicate on the final file name), only those of files this process owns: a folder shared by
    machines holds the live partial files of other machines, whose process ids mean nothing here."""
    removed = 0
    for directory, _, files in os.walk(root):
        for name in files:
            if not (name.startswith('.') and PARTIAL_MARK in name):
                continue
            final, _, pid = name[1:].rpartition(PARTIAL_MARK)
            if owned is not None and not owned(final):
                continue
            if pid.isdigit() and (int(pid) == os.getpid() or not _process_alive(int(pid))):
                os.remove(os.path.join(directory, name))
                removed += 1
    return removed


WRITE_ERRORS = {errno.ENOSPC: 'the disk is full', errno.EDQUOT: 'the disk quota is exceeded',
                errno.EROFS: 'the file system is read-only', errno.EACCES: 'permission denied',
                errno.EPERM: 'permission denied', errno.ENOTDIR: 'a file stands where a folder is expected',
                errno.EEXIST: 'a file stands where a folder is expected'}


def write_error(path, error):
    """UserError for an OSError met while writing `path`: what happened in words, the path, and the fix."""
    what = WRITE_ERRORS.get(error.errno, error.strerror or type(error).__name__)
    return UserError(f'cannot write {path}: {what} ({error.strerror or error}); free space or fix the folder, '
                     'or write elsewhere, then rerun (finished outputs are kept)')


def require_output_dir(path, flag):
    """Create the output folder `path` (given by `flag`) and prove it writable, before any work starts."""
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise UserError(f'{flag} {path} is a file, not a folder; pass a folder path')
    except OSError as error:
        raise UserError(f'{flag} {path}: cannot create the folder: {WRITE_ERRORS.get(error.errno, error.strerror)} '
                        f'({error.strerror}); pass a writable folder')
    if not os.path.isdir(path):
        raise UserError(f'{flag} {path} is a file, not a folder; pass a folder path')
    probe = partial_path(os.path.join(path, 'write-probe'))
    try:
        with open(probe, 'wb') as f:
            f.write(b'.')
            f.flush()
            os.fsync(f.fileno())
    except OSError as error:
        raise UserError(f'{flag} {path} is not writable: {WRITE_ERRORS.get(error.errno, error.strerror)} '
                        f'({error.strerror}); pass a writable folder with free space')
    finally:
        if os.path.exists(probe):
            os.remove(probe)


def atomic_write(path, write):
    """write(f) into a temporary file beside `path`, flushed to disk, then renamed into place: an interrupted or
    failed write (full disk included) leaves no torn file and no temporary one; OSError becomes a UserError."""
    tmp = partial_path(path)
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # a full disk may only show here (delayed allocation), never after the rename
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(error, OSError):
            raise write_error(path, error) from None
        raise


def atomic_write_bytes(path, payload):
    atomic_write(path, lambda f: f.write(payload))


def atomic_save_npy(path, array):
    # serialised first: numpy's own file write reports a full disk as a short write, without its errno
    payload = io.BytesIO()
    np.save(payload, array)
    atomic_write_bytes(path, payload.getbuffer())


def atomic_pickle(path, obj):
    atomic_write_bytes(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


# ---------------------------------------------------------------- JSON files
def read_json(path, what, fix):
    """The parsed JSON of `path`; a missing or malformed file is a UserError naming it and the fix."""
    require_file(path, what, fix)
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        raise UserError(f'{path} is not readable JSON ({what}: {error}); {fix}') from None


def write_json(path, obj):
    """`obj` as indented JSON with sorted keys (stable bytes for the same content), written atomically."""
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=_json_default).encode())


# ---------------------------------------------------------------- spectrogram tree
MSD_TRACK_ID = re.compile(r'TR[A-Z0-9]{16}')


def spec_folders(track_id):
    """The three folder names of a track's spectrogram. MSD ids (TRAAAAW128F429D538) keep the released data's
    ID[2], ID[3], ID[4]; any other id (MTG-Jamendo's track_0000215 all share 'ack', MagnaTagATune's clip ids
    can be one character) takes the first three hex digits of its MD5, 4,096 folders evenly filled."""
    if MSD_TRACK_ID.fullmatch(track_id):
        return track_id[2], track_id[3], track_id[4]
    digest = hashlib.md5(track_id.encode('utf-8')).hexdigest()
    return digest[0], digest[1], digest[2]


def spec_path(data_path, track_id):
    """DATA_PATH/spec/A/B/C/ID.npy, A/B/C from spec_folders: the one place writers and readers take it from."""
    if not track_id or track_id.startswith('.') or '/' in track_id or os.sep in track_id:
        raise ValueError(f'track id {track_id!r} cannot name a file (empty, starts with a dot or holds a slash)')
    return os.path.join(data_path, 'spec', *spec_folders(track_id), track_id + '.npy')


def existing_spec_ids(data_path):
    """Track ids that have a finished spectrogram under DATA_PATH/spec/*/*/*/ (temp files excluded)."""
    root = os.path.join(data_path, 'spec')
    ids = []
    for directory, _, files in os.walk(root):
        if os.path.relpath(directory, root).count(os.sep) == 2:
            ids.extend(f[:-4] for f in files if f.endswith('.npy') and not f.startswith('.'))
    return ids


# ---------------------------------------------------------------- word vectors
def default_google_path(data_path):
    return os.path.join(data_path, 'GoogleNews-vectors-negative300.bin')


def default_music_path(data_path):
    return os.path.join(data_path, 'music_w2v', 'model_semeval_trigrams_300.model')


def add_vector_path_arguments(run_parser):
    trusted = ('; a gensim model or KeyedVectors file is a pickle, which can run code when loaded: use only one '
               'from a trusted source')
    run_parser.add_argument('--google_path', help='Google News vectors, word2vec binary format '
                            '(default DATA_PATH/GoogleNews-vectors-negative300.bin); .bin and .txt files are plain '
                            'data' + trusted)
    run_parser.add_argument('--music_path', help='domain-specific vectors, gensim Word2Vec model or KeyedVectors '
                            '(default DATA_PATH/music_w2v/model_semeval_trigrams_300.model)' + trusted)


def vocab_forms(tag, multiword_underscore=True):
    """Keys a tag may have in a vocabulary: as written, then with '_' joining words ('smooth_jazz')."""
    forms = [tag]
    joined = '_'.join(tag.split())
    if multiword_underscore and joined != tag:
        forms.append(joined)
    return forms


def vocab_key(tag, vocab, multiword_underscore=True):
    """The key under which `tag` is stored in `vocab` (anything supporting `in`), else None."""
    return next((form for form in vocab_forms(tag, multiword_underscore) if form in vocab), None)


def has_word2vec_header(path):
    """True when the first line is word2vec's 'COUNT DIM' (GloVe text files have none)."""
    with open(path, 'rb') as f:
        header = f.readline().split()
    return len(header) == 2 and all(token.isdigit() for token in header)


def read_word2vec_vocab(path):
    """Set of words of a word2vec-format file without materialising its vectors.

    Binary format: header 'COUNT DIM', then per word 'word<space>' + DIM float32 (+ optional '\\n').
    Skipping the vectors makes the 3.6 GB Google News file's vocabulary a few seconds' work.
    A file ending in .txt is read as the text format (first token of each line; header optional).
    """
    require_file(path, 'word2vec file', 'pass the right path with --google_path, or --vocab music|none in step 1')
    if path.endswith('.gz'):
        raise UserError(f'{path} is compressed; gunzip it and pass the .bin file with --google_path')
    header = has_word2vec_header(path)
    if path.endswith('.txt'):
        with open(path, 'rb') as f:
            lines = iter(f)
            if header:
                next(lines)
            return {line.split(b' ', 1)[0].decode('utf-8', 'replace') for line in lines if line.strip()}
    if not header:
        raise UserError(f'{path} does not start with a word2vec header "COUNT DIM"; pass a word2vec binary with --google_path')
    with open(path, 'rb') as f:
        count, dim = map(int, f.readline().split())
        start = f.tell()
    words = set()
    with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pos = start
        for _ in range(count):
            while data[pos:pos + 1] == b'\n':
                pos += 1
            space = data.find(b' ', pos)
            if space < 0:
                raise UserError(f'{path} is truncated after {len(words)} of {count} words; re-download it')
            words.add(data[pos:space].decode('utf-8', 'replace'))
            pos = space + 1 + 4 * dim  # skip the float32 vector
    return words


def load_keyed_vectors(path, option):
    """gensim KeyedVectors from a Word2Vec model (.save), a KeyedVectors file, a word2vec .bin or a .txt."""
    from gensim.models import KeyedVectors, Word2Vec

    require_file(path, 'word vectors', f'pass the right path with {option}')
    if path.endswith(('.bin', '.bin.gz', '.txt')):
        try:
            if path.endswith('.txt'):
                return KeyedVectors.load_word2vec_format(path, binary=False,
                                                         no_header=not has_word2vec_header(path))
            return KeyedVectors.load_word2vec_format(path, binary=True)
        except (EOFError, ValueError, UnicodeDecodeError, OSError) as error:
            raise UserError(f'{path} is not a complete word2vec file ({type(error).__name__}: {error}); download '
                            f'or copy it again, or pass another file with {option}')
    try:  # mmap: large arrays saved beside the model are mapped, not read (fast vocabulary access)
        loaded = Word2Vec.load(path, mmap='r')
    except Exception:  # not a full model: a KeyedVectors file is the other format we accept
        try:
            loaded = KeyedVectors.load(path, mmap='r')
        except Exception as error:
            raise UserError(f'cannot load {path} as a gensim Word2Vec model or KeyedVectors ({error}); '
                f'pass a gensim .model/.kv file or a word2vec .bin with {option}')
    return loaded.wv if hasattr(loaded, 'wv') else loaded


# ---------------------------------------------------------------- worker processes
def kill_me_when_parent_dies():
    """In a child (Linux): the kernel sends it SIGKILL when its parent dies, even by SIGKILL; kept across exec."""
    if sys.platform.startswith('linux'):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def die_with_parent(parent_pid):
    """Pool initializer: be killed with the parent; exit now if it died before the call took effect."""
    kill_me_when_parent_dies()
    if os.getppid() != parent_pid:
        os._exit(1)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def worker_pool(workers):
    """multiprocessing.Pool whose workers never outlive the parent: killed with it (Linux: PR_SET_PDEATHSIG),
    and terminated when the parent gets SIGTERM or Ctrl-C, or leaves the block in any way."""
    import multiprocessing
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main_thread else None
    # spawn, not fork: the parent runs threads (tqdm's monitor, the pool's own handlers, BLAS), and a forked child
    # inherits any lock one of them held at that instant, held forever
    pool = multiprocessing.get_context('spawn').Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),))
    try:
        yield pool
    finally:
        pool.terminate()
        pool.join()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
