"""The Python API (retrieval.py) and the command lines built on it: the scores it gives a tag and a song are the
ones `main.py --mode TEST` writes to scores.npy; audio at any sample rate; search by words, audio and track."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile

import main as cli
import search
from file_io import spec_path
from retrieval import Index, Model
from search_fixtures import ckpt, index, test_index, words  # noqa: F401 (pytest fixtures)
from search_query import Searcher
from audio import compute_mel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def eval_scores(dataset, ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp('retrieval_test')
    cli.main(cli.build_parser().parse_args(['--mode', 'TEST', '--data_path', dataset['root'], '--model_load_path',
                                            ckpt, '--result_path', str(out)]))
    return np.load(out / 'scores.npy')  # tags x test songs


@pytest.fixture(scope='module')
def model(dataset, ckpt):
    return Model.load(ckpt, data_path=dataset['root'])


def ids_of_test(dataset):
    return [e.split('//')[1] for e in dataset['splits']['test']]


@pytest.fixture(scope='module')
def song(tmp_path_factory):
    """(file at 22,050 Hz, its waveform, the same sound at 44,100 Hz)."""
    folder = tmp_path_factory.mktemp('retrieval_audio')
    t22, t44 = np.arange(4 * 22050) / 22050, np.arange(4 * 44100) / 44100
    wave = lambda t: (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t)).astype(np.float32)
    soundfile.write(folder / 'song.wav', wave(t22), 22050, subtype='FLOAT')
    return str(folder / 'song.wav'), wave(t22), wave(t44)


def test_tag_and_song_scores_equal_the_evaluation(dataset, model, eval_scores):
    specs = [np.load(spec_path(dataset['root'], t)) for t in ids_of_test(dataset)]
    embeddings = model.embed_spectrograms(specs)
    assert embeddings.shape == (len(specs), 256)
    np.testing.assert_allclose(model.tag_scores(embeddings).T, eval_scores, atol=1e-5)
    # a tag's word embedding is the row TEST scores it with
    np.testing.assert_allclose(model.embed_words(list(dataset['tags'])), model.tag_embeddings, atol=1e-6)
    assert model.vocabulary == list(dataset['tags'])


def test_audio_files_and_waveforms_at_any_rate(model, song):
    path, wave22, wave44 = song
    from_file = model.embed_audio(path)
    np.testing.assert_allclose(from_file, model.embed_spectrograms([compute_mel(path)]), atol=1e-6)
    np.testing.assert_allclose(model.embed_audio(wave22, sr=22050), from_file, atol=1e-5)
    resampled = model.embed_audio([wave44, np.stack([wave44, wave44])], sr=44100)  # mono and stereo
    assert resampled.shape == (2, 256)
    assert float(resampled[0] @ from_file[0]) > 0.99 and np.allclose(resampled[0], resampled[1], atol=1e-5)
    ranked = model.tags(path)
    assert [t for t, _ in ranked] == [model.vocabulary[i] for i in np.argsort(-model.tag_scores(from_file)[0])]
    assert len(ranked) == len(model.vocabulary) and len(model.tags(path, k=2)) == 2
    assert len(model.tags([path, path], k=3)) == 2


def test_words_unknown_and_several(model):
    vectors = model.words.words.tag_vectors
    mean = model.words.embed_vectors(np.mean([vectors["tag01"], vectors["tag03"]], axis=0)[None])
    np.testing.assert_allclose(model.embed_words(['tag01 tag03'], mode='average'), mean, atol=1e-6)
    # by default the two tags' embeddings are summed in the joint space
    rows = model.tag_embeddings[[model.vocabulary.index('tag01'), model.vocabulary.index('tag03')]].sum(axis=0)
    np.testing.assert_allclose(model.embed_words('tag01 tag03')[0], rows / np.linalg.norm(rows), atol=1e-6)
    assert [t['tag'] for t in model.interpret('the tag01 and tag03')['tags']] == ['tag01', 'tag03']
    with pytest.raises(search.UserError, match="unknown word 'tagg01'.*nearest known words: tag01"):
        model.embed_words('tagg01')


def test_index_api(dataset, ckpt, test_index, eval_scores, song):
    index = Index.open(test_index)
    assert index.search('tag02', k=4) == Searcher(test_index).search('tag02', k=4)
    ids = ids_of_test(dataset)
    emb = np.load(os.path.join(test_index, 'embeddings.npy'))
    similar = index.similar(ids[3], k=5)['results']
    expected = np.delete(np.argsort(-(emb @ emb[3]), kind='stable'), 0)[:5]  # itself first, left out
    np.testing.assert_allclose([h['score'] for h in similar], (emb @ emb[3])[expected], atol=1e-5)
    assert ids[3] not in [h['track_id'] for h in similar]
    tags = index.tags(ids[3], k=None)
    by_tag = dict(tags['predicted'])
    np.testing.assert_allclose([by_tag[t] for t in dataset['tags']], eval_scores[:, 3], atol=1e-5)
    assert tags['annotated'] == [t for t, b in zip(dataset['tags'], dataset['binaries'][
        int(dataset['splits']['test'][3].split('//')[0])]) if b]
    path = song[0]
    by_audio = index.search_audio(path, k=3)
    top = np.argsort(-(emb @ index.model.embed_audio(path)[0]))[:3]
    assert [h['track_id'] for h in by_audio['results']] == [ids[i] for i in top]
    with pytest.raises(search.UserError, match="unknown track id 'TRNOPE'"):
        index.similar('TRNOPE')


def run(*argv):
    return subprocess.run([sys.executable, 'search.py', *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_by_audio_by_track_and_tag(dataset, test_index, song):
    ids = ids_of_test(dataset)
    out = run('query', '--index_path', test_index, '--track_id', ids[0], '--k', '3', '--json')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads(json.dumps(Index.open(test_index).similar(ids[0], k=3)))
    out = run('query', '--index_path', test_index, '--audio', song[0], '--k', '2')
    assert out.returncode == 0 and "query: 'audio:song.wav'" in out.stdout, out.stderr
    out = run('tag', '--index_path', test_index, '--track_id', ids[0], '--k', '3', '--json')
    answer = json.loads(out.stdout)
    assert [p['tag'] for p in answer['predicted']] == [t for t, _ in Index.open(test_index).tags(ids[0], 3)['predicted']]
    out = run('tag', '--index_path', test_index, '--audio', song[0], '--k', '4')
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 5, out.stdout + out.stderr
    for argv, words in ((['query', '--track_id', 'TRNOPE'], 'unknown track id'),
                        (['tag', '--audio', 'missing.mp3'], 'not found'),
                        (['tag', '--audio', os.path.join(ROOT, 'README.md')], 'could not be decoded')):
        out = run(*argv, '--index_path', test_index)
        assert out.returncode == 2 and 'Traceback' not in out.stderr and words in out.stderr, out.stderr
