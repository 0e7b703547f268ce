"""Every bad input of TRAIN, TEST and step 0 ends in one `error:` line, exit code 2, no traceback and no partial
file; outputs on a full disk too (a small tmpfs, where this machine lets the test mount one), with what was
finished before kept whole. Killing step 0 stops its workers."""
import contextlib
import errno
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile
import torch

import main as cli
import step0_mel_spectrogram
from synthetic_data import write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ['--n_channels', '8', '--batch_size', '16', '--epoch_size', '32', '--num_chunk', '2', '--logger', 'none']


def run(*argv):
    return cli.main(cli.build_parser().parse_args([str(a) for a in argv]))


def partial_files(*roots):
    return [os.path.join(d, f) for root in roots for d, _, files in os.walk(root) for f in files if '.partial' in f]


def expect_one_error(capsys, call, fragment, code=2):
    """call() exits with `code` after exactly one line holding `error:` (argparse's usage lines aside)."""
    with pytest.raises(SystemExit) as e:
        call()
    err = capsys.readouterr().err
    assert e.value.code == code, err[-3000:]
    assert 'Traceback' not in err, err[-3000:]
    error_lines = [line for line in err.replace('\r', '\n').splitlines() if 'error:' in line]
    assert len(error_lines) == 1, err[-3000:]
    assert fragment in error_lines[0], error_lines[0]
    return error_lines[0]


@contextlib.contextmanager
def tmpfs(path, size, read_only=False):
    """A small file system at `path`; skips the test where this machine cannot mount one (not root, no tmpfs)."""
    os.makedirs(path, exist_ok=True)
    options = f'size={size}' + (',ro' if read_only else '')
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)], capture_output=True,
                             text=True) if hasattr(os, 'geteuid') and os.geteuid() == 0 else None
    if mounted is None or mounted.returncode:
        pytest.skip('cannot mount a tmpfs here (needs root and tmpfs): '
                    + (mounted.stderr.strip() if mounted is not None else 'not root'))
    try:
        yield str(path)
    finally:
        subprocess.run(['umount', '-l', str(path)], check=True)


