"""Step 0 across machines: `--shard K/N` runs on real audio files (written here, decoded by librosa) together write
exactly what one run writes, a shard killed mid-run resumes on rerun, `--check` lists what is missing by shard, and a
bad --shard is one error line."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

import step0_mel_spectrogram
from step0_mel_spectrogram import shard_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'step0_mel_spectrogram.py')
N_FILES, SECONDS, SR = 12, 40.0, 22050


@pytest.fixture(scope='module')
def audio(tmp_path_factory):
    """12 tracks of 40 s: tones and noise, each different; ids as in the MSD."""
    folder = tmp_path_factory.mktemp('audio')
    rng = np.random.default_rng(3)
    t = np.arange(int(SECONDS * SR)) / SR
    ids = ['TR' + ''.join(rng.choice(list('ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'), 16)) for _ in range(N_FILES)]
    for i, track_id in enumerate(ids):
        signal_ = 0.3 * np.sin(2 * np.pi * (110 + 37 * i) * t) + 0.05 * rng.standard_normal(len(t))
        soundfile.write(str(folder / f'{track_id}.wav'), signal_.astype(np.float32), SR)
    return folder, ids


def step0(*args, **popen):
    return subprocess.Popen([sys.executable, SCRIPT, 'run', *map(str, args), '--workers', '1'], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def finish(process, timeout=240):
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out


def spec_tree(data_path):
    """{relative path: bytes} of every file under spec/ (temporary files included: there must be none)."""
    root = os.path.join(data_path, 'spec')
    return {os.path.relpath(os.path.join(d, f), root): open(os.path.join(d, f), 'rb').read()
            for d, _, files in os.walk(root) for f in files}


def finished(data_path):
    return [f[:-4] for _, _, files in os.walk(os.path.join(data_path, 'spec')) for f in files
            if f.endswith('.npy') and not f.startswith('.')]


def kill_after_first_file(process, data_path, owned):
    """SIGKILL the shard as soon as its first spectrogram is written: the others are still to do."""
    deadline = time.time() + 180
    while not finished(data_path):
        assert process.poll() is None, process.communicate()[0]
        assert time.time() < deadline, 'the shard wrote nothing in 3 minutes'
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = finished(data_path)
    assert 0 < len(done) < len(owned), f'the kill came too late to interrupt the shard: {done}'
    return done


def test_three_shards_write_what_one_run_writes(audio, tmp_path):
    folder, ids = audio
    by_shard = {k: sorted(t for t in ids if shard_of(t, 3) == k) for k in range(3)}
    assert all(by_shard.values()), f'an empty shard makes a weak test: {by_shard}'
    code, out = finish(step0(folder, tmp_path / 'one'))
    assert code == 0, out
    one = spec_tree(tmp_path / 'one')
    assert len(one) == N_FILES

    sharded = tmp_path / 'sharded'
    killed = step0(folder, sharded, '--shard', '1/3')
    done_before_kill = kill_after_first_file(killed, sharded, by_shard[1])
    started = time.time()
    shards = [step0(folder, sharded, '--shard', f'{k}/3') for k in (0, 2)]  # two machines at once
    for k, process in zip((0, 2), shards):
        code, out = finish(process)
        assert code == 0, out
        assert f'shard {k}/3: {len(by_shard[k])} of the {N_FILES} audio files hash to it' in out
    print(f'shards 0/3 and 2/3 side by side: {time.time() - started:.1f} s')

    code, out = finish(step0(folder, sharded, '--check', '3'))
    missing = sorted(set(by_shard[1]) - set(done_before_kill))
    assert code == 1 and f'check: {len(missing)} spectrogram(s) missing (shard 1/3: {len(missing)})' in out, out
    assert all(f'MISSING {t} (shard 1/3)' in out for t in missing), out
    assert not os.path.exists(sharded / 'step0_report.txt')  # --check wrote nothing

    code, out = finish(step0(folder, sharded, '--shard', '1/3'))  # the killed shard, rerun: it resumes
    assert code == 0, out
    assert f'already done (skipped): {len(done_before_kill)}; to compute: {len(missing)}' in out, out
    assert spec_tree(sharded) == one  # same names, same bytes, no temporary file left by the kill
    code, out = finish(step0(folder, sharded, '--check'))
    assert code == 0 and 'check: 0 spectrogram(s) missing' in out, out
    for k in range(3):
        assert (sharded / f'shard{k}of3_step0_report.json').exists()


def test_shard_of_is_stable_and_balanced():
    """SHA-1 of the id: the same shard in another process with another hash salt (unlike hash()), and about 1/N
    of the ids each."""
    ids = [f'TR{i:016d}' for i in range(3000)]
    counts = np.bincount([shard_of(t, 3) for t in ids], minlength=3)
    assert counts.min() > 900, counts
    code = f'from step0_mel_spectrogram import shard_of; print([shard_of(t, 3) for t in {ids[:50]!r}])'
    for salt in ('1', '2'):
        other = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                               env=dict(os.environ, PYTHONHASHSEED=salt))
        assert other.stdout.strip() == str([shard_of(t, 3) for t in ids[:50]]), other.stderr


@pytest.mark.parametrize('value, fragment', [('3/2', '--shard 3/2: K must be between 0 and N-1 = 1'),
                                             ('0/0', '--shard 0/0: the number of shards N must be at least 1'),
                                             ('x', "--shard 'x': expected K/N")])
def test_bad_shard_is_one_error_line(audio, tmp_path, capsys, value, fragment):
    folder, _ = audio
    with pytest.raises(SystemExit) as stop:
        step0_mel_spectrogram.main(['run', str(folder), str(tmp_path / 'out'), '--shard', value])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith('error: '), captured.err
    assert fragment in lines[0] and 'Traceback' not in captured.err
    assert not os.path.exists(tmp_path / 'out')
