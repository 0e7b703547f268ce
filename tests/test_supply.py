"""bench.py --only supply measures what it says: evicted files are read from the disk again (cold), and a crop of
the frame-major copy reads a small fraction of what a crop of the released (n_mels, T) layout makes the disk read."""
import numpy as np
import pytest

from bench_scaling import CROP, disk_bytes_read, supply, write_tracks
from data_loader import open_spec
from spec_layout import FrameMajorSpec


def test_cold_reads_hit_the_disk_and_the_copy_reads_less(tmp_path):
    released, frame_major = write_tracks(str(tmp_path), 24, frames=2000)  # 0.5 MiB a file and layout
    before = disk_bytes_read()
    _, cold_kib = supply(open_spec, released, cold=True, passes=1)
    if disk_bytes_read() == before:
        pytest.skip('no disk reads counted here (a RAM file system, or no /proc/self/io accounting)')
    _, warm_kib = supply(open_spec, released, cold=False, passes=1)
    _, frames_kib = supply(FrameMajorSpec, frame_major, cold=True, passes=1)
    crop_kib = 128 * CROP * 2 / 1024  # 43 KiB of float16
    file_kib = 128 * 2000 * 2 / 1024
    assert warm_kib == 0 and cold_kib >= 0.9 * min(file_kib, 128 * 4)  # 128 rows on 128 pages, or the whole file
    assert crop_kib <= frames_kib < crop_kib + 16 and frames_kib * 4 < cold_kib, (frames_kib, cold_kib)
    assert np.array_equal(FrameMajorSpec(frame_major[3])[:, 100:100 + CROP], open_spec(released[3])[:, 100:100 + CROP])
