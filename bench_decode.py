"""MP3 decoding for step 0: the decoders librosa can use, timed on real MP3 files encoded here, and how far their
log-mels differ; then step 0's time and disk per track, whole tracks and --max_seconds 30 windows.

    python bench_decode.py [--seconds 30 240] [--files 4] [--workers 2] [--out DIR]

The MP3s are encoded here with libsndfile's LAME encoder (128 kbit/s, 44.1 kHz stereo, as MTG-Jamendo's full
tracks; MagnaTagATune's clips are 16 kHz mono) from a synthesised mix of notes, drums and noise. Decoders:
soundfile (libsndfile >= 1.1 reads MP3 through mpg123; librosa.load's first choice) and audioread (ffmpeg, or
GStreamer/MAD, whichever is installed; librosa's deprecated fallback). Each decoded signal goes through step 0's
mel (audio.compute_mel); the report gives seconds per file and the mean and 99.9th-percentile absolute difference
in dB between the two mels, frame for frame.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np

from audio import compute_mel
from cli_args import positive_int

SR_OUT = 22050


def music(seconds, sr=44100, seed=0):
    """A stereo mix of plucked notes, a kick and hi-hat pattern and noise: broadband, with transients."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.01 * rng.standard_normal(len(t))
    beat = (t * 2) % 1
    y += 0.4 * np.exp(-beat * 30) * np.sin(2 * np.pi * 60 * t)  # kick twice a second
    y += 0.1 * np.exp(-((t * 4) % 1) * 80) * rng.standard_normal(len(t))  # hi-hat
    note = np.arange(sr) / sr  # one-second plucked note, a new one every quarter second
    for start in range(0, len(t) - sr, sr // 4):
        pitch = 220 * 2 ** (rng.integers(0, 24) / 12)
        y[start:start + sr] += 0.2 * np.exp(-note * 4) * np.sin(2 * np.pi * pitch * note)
    y /= np.abs(y).max() * 1.25
    return np.stack([y, np.roll(y, 300)], axis=1).astype(np.float32)


def decode_soundfile(path):
    import librosa
    return librosa.load(path, sr=SR_OUT, mono=True)[0]


def decode_audioread(path):
    import audioread
    import librosa
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # librosa deprecates its audioread path
        with audioread.audio_open(path) as f:
            return librosa.load(f, sr=SR_OUT, mono=True)[0]


def timed(fn, path):
    start = time.perf_counter()
    out = fn(path)
    return out, time.perf_counter() - start


def compare(paths):
    """Per decoder: seconds per file; and the mel difference (dB) of audioread's against soundfile's."""
    import audioread
    rows = {'soundfile': [], 'audioread': []}
    diffs = []
    backends = [b.__name__ for b in audioread.available_backends()]
    decode_soundfile(paths[0])  # warm-up: imports and first-call setup are not timed
    try:
        decode_audioread(paths[0])
    except Exception as error:  # only the raw backend (no ffmpeg, GStreamer or MAD): nothing to compare with
        print(f'audioread cannot decode MP3 here ({type(error).__name__}; backends: {", ".join(backends)}): '
              'install ffmpeg to compare; timing soundfile only')
        rows = {'soundfile': [timed(decode_soundfile, path)[1] for path in paths], 'audioread': [float('nan')]}
        return rows, float('nan'), float('nan'), backends
    for path in paths:
        a, ta = timed(decode_soundfile, path)
        b, tb = timed(decode_audioread, path)
        rows['soundfile'].append(ta)
        rows['audioread'].append(tb)
        n = min(len(a), len(b))
        ma, mb = compute_mel(a[:n]), compute_mel(b[:n])
        diffs.append(np.abs(ma - mb).ravel())
        print(f'{os.path.basename(path)}: soundfile {ta:.2f} s, audioread {tb:.2f} s, samples {len(a)} vs {len(b)}')
    d = np.concatenate(diffs)
    return rows, float(d.mean()), float(np.percentile(d, 99.9)), backends


def step0_run(audio_dir, out, workers, max_seconds):
    import step0_mel_spectrogram
    start = time.perf_counter()
    args = ['run', audio_dir, out, '--workers', str(workers), '--float16']
    assert step0_mel_spectrogram.main(args + (['--max_seconds', str(max_seconds)] if max_seconds else [])) == 0
    return time.perf_counter() - start


def step0_cost(paths, work, workers, max_seconds=None):
    """(seconds per track once the workers run, total seconds, spectrogram bytes per track): a run on `workers`
    files times the start-up (spawning workers, importing librosa), subtracted from the run on all files."""
    first = os.path.join(work, 'first')
    os.makedirs(first)
    for path in paths[:workers]:
        shutil.copy(path, first)
    startup = step0_run(first, os.path.join(work, 'data_first'), workers, max_seconds)
    out = os.path.join(work, f'data_{max_seconds}')
    total = step0_run(os.path.dirname(os.path.dirname(paths[0])), out, workers, max_seconds)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(out, 'spec')) for f in fs)
    for folder in (first, os.path.join(work, 'data_first'), out):
        shutil.rmtree(folder)
    return (total - startup) / (len(paths) - workers), total, size / len(paths)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seconds', type=positive_int, nargs='+', default=[30, 240], help='track lengths')
    parser.add_argument('--files', type=positive_int, default=8, help='files per length (more than --workers)')
    parser.add_argument('--workers', type=positive_int, default=2, help='step 0 workers')
    parser.add_argument('--out', default=None, help='keep the MP3s and spectrograms here (default: a temp folder)')
    args = parser.parse_args(argv)
    import soundfile
    work = args.out or tempfile.mkdtemp(prefix='bench_decode_')
    try:
        for seconds in args.seconds:
            folder = os.path.join(work, f'mp3_{seconds}s')
            paths = []
            for i in range(args.files):
                path = os.path.join(folder, f'{i:02d}', f'track_{seconds}_{i}.mp3')
                os.makedirs(os.path.dirname(path), exist_ok=True)
                soundfile.write(path, music(seconds, seed=i), 44100, format='MP3', subtype='MPEG_LAYER_III')
                paths.append(path)
            rows, mean_db, p999_db, backends = compare(paths)
            print(f'{seconds} s tracks: soundfile {np.mean(rows["soundfile"]):.2f} s/file, '
                  f'audioread ({", ".join(backends)}) '
                  f'{np.mean(rows["audioread"]):.2f} s/file; mel difference mean {mean_db:.4f} dB, '
                  f'99.9th percentile {p999_db:.3f} dB')
            mp3_size = sum(os.path.getsize(p) for p in paths) / len(paths)
            for window in ([None, 30] if seconds > 30 else [None]):
                per_track, total, size = step0_cost(paths, work, args.workers, window)
                print(f'step 0 ({args.workers} workers, float16, {"whole track" if window is None else "middle 30 s"}) '
                      f'on {len(paths)} x {seconds} s MP3 ({mp3_size / 1e6:.2f} MB each): {total:.1f} s in all, '
                      f'{per_track:.2f} s per track once started; {size / 1e6:.2f} MB of spectrogram per track -> '
                      f'per 1,000 tracks {per_track * 1000 / 60:.0f} min, {size * 1000 / 1e9:.2f} GB')
    finally:
        if args.out is None:
            shutil.rmtree(work)
    return 0


if __name__ == '__main__':
    sys.exit(main())
