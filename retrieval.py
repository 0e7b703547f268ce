"""Python API of the joint tag-song space: embed audio and words, tag songs, search an index.

    from retrieval import Model, Index
    model = Model.load('checkpoints/best.ckpt', data_path='data/demo', device='cpu')   # ours or the original's
    model.embed_audio(['a.flac', 'b.mp3'])            # (2, 256) unit rows; files at any sample rate
    model.embed_audio(waveform, sr=44100)             # a waveform (or a list of them): resampled to 22,050 Hz
    model.embed_words(['piano', 'sad violin music'])  # (2, 256) unit rows, words as `search.py query` reads them
    model.interpret('baroque keyboard music')         # the tags (with weights) that query became
    model.tags('a.flac', k=5)                         # [('piano', 0.61), ...]: the whole vocabulary, ranked
    index = Index.open('search_index')
    index.search('piano', k=10)                       # by words; the same answer as `search.py query`
    index.search('sad violin', mode='average')        # the former word averaging (search_terms.MODES)
    index.search_audio('a.flac', k=10)                # by example (loads the index's checkpoint)
    index.similar('TRAAAAW128F429D538', k=10)         # the songs nearest a song of the catalogue
    index.tags('TRAAAAW128F429D538', k=10)            # its predicted tags beside its annotated ones

Songs are embedded as `main.py --mode TEST` embeds them: step 0's log-mel spectrogram (compute_mel), `num_chunk`
evenly spaced chunks of `input_length` frames, the chunk embeddings averaged; then L2-normalised, so a score is a
cosine, the number TEST writes to scores.npy.
"""
import os

import numpy as np

from audio import MEL_PARAMS, compute_mel
from errors import UserError

SAMPLE_RATE = MEL_PARAMS['sr']


def is_one(audio):
    """A path, or a waveform: (n,) or (channels <= 2, n)."""
    return isinstance(audio, (str, os.PathLike)) or (
        isinstance(audio, np.ndarray) and (audio.ndim == 1 or (audio.ndim == 2 and audio.shape[0] <= 2)))


def as_list(audio):
    if is_one(audio) or isinstance(audio, (list, tuple)) or (isinstance(audio, np.ndarray) and audio.ndim == 3):
        return [audio] if is_one(audio) else list(audio)
    got = f'a {audio.dtype} array of shape {audio.shape}' if isinstance(audio, np.ndarray) else \
        f'{type(audio).__name__} {str(audio)[:40]!r}'
    raise UserError(f'audio: expected a file path, a waveform ((n,) or (channels <= 2, n)) or a list of them, got '
                    f'{got}')


def mel_of(audio, sr=None):
    """Log-mel spectrogram of an audio file or of a waveform ((n,) or (channels, n)) at `sr` Hz."""
    if isinstance(audio, (str, os.PathLike)):
        if not os.path.isfile(audio):
            raise UserError(f'audio file {audio} not found')
        try:
            return compute_mel(audio)
        except Exception as error:  # not audio, truncated, or no backend for the format
            from audio import describe_error
            raise UserError(f'{audio} could not be decoded as audio ({describe_error(audio, error)}); pass a '
                            '.wav, .flac, .ogg or .mp3 file') from None
    import librosa
    if sr is None:
        raise UserError('a waveform needs its sample rate: pass sr=')
    if isinstance(sr, bool) or not isinstance(sr, (int, float, np.integer, np.floating)) or not 0 < sr < 1e7:
        raise UserError(f'sr={sr!r}: the sample rate must be a number of Hz above 0 (e.g. 44100)')
    wave = np.asarray(audio)
    if wave.dtype.kind not in 'iuf' or not 1 <= wave.ndim <= 2 or (wave.ndim == 2 and wave.shape[0] > 2):
        raise UserError(f'audio: a waveform is an array of real samples, (n,) or (channels <= 2, n); got a '
                        f'{wave.dtype} array of shape {wave.shape}')
    if wave.size == 0 or not np.isfinite(wave).all():
        raise UserError(f'audio: the waveform of shape {wave.shape} is empty or holds NaN or infinite samples')
    wave = wave.astype(np.float32)
    wave = librosa.to_mono(wave) if wave.ndim == 2 else wave
    if sr != SAMPLE_RATE:  # soxr_hq, the resampler librosa.load uses for files
        wave = librosa.resample(wave, orig_sr=sr, target_sr=SAMPLE_RATE)
    try:
        return compute_mel(wave)
    except ValueError as error:  # samples absurdly large, or none left at 22,050 Hz
        raise UserError(f'audio: {error}') from None


