"""Audio -> log-mel spectrograms exactly as step 0 computes them, shared by step 0, the search index and the
Python API: decoding, the mel computation, per-file error descriptions, and a pool of converters.

    from audio import compute_mel, MEL_PARAMS
    mel = compute_mel('song.mp3')                # (128, T) float32, T = 1 + n_samples // 512

The computation: y = librosa.load(path, sr=22050, mono=True); S = melspectrogram(y, n_fft=1024, hop_length=512,
window='hann', n_mels=128); X = 10 * log10(max(S, 1e-10)) (step0_mel_spectrogram.py's docstring says why).
"""
import os
import warnings

import numpy as np

from errors import UserError
from file_io import atomic_save_npy, write_error
from workers import worker_pool

AUDIO_EXTENSIONS = ('.wav', '.flac', '.ogg', '.mp3')
MANIFEST = 'audio_manifest.tsv'  # DATA_PATH's track -> audio file table, written by import_dataset.py
MEL_PARAMS = {'sr': 22050, 'n_fft': 1024, 'hop_length': 512, 'n_mels': 128}
SHORT_FRACTION = 0.9  # decoded audio below this share of the header's duration is reported


def compute_mel(path_or_audio, sr=22050, n_fft=1024, hop_length=512, n_mels=128, max_seconds=None):
    """Log-mel spectrogram (n_mels, T) float32 of an audio file, or of a mono waveform already at `sr`. With
    max_seconds, only the middle max_seconds of a longer file are decoded."""
    import librosa  # lazy: librosa's import is slow and only the workers need it

    if isinstance(path_or_audio, (str, os.PathLike)):
        stated = header_duration(path_or_audio) if max_seconds else None
        offset = max(0.0, (stated - max_seconds) / 2) if stated else 0.0
        with warnings.catch_warnings():  # librosa warns before its audioread fallback; errors are reported
            warnings.simplefilter('ignore')
            audio, _ = librosa.load(path_or_audio, sr=sr, mono=True, offset=offset, duration=max_seconds)
    else:
        audio = np.asarray(path_or_audio, dtype=np.float32)
    if audio.size == 0:
        raise ValueError('no audio samples')
    if not np.isfinite(audio).all() or np.abs(audio).max() > MAX_SAMPLE:
        # a NaN, inf or absurd sample (1e30: power overflows) would give a NaN or -inf spectrogram, then embedding
        raise ValueError(f'{int((~np.isfinite(audio)).sum())} samples are NaN or infinite and the largest magnitude '
                         f'is {np.nanmax(np.abs(np.where(np.isfinite(audio), audio, 0))):.3g}; expected finite samples '
                         f'of at most {MAX_SAMPLE:g} (full scale is 1)')
    power = librosa.feature.melspectrogram(y=audio, sr=sr, n_fft=n_fft, hop_length=hop_length,
                                           window='hann', n_mels=n_mels)
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None).astype(np.float32)


def describe_error(path, error):
    """Why a file could not be decoded, in words. librosa's final error (from its audioread fallback) is often a
    bare NoBackendError; soundfile's own reading error names the fault ("flac decoder lost sync")."""
    try:
        import soundfile
        with soundfile.SoundFile(path) as f:
            f.read(frames=1 << 22, dtype='float32')
    except Exception as decode_error:
        message = str(decode_error)
        if 'does not exist' in message and os.path.isfile(path):  # libsndfile's words for "no audio in it"
            return f'not a decodable {os.path.splitext(path)[1].lstrip(".").upper()} file: no audio found in it'
        return f'{type(decode_error).__name__}: {message}'
    return f'{type(error).__name__}: {error}' if str(error) else f'{type(error).__name__} (cannot be decoded)'


def header_duration(path):
    """Duration in seconds that the file's header states, or None when it states none."""
    try:
        import soundfile
        info = soundfile.info(path)
        return info.frames / info.samplerate if info.frames > 0 and info.samplerate > 0 else None
    except Exception:
        return None


def shortfall(path, n_frames, sr, hop_length, max_seconds=None):
    """A note when the decoded audio is far shorter than the header says (a truncated download), else None."""
    stated, decoded = header_duration(path), (n_frames - 1) * hop_length / sr
    if stated is not None and max_seconds:
        stated = min(stated, max_seconds)
    if stated is not None and decoded < SHORT_FRACTION * stated and stated - decoded > hop_length / sr:
        return f'decoded {decoded:.1f} s of the {stated:.1f} s its header states (truncated file?)'
    return None


