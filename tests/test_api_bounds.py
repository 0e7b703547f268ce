"""The server and the Python API at their boundary: only the catalogue's own audio is served (no symlink out of
its folder), an upload with odd bytes in its name, no audio that can be scored, or too long is a 4xx, a 1 MB query
is a 4xx; the API refuses arguments that would answer nonsense with a UserError naming the argument."""
import io
import os
import signal
import urllib.parse

import numpy as np
import pytest
import soundfile

from errors import UserError
from search_fixtures import ckpt, index, start_server, test_index, words  # noqa: F401 (pytest fixtures)
from test_search_server import free_port, get, ids_of_test

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def server(dataset, test_index, tmp_path_factory):  # noqa: F811
    """Audio for one test song, and a symlink named after another that leads out of the audio folder."""
    audio = tmp_path_factory.mktemp('audio')
    outside = tmp_path_factory.mktemp('outside') / 'private.wav'
    tone = 0.3 * np.sin(np.arange(3 * 22050) / 10)
    soundfile.write(outside, tone, 22050)
    first, second = ids_of_test(dataset)[:2]
    soundfile.write(audio / f'{first}.wav', tone, 22050)
    os.symlink(outside, audio / f'{second}.wav')
    process, url = start_server(test_index, audio, free_port(), ROOT)
    yield {'url': url, 'inside': first, 'symlinked': second}
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def wav_bytes(samples, sr=22050, subtype='PCM_16'):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, sr, format='WAV', subtype=subtype)
    return buffer.getvalue()


def test_only_the_catalogues_own_audio_is_served(server):
    assert get(server, f'/audio/{server["inside"]}')[0] == 200
    status, body = get(server, f'/audio/{server["symlinked"]}')
    assert status == 404 and 'no audio file for this song' in body['error']


def test_bad_requests_are_4xx_never_500(server):
    status, body = get(server, '/api/search?' + urllib.parse.urlencode({'q': 'tag01 ' * 200_000}))
    assert status == 400 and 'at most 1000' in body['error']
    nan_wave = np.sin(np.arange(22050) / 5).astype(np.float32)
    nan_wave[10] = np.nan
    for name, body in [('a\x00b/..\u202e.wav', wav_bytes(0.3 * np.sin(np.arange(22050) / 5))),
                       ('nan.wav', wav_bytes(nan_wave, subtype='FLOAT')),
                       ('long.wav', wav_bytes(np.zeros(21 * 60 * 1000, np.int16), sr=1000))]:
        status, answer = get(server, '/api/upload?' + urllib.parse.urlencode({'k': 3, 'filename': name}), data=body)
        if name.startswith('a'):
            assert status == 200 and len(answer['similar']['results']) == 3, answer
        else:
            assert status == 400 and '\n' not in answer['error'], answer
    assert 'lasts 21 min; at most 20 min' in answer['error']


@pytest.fixture(scope='module')
def model(ckpt, dataset):  # noqa: F811
    from retrieval import Model
    return Model.load(ckpt, data_path=dataset['root'])


WAVE = 0.3 * np.sin(np.arange(22050) / 5)
API_CASES = {
    'k=-1': (lambda m: m.tags(WAVE, k=-1, sr=22050), 'k=-1'),
    'k=0': (lambda m: m.tags(WAVE, k=0, sr=22050), 'k=0'),
    'k=1.5': (lambda m: m.tags(WAVE, k=1.5, sr=22050), 'k=1.5'),
    'sr=0': (lambda m: m.embed_audio(WAVE, sr=0), 'sr=0'),
    'sr=-8000': (lambda m: m.embed_audio(WAVE, sr=-8000), 'sr=-8000'),
    'sr as text': (lambda m: m.embed_audio(WAVE, sr='44100'), "sr='44100'"),
    'empty waveform': (lambda m: m.embed_audio(np.zeros(0), sr=22050), 'is empty'),
    'NaN waveform': (lambda m: m.embed_audio(np.full(22050, np.nan), sr=22050), 'NaN or infinite'),
    'three channels': (lambda m: m.embed_audio(np.zeros((3, 22050)), sr=22050), 'float64 array of shape (3, 22050)'),
    'complex waveform': (lambda m: m.embed_audio(WAVE.astype(complex), sr=22050), 'complex128'),
    'absurd samples': (lambda m: m.embed_audio(WAVE * 1e30, sr=22050), 'expected finite samples'),
    'a number as audio': (lambda m: m.embed_audio(5, sr=22050), 'audio: expected a file path'),
    'words not strings': (lambda m: m.embed_words(['tag01', 3]), "queries: expected strings"),
}


@pytest.mark.parametrize('name', list(API_CASES))
def test_api_arguments(model, name):
    call, fragment = API_CASES[name]
    with pytest.raises(UserError) as error:
        call(model)
    assert fragment in str(error.value) and '\n' not in str(error.value)


def test_index_api_arguments(test_index):  # noqa: F811
    from retrieval import Index
    opened = Index.open(test_index)
    with pytest.raises(UserError, match='k=-1'):
        opened.search('tag01', k=-1)
    with pytest.raises(UserError, match='words: a query is a string'):
        opened.search(123)
    track = str(opened.searcher.track_ids[0])
    assert len(opened.tags(track, k=None)['predicted']) == len(opened.vocabulary)
    with pytest.raises(UserError, match='k=-1'):
        opened.tags(track, k=-1)
