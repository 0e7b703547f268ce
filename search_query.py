"""Answering queries: words -> one query vector (QueryEncoder), a built index searched by it (Searcher), results
printed (format_result).

    from search_query import Searcher
    result = Searcher('search_index').search('baroque keyboard music', k=10)
    result['interpretation']['tags']   # what the query became: [{'tag': 'baroque', 'weight': 1.0}, ...]

How words become tags is search_terms' (stop words, multi-word tags, nearest tags of other words); here the tags
are combined in the joint space and searched. Queries made of tags never load the full vectors.
"""
import os

import numpy as np

from errors import NotFound, UserError
from search_index import set_search_params
from search_store import read_index
# UnknownWord is raised through here: callers catch it from this module
from search_terms import Interpreter, UnknownWord, check_mode, dataset_lexicon  # noqa: F401


def is_plain_word_vectors(path):
    """word2vec .bin/.txt files are plain data; a gensim .model/.kv file is a pickle that can run code."""
    return bool(path) and str(path).endswith(('.bin', '.bin.gz', '.txt'))


def resolve_w2v_path(w2v_type, data_path, w2v_path=None):
    """The full word vectors for words that are not tags: --w2v_path, else the default file of w2v_type."""
    from word_vectors import default_google_path, default_music_path
    if w2v_path:
        return w2v_path
    if data_path is None:
        return None
    if w2v_type == 'music':
        return default_music_path(data_path)
    google = default_google_path(data_path)
    glove = os.path.join(data_path, 'glove-6b-50d.bin')
    return glove if not os.path.isfile(google) and os.path.isfile(glove) else google


def tag_branch(word_dim, state):
    """The model's tag branch (fc1, bn1, fc2) in eval mode, from arrays or tensors."""
    import torch

    from model import TripletModel
    model = TripletModel(word_dim)
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})
    return model.eval()


class QueryEncoder:
    """Text -> unit 256-d query vector, in one of search_terms.MODES:
      tags      (default) the query read by search_terms.Interpreter as tags with weights; each tag's word vector
                through the model's tag branch, and the weighted sum of those unit embeddings, normalised
      sentence  the same, but the words that are not tags are mapped to tags by a sentence encoder
                (search_sentence, optional packages)
      average   the former path, kept for comparison: every word's vector, stop words included, averaged in word
                space and the mean pushed through the tag branch

    model: anything with word_to_embedding (a full model or its tag branch), in eval mode, on CPU.
    tag_vectors: {tag: vector}; w2v_path: the full word vectors for other words (loaded on first need);
    lexicon_path: words that name tags (None: the shipped tag_lexicon.tsv)."""

    def __init__(self, model, tag_vectors, w2v_path=None, lexicon_path=None):
        self.model = model
        self.word_dim = model.fc1.in_features
        self.words = Interpreter(tag_vectors, w2v_path, lexicon_path)
        self.w2v_path = w2v_path
        self._tag_embeddings = None
        self._sentence = None

    @property
    def tag_embeddings(self):
        """(n_tags, 256) unit embeddings of the vocabulary's tags, in its order: the rows queries combine and
        `search.py tag` ranks."""
        if self._tag_embeddings is None:
            self._tag_embeddings = (self.embed_vectors(self.words.tag_matrix) if self.words.tags
                                    else np.zeros((0, 256), np.float32))
        return self._tag_embeddings

    def word_vector(self, query):
        """The average mode: (mean word vector of every term of the query, stop words included, the terms)."""
        found, _, unknown = self.words.read(query, drop_stop_words=False)
        if unknown:
            raise self.words.unknown_word(unknown[0])
        vectors = np.stack([vector for _, _, vector, _ in found])
        if vectors.shape[1] != self.word_dim:
            raise UserError(f'the word vectors of {self.w2v_path} are {vectors.shape[1]}-d but the model expects '
                            f'{self.word_dim}-d ones; pass the --w2v_path of the vectors it was trained with')
        return vectors.mean(axis=0), [key for _, key, _, _ in found]

    def embed_vectors(self, vectors):
        """(n, word_dim) word vectors -> (n, 256) unit embeddings through the tag branch."""
        import torch
        import torch.nn.functional as F
        device = self.model.fc1.weight.device
        with torch.inference_mode():
            emb = self.model.word_to_embedding(torch.as_tensor(np.asarray(vectors, dtype=np.float32), device=device))
            return F.normalize(emb.float(), dim=-1).cpu().numpy()

    def combine(self, weights):
        """{tag: weight} -> the unit vector of the weighted sum of the tags' unit embeddings (the joint space)."""
        row = {t: i for i, t in enumerate(self.words.tags)}
        total = sum(w * self.tag_embeddings[row[t]] for t, w in weights.items())
        return (total / max(float(np.linalg.norm(total)), 1e-12)).astype(np.float32)

    def interpret(self, query, mode='tags'):
        """search_terms' reading of the query in mode tags or sentence."""
        if check_mode(mode) == 'sentence' and self._sentence is None:
            from search_sentence import SentenceTags
            self._sentence = SentenceTags()
        return {'mode': mode, **self.words.interpret(query, self._sentence if mode == 'sentence' else None)}

    def encode(self, query, mode='tags'):
        """(unit query vector (256,), the terms used, the interpretation)."""
        if mode == 'average':
            vector, terms = self.word_vector(query)
            meaning = {'mode': mode, 'tags': [], 'terms': [{'text': t, 'kind': 'averaged', 'tags': []} for t in terms],
                       'stop_words': [], 'unknown': [], 'unmapped': []}
            return self.embed_vectors(vector[None])[0], terms, meaning
        meaning = self.interpret(query, mode)
        vector = self.combine({t['tag']: t['weight'] for t in meaning['tags']})
        return vector, [t['text'] for t in meaning['terms']], meaning


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
        data = data_path or self.meta.get('data_path')
        w2v = resolve_w2v_path(self.meta['w2v_type'], data, w2v_path or self.meta.get('w2v_path'))
        if not (w2v_path or data_path) and not is_plain_word_vectors(w2v):
            w2v = None  # named by meta.json, not by the user: a gensim pickle there could run code when unpickled
        # a lexicon is text, read as text: one in the data folder that meta.json names is safe to read
        self.encoder = QueryEncoder(model, tag_vectors, w2v, dataset_lexicon(data))

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

    def answer(self, query, terms, results, interpretation=None):
        answer = {'query': query, 'terms': terms, 'k': len(results), 'index_type': self.meta['index']['type'],
                  'n_songs': int(self.index.ntotal), 'results': results}
        return {**answer, 'interpretation': interpretation} if interpretation else answer

    def search(self, query, k=10, mode='tags'):
        vector, terms, meaning = self.encoder.encode(query, mode)
        return self.answer(query, terms, self.hits(vector, k), meaning)

    def similar(self, track_id, k=10):
        """The songs nearest a song of the index (itself left out)."""
        row = self.row(track_id)
        vector = np.asarray(self.files.embeddings()[row], dtype=np.float32)
        return self.answer(f'track:{track_id}', [str(track_id)], self.hits(vector, k, skip=row))

    def search_vector(self, vector, k=10, label='vector'):
        return self.answer(label, [label], self.hits(vector, k))