def convert(job):
    """Worker: one audio file -> one .npy. Returns (audio_path, decoding error, write error, note)."""
    audio_path, out_path, mel_params, dtype = job
    try:
        mel = compute_mel(audio_path, **mel_params)
    except Exception as error:
        return audio_path, describe_error(audio_path, error), None, None
    try:
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        atomic_save_npy(out_path, mel.astype(dtype))
    except OSError as error:
        return audio_path, None, str(write_error(out_path, error)), None
    except UserError as error:
        return audio_path, None, str(error), None
    return audio_path, None, None, shortfall(audio_path, mel.shape[1], mel_params.get('sr', MEL_PARAMS['sr']),
                                             mel_params.get('hop_length', MEL_PARAMS['hop_length']),
                                             mel_params.get('max_seconds'))


def run_jobs(jobs, workers, notes=None):
    """(path, error) per job, in completion order; in-process when one worker is enough. A failed write (full
    or read-only disk) stops everything with one UserError; notes on finished files go to `notes` (a dict)."""
    def outcomes(results):
        for path, error, write_failure, note in results:
            if write_failure:
                raise UserError(write_failure)
            if note and notes is not None:
                notes[path] = note
            yield path, error

    if workers == 1 or len(jobs) <= 1:
        yield from outcomes(map(convert, jobs))
        return
    with worker_pool(min(workers, len(jobs))) as pool:  # workers end with the block, and die with this process
        yield from outcomes(pool.imap_unordered(convert, jobs, chunksize=1))


MAX_SAMPLE = 1e4  # 80 dB above full scale: no real recording, but float WAVs may exceed 1 a little
MAX_N_FFT = 2 ** 16  # a 3 s window at 22050 Hz: beyond any mel spectrogram's use
MAX_SR = 192000


def check_mel_settings(sr, n_fft, n_mels):
    """Refuse settings whose FFT is too short for the mel bands (some bands would hold no frequency bin), or so
    long, or at a rate so high, that one track's arrays take gigabytes (the mel filter bank alone is
    n_mels x (n_fft / 2 + 1) floats)."""
    import librosa
    if n_fft > MAX_N_FFT:
        bank = n_mels * (n_fft // 2 + 1) * 4  # float32 filter bank; the STFT of a track grows with n_fft as well
        raise UserError(f'--n_fft {n_fft} (a window of {n_fft / sr:.1f} s) would allocate {bank / 1e9:.2f} GB for the '
                        f'mel filter bank alone; use at most {MAX_N_FFT} (the default is {MEL_PARAMS["n_fft"]})')
    if sr > MAX_SR:
        raise UserError(f'--sr {sr} Hz is above {MAX_SR} Hz, the highest rate of real audio files; use the default '
                        f'{MEL_PARAMS["sr"]}')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        empty = int((librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels).max(axis=1) == 0).sum())
    if empty:
        raise UserError(f'--n_fft {n_fft} at --sr {sr} leaves {empty} of the {n_mels} mel bands empty (too few frequency '
            f'bins); raise --n_fft (the default is {MEL_PARAMS["n_fft"]}) or lower --n_mels')


def read_manifest(path):
    """[(track id, audio path relative to AUDIO_DIR)] from a manifest: header "track_id<TAB>path", then one line a
    track."""
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    if not lines or lines[0] != 'track_id\tpath':
        raise UserError(f'{path} does not start with the header "track_id<TAB>path"; rewrite it with '
                        'import_dataset.py or delete it to name spectrograms by file name')
    entries = [line.split('\t') for line in lines[1:] if line]
    bad = next((n for n, entry in enumerate(entries, 2) if len(entry) != 2 or not all(entry)), None)
    if bad is not None:
        raise UserError(f'{path} line {bad}: {lines[bad - 1]!r} is not "track_id<TAB>path"; rewrite it with '
                        'import_dataset.py')
    return [tuple(entry) for entry in entries]


def manifest_audio(audio_dir, manifest):
    """[(track id, audio path)] of a manifest, every file checked: a missing one is an error naming it."""
    pairs = [(track_id, os.path.join(audio_dir, rel)) for track_id, rel in read_manifest(manifest)]
    missing = [path for _, path in pairs if not os.path.isfile(path)]
    if missing:
        raise UserError(f'{len(missing)} of the {len(pairs)} audio files that {manifest} lists are not there (first: '
                        f'{missing[0]}); pass the folder the audio was extracted to as AUDIO_DIR, or re-import with '
                        '--audio_dir DIR --drop_missing to leave those tracks out')
    return pairs


def find_audio(audio_dir):
    paths = []
    for directory, _, files in os.walk(audio_dir):
        paths.extend(os.path.join(directory, f) for f in files
                     if f.lower().endswith(AUDIO_EXTENSIONS) and not f.startswith('.'))
    return sorted(paths)
