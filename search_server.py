"""A local web page over a search index: search by words, listen, see a song's tags and neighbours, upload a song.

    python search.py serve --index_path search_index [--audio_dir data/demo/audio] [--host 127.0.0.1] [--port 8000]

FastAPI with one static page (web/search.html, plain JavaScript) and a JSON API beside it:
  GET  /api/search?q=WORDS&k=N       the songs of a query and its interpretation (as `search.py query --json`);
                                     &mode=average|sentence for another query mode (serve --query_mode's default)
  GET  /api/similar?track_id=ID&k=N  a song's nearest songs
  GET  /api/tags?track_id=ID&k=N     its predicted tags (whole vocabulary, ranked) and its annotated tags
  GET  /audio/ID                     the song's audio file, where the index knows one
  POST /api/upload?k=N               the request body is an audio file: its tags and the songs like it
Bad input is an HTTP 4xx whose JSON {"error": ...} is one line (an unknown word lists the nearest known words);
the server keeps serving.
"""
import os
import tempfile

import numpy as np

from errors import NotFound, UserError
from search_terms import UnknownWord, check_mode

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'web', 'search.html')
MAX_K = 100
MAX_UPLOAD = 64 << 20


class AudioFiles:
    """Track id -> audio file: the index's own paths (an --audio_dir index), else files named ID.ext under the
    folders given (serve --audio_dir, DATA/audio of the index's dataset)."""

    def __init__(self, index, audio_dir=None):
        from audio import find_audio
        searcher = index.searcher
        self.files = {}
        if searcher.paths is not None:
            self.files = {str(t): str(p) for t, p in zip(searcher.track_ids, searcher.paths)}
        data_path = index.meta.get('data_path')
        self.folders = [d for d in (audio_dir, data_path and os.path.join(data_path, 'audio')) if d]
        for folder in self.folders:
            if os.path.isdir(folder):
                for path in find_audio(folder):
                    self.files.setdefault(os.path.splitext(os.path.basename(path))[0], path)
        known = set(map(str, searcher.track_ids))
        source = index.meta.get('source')
        # the catalogue's own audio only: a symlink in a folder, or a path in an index file, leading elsewhere is
        # not served (paths compared with every link resolved)
        roots = [os.path.realpath(d) for d in self.folders + [isinstance(source, dict) and source.get('audio_dir')]
                 if isinstance(d, str) and d]
        self.files = {t: p for t, p in self.files.items() if t in known and os.path.isfile(p) and
                      any(os.path.realpath(p).startswith(root + os.sep) for root in roots)}

    def why_none(self):
        where = ', '.join(self.folders) or 'no audio folder'
        return f'no audio file for this song (looked in {where}; pass serve --audio_dir)'


MAX_QUERY = 1000  # characters: a query is a few words; a megabyte of them is no query
MAX_UPLOAD_SECONDS = 20 * 60  # decoding a 4-hour upload took 5.7 GB and stalled the server


def check_k(k):
    if not 1 <= k <= MAX_K:
        raise UserError(f'k must be between 1 and {MAX_K}, got {k}')
    return k


def with_audio(result, audio):
    for hit in result['results']:
        hit['audio'] = f'/audio/{hit["track_id"]}' if hit['track_id'] in audio.files else None
        hit.pop('path', None)  # a server does not reveal its file system
    if not all(hit['audio'] for hit in result['results']):
        result['no_audio'] = audio.why_none()
    return result


def tag_answer(predicted, annotated, **extra):
    return {**extra, 'predicted': [{'tag': t, 'score': s} for t, s in predicted], 'annotated': annotated}