class Model:
    """A trained checkpoint, ready: song and word embeddings, and tag scores over its tag `vocabulary`."""

    def __init__(self, network, info, tags, tag_vectors, w2v_path=None, input_length=173, num_chunk=8,
                 lexicon_path=None):
        from search_query import QueryEncoder
        self.network, self.info = network, info
        self.device = next(network.parameters()).device
        self.vocabulary = [str(t) for t in tags]
        self.words = QueryEncoder(network, dict(zip(self.vocabulary, tag_vectors)), w2v_path, lexicon_path)
        self.tag_embeddings = self.words.tag_embeddings
        self.input_length, self.num_chunk = input_length, num_chunk

    @classmethod
    def load(cls, checkpoint, data_path=None, device='cpu', w2v_type=None, is_subset=None, w2v_path=None,
             tags=None, tag_vectors=None, **chunking):
        """The tag vocabulary and its word vectors come from `tags`/`tag_vectors`, or from DATA_PATH's tags.npy
        and {w2v_type}_emb.pkl (default: the data the checkpoint was trained on)."""
        from checkpoint import load_model
        from data_loader import SplitData
        from search_query import resolve_w2v_path
        network, info = load_model(checkpoint, device)
        config = info.config
        data_path = data_path or config.get('data_path')
        w2v_type = w2v_type or config.get('w2v_type') or 'google'
        if tags is None:
            if not data_path:
                raise UserError(f'{checkpoint} records no data_path: pass data_path= (for the tag vocabulary)')
            subset = is_subset if is_subset is not None else bool(config.get('is_subset', False))
            data = SplitData(data_path, subset, w2v_type, 'spec', splits=())
            tags, tag_vectors = data.tags, data.tag_vectors
        from search_terms import dataset_lexicon
        return cls(network, info, tags, np.asarray(tag_vectors, dtype=np.float32),
                   resolve_w2v_path(w2v_type, data_path, w2v_path), lexicon_path=dataset_lexicon(data_path),
                   **chunking)

    def embed_spectrograms(self, specs, batch_size=16):
        """(n, 256) unit embeddings of (128, T) log-mel spectrograms, chunked and averaged as TEST does."""
        import torch
        import torch.nn.functional as F

        from data_loader import chunk_starts, crop
        if self.info.input_type != 'spec':
            raise UserError(f'{self.info.path} is a {self.info.input_type!r} model: it embeds item factors, not '
                            'audio; use an acoustic (spec) checkpoint')
        out = []
        with torch.inference_mode():
            for start in range(0, len(specs), batch_size):
                chunks = np.stack([np.stack([crop(s, c, self.input_length) for c in chunk_starts(
                    s.shape[1], self.input_length, self.num_chunk)]) for s in specs[start:start + batch_size]])
                emb = self.network.chunks_to_embedding(torch.from_numpy(chunks).to(self.device), None)
                out.append(F.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 256), np.float32)

    def embed_audio(self, audio, sr=None):
        """(n, 256) unit embeddings of audio files or waveforms (any sample rate: `sr` for waveforms)."""
        return self.embed_spectrograms([mel_of(a, sr) for a in as_list(audio)])

    def embed_words(self, queries, mode='tags'):
        """(n, 256) unit embeddings of queries, read as search.py query reads them (search_terms)."""
        queries = list(queries) if isinstance(queries, (list, tuple)) else [queries]
        if not all(isinstance(q, str) for q in queries):
            raise UserError(f'queries: expected strings, got {[type(q).__name__ for q in queries][:5]}')
        return np.stack([self.words.encode(q, mode)[0] for q in queries])

    def interpret(self, query, mode='tags'):
        """The tags, with weights, that a query becomes (search_terms.Interpreter.interpret)."""
        return self.words.interpret(query, mode)

    def tag_scores(self, song_embeddings):
        """(n, n_tags) cosine of each song with each tag of the vocabulary."""
        return np.atleast_2d(song_embeddings) @ self.tag_embeddings.T

    def tags(self, audio, k=None, sr=None):
        """[(tag, score)] ranked over the vocabulary, for one file or waveform (a list: one ranking each)."""
        scores = self.tag_scores(self.embed_audio(audio, sr))
        ranked = [rank_tags(self.vocabulary, row, k) for row in scores]
        return ranked[0] if is_one(audio) else ranked