def fill(folder, leave_bytes):
    """Fill the file system of `folder` until `leave_bytes` are free (to a page)."""
    filler = os.path.join(folder, 'filler')
    with open(filler, 'wb') as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b'\0' * 65536)
                f.flush()
    with open(filler, 'wb') as f:
        f.write(b'\0' * 4096)
    stats = os.statvfs(folder)
    os.truncate(filler, 4096 + stats.f_bavail * stats.f_frsize - leave_bytes)


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture()
def data(tmp_path):
    root = tmp_path / 'data'
    write_dataset(str(root), n_songs=40)
    return root


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A tiny spec model trained once: its folder, and the size of one checkpoint."""
    root = tmp_path_factory.mktemp('trained')
    write_dataset(str(root / 'data'), n_songs=40)
    result = run('--data_path', root / 'data', '--model_save_path', root / 'ck', '--n_epochs', 1, *FAST)
    return root, result, os.path.getsize(result.last_model_path)


def spec_file(root, split, k=0):
    track = str(np.load(root / f'{split}_ids.npy')[k]).split('//')[1]
    return root / 'spec' / track[2] / track[3] / track[4] / f'{track}.npy'


def set_word_vector(root, tag, value):
    vectors = pickle.load(open(root / 'google_emb.pkl', 'rb'))
    vectors[tag] = np.full_like(vectors[tag], value)
    pickle.dump(vectors, open(root / 'google_emb.pkl', 'wb'))


def set_item_factor(root, row, value):
    cf = np.load(root / 'ix_to_cf.npy')
    cf[row, 0] = value
    np.save(root / 'ix_to_cf.npy', cf)


def drop_first_song_of_tag(root, tag):
    with open(root / 'train_tag_to_ix.pkl', 'rb') as f:
        listed = pickle.load(f)
    listed[tag] = listed[tag][1:]
    with open(root / 'train_tag_to_ix.pkl', 'wb') as f:
        pickle.dump(listed, f)


def set_spec_value(path, value):
    spec = np.load(path)
    spec[3, 5] = value
    np.save(path, spec)


# ---------------------------------------------------------------------------------------------- flag values
FLAG_CASES = [(['--batch_size', '0'], 'argument --batch_size'), (['--batch_size', '-5'], 'argument --batch_size'),
              (['--epoch_size', '0'], 'argument --epoch_size'), (['--n_channels', '0'], 'argument --n_channels'),
              (['--num_chunk', '0'], 'argument --num_chunk'), (['--input_length', '-1'], 'argument --input_length'),
              (['--lr', '-1'], 'argument --lr'), (['--lr', '1e38'], 'a learning rate in (0, 1]'),
              (['--limit_val_batches', '-1'], 'argument --limit_val_batches'),
              (['--num_workers', '-1'], 'argument --num_workers'), (['--precision', 'bogus'], 'argument --precision')]


@pytest.mark.parametrize('argv,fragment', FLAG_CASES, ids=[' '.join(c[0]) for c in FLAG_CASES])
def test_flag_out_of_range(argv, fragment, capsys):
    expect_one_error(capsys, lambda: cli.build_parser().parse_args(argv), fragment)


# ---------------------------------------------------------------------------------------------- bad data
DATA_CASES = {  # name: (break the data folder, extra flags, the error names)
    'zero-byte spectrogram': (lambda r: spec_file(r, 'train').write_bytes(b''), [], 'is empty (0 bytes)'),
    'truncated spectrogram': (lambda r: os.truncate(spec_file(r, 'valid'), 500), [],
                              'is not a readable .npy array'),
    'random bytes as train_ids.npy': (lambda r: (r / 'train_ids.npy').write_bytes(os.urandom(300)), [],
                                      'train_ids.npy is not a readable .npy array (no .npy header'),
    'NaN in a word vector': (lambda r: set_word_vector(r, 'tag02', np.nan), ['--input_type', 'cf'],
                             'word vectors of'),
    'inf in item factors': (lambda r: set_item_factor(r, 7, np.inf), ['--input_type', 'cf'],
                            'item factors of'),
    'NaN in a spectrogram': (lambda r: set_spec_value(spec_file(r, 'train', 3), np.nan), [],
                             'holds NaN or infinite values'),
    'unknown zero-shot tag': (lambda r: (r / 'unseen.txt').write_text('tag01\nkazoo\n'),
                              ['--zeroshot_tags', '{root}/unseen.txt'], 'kazoo are not in tags.npy'),
    'train_tag_to_ix.pkl disagreeing with binaries.npy': (
        lambda r: drop_first_song_of_tag(r, 'tag01'), [], 'disagrees with binaries.npy and train_ids.npy for 1 tag(s): '
        'tag01 ('),
    'train_tag_to_ix.pkl not a dict': (lambda r: (r / 'train_tag_to_ix.pkl').write_bytes(pickle.dumps([1, 2])), [],
                                       'holds a list, expected a dict of tag'),
    'extreme word vectors: the loss becomes NaN': (
        lambda r: set_word_vector(r, 'tag00', 3e38), ['--input_type', 'cf', '--lr', '1e-3'],
        'the training loss became nan at step 0'),
}


def expect_train_refused(case, data, tmp_path, capsys):
    """case: (break the data folder, extra flags, the error names); TRAIN into tmp_path/ck stops with that line."""
    corrupt, extra, fragment = case
    corrupt(data)
    extra = [a.format(root=data) for a in extra]
    out = tmp_path / 'ck'
    expect_one_error(capsys, lambda: run('--data_path', data, '--model_save_path', out, '--n_epochs', 1, *FAST,
                                         *extra), fragment)
    assert not partial_files(data, tmp_path)


@pytest.mark.parametrize('name', list(DATA_CASES))
def test_bad_data_for_train(name, data, tmp_path, capsys):
    expect_train_refused(DATA_CASES[name], data, tmp_path, capsys)


def test_spectrograms_found_sound_are_not_read_again_until_one_changes(data):
    """At MSD scale the full read takes minutes: a set of files already found sound is skipped by its paths, sizes
    and modification times; a file written since is read again."""
    from errors import UserError
    from data_checks import SPECTROGRAMS_CHECKED, refuse_bad_spectrograms
    ids = [str(e).split('//', 1)[1] for e in np.load(data / 'train_ids.npy')]
    refuse_bad_spectrograms(str(data), ids)
    assert len((data / SPECTROGRAMS_CHECKED).read_text().split()) == 1
    path = spec_file(data, 'train', 3)
    before = os.stat(path)
    set_spec_value(path, np.nan)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and time: taken as already checked
    refuse_bad_spectrograms(str(data), ids)
    os.utime(path)  # written since the check: read again
    with pytest.raises(UserError, match=re.escape(f'{path} holds NaN or infinite values')):
        refuse_bad_spectrograms(str(data), ids)


LIGHTNING_CASES = [(['--strategy', 'bogus'], "invalid strategy name: `strategy='bogus'`"),
                   (['--accelerator', 'bogus'], "invalid accelerator name: `accelerator='bogus'`")]


@pytest.mark.parametrize('argv,fragment', LIGHTNING_CASES, ids=[' '.join(c[0]) for c in LIGHTNING_CASES])
def test_trainer_setting_lightning_refuses(argv, fragment, trained, capsys):
    root, _, _ = trained
    expect_one_error(capsys, lambda: run('--data_path', root / 'data', '--model_save_path', root / 'other',
                                         '--input_type', 'cf', *FAST, *argv), fragment)


# ---------------------------------------------------------------------------------------------- checkpoints
def test_resume_with_another_cnn_width_names_both(trained, capsys):
    root, result, _ = trained
    expect_one_error(capsys, lambda: run('--data_path', root / 'data', '--model_save_path', root / 'ck16',
                                         '--ckpt_path', result.last_model_path, *FAST, '--n_channels', 16),
                     'has a CNN of base width 8 but --n_channels is 16; pass --n_channels 8')


# ---------------------------------------------------------------------------------------------- output places
def test_output_folder_that_is_a_file(trained, tmp_path, capsys):
    root, result, _ = trained
    (tmp_path / 'a_file').write_text('not a folder')
    expect_one_error(capsys, lambda: run('--data_path', root / 'data', '--model_save_path', tmp_path / 'a_file',
                                         '--n_epochs', 1, *FAST), '--model_save_path')
    expect_one_error(capsys, lambda: run('--mode', 'TEST', '--data_path', root / 'data', '--model_load_path',
                                         result.best_model_path, '--result_path', tmp_path / 'a_file' / 'sub', *FAST),
                     'a file stands where a folder is expected')
    expect_one_error(capsys, lambda: run('--mode', 'TEST', '--data_path', root / 'data', '--model_load_path',
                                         result.best_model_path, '--result_path', tmp_path / 'a_file', *FAST),
                     'is a file, not a folder')
    assert (tmp_path / 'a_file').read_text() == 'not a folder'


def test_read_only_output_folders(trained, tmp_path, capsys):
    root, result, _ = trained
    with tmpfs(tmp_path / 'ro', '1m', read_only=True) as ro:
        expect_one_error(capsys, lambda: run('--data_path', root / 'data', '--model_save_path', ro, '--n_epochs', 1,
                                             *FAST), 'the file system is read-only')
        expect_one_error(capsys, lambda: run('--mode', 'TEST', '--data_path', root / 'data', '--model_load_path',
                                             result.best_model_path, '--result_path', ro, *FAST),
                         'the file system is read-only')
        expect_one_error(capsys, lambda: step0_mel_spectrogram.main(['run', str(root / 'data'), ro]),
                         'no .wav/.flac/.ogg/.mp3 files')  # inputs are checked first ...
        audio = write_audio(tmp_path / 'audio', 1)
        expect_one_error(capsys, lambda: step0_mel_spectrogram.main(['run', str(audio), ro, '--workers', '1']),
                         'the file system is read-only')  # ... then the output place, before any work


def test_checkpoint_on_a_full_disk_keeps_the_last_one_whole(trained, tmp_path, capsys):
    """Room for two checkpoints and a half: epoch 0 writes best.ckpt and last.ckpt, epoch 1 runs out of space."""
    root, _, size = trained
    with tmpfs(tmp_path / 'small', str(int(2.5 * size) // 4096 * 4096)) as small:
        expect_one_error(capsys, lambda: run('--data_path', root / 'data', '--model_save_path', small,
                                             '--n_epochs', 3, *FAST), 'the disk is full')
        assert not partial_files(small)
        last = torch.load(os.path.join(small, 'last.ckpt'), weights_only=True)  # whole, and still loads
        assert last['epoch'] == 0
        assert torch.load(os.path.join(small, 'best.ckpt'), weights_only=True)['epoch'] == 0


def test_test_outputs_on_a_full_disk(trained, tmp_path, capsys, monkeypatch):
    """A TEST that runs out of space leaves no summary.json (its mark of completeness) and no partial file; the
    results of an earlier TEST are untouched. The disk fills at per_tag.csv: ENOSPC where a file system with
    delayed allocation reports it, at the flush to disk (tmpfs counts space too loosely for files this small)."""
    import file_io
    root, result, _ = trained
    test = lambda out: run('--mode', 'TEST', '--data_path', root / 'data', '--model_load_path',  # noqa: E731
                           result.best_model_path, '--result_path', out, *FAST)
    first = tmp_path / 'first'
    test(first)
    before = {f: (first / f).read_bytes() for f in os.listdir(first)}
    assert set(before) == {'scores.npy', 'per_tag.csv', 'summary.json'}
    fsync = os.fsync

    def full_at_per_tag(fd):
        if os.readlink(f'/proc/self/fd/{fd}').split('/')[-1].startswith('.per_tag.csv.partial'):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return fsync(fd)
    monkeypatch.setattr(file_io.os, 'fsync', full_at_per_tag)
    for out in (tmp_path / 'second', first):  # a new folder, and the earlier results rewritten
        line = expect_one_error(capsys, lambda: test(out), 'the disk is full')
        assert f'cannot write {out}/per_tag.csv' in line
        assert not (out / 'summary.json').exists() and not partial_files(tmp_path)
        np.load(out / 'scores.npy')  # whole
    assert before['per_tag.csv'] == (first / 'per_tag.csv').read_bytes()  # the earlier one, whole


# ---------------------------------------------------------------------------------------------- step 0
def write_audio(folder, n, seconds=3.0, sr=22050, ext='wav'):
    os.makedirs(folder, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    for i in range(n):
        soundfile.write(os.path.join(folder, f'TRAB{i:02d}CD12345678901.{ext}'),
                        (0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t)).astype(np.float32), sr)
    return folder


def truncate_to_third(path):
    payload = open(path, 'rb').read()
    open(path, 'wb').write(payload[:len(payload) // 3])


def test_step0_bad_places_and_settings(tmp_path, capsys):
    audio = write_audio(tmp_path / 'audio', 2)
    (tmp_path / 'a_file').write_text('x')
    expect_one_error(capsys, lambda: step0_mel_spectrogram.main(['run', str(audio), str(tmp_path / 'a_file')]),
                     'DATA_PATH')
    expect_one_error(capsys, lambda: step0_mel_spectrogram.main(['run', str(audio), str(tmp_path / 'out'),
                                                                 '--n_fft', '64']),
                     '--n_fft 64 at --sr 22050 leaves 72 of the 128 mel bands empty')
    assert not os.path.exists(tmp_path / 'out')  # refused before any work


def test_step0_on_a_full_disk_keeps_what_it_finished(tmp_path, capsys):
    audio = write_audio(tmp_path / 'audio', 3)  # 3 s: a spectrogram of 128 x 130 float32, about 66 KB
    with tmpfs(tmp_path / 'small', '100k') as small:
        line = expect_one_error(capsys, lambda: step0_mel_spectrogram.main(['run', str(audio), small,
                                                                            '--workers', '1']), 'the disk is full')
        assert 'spec' in line and not partial_files(small)
        done = [os.path.join(d, f) for d, _, files in os.walk(small) for f in files]
        assert len(done) == 1 and np.load(done[0]).shape == (128, 130)


def test_step0_names_what_is_wrong_with_each_file(tmp_path, capsys):
    """A bad file among good ones is reported by name and reason while the others are done (exit 1); a file
    decoded far shorter than its header states is kept and listed as SHORT."""
    audio = write_audio(tmp_path / 'audio', 1)
    (tmp_path / 'audio' / 'TRTEXT0123456789.mp3').write_text('these are words, not audio\n' * 40)
    write_audio(tmp_path / 'audio', 1, seconds=20, ext='flac')
    os.rename(tmp_path / 'audio' / 'TRAB00CD12345678901.flac', tmp_path / 'audio' / 'TRFLAC0123456789.flac')
    truncate_to_third(tmp_path / 'audio' / 'TRFLAC0123456789.flac')
    code = step0_mel_spectrogram.main(['run', str(audio), str(tmp_path / 'out'), '--workers', '1'])
    out = capsys.readouterr().out
    assert code == 1 and 'Traceback' not in out
    assert 'FAILED' in out and 'TRTEXT0123456789.mp3: not a decodable MP3 file: no audio found in it' in out
    assert 'TRFLAC0123456789.flac: LibsndfileError' in out and 'lost sync' in out

    write_audio(tmp_path / 'mp3', 1, seconds=20, ext='mp3')
    truncate_to_third(tmp_path / 'mp3' / 'TRAB00CD12345678901.mp3')
    code = step0_mel_spectrogram.main(['run', str(tmp_path / 'mp3'), str(tmp_path / 'out_mp3'), '--workers', '1'])
    out = capsys.readouterr().out
    assert code == 0
    assert 'SHORT' in out and 'TRAB00CD12345678901.mp3: decoded' in out and 'of the 20.0 s its header states' in out


def alive_children(pid):
    children = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                fields = open(f'/proc/{entry}/stat').read().rsplit(')', 1)[1].split()
                if int(fields[1]) == pid and fields[0] != 'Z':
                    children.append(int(entry))
    return children


SLOW_POOL = """
import sys, time
sys.path.insert(0, {root!r})
from workers import worker_pool
with worker_pool(2) as pool:
    pool.map(time.sleep, [60, 60], chunksize=1)
