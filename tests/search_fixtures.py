"""Fixtures shared by the search tests: a small trained checkpoint, full word vectors, an index of the test split;
`search.py serve` started in the background."""
import os
import pickle
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

import main as cli
import search


@pytest.fixture(scope='session')
def ckpt(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp('search_ck')
    callback = cli.main(cli.build_parser().parse_args([
        '--data_path', dataset['root'], '--model_save_path', str(out), '--n_epochs', '1', '--logger', 'none',
        '--n_channels', '8', '--batch_size', '32', '--epoch_size', '64', '--num_chunk', '4', '--lr', '1e-3']))
    return callback.best_model_path


@pytest.fixture(scope='session')
def words(dataset, tmp_path_factory):
    """Full word vectors in word2vec binary format: the tags' own vectors plus other words and a phrase."""
    from gensim.models import KeyedVectors
    with open(os.path.join(dataset['root'], 'google_emb.pkl'), 'rb') as f:
        tag_vectors = pickle.load(f)
    rng = np.random.default_rng(7)
    dim = len(next(iter(tag_vectors.values())))
    extra = ['piano', 'guitar', 'smooth_jazz', 'Violin', 'pianos', 'drums']
    kv = KeyedVectors(dim)
    kv.add_vectors(list(tag_vectors) + extra,
                   np.stack([tag_vectors[t] for t in tag_vectors] + [rng.standard_normal(dim) for _ in extra])
                   .astype(np.float32))
    path = str(tmp_path_factory.mktemp('search_w2v') / 'words.bin')
    kv.save_word2vec_format(path, binary=True)
    return {'path': path, 'kv': kv, 'tags': tag_vectors}


def index(*argv):
    return search.main(['index', *[str(a) for a in argv]])


@pytest.fixture(scope='session')
def test_index(dataset, ckpt, words, tmp_path_factory):
    path = tmp_path_factory.mktemp('search_index') / 'idx'
    index('--model_load_path', ckpt, '--data_path', dataset['root'], '--split', 'test', '--index_path', path,
          '--w2v_path', words['path'])
    return str(path)


def start_server(index_path, audio_dir, port, root):
    """`search.py serve` on 127.0.0.1:port in a process group of its own, once its page answers: (process, url)."""
    process = subprocess.Popen([sys.executable, 'search.py', 'serve', '--index_path', str(index_path), '--port',
                                str(port), '--audio_dir', str(audio_dir)], cwd=root, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f'http://127.0.0.1:{port}'
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url + '/', timeout=2).read()
            return process, url
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                pytest.fail(f'the server did not start: {process.stdout.read()}')
            time.sleep(0.3)
