"""Step 0: audio files -> log-mel spectrograms in the layout the training code reads.

    python -u step0_mel_spectrogram.py run AUDIO_DIR DATA_PATH [--workers N] [--float16] [--max_seconds S]
                                           [--sr 22050] [--n_fft 1024] [--hop 512] [--n_mels 128]

Every .wav/.flac/.ogg/.mp3 file under AUDIO_DIR (recursively; the file stem is the track id, e.g.
TRAAAAW128F429D538.mp3) becomes DATA_PATH/spec/A/B/C/ID.npy: a (n_mels, T) float32 array (float16 with
--float16), T = 1 + n_samples // hop. A, B, C = ID[2], ID[3], ID[4] for MSD ids, as the released data; three
hex digits of the id's MD5 for any other id (preprocess_utils.spec_path). When DATA_PATH holds the manifest
that import_dataset.py writes (audio_manifest.tsv: track id -> path under AUDIO_DIR, e.g. track_0000215 ->
15/215.mp3), exactly its files are converted, under its track ids; a listed file that is missing stops the
run before any work. --max_seconds S keeps only the middle S seconds of longer files (and decodes only those).

Exactly what is computed (the original README's parameters):
  y = librosa.load(path, sr=22050, mono=True)            # soundfile decode, soxr_hq resampling
  S = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=1024, hop_length=512, window='hann',
                                     n_mels=128)          # power 2, center=True, Slaney mel, fmax=sr/2
  X = librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=None)   # = 10 * log10(max(S, 1e-10))
The original's spectrogram code is not public; this log is the one of torchaudio's AmplitudeToDB that
the original author's short-chunk CNN code uses (10*log10 of power, amin 1e-10, no top_db clipping).

Resumable: an existing ID.npy is skipped; each file is written to a temporary '.ID.npy.partial-PID'
beside it and renamed, so an interrupted run never leaves a truncated spectrogram (and the temporary
files of killed runs are removed by the next). Files that cannot be decoded are listed at the end with
their error while all others are done; the exit code is then 1 (2 for bad arguments, and for a full or
read-only disk, which stops the run: finished spectrograms are kept). Files that decode far shorter than
their header states (truncated downloads) are kept and listed as SHORT. Killing this process stops its
workers too. A summary is written to DATA_PATH/step0_report.txt/.json.
"""
import os
import sys

import numpy as np
from tqdm import tqdm

from audio import AUDIO_EXTENSIONS, MANIFEST, MEL_PARAMS, check_mel_settings, find_audio, manifest_audio, run_jobs
from cli_args import positive_float
from errors import exit_on_user_error
from errors import UserError
from preprocess_utils import Report, make_cli, remove_stale_partials, require_output_dir, spec_path

def audio_files(audio_dir, data_path):
    """[(track id, path)]: the manifest's when DATA_PATH has one, else every audio file by its stem."""
    manifest = os.path.join(data_path, MANIFEST)
    if os.path.isfile(manifest):
        print(f'track ids and files from {manifest}', flush=True)
        return manifest_audio(audio_dir, manifest)
    paths = find_audio(audio_dir)
    if not paths:
        raise UserError(f'no {"/".join(AUDIO_EXTENSIONS)} files under {audio_dir} '
                        '(pass the folder that holds the audio)')
    return [(os.path.splitext(os.path.basename(path))[0], path) for path in paths]