"""


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc; PR_SET_PDEATHSIG is Linux only')
def test_killing_the_parent_stops_its_workers():
    """The pool of step 0 (and of make_demo_data.py): SIGKILL the parent while both workers are busy for a minute;
    they must be gone within 2 s, where orphans would finish their task first."""
    process = subprocess.Popen([sys.executable, '-c', SLOW_POOL.format(root=ROOT)])
    deadline = time.time() + 60
    while len(workers := alive_children(process.pid)) < 2:
        assert process.poll() is None and time.time() < deadline, 'the pool never started'
        time.sleep(0.05)
    time.sleep(0.5)  # the workers are inside their task
    left = kill_and_find_orphans(process, workers, 2)
    assert not left, f'workers {left} outlived their killed parent'


def kill_and_find_orphans(process, children, wait_s):
    """SIGKILL `process`; the children still alive (not zombies) after wait_s, killed so none is left behind."""
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.time() + wait_s
    while (left := [c for c in children if os.path.exists(f'/proc/{c}') and
                    open(f'/proc/{c}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z']) and time.time() < deadline:
        time.sleep(0.1)
    for orphan in left:  # do not leave them behind when the test fails
        os.kill(orphan, signal.SIGKILL)
    return left


def test_step3_refuses_non_finite_item_factors(tmp_path, capsys):
    import step3_taste_profile
    info = write_dataset(str(tmp_path / 'data'), n_songs=40)
    factors = np.ones((40, 4), np.float32)
    factors[5, 2] = np.nan
    np.save(tmp_path / 'factors.npy', factors)
    (tmp_path / 'index.tsv').write_text('\n'.join(info['ids']) + '\n')
    before = (tmp_path / 'data' / 'ix_to_cf.npy').read_bytes()
    expect_one_error(capsys, lambda: step3_taste_profile.main(['run', str(tmp_path / 'data'), '--factors_path',
                                                               str(tmp_path / 'factors.npy'), '--index_path',
                                                               str(tmp_path / 'index.tsv')]),
                     f'holds NaN or infinite values in 1 row(s) (first: row 5, track {info["ids"][5]})')
    assert (tmp_path / 'data' / 'ix_to_cf.npy').read_bytes() == before


def test_step2_with_a_truncated_word2vec_file(tmp_path, capsys):
    """A download cut short: gensim's EOFError becomes one line naming the file and the flag."""
    import step2_word_embedding
    from gensim.models import KeyedVectors
    vectors = KeyedVectors(8)
    vectors.add_vectors([f'word{i}' for i in range(200)], np.random.default_rng(0).standard_normal((200, 8)))
    whole = tmp_path / 'vectors.bin'
    vectors.save_word2vec_format(str(whole), binary=True)
    cut = tmp_path / 'cut.bin'
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    np.save(tmp_path / 'tags.npy', np.array(['word1', 'word2']))
    expect_one_error(capsys, lambda: step2_word_embedding.main(['run', str(tmp_path), '--google_path', str(cut),
                                                                '--music_path', str(tmp_path / 'none.model')]),
                     f'{cut} is not a complete word2vec file')


def test_killing_experiments_stops_its_training_child(data, tmp_path):
    """experiments.py killed with SIGKILL while a TRAIN child runs: the child goes too, so a rerun never trains
    beside an orphan writing into the same run folder."""
    command = [sys.executable, os.path.join(ROOT, 'experiments.py'), '--data_path', str(data), '--out',
               str(tmp_path / 'out'), '--configs', 'random', '--seeds', '0', '--mlflow_uri',
               f'sqlite:///{tmp_path}/mlruns.db', '--extra', '--n_channels 8 --batch_size 16 --epoch_size 64 '
               '--n_epochs 50 --num_chunk 2']
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (children := alive_children(process.pid)):
        assert process.poll() is None and time.time() < deadline, 'experiments.py never started TRAIN'
        time.sleep(0.1)
    left = kill_and_find_orphans(process, children, 5)
    assert not left, f'TRAIN {left} outlived its killed experiments.py'
