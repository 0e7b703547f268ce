"""`search.py serve`: the page and the JSON API over HTTP on a free port (each route, each bad input), and the page
in a real headless Chromium (result rows and audio players come from the page's own JavaScript)."""
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile

from ports import free_port
from search_fixtures import ckpt, index, start_server, test_index, words  # noqa: F401 (pytest fixtures)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ids_of_test(dataset):
    return [e.split('//')[1] for e in dataset['splits']['test']]


@pytest.fixture(scope='module')
def server(dataset, test_index, tmp_path_factory):
    """The server on a free port, with audio for two test songs (the others have none), stopped at the end."""
    audio = tmp_path_factory.mktemp('server_audio')
    t = np.arange(3 * 22050) / 22050
    playable = ids_of_test(dataset)[:2]
    for i, track in enumerate(playable):
        soundfile.write(audio / f'{track}.wav', 0.3 * np.sin(2 * np.pi * 330 * (i + 1) * t), 22050)
    process, url = start_server(test_index, audio, free_port(), ROOT)
    yield {'url': url, 'audio': audio, 'playable': playable, 'process': process}
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def get(server, path, data=None):
    """(status, parsed JSON or raw bytes)."""
    request = urllib.request.Request(server['url'] + path, data=data, method='POST' if data is not None else 'GET')
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, body, kind = response.status, response.read(), response.headers.get('content-type', '')
    except urllib.error.HTTPError as error:
        status, body, kind = error.code, error.read(), error.headers.get('content-type', '')
    return status, json.loads(body) if kind.startswith('application/json') else body


def test_routes(server, dataset, test_index):
    from retrieval import Index
    index = Index.open(test_index)
    status, result = get(server, '/api/search?q=tag01&k=5')
    expected = index.search('tag01', k=5)
    assert status == 200 and [h['track_id'] for h in result['results']] == [h['track_id'] for h in expected['results']]
    assert np.allclose([h['score'] for h in result['results']], [h['score'] for h in expected['results']])
    playable = server['playable']
    for hit in result['results']:
        assert hit['audio'] == (f'/audio/{hit["track_id"]}' if hit['track_id'] in playable else None)
    status, similar = get(server, f'/api/similar?track_id={playable[0]}&k=3')
    assert status == 200 and similar['results'] == json.loads(json.dumps(
        [{**h, 'audio': similar['results'][i]['audio']} for i, h in enumerate(index.similar(playable[0], 3)['results'])]))
    status, tags = get(server, f'/api/tags?track_id={playable[0]}&k=4')
    assert status == 200 and [p['tag'] for p in tags['predicted']] == [t for t, _ in index.tags(playable[0], 4)['predicted']]
    assert tags['annotated'] == index.tags(playable[0])['annotated'] and tags['audio'] == f'/audio/{playable[0]}'
    status, audio = get(server, f'/audio/{playable[0]}')
    assert status == 200 and audio == (server['audio'] / f'{playable[0]}.wav').read_bytes()
    status, upload = get(server, '/api/upload?k=3&filename=mine.wav', (server['audio'] / f'{playable[1]}.wav').read_bytes())
    assert status == 200 and len(upload['predicted']) == 3 and upload['similar']['results'][0]['track_id'] == playable[1]
    status, page = get(server, '/')
    assert status == 200 and b'<script>' in page


def test_search_shows_its_interpretation(server, test_index):
    from retrieval import Index
    index = Index.open(test_index)
    status, result = get(server, '/api/search?q=the+tag01+and+tag03&k=4')
    assert status == 200 and result['interpretation'] == index.search('the tag01 and tag03', 4)['interpretation']
    assert [t['tag'] for t in result['interpretation']['tags']] == ['tag01', 'tag03']
    assert result['interpretation']['stop_words'] == ['the', 'and']
    status, old = get(server, '/api/search?q=tag01+tag03&k=4&mode=average')
    expected = index.search('tag01 tag03', 4, mode='average')
    assert status == 200 and old['interpretation']['mode'] == 'average'
    assert [h['track_id'] for h in old['results']] == [h['track_id'] for h in expected['results']]
    status, body = get(server, '/api/search?q=tag01&mode=vibes')
    assert status == 400 and "unknown query mode 'vibes'" in body['error']


def test_bad_input_is_a_4xx_with_one_line(server, dataset):
    no_audio = ids_of_test(dataset)[5]
    cases = {'/api/search?q=tagg01': (400, "unknown word 'tagg01'"),
             '/api/search?q=tag01&k=0': (400, 'k must be between 1 and 100'),
             '/api/search?q=tag01&k=1000': (400, 'k must be between 1 and 100'),
             '/api/search?q=tag01&k=many': (400, 'k:'),
             '/api/search': (400, 'q:'),
             '/api/similar?track_id=TRNOPE': (404, "unknown track id 'TRNOPE'"),
             '/api/tags?track_id=TRNOPE': (404, "unknown track id 'TRNOPE'"),
             '/audio/TRNOPE': (404, "unknown track id 'TRNOPE'"),
             f'/audio/{no_audio}': (404, 'no audio file for this song')}
    for path, (code, words) in cases.items():
        status, body = get(server, path)
        assert status == code and words in body['error'] and '\n' not in body['error'], (path, status, body)
    status, body = get(server, '/api/search?q=tagg01')
    assert body['suggestions'][0] == 'tag01'
    status, body = get(server, '/api/upload?filename=notes.mp3', b'this is text, not audio' * 10)
    assert status == 400 and 'not audio' in body['error'], body
    status, body = get(server, '/api/upload', b'')
    assert status == 400 and 'empty' in body['error']
    assert get(server, '/api/search?q=tag02&k=2')[0] == 200  # still serving
    assert server['process'].poll() is None


def chromium():
    return shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')


def headless(*argv):
    browser = chromium()
    if browser is None:
        pytest.skip('no chromium on this machine (Debian: apt-get install chromium)')
    return subprocess.run([browser, '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                           '--virtual-time-budget=15000', *argv], capture_output=True, text=True, timeout=120)


def test_the_page_in_a_real_browser(server, tmp_path):
    """The query in the URL is typed into the box and run by the page's own script on load."""
    out = headless('--dump-dom', server['url'] + '/?q=tag01')
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    rendered = dom.split('<script>')[0]  # the page's body as its script left it, without the script's own text
    assert len(re.findall(r'<tr class="hit">\s*<td>\d+</td>', rendered)) == 10, rendered[-3000:]
    assert re.search(r'<audio controls="" preload="none" src="/audio/TR', rendered), rendered[-3000:]
    assert 'no audio file for this song' in rendered
    out = headless('--dump-dom', server['url'] + '/?q=the%20tag01%20and%20tag03')
    rendered = out.stdout.split('<script>')[0]
    meaning = re.search(r'<div id="meaning">(.*?)</div>', rendered, re.S).group(1)
    assert re.search(r'interpreted as</b> <span class="tag">tag01 1.00</span> <span class="tag">tag03 1.00</span>.*'
                     r'dropped: the, and', meaning, re.S), meaning
    shot = tmp_path / 'page.png'
    headless(f'--screenshot={shot}', '--window-size=1100,700', server['url'] + '/?q=tag01')
    assert shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
