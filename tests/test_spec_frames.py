"""The frame-major copy (spec_frames.py, spec_layout.py): once written, the loader reads every training and
evaluation crop from it, with exactly the values it read from spec/; a missing or stale copy stops with one line."""
import os
import subprocess
import sys

import numpy as np
import pytest

from data_loader import EvalDataset, SplitData, TrainDataset
from errors import UserError
from spec_layout import FrameMajorSpec
from synthetic_data import write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spec_frames(data_path):
    done = subprocess.run([sys.executable, 'spec_frames.py', 'run', str(data_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def crops(data):
    train = TrainDataset(data, is_balanced=True, input_length=173, epoch_size=40, seed=3)
    valid = EvalDataset(data, 'valid', input_length=173, num_chunk=4)
    return [train[i]['spec'] for i in range(len(train))] + [valid[i]['spec'] for i in range(len(valid))]


def test_the_loader_reads_the_same_crops_from_the_copy(tmp_path):
    root = tmp_path / 'data'
    info = write_dataset(str(root), n_songs=40)
    before = SplitData(str(root))
    assert not before.frames
    expected = crops(before)
    assert spec_frames(root).endswith(f'{len(info["ids"])} written, 0 already up to date\n')
    after = SplitData(str(root))
    assert after.frames and isinstance(after.open_spec(info['ids'][1]), FrameMajorSpec)
    got = crops(after)
    assert len(got) == len(expected) and all(a.dtype == b.dtype and np.array_equal(a, b)
                                             for a, b in zip(got, expected))
    assert spec_frames(root).endswith(f'0 written, {len(info["ids"])} already up to date\n')


def test_a_short_crop_and_float16(tmp_path):
    """Frames past the end: fewer frames back (the loader pads them with zeros), as from the memory map."""
    spec = np.random.default_rng(0).standard_normal((128, 200)).astype(np.float16)
    np.save(tmp_path / 'copy.npy', np.ascontiguousarray(spec.T))
    copy = FrameMajorSpec(str(tmp_path / 'copy.npy'))
    assert copy.shape == (128, 200)
    np.testing.assert_array_equal(copy[:, 150:323], spec[:, 150:323])
    np.testing.assert_array_equal(copy[:, 0:173], spec[:, :173])


def test_a_missing_or_stale_copy_is_one_line(tmp_path):
    root = tmp_path / 'data'
    info = write_dataset(str(root), n_songs=40)
    spec_frames(root)
    track = info['splits']['train'][0].split('//')[1]
    original = SplitData(str(root)).spec_file(track)
    copy = original.replace(os.sep + 'spec' + os.sep, os.sep + 'spec_frames' + os.sep)
    os.utime(copy, (1e9, 1e9))  # the spectrogram was recomputed after the copy was made
    with pytest.raises(UserError, match=f'is not the current transpose of {original}.*run spec_frames.py run'):
        SplitData(str(root))
    spec_frames(root)  # brings it up to date
    SplitData(str(root))
    os.remove(copy)
    with pytest.raises(UserError, match=f'{copy} is missing'):
        SplitData(str(root))
