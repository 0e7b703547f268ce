"""The frame-major copy of the spectrograms, DATA_PATH/spec_frames/, and its reader.

    python spec_frames.py run DATA_PATH          # writes it (resumable); the loader then reads crops from it
    from spec_layout import FrameMajorSpec
    crop = FrameMajorSpec(path)[:, start:start + 173]

The released layout is (n_mels, T) row-major: a 173-frame crop is 128 strided pieces, and read from disk (not the
page cache) the kernel's readahead fetches much or all of the file for it. spec_frames/ holds the same arrays
transposed, (T, n_mels), under the same relative paths: a crop is one contiguous read of 173 x 128 values, and the
values the loader returns are identical (bench.py --only supply measures the gain, cold and warm). spec/ stays the
reference: the copy is checked against it (shape, age) before training.
"""
import io
import os

import numpy as np

from errors import UserError
from file_io import atomic_save_npy, existing_spec_ids, spec_path

FRAMES_DIR = 'spec_frames'


def frames_file(data_path, file):
    """DATA_PATH/spec_frames/... for DATA_PATH/spec/... (the same relative path)."""
    return os.path.join(data_path, FRAMES_DIR, os.path.relpath(file, os.path.join(data_path, 'spec')))


def read_header(fd):
    """(shape, dtype, data offset) of the .npy file open as `fd`, read with one pread."""
    head = io.BytesIO(os.pread(fd, 4096, 0))
    fmt = np.lib.format
    read = fmt.read_array_header_1_0 if fmt.read_magic(head) == (1, 0) else fmt.read_array_header_2_0
    shape, _, dtype = read(head)
    return shape, dtype, head.tell()


def check_frames_copy(data_path, file, shape):
    """The frame-major copy of `file` exists, is its transpose in shape, and is not older than it."""
    copy = frames_file(data_path, file)
    fix = f'run spec_frames.py run {data_path} (or delete {os.path.join(data_path, FRAMES_DIR)} to read spec/ only)'
    if not os.path.isfile(copy):
        raise UserError(f'{copy} is missing: {os.path.join(data_path, FRAMES_DIR)} exists, so every spectrogram '
                        f'needs its frame-major copy; {fix}')
    if read_npy_shape(copy) != tuple(shape[::-1]) or os.path.getmtime(copy) < os.path.getmtime(file):
        raise UserError(f'{copy} is not the current transpose of {file} (shape {read_npy_shape(copy)}, expected '
                        f'{tuple(shape[::-1])}, or older than it); {fix}')


class FrameMajorSpec:
    """A (T, n_mels) .npy file seen as the (n_mels, T) spectrogram: spec[:, a:b] is one pread of frames a..b-1,
    readahead off (POSIX_FADV_RANDOM), so a crop costs its own bytes on disk and not the whole file's."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)
        (n_frames, n_mels), self.dtype, self.offset = read_header(self.fd)
        self.shape = (n_mels, n_frames)

    def __getitem__(self, key):
        rows, frames = key
        start, stop, _ = frames.indices(self.shape[1])
        row_bytes = self.shape[0] * self.dtype.itemsize
        payload = os.pread(self.fd, max(stop - start, 0) * row_bytes, self.offset + start * row_bytes)
        return np.frombuffer(payload, self.dtype).reshape(-1, self.shape[0]).T[rows]

    def __del__(self):
        if getattr(self, 'fd', None) is not None:
            os.close(self.fd)


def read_npy_header(path):
    """(shape, dtype) of a .npy file from its header alone (no data read)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_header(fd)[:2]
    finally:
        os.close(fd)


def read_npy_shape(path):
    return read_npy_header(path)[0]


def write_frames(data_path, log=print):
    """Write the frame-major copy of every spectrogram under DATA_PATH/spec/ that has none or an older one;
    returns (written, up to date). Atomic writes: a killed run leaves no torn copy and resumes."""
    written = current = 0
    for track_id in sorted(existing_spec_ids(data_path)):
        file = spec_path(data_path, track_id)
        copy = frames_file(data_path, file)
        if os.path.isfile(copy) and os.path.getmtime(copy) >= os.path.getmtime(file):
            current += 1
            continue
        os.makedirs(os.path.dirname(copy), exist_ok=True)
        atomic_save_npy(copy, np.ascontiguousarray(np.load(file).T))
        written += 1
        if written % 1000 == 0:
            log(f'{written} written')
    return written, current
