"""Answering queries: words -> one query vector (QueryEncoder), a built index searched by it (Searcher), results
printed (format_result).

    from search_query import Searcher
    result = Searcher('search_index').search('smooth jazz, saxophone', k=10)

A query is one or more terms whose word vectors are averaged: a tag of the vocabulary (a multi-word tag such as
"smooth jazz" or smooth_jazz counts as one term), or any word the full word vectors know. Commas separate terms
explicitly ("hip hop, piano"). Queries made of tags never load the full vectors.
"""
import difflib
import os
import re

import numpy as np

from errors import NotFound, UserError
from search_index import set_search_params
from search_store import read_index

SUGGESTION_VOCAB = 200_000  # nearest-word suggestions come from the most frequent words of the full vectors


def normalise_tag(text):
    return ' '.join(text.lower().replace('_', ' ').split())


def is_plain_word_vectors(path):
    """word2vec .bin/.txt files are plain data; a gensim .model/.kv file is a pickle that can run code."""
    return bool(path) and str(path).endswith(('.bin', '.bin.gz', '.txt'))


def resolve_w2v_path(w2v_type, data_path, w2v_path=None):
    """The full word vectors for words that are not tags: --w2v_path, else the default file of w2v_type."""
    from preprocess_utils import default_google_path, default_music_path
    if w2v_path:
        return w2v_path
    if data_path is None:
        return None
    if w2v_type == 'music':
        return default_music_path(data_path)
    google = default_google_path(data_path)
    glove = os.path.join(data_path, 'glove-6b-50d.bin')
    return glove if not os.path.isfile(google) and os.path.isfile(glove) else google


class UnknownWord(UserError):
    """A word neither a tag nor in the full vectors; `suggestions` holds the nearest known spellings."""

    def __init__(self, message, word, suggestions):
        super().__init__(message)
        self.word, self.suggestions = word, suggestions


def tag_branch(word_dim, state):
    """The model's tag branch (fc1, bn1, fc2) in eval mode, from arrays or tensors."""
    import torch

    from model import TripletModel
    model = TripletModel(word_dim)
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})
    return model.eval()


class QueryEncoder:
    """Text -> terms -> averaged word vector -> the model's tag branch -> unit 256-d query vector.

    model: anything with word_to_embedding (a full model or its tag branch), in eval mode, on CPU.
    tag_vectors: {tag: vector}; w2v_path: the full word vectors for other words (loaded on first need)."""

    def __init__(self, model, tag_vectors, w2v_path=None):
        self.model = model
        self.word_dim = model.fc1.in_features
        self.tag_vectors = {normalise_tag(str(k)): np.asarray(v, dtype=np.float32).ravel()
                            for k, v in tag_vectors.items()}
        self.max_span = max([3] + [len(t.split()) for t in self.tag_vectors])
        self.w2v_path = w2v_path
        self._full = None

    def full_vectors(self):
        """gensim KeyedVectors of the full vocabulary, loaded on first need (queries of tags never need it)."""
        if self._full is None and self.w2v_path and os.path.isfile(self.w2v_path):
            from preprocess_utils import load_keyed_vectors
            self._full = load_keyed_vectors(self.w2v_path, '--w2v_path')
        return self._full

    def lookup(self, words, full):
        """(term, vector) for a run of words: a tag, else a word or phrase ('smooth_jazz') of the full vectors."""
        tag = normalise_tag(' '.join(words))
        if tag in self.tag_vectors:
            return tag, self.tag_vectors[tag]
        if full is not None:
            from preprocess_utils import vocab_key
            spaced = ' '.join(words).replace('_', ' ')
            cases = (spaced, spaced.lower(), spaced.capitalize(), spaced.title(), spaced.upper())
            for form in dict.fromkeys(cases):  # as typed first; vocab_key tries 'smooth_jazz' for 'smooth jazz'
                key = vocab_key(form, full.key_to_index)
                if key is not None:
                    return key, np.asarray(full[key], dtype=np.float32)
        return None

    def terms(self, query, full):
        """Greedy longest match, left to right, inside each comma-separated part: (terms, unknown words)."""
        found, unknown = [], []
        for part in re.split(r'[,;]', query):
            words = part.split()
            i = 0
            while i < len(words):
                for j in range(min(len(words), i + self.max_span), i, -1):
                    hit = self.lookup(words[i:j], full)
                    if hit is not None:
                        found.append(hit)
                        i = j
                        break
                else:
                    unknown.append(words[i])
                    i += 1
        return found, unknown

    def suggestions(self, word, n=5):
        """Nearest known spellings: tags first, then the most frequent words of the full vectors."""
        target = word.lower()
        candidates = list(self.tag_vectors)
        if self._full is not None:
            candidates += [w for w in self._full.index_to_key[:SUGGESTION_VOCAB] if abs(len(w) - len(target)) <= 3]
        by_lower = {}
        for c in candidates:  # one spelling per lower-case form, tags first
            by_lower.setdefault(c.lower(), c)
        return [by_lower[m] for m in difflib.get_close_matches(target, list(by_lower), n=n, cutoff=0.6)]

    def unknown_word(self, word):
        close = self.suggestions(word)
        where = (f'neither one of the {len(self.tag_vectors)} tags nor in {self.w2v_path}' if self._full is not None
                 else f'not one of the {len(self.tag_vectors)} tags, and no full word vectors at {self.w2v_path} '
                      'for other words: pass --w2v_path')
        return UnknownWord(f'unknown word {word!r} ({where}); nearest known words: '
                           + (', '.join(close) if close else '(none close)'), word, close)

    def word_vector(self, query):
        """(mean word vector of the query's terms, the terms)."""
        if not query.strip():
            raise UserError('empty query; type a tag or some words')
        found, unknown = self.terms(query, None)
        if unknown and self.full_vectors() is not None:
            found, unknown = self.terms(query, self._full)
        if not found and not unknown:
            raise UserError(f'query {query!r} has no words; type a tag or some words')
        if unknown:
            raise self.unknown_word(unknown[0])
        vectors = np.stack([v for _, v in found])
        if vectors.shape[1] != self.word_dim:
            raise UserError(f'the word vectors of {self.w2v_path} are {vectors.shape[1]}-d but the model expects '
                            f'{self.word_dim}-d ones; pass the --w2v_path of the vectors it was trained with')
        return vectors.mean(axis=0), [t for t, _ in found]

    def embed_vectors(self, vectors):
        """(n, word_dim) word vectors -> (n, 256) unit embeddings through the tag branch."""
        import torch
        import torch.nn.functional as F
        device = self.model.fc1.weight.device
        with torch.inference_mode():
            emb = self.model.word_to_embedding(torch.as_tensor(np.asarray(vectors, dtype=np.float32), device=device))
            return F.normalize(emb.float(), dim=-1).cpu().numpy()

    def encode(self, query):
        """(unit query vector (256,), the terms used)."""
        vector, terms = self.word_vector(query)
        return self.embed_vectors(vector[None])[0], terms


