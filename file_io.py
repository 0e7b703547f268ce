"""The project's file I/O: required inputs and arrays read with one-line errors, atomic writes (and their one-line
errors on a full or read-only disk), JSON files, and where each track's spectrogram lives (spec/A/B/C/ID.npy).

    from file_io import atomic_save_npy, load_array, spec_path
"""
import errno
import hashlib
import io
import json
import os
import pickle
import re

import numpy as np

from errors import UserError

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


def json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


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
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True, default=json_default).encode())


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