def upload_answer(index, audio, body, filename, k):
    """Tags and similar songs of an uploaded audio file (written to a temporary file for the decoder)."""
    if not body:
        raise UserError('the upload is empty; send an audio file as the request body')
    if len(body) > MAX_UPLOAD:
        raise UserError(f'the upload is {len(body)} bytes; at most {MAX_UPLOAD} are accepted')
    # the extension guides the decoder; any other byte of the name (NUL, '/', odd Unicode) stays out of the path
    suffix = '.' + ''.join(c for c in os.path.splitext(filename or '')[1].lower() if c.isascii() and c.isalnum())[:5]
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'upload' + (suffix if len(suffix) > 1 else '.audio'))
        with open(path, 'wb') as f:
            f.write(body)
        from audio import header_duration
        seconds = header_duration(path)
        if seconds and seconds > MAX_UPLOAD_SECONDS:
            raise UserError(f'{filename} lasts {seconds / 60:.0f} min; at most {MAX_UPLOAD_SECONDS // 60} min are '
                            'accepted (send an excerpt)')
        try:
            embedding = index.model.embed_audio(path)[0]
        except UserError:
            raise UserError(f'{filename} is not audio that could be decoded; send a .wav, .flac, .ogg or .mp3 '
                            'file') from None
    predicted = index.predicted_tags(embedding, k) if index.vocabulary else []
    similar = with_audio(index.searcher.search_vector(np.asarray(embedding), k, f'upload:{filename}'), audio)
    return {**tag_answer(predicted, [], filename=filename), 'similar': similar}


def create_app(index, audio_dir=None, query_mode='tags'):
    """The FastAPI app: the page, the JSON API and the audio, over an opened retrieval.Index."""
    from fastapi import FastAPI
    app = FastAPI(title='tag-based music retrieval', docs_url=None, redoc_url=None, openapi_url=None)
    add_error_handlers(app)
    add_routes(app, index, AudioFiles(index, audio_dir), query_mode)
    return app


def add_error_handlers(app):
    """Every failure is a JSON {'error': ...}: 400 for a user's mistake, 404 for what is not there, 500 otherwise."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @app.exception_handler(UserError)
    async def user_error(request, error):
        body = {'error': str(error)}
        if isinstance(error, UnknownWord):
            body['suggestions'] = error.suggestions
        status = 404 if isinstance(error, NotFound) else 400
        return JSONResponse(body, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request, error):
        first = error.errors()[0]
        where = '.'.join(str(p) for p in first.get('loc', ())[1:]) or 'request'
        return JSONResponse({'error': f'{where}: {first.get("msg", "invalid")}'}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request, error):  # never a traceback to the client; the server goes on
        return JSONResponse({'error': f'internal error: {type(error).__name__}: {error}'.splitlines()[0]},
                            status_code=500)


def add_routes(app, index, audio, query_mode):
    from fastapi import Request
    from fastapi.responses import FileResponse

    @app.get('/')
    def page():
        return FileResponse(PAGE, media_type='text/html')

    @app.get('/api/search')
    def search(q: str, k: int = 10, mode: str = query_mode):
        if len(q) > MAX_QUERY:
            raise UserError(f'the query is {len(q)} characters; at most {MAX_QUERY} are accepted')
        return with_audio(index.search(q, check_k(k), check_mode(mode)), audio)

    @app.get('/api/similar')
    def similar(track_id: str, k: int = 10):
        return with_audio(index.similar(track_id, check_k(k)), audio)

    @app.get('/api/tags')
    def tags(track_id: str, k: int = 10):
        answer = index.tags(track_id, check_k(k))
        return tag_answer(answer['predicted'], answer['annotated'], track_id=answer['track_id'],
                          audio=f'/audio/{track_id}' if track_id in audio.files else None)

    @app.get('/audio/{track_id:path}')
    def song_audio(track_id: str):
        index.searcher.row(track_id)  # an unknown id: 404 with its reason
        if track_id not in audio.files:
            raise NotFound(f'{track_id}: {audio.why_none()}')
        return FileResponse(audio.files[track_id])

    @app.post('/api/upload')
    async def upload(request: Request, k: int = 10, filename: str = 'upload'):
        from starlette.concurrency import run_in_threadpool
        body = await request.body()
        # decoding takes seconds: off the event loop, so that other requests are answered meanwhile
        return await run_in_threadpool(upload_answer, index, audio, body, filename, check_k(k))


def serve(index, host='127.0.0.1', port=8000, audio_dir=None, query_mode='tags'):
    import uvicorn
    app = create_app(index, audio_dir, query_mode)
    print(f'serving {index.meta["n_songs"]} songs on http://{host}:{port}/ (Ctrl-C stops)', flush=True)
    # a request line up to 4 MB is read (h11's default, 16 kB, drops the connection of a long query unanswered),
    # so that a query that is too long gets its 400 and the reason
    uvicorn.run(app, host=host, port=port, log_level='warning', h11_max_incomplete_event_size=4 << 20)
    return 0