def run(audio_dir, data_path, workers=None, float16=False, max_seconds=None, **mel_params):
    if not os.path.isdir(audio_dir):
        raise UserError(f'AUDIO_DIR {audio_dir} is not a directory (pass the folder that holds the audio files)')
    mel_params = {**MEL_PARAMS, **mel_params, **({'max_seconds': max_seconds} if max_seconds else {})}
    check_mel_settings(mel_params['sr'], mel_params['n_fft'], mel_params['n_mels'])
    report = Report('step0')
    files = audio_files(audio_dir, data_path)
    require_output_dir(data_path, 'DATA_PATH')
    paths = [path for _, path in files]
    remove_stale_partials(os.path.join(data_path, 'spec'))  # left by a process killed mid-write

    jobs, failures, duplicates, done_before, seen = [], [], [], 0, set()
    dtype = np.float16 if float16 else np.float32
    for track_id, path in files:
        if track_id in seen:  # one spectrogram per id: the first path in sorted order wins
            duplicates.append(path)
            continue
        seen.add(track_id)
        try:
            out_path = spec_path(data_path, track_id)
        except ValueError as error:
            failures.append((path, str(error)))
            continue
        if os.path.isfile(out_path) and os.path.getsize(out_path) > 0:  # a zero-byte file is not done: recompute
            done_before += 1
        else:
            jobs.append((path, out_path, mel_params, dtype))
    report.log(f'audio files found: {len(paths)}; already done (skipped): {done_before}; '
               f'to compute: {len(jobs)}; duplicate ids ignored: {len(duplicates)}',
               found=len(paths), skipped_existing=done_before, to_compute=len(jobs),
               duplicate_ids=duplicates)

    computed, short = 0, {}
    with tqdm(total=len(jobs), desc='mel spectrograms', unit='file') as progress:
        for path, error in run_jobs(jobs, workers or os.cpu_count(), notes=short):
            if error:
                failures.append((path, error))
            else:
                computed += 1
            progress.update()
    failures.sort()
    report.log(f'computed: {computed}; failed: {len(failures)}', computed=computed,
               failed=[{'path': p, 'error': e} for p, e in failures],
               mel_params=mel_params, dtype=np.dtype(dtype).name)
    for path, error in failures:
        report.log(f'FAILED {path}: {error}')
    report_short(report, short)
    report.save(data_path)
    return 1 if failures else 0


def report_short(report, short):
    """A loud warning, one line a file, for audio decoded far shorter than its header states."""
    if short:
        report.log(f'warning: {len(short)} file(s) decoded far shorter than their header states; their '
                   'spectrograms cover only what decoded (re-download them, delete their .npy and rerun):',
                   short={p: short[p] for p in sorted(short)})
    for path in sorted(short):
        report.log(f'SHORT {path}: {short[path]}')


@exit_on_user_error
def main(argv=None):
    parser, run_parser = make_cli(__doc__)
    run_parser.add_argument('audio_dir', help='folder searched recursively for audio files')
    run_parser.add_argument('data_path', help='spectrograms go to DATA_PATH/spec/A/B/C/ID.npy')
    run_parser.add_argument('--workers', type=int, default=os.cpu_count(), help='parallel processes')
    run_parser.add_argument('--float16', action='store_true', help='store float16 (half the disk)')
    run_parser.add_argument('--max_seconds', type=positive_float, default=None,
                            help='keep only the middle S seconds of longer tracks (default: the whole track)')
    run_parser.add_argument('--sr', type=int, default=MEL_PARAMS['sr'], help='sampling rate (Hz) after resampling')
    run_parser.add_argument('--n_fft', type=int, default=MEL_PARAMS['n_fft'], help='FFT / Hann window length')
    run_parser.add_argument('--hop', type=int, default=MEL_PARAMS['hop_length'], help='hop size in samples')
    run_parser.add_argument('--n_mels', type=int, default=MEL_PARAMS['n_mels'], help='number of mel bands')
    args = parser.parse_args(argv)
    for name in ('workers', 'sr', 'n_fft', 'hop', 'n_mels'):
        if getattr(args, name) < 1:
            raise UserError(f'--{name} must be a positive integer, got {getattr(args, name)}')
    return run(args.audio_dir, args.data_path, workers=args.workers, float16=args.float16, max_seconds=args.max_seconds,
               sr=args.sr, n_fft=args.n_fft, hop_length=args.hop, n_mels=args.n_mels)


if __name__ == '__main__':
    sys.exit(main())
