"""Costs at dataset size, for bench.py: the loader's supply of training crops read from disk (cold) and from the
page cache (warm), per worker, for the released layout and the frame-major copy; and how step 0, one validation
pass, TEST scoring with its metrics and `search.py index` grow with the number of songs (docs/scaling.md).

    python bench.py --only supply [--bench_dir DIR] [--supply_files 200]
    python bench.py --only scaling [--scaling_songs 1000,10000,50000]
"""
import multiprocessing
import os
import resource
import tempfile
import time

import numpy as np

from data_loader import crop, open_spec
from spec_layout import FrameMajorSpec

TRACK_FRAMES = 10_000  # a 3.9 min track at 22,050 Hz, hop 512 (43.07 frames/s)
CROP = 173
GPU_SAMPLES_PER_S = 10_000  # README: what one GPU trains on at the original's settings in float32


# ------------------------------------------------------------------------------------------------ supply
def write_tracks(folder, n_files, frames=TRACK_FRAMES):
    """n_files float16 spectrograms in both layouts (kept between runs); returns (released, frame-major) paths."""
    rng = np.random.default_rng(0)
    released, frame_major = [], []
    for i in range(n_files):
        paths = (os.path.join(folder, f'track{i:05d}.npy'), os.path.join(folder, f'track{i:05d}.frames.npy'))
        if not all(os.path.exists(p) for p in paths):
            spec = rng.standard_normal((128, frames)).astype(np.float16)
            np.save(paths[0], spec)
            np.save(paths[1], np.ascontiguousarray(spec.T))
        released.append(paths[0])
        frame_major.append(paths[1])
    os.sync()  # dirty pages cannot be evicted
    return released, frame_major


