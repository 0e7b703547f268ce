"""Step 0: audio files -> log-mel spectrograms in the layout the training code reads.

    python -u step0_mel_spectrogram.py run AUDIO_DIR DATA_PATH [--workers N] [--float16] [--max_seconds S]
                                           [--sr 22050] [--n_fft 1024] [--hop 512] [--n_mels 128]
    python -u step0_mel_spectrogram.py run AUDIO_DIR DATA_PATH --shard K/N   # machine K of N (e.g. a SLURM array)
    python -u step0_mel_spectrogram.py run AUDIO_DIR DATA_PATH --check [N]   # what is still missing, by shard

Every .wav/.flac/.ogg/.mp3 file under AUDIO_DIR (recursively; the file stem is the track id, e.g.
TRAAAAW128F429D538.mp3) becomes DATA_PATH/spec/A/B/C/ID.npy: a (n_mels, T) float32 array (float16 with
--float16), T = 1 + n_samples // hop. A, B, C = ID[2], ID[3], ID[4] for MSD ids, as the released data; three
hex digits of the id's MD5 for any other id (file_io.spec_path). When DATA_PATH holds the manifest
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

Across machines: `--shard K/N` (0 <= K < N) computes only the files whose track id hashes (SHA-1) to K modulo N,
into the shared DATA_PATH/spec/ (a stable hash: adding files later does not move finished work to another shard);
its report is DATA_PATH/shardKofN_step0_report.txt/.json. The N shards together write exactly the files of one run.
`--check` computes nothing: it lists the spectrograms still missing (with the shard of each when N is given) and
exits 1 if any is missing; a plain rerun without --shard computes them.
"""
import hashlib
import os
import re
import sys
from collections import Counter

import numpy as np
from tqdm import tqdm

from audio import AUDIO_EXTENSIONS, MANIFEST, MEL_PARAMS, check_mel_settings, find_audio, manifest_audio, run_jobs
from cli_args import positive_float
from errors import exit_on_user_error
from errors import UserError
from file_io import remove_stale_partials, require_output_dir, spec_path
from steps import Report, make_cli

def parse_shard(value):
    """'K/N' -> (K, N) with 0 <= K < N; anything else is a UserError naming the value."""
    match = re.fullmatch(r'\s*(\d+)\s*/\s*(\d+)\s*', value)
    if not match:
        raise UserError(f'--shard {value!r}: expected K/N, this machine\'s index K (0 to N-1) of N shards, '
                        'e.g. --shard 0/4 (in a SLURM array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)')
    index, count = int(match[1]), int(match[2])
    if count < 1:
        raise UserError(f'--shard {value}: the number of shards N must be at least 1, e.g. --shard 0/4')
    if index >= count:
        raise UserError(f'--shard {value}: K must be between 0 and N-1 = {count - 1}, e.g. --shard {count - 1}/{count}')
    return index, count


def shard_of(track_id, count):
    """The shard (0..count-1) of a track: SHA-1 of its id, so the same on every machine and in every run
    (Python's hash() is salted per process), and independent of which other files exist."""
    return int.from_bytes(hashlib.sha1(track_id.encode('utf-8')).digest()[:8], 'big') % count


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


def plan_jobs(files, data_path, mel_params, dtype):
    """(jobs still to compute, [(path, why unusable)], duplicate paths, how many are done already)."""
    jobs, failures, duplicates, done_before, seen = [], [], [], 0, set()
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
    return jobs, failures, duplicates, done_before


def run(audio_dir, data_path, workers=None, float16=False, max_seconds=None, shard=None, check=None,
        **mel_params):
    if not os.path.isdir(audio_dir):
        raise UserError(f'AUDIO_DIR {audio_dir} is not a directory (pass the folder that holds the audio files)')
    mel_params = {**MEL_PARAMS, **mel_params, **({'max_seconds': max_seconds} if max_seconds else {})}
    check_mel_settings(mel_params['sr'], mel_params['n_fft'], mel_params['n_mels'])
    report = Report('step0')
    every = audio_files(audio_dir, data_path)
    if check is None:
        require_output_dir(data_path, 'DATA_PATH')
        remove_stale_partials(os.path.join(data_path, 'spec'), owned=in_shard(shard))  # left by a killed process
    files = [(track_id, path) for track_id, path in every if in_shard(shard)(track_id)]
    paths = [path for _, path in files]
    if shard:
        report.log(f'shard {shard[0]}/{shard[1]}: {len(files)} of the {len(every)} audio files hash to it',
                   shard=shard)

    dtype = np.float16 if float16 else np.float32
    jobs, failures, duplicates, done_before = plan_jobs(files, data_path, mel_params, dtype)
    report.log(f'audio files found: {len(paths)}; already done (skipped): {done_before}; '
               f'to compute: {len(jobs)}; duplicate ids ignored: {len(duplicates)}',
               found=len(paths), skipped_existing=done_before, to_compute=len(jobs),
               duplicate_ids=duplicates)
    if check is not None:  # N of --check N, else that of --shard K/N (0: no shard named)
        return report_missing(report, jobs, failures, check or (shard[1] if shard else 0))

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
    report.save(data_path, prefix=f'shard{shard[0]}of{shard[1]}_' if shard else '')
    return 1 if failures else 0


def in_shard(shard):
    """Predicate on track ids (or on spectrogram file names ID.npy): does this run own it? All, without --shard."""
    if shard is None:
        return lambda name: True
    return lambda name: shard_of(name[:-4] if name.endswith('.npy') else name, shard[1]) == shard[0]


def report_missing(report, jobs, failures, count):
    """--check: the spectrograms not yet written (and the shard of each for --check N); 1 if any, else 0."""
    missing = sorted((os.path.splitext(os.path.basename(path))[0], path) for path, *_ in jobs)
    for track_id, path in missing:
        where = f' (shard {shard_of(track_id, count)}/{count})' if count else ''
        report.log(f'MISSING {track_id}{where}: {path}')
    by_shard = Counter(shard_of(track_id, count) for track_id, _ in missing) if count else {}
    summary = ', '.join(f'shard {k}/{count}: {n}' for k, n in sorted(by_shard.items()))
    report.log(f'check: {len(missing)} spectrogram(s) missing' + (f' ({summary})' if summary else '') +
               (f'; {len(failures)} track id(s) unusable' if failures else ''))
    return 1 if missing or failures else 0


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
    run_parser.add_argument('--shard', default=None, metavar='K/N',
                            help='compute only shard K of N (0 <= K < N), chosen by a stable hash of the track id')
    run_parser.add_argument('--check', nargs='?', type=int, const=0, default=None, metavar='N',
                            help='compute nothing; list the missing spectrograms (with their shard of N)')
    args = parser.parse_args(argv)
    shard = parse_shard(args.shard) if args.shard is not None else None
    if args.check is not None and args.check < 0:
        raise UserError(f'--check {args.check}: pass the number of shards (at least 1), or no number')
    for name in ('workers', 'sr', 'n_fft', 'hop', 'n_mels'):
        if getattr(args, name) < 1:
            raise UserError(f'--{name} must be a positive integer, got {getattr(args, name)}')
    return run(args.audio_dir, args.data_path, workers=args.workers, float16=args.float16, max_seconds=args.max_seconds,
               shard=shard, check=args.check, sr=args.sr, n_fft=args.n_fft, hop_length=args.hop, n_mels=args.n_mels)


if __name__ == '__main__':
    sys.exit(main())
