"""search.py on bad input: a damaged or tampered index, an index of the old pickled format, a full disk, an output
place that cannot be written, and a reader that leaves early (`| head`). Each: one `error:` line, exit 2, no
traceback, no temporary file left, and no code run by opening a file."""
import errno
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

import search
import search_store
from search_fixtures import ckpt, index, test_index, words  # noqa: F401 (pytest fixtures)
from synthetic_data import CreatesFile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_error_line(capsys, argv):
    with pytest.raises(SystemExit) as e:
        search.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    errors = [line for line in err.splitlines() if line.startswith('error: ')]  # beside progress bars
    assert 'Traceback' not in err and len(errors) == 1, err
    return errors[0]


@pytest.fixture
def copy_of_index(test_index, tmp_path):
    path = tmp_path / 'idx'
    shutil.copytree(test_index, path)
    return path


def query(path):
    return ['query', '--index_path', str(path), '--query', 'tag01']


@pytest.mark.parametrize('name', ['tracks.npz', 'query_encoder.npz', 'tag_vectors.npz'])
def test_a_pickle_in_the_index_is_refused_without_running_it(copy_of_index, tmp_path, capsys, name):
    marker = tmp_path / 'marker'
    with open(copy_of_index / name, 'wb') as f:  # an .npz whose member is a pickled object array
        np.savez(f, track_ids=np.array([CreatesFile(str(marker))], dtype=object))
    pickle.loads(pickle.dumps(CreatesFile(str(tmp_path / 'control'))))
    assert (tmp_path / 'control').exists()  # the payload works when unpickled
    err = one_error_line(capsys, query(copy_of_index))
    assert name in err and 'search.py index --force' in err, err
    assert not marker.exists()


@pytest.mark.parametrize('old', ['tag_vectors.pkl', 'query_encoder.pt'])
def test_an_index_of_the_old_format_asks_for_a_rebuild(copy_of_index, tmp_path, capsys, old):
    marker = tmp_path / 'marker'
    (copy_of_index / old).write_bytes(pickle.dumps({'tag01': CreatesFile(str(marker))}))
    meta = search_store.read_json(str(copy_of_index / 'meta.json'), 'meta', '')
    search_store.write_json(str(copy_of_index / 'meta.json'), {**meta, 'format': 1})
    err = one_error_line(capsys, query(copy_of_index))
    assert 'older search.py' in err and old in err and 'search.py index --force' in err, err
    assert not marker.exists()


DAMAGE = {
    'missing tracks.npz': ('tracks.npz', None),
    'corrupt query encoder': ('query_encoder.npz', b'PK\x03\x04 not a zip archive'),
    'corrupt meta.json': ('meta.json', b'{"format": 2, "n_so'),
    'corrupt tag vectors': ('tag_vectors.npz', os.urandom(200)),
    'truncated FAISS index': ('songs.faiss', b'IxF2'),
}


@pytest.mark.parametrize('case', list(DAMAGE))
def test_a_damaged_index_names_the_file_and_the_rebuild(copy_of_index, capsys, case):
    name, content = DAMAGE[case]
    if content is None:
        os.remove(copy_of_index / name)
    else:
        (copy_of_index / name).write_bytes(content)
    err = one_error_line(capsys, query(copy_of_index))
    assert name in err and 'search.py index --force' in err, err


def test_a_query_encoder_of_another_shape_is_refused(copy_of_index, capsys):
    np.savez(copy_of_index / 'query_encoder.npz', **{'fc1.weight': np.zeros((3, 3), np.float32)})
    err = one_error_line(capsys, query(copy_of_index))
    assert 'query_encoder.npz' in err and 'search.py index --force' in err, err


def test_reader_leaving_early_is_no_error(test_index):
    """`search.py query | head -n 1` with more output than a pipe holds: no BrokenPipeError traceback."""
    queries = 'tag01\n' * 300  # ~200 KB of results, more than the 64 KB a pipe buffers
    out = subprocess.run(f'{sys.executable} search.py query --index_path {test_index} --k 10 | head -n 1',
                         shell=True, input=queries, capture_output=True, text=True, cwd=ROOT,
                         executable='/bin/bash', timeout=120)
    assert out.stdout.startswith("query: 'tag01'") and len(out.stdout.splitlines()) == 1
    assert out.stderr == '', out.stderr