def evict(paths):
    """Drop the files from the page cache: the next read comes from the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def disk_bytes_read():
    """Bytes this process made the storage layer fetch (page-cache hits excluded)."""
    with open('/proc/self/io') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('read_bytes'))


def supply(open_file, paths, cold, passes=2, seed=0):
    """(samples/s, KiB read from disk a sample) of one worker: a random crop of each file once a pass, files in
    a random order, as the training loader reads them (open, crop, float32); cold: evicted before each pass."""
    rng = np.random.default_rng(seed)
    elapsed = read = 0
    for _ in range(passes):
        if cold:
            evict(paths)
        else:
            for path in paths:
                with open(path, 'rb') as f:
                    while f.read(1 << 22):
                        pass
        before, start = disk_bytes_read(), time.perf_counter()
        for i in rng.permutation(len(paths)):
            spec = open_file(paths[i])
            crop(spec, int(rng.integers(0, spec.shape[1] - CROP)), CROP)
        elapsed += time.perf_counter() - start
        read += disk_bytes_read() - before
    samples = passes * len(paths)
    return samples / elapsed, read / samples / 1024


def bench_supply(bench_dir=None, n_files=200):
    with tempfile.TemporaryDirectory(dir=bench_dir or '.', prefix='.bench_supply_') as folder:
        released, frame_major = write_tracks(folder, n_files)
        print(f'loader supply, one worker: random {CROP}-frame crops of {n_files} tracks of 128 x {TRACK_FRAMES} '
              f'float16 ({os.path.getsize(released[0]) / 2**20:.1f} MiB each) in {folder}; cold = evicted '
              'with POSIX_FADV_DONTNEED before each pass')
        print(f'{"layout (reader)":<44} {"cold /s":>8} {"KiB/sample":>10} {"warm /s":>8} {"workers":>8} '
              f'{"disk MB/s":>9}   (workers and disk for {GPU_SAMPLES_PER_S:,} samples/s, cold)')
        rows = {}
        for name, open_file, paths in (('spec/ (n_mels, T), memory map', open_spec, released),
                                       ('spec_frames/ (T, n_mels), pread', FrameMajorSpec, frame_major)):
            cold, kib = supply(open_file, paths, cold=True)
            warm, _ = supply(open_file, paths, cold=False)
            rows[name] = (cold, kib, warm)
            print(f'{name:<44} {cold:8.0f} {kib:10.1f} {warm:8.0f} {GPU_SAMPLES_PER_S / cold:8.1f} '
                  f'{GPU_SAMPLES_PER_S * kib * 1024 / 1e6:9.0f}')
        (c0, k0, w0), (c1, k1, w1) = rows.values()
        print(f'frame-major copy: {c1 / c0:.1f}x the cold supply, {k0 / k1:.0f}x less read from disk, '
              f'{w1 / w0:.1f}x the warm supply')
        return rows


# ------------------------------------------------------------------------------------------------ scaling
def resident_kib():
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmRSS:'))


def _timed(fn, args, warmup):
    if warmup:
        warmup[0](*warmup[1:])  # imports and first-call set-ups (librosa, FAISS' threads) in no row's time
    baseline, start = resident_kib(), time.perf_counter()
    result = fn(*args)
    seconds = time.perf_counter() - start
    return seconds, max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline, 0) / 1024, result


def measured(fn, *args, warmup=None):
    """(seconds, peak MiB above the resident size before the call, result) of fn(*args), run in a fresh process
    (spawned, not forked: a fork after torch's thread pool started can hang), so each row's peak is its own."""
    with multiprocessing.get_context('spawn').Pool(1) as pool:
        return pool.apply(_timed, (fn, args, warmup))


def step0_audio(seconds=60.0):
    """compute_mel of a written 44.1 kHz wav of `seconds` (decode, resampling to 22,050 Hz, mel, log): one core."""
    import soundfile

    from audio import compute_mel
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'TRSCALING0000000.wav')
        t = np.arange(int(seconds * 44100)) / 44100
        soundfile.write(path, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 44100)
        start = time.perf_counter()
        compute_mel(path)
        return time.perf_counter() - start


def validation_chunks(n_songs=8, num_chunk=8, n_channels=128):
    """Model time to embed n_songs x num_chunk chunks at the original's width (eval mode, float32, CPU)."""
    import torch

    from model import build_model
    model = build_model('spec', word_dim=300, n_channels=n_channels).eval()
    spec = torch.randn(n_songs, num_chunk, 128, CROP)
    with torch.no_grad():
        model.chunks_to_embedding(spec[:1], torch.zeros(1, 0))  # warm-up
        start = time.perf_counter()
        model.chunks_to_embedding(spec, torch.zeros(n_songs, 0))
    return time.perf_counter() - start


def test_scoring(n_songs, n_tags):
    """TEST after the embeddings: cosine scores of every tag against every song, then P@10, ROC-AUC and AP."""
    import torch

    from metrics import cosine_scores, retrieval_metrics
    rng = np.random.default_rng(0)
    tags, songs = torch.randn(n_tags, 256), torch.randn(n_songs, 256)
    labels = (rng.random((n_tags, n_songs)) < 0.03).astype(np.float32)
    retrieval_metrics(cosine_scores(tags, songs).numpy(), labels)


def index_build(n_songs):
    """search.py index after the embeddings: the exact FAISS index of n_songs normalised 256-d vectors."""
    from search_index import build_faiss_index
    emb = np.random.default_rng(0).standard_normal((n_songs, 256)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    build_faiss_index(emb, 'flat')


def bench_scaling(sizes=(1000, 10000, 50000), n_tags=500, num_chunk=8, read_per_s=None, bench_dir=None):
    """The scaling table: measured where it runs here, extrapolated linearly (the formula printed) otherwise."""
    if read_per_s is None:  # evaluation crops come from the frame-major copy, cold
        read_per_s = list(bench_supply(bench_dir, 100).values())[1][0]
    mel_s, mel_mib, _ = measured(step0_audio, 60.0, warmup=(step0_audio, 1.0))
    per_hour = mel_s * 60
    track_h = TRACK_FRAMES / (22050 / 512) / 3600
    print(f'step 0: {per_hour:.0f} s of one core per hour of audio (60 s measured: {mel_s:.2f} s, peak '
          f'+{mel_mib:.0f} MiB); per 1,000 songs of {track_h * 60:.1f} min: {per_hour * track_h * 1000 / 60:.0f} '
          'core-min, the same at every size (one file at a time per worker)')
    model_s, model_mib, _ = measured(validation_chunks, 8, num_chunk)
    chunk_s = model_s / (8 * num_chunk)
    read_s = 1 / read_per_s if read_per_s else 0.0
    print(f'validation: {1 / chunk_s:.1f} chunks/s through the width-128 model on this CPU (8 songs x {num_chunk} '
          f'chunks measured, peak +{model_mib:.0f} MiB), reads at {read_per_s or 0:.0f} crops/s/worker cold: '
          f't(n songs) = n x {num_chunk} x ({chunk_s * 1e3:.1f} ms + {read_s * 1e3:.2f} ms)')
    print(f'{"seconds per 1,000 songs (peak MiB)":<36}' + ''.join(f'{f"{n:,} songs":>20}' for n in sizes))
    scoring = [measured(test_scoring, n, n_tags, warmup=(test_scoring, 100, 10))[:2] for n in sizes]
    building = [measured(index_build, n, warmup=(index_build, 100))[:2] for n in sizes]
    rows = {'validation pass (CPU, extrapolated)': [(n * num_chunk * (chunk_s + read_s), model_mib) for n in sizes],
            f'TEST scoring + metrics, {n_tags} tags': scoring, 'search.py index: FAISS build': building}
    rows['search.py index: embed + build'] = [(seconds + n * num_chunk * (chunk_s + read_s), max(mib, model_mib))
                                              for n, (seconds, mib) in zip(sizes, building)]
    for name, cells in rows.items():
        print(f'{name:<36}' + ''.join(f'{f"{s / n * 1000:,.{3 if s / n < 0.01 else 1}f} ({mib:,.0f})":>20}'
                                      for n, (s, mib) in zip(sizes, cells)))
    return {'step0_s_per_hour': per_hour, 'chunk_s': chunk_s, 'rows': rows}