def describe(meaning):
    """The interpretation in one line: the tags and weights, then where the words' tags came from."""
    if meaning['mode'] == 'average':
        return 'words averaged in word space: ' + ' + '.join(t['text'] for t in meaning['terms'])
    notes = [f'{t["text"]} -> ' + ', '.join(f'{m["tag"]} ' + (f'({m["relation"]})' if 'relation' in m
                                                              else f'{m["similarity"]:.2f}') for m in t['tags'])
             for t in meaning['terms'] if t['kind'] != 'tag']
    notes += [f'dropped: {", ".join(meaning["stop_words"])}'] if meaning['stop_words'] else []
    notes += [f'{u["word"]!r} near no tag' + (f' (best {u["nearest"]} {u["similarity"]:.2f})' if u['nearest'] else '')
              for u in meaning['unmapped']]
    notes += [f'unknown {u["word"]!r}' + (f' (did you mean {", ".join(u["suggestions"])}?)' if u['suggestions'] else '')
              for u in meaning['unknown']]
    tags = ' + '.join(f'{t["tag"]} {t["weight"]:.2f}' for t in meaning['tags'])
    return f'interpreted as: {tags}' + (f'  ({"; ".join(notes)})' if notes else '')


def format_result(result):
    lines = [f'query: {result["query"]!r}  terms: {" + ".join(result["terms"])}  '
             f'({result["index_type"]} index of {result["n_songs"]} songs)']
    if result.get('interpretation'):
        lines.append(describe(result['interpretation']))
    lines.append(f'{"rank":>4}  {"score":>7}  {"track_id":<24}  tags')
    for hit in result['results']:
        lines.append(f'{hit["rank"]:>4}  {hit["score"]:>7.4f}  {hit["track_id"]:<24}  '
                     f'{", ".join(hit["tags"]) or hit.get("path", "-")}')
    return '\n'.join(lines)