class Searcher:
    """A built index ready for queries: FAISS index, sidecar and query encoder (no song is re-embedded)."""

    def __init__(self, index_path, w2v_path=None, data_path=None, nprobe=None, ef_search=None):
        files = read_index(index_path)
        self.files, self.meta, self.index = files, files.meta, files.faiss_index
        stored = self.meta['index']
        set_search_params(self.index, nprobe if nprobe is not None else stored.get('nprobe'),
                          ef_search if ef_search is not None else stored.get('ef_search'))
        self.track_ids, self.paths = files.track_ids, files.paths
        self.row_of = {str(t): i for i, t in enumerate(self.track_ids)}
        try:
            model = tag_branch(self.meta['word_dim'], files.encoder_state)
        except (RuntimeError, KeyError, ValueError, TypeError) as error:
            from search_store import ENCODER_FILE, rebuild_hint
            raise UserError(f'{os.path.join(index_path, ENCODER_FILE)} does not hold the tag branch of a '
                            f'{self.meta["word_dim"]}-d model ({str(error).splitlines()[0]}); '
                            f'{rebuild_hint(index_path, self.meta)}') from None
        tag_vectors = dict(zip(files.tag_names, files.tag_vectors)) if files.tag_vectors is not None else {}
        w2v = resolve_w2v_path(self.meta['w2v_type'], data_path or self.meta.get('data_path'),
                               w2v_path or self.meta.get('w2v_path'))
        if not (w2v_path or data_path) and not is_plain_word_vectors(w2v):
            w2v = None  # named by meta.json, not by the user: a gensim pickle there could run code (issue 19)
        self.encoder = QueryEncoder(model, tag_vectors, w2v)

    def tags_of(self, i):
        f = self.files
        return [str(t) for t in f.tags[f.tag_indices[f.tag_indptr[i]:f.tag_indptr[i + 1]]]]

    def row(self, track_id):
        if str(track_id) not in self.row_of:
            raise NotFound(f'unknown track id {track_id!r}: not one of the {len(self.row_of)} songs of '
                            f'{self.files.path}')
        return self.row_of[str(track_id)]

    def hits(self, vector, k, skip=None):
        """Ranked hits of a unit 256-d vector; `skip` (a row) is left out (a song is not similar to itself)."""
        if k < 1:
            raise UserError(f'--k must be at least 1, got {k}')
        k = min(k, self.index.ntotal)
        extra = 1 if skip is not None and k < self.index.ntotal else 0
        scores, ids = self.index.search(np.asarray(vector, dtype=np.float32)[None], k + extra)
        results = []
        for score, i in zip(scores[0], ids[0]):
            if i < 0 or i == skip or len(results) == k:  # an approximate index may find fewer than k
                continue
            hit = {'rank': len(results) + 1, 'track_id': str(self.track_ids[i]), 'score': float(score),
                   'tags': self.tags_of(i)}
            if self.paths is not None:
                hit['path'] = str(self.paths[i])
            results.append(hit)
        return results

    def answer(self, query, terms, results):
        return {'query': query, 'terms': terms, 'k': len(results), 'index_type': self.meta['index']['type'],
                'n_songs': int(self.index.ntotal), 'results': results}

    def search(self, query, k=10):
        vector, terms = self.encoder.encode(query)
        return self.answer(query, terms, self.hits(vector, k))

    def similar(self, track_id, k=10):
        """The songs nearest a song of the index (itself left out)."""
        row = self.row(track_id)
        vector = np.asarray(self.files.embeddings()[row], dtype=np.float32)
        return self.answer(f'track:{track_id}', [str(track_id)], self.hits(vector, k, skip=row))

    def search_vector(self, vector, k=10, label='vector'):
        return self.answer(label, [label], self.hits(vector, k))


def format_result(result):
    lines = [f'query: {result["query"]!r}  terms: {" + ".join(result["terms"])}  '
             f'({result["index_type"]} index of {result["n_songs"]} songs)',
             f'{"rank":>4}  {"score":>7}  {"track_id":<24}  tags']
    for hit in result['results']:
        lines.append(f'{hit["rank"]:>4}  {hit["score"]:>7.4f}  {hit["track_id"]:<24}  '
                     f'{", ".join(hit["tags"]) or hit.get("path", "-")}')
    return '\n'.join(lines)