def check_k(k, none_ok=False):
    """k of the API: a whole number >= 1 (a negative one sliced the answer silently: k=-1 gave 49 of 50 tags)."""
    if (k is None and none_ok) or (isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1):
        return k
    raise UserError(f'k={k!r}: pass a whole number >= 1' + (' (or None: all)' if none_ok else ''))


def rank_tags(tags, scores, k=None):
    order = np.argsort(-scores, kind='stable')[:check_k(k, none_ok=True)]
    return [(tags[i], float(scores[i])) for i in order]


class Index:
    """A built search index (search.py index): search by words, by audio, by a song of the catalogue."""

    def __init__(self, searcher, device='cpu'):
        self.searcher, self.device = searcher, device
        self.meta = searcher.meta
        files = searcher.files
        self.vocabulary = list(files.tag_names)
        self.tag_embeddings = searcher.encoder.tag_embeddings
        self._model = None

    @classmethod
    def open(cls, index_path, w2v_path=None, data_path=None, device='cpu', nprobe=None, ef_search=None):
        from search_query import Searcher
        return cls(Searcher(index_path, w2v_path, data_path, nprobe, ef_search), device)

    @property
    def model(self):
        """The index's checkpoint, loaded on first need (queries by audio)."""
        if self._model is None:
            checkpoint = self.meta.get('checkpoint')
            if not checkpoint or not os.path.isfile(checkpoint):
                raise UserError(f'queries by audio need the checkpoint the index was built with ({checkpoint}), '
                                'which is not there; rebuild the index with its checkpoint at hand')
            files = self.searcher.files
            self._model = Model.load(checkpoint, device=self.device, tags=self.vocabulary or ['-'],
                                     tag_vectors=files.tag_vectors if files.tag_vectors is not None
                                     else np.zeros((1, self.meta['word_dim']), np.float32),
                                     input_length=self.meta['input_length'], num_chunk=self.meta['num_chunk'])
        return self._model

    def search(self, words, k=10, mode='tags'):
        if not isinstance(words, str):
            raise UserError(f'words: a query is a string, got {type(words).__name__}')
        return self.searcher.search(words, check_k(k), mode)

    def search_audio(self, audio, k=10, sr=None):
        check_k(k)
        label = os.path.basename(audio) if isinstance(audio, (str, os.PathLike)) else 'waveform'
        return self.searcher.search_vector(self.model.embed_audio(audio, sr)[0], k, f'audio:{label}')

    def similar(self, track_id, k=10):
        return self.searcher.similar(track_id, check_k(k))

    def predicted_tags(self, embedding, k=None):
        if not self.vocabulary:
            raise UserError(f'{self.searcher.files.path} has no tag vocabulary (an --audio_dir index built '
                            'without --data_path); rebuild it with --data_path')
        return rank_tags(self.vocabulary, self.tag_embeddings @ np.asarray(embedding, dtype=np.float32), k)

    def tags(self, track_id, k=10):
        """{'track_id', 'predicted': [(tag, score)] over the vocabulary, 'annotated': [tag]}."""
        row = self.searcher.row(track_id)
        embedding = self.searcher.files.embeddings()[row]
        return {'track_id': str(track_id), 'predicted': self.predicted_tags(embedding, k),
                'annotated': self.searcher.tags_of(row)}

    def tag_audio(self, audio, k=10, sr=None):
        return self.predicted_tags(self.model.embed_audio(audio, sr)[0], k)