def build_args(dataset, ckpt, path):
    return ['index', '--model_load_path', str(ckpt), '--data_path', dataset['root'], '--split', 'test',
            '--index_path', str(path)]


def leftovers(path):
    return sorted(n for n in os.listdir(path) if n.endswith('.partial'))


def test_disk_full_while_writing_the_index(dataset, ckpt, tmp_path, capsys, monkeypatch):
    """ENOSPC raised inside the write of tracks.npz, after some bytes went out: one line, no temporary file."""
    def savez_then_disk_full(f, **arrays):
        f.write(b'PK\x03\x04 some bytes')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(search_store.np, 'savez', savez_then_disk_full)
    err = one_error_line(capsys, build_args(dataset, ckpt, tmp_path / 'idx'))
    assert 'disk is full' in err and 'cannot write' in err and 'tracks.npz' in err, err
    assert leftovers(tmp_path / 'idx') == [] and not (tmp_path / 'idx' / 'meta.json').exists()
    monkeypatch.undo()  # the rerun reuses the embeddings and completes
    search.main(build_args(dataset, ckpt, tmp_path / 'idx'))
    assert 'reusing the' in capsys.readouterr().err and (tmp_path / 'idx' / 'meta.json').exists()


def test_the_index_path_is_a_file(dataset, ckpt, tmp_path, capsys):
    (tmp_path / 'file').write_text('x')
    err = one_error_line(capsys, build_args(dataset, ckpt, tmp_path / 'file'))
    assert 'must be a folder' in err and str(tmp_path / 'file') in err, err
    err = one_error_line(capsys, build_args(dataset, ckpt, tmp_path / 'file' / 'idx'))
    assert 'must be a folder' in err, err


def in_small_filesystem(command, size='16k', read_only=False):
    """Run `command` (argv) with /mnt/small a fresh tmpfs of `size` (a mount namespace of its own)."""
    if not shutil.which('unshare'):
        pytest.skip('unshare (util-linux) is not installed: no small file system to fill')
    mount = f'mount -t tmpfs -o size={size}{",ro" if read_only else ""} tmpfs /mnt'
    probe = subprocess.run(['unshare', '-rm', 'sh', '-c', mount], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f'cannot mount a tmpfs here ({probe.stderr.strip()})')
    script = f'{mount} && exec "$@"'
    return subprocess.run(['unshare', '-rm', 'sh', '-c', script, 'sh', *command], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def assert_one_line(out, *words):
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1 and 'Traceback' not in out.stderr, out.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_a_full_file_system(dataset, ckpt, tmp_path):
    """A real full disk: embeddings of a 24-song split do not fit in 16 KiB; songs of an audio folder neither."""
    out = in_small_filesystem([sys.executable, 'search.py', *build_args(dataset, ckpt, '/mnt/idx')])
    assert_one_line(out, 'disk is full')
    import soundfile
    (tmp_path / 'music').mkdir()
    t = np.arange(3 * 22050) / 22050
    for i in range(2):
        soundfile.write(tmp_path / 'music' / f'song{i}.wav', 0.3 * np.sin(2 * np.pi * 220 * (i + 1) * t), 22050)
    out = in_small_filesystem([sys.executable, 'search.py', 'index', '--model_load_path', str(ckpt), '--audio_dir',
                               str(tmp_path / 'music'), '--index_path', '/mnt/idx', '--num_workers', '1'])
    assert_one_line(out, 'disk is full')
    assert 'could be decoded' not in out.stderr


def test_a_read_only_place(dataset, ckpt, tmp_path):
    out = in_small_filesystem([sys.executable, 'search.py', *build_args(dataset, ckpt, '/mnt/idx')],
                              read_only=True)
    assert_one_line(out, 'cannot write', '/mnt/idx')
