"""What a query means: its words -> the tags of the vocabulary, each with a weight (Interpreter.interpret).

    from search_terms import Interpreter
    meaning = Interpreter(tag_vectors, 'data/demo/glove-6b-50d.bin').interpret('baroque keyboard music')
    meaning['tags']     # [{'tag': 'baroque', 'weight': 1.0}, {'tag': 'accordion', 'weight': 0.05}, ...]

A query is split into comma-separated parts, each read left to right: the longest run of words that is a tag
("smooth jazz" or smooth_jazz for a multi-word tag; "reels" for reel, "string" for strings) is that tag, weight 1;
a stop word is dropped; a word or phrase of tag_lexicon.tsv (WordNet's names for the tags: fiddle -> violin,
middle ages -> medieval) is its tags, weight 1 shared among them; any other word (or a phrase of the full word
vectors) is mapped to its nearest tags by the cosine of the word vectors: at most
TOP_TAGS tags, each at least MIN_SIMILARITY and within MARGIN of the best, their weights the similarities scaled
to add up to 1, and the word then counts WORD_WEIGHT of a typed tag. A known word with no tag that near is shown as
unmapped; an unknown word is shown with the nearest spellings and, when no word of the query is known, it is the
error. search_query combines the tags in the joint space; the same reading serves the CLI, the Python API and
the web page.
"""
import difflib
import os
import re

import numpy as np

from errors import UserError

MODES = ('tags', 'sentence', 'average')  # search_query.QueryEncoder says what each does
TOP_TAGS = 3
MIN_SIMILARITY = 0.5
MARGIN = 0.1
# A typed tag is what the user asked for; a word's nearest tags are a guess (the demo's GloVe puts `keyboard` nearest
# accordion and guitar), so a mapped word (or the sentence encoder's phrase) counts this fraction of a typed tag:
# it refines the typed tags without outvoting them. Chosen on the development half of demo_data/queries.tsv
# (docs/queries.md). A query of words alone is unchanged by it (the query vector is normalised), so there the words
# keep their weights.
WORD_WEIGHT = 0.15
LEXICON_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tag_lexicon.tsv')
# terms that say which tag is meant: a typed tag, and a word the lexicon names the tag with (fiddle: violin)
EXACT = ('tag', 'lexicon')
SUGGESTION_VOCAB = 200_000  # nearest-word suggestions come from the most frequent words of the full vectors
# English function words, and words every song of a music catalogue matches ("music", "song", "played"), which
# therefore say nothing about which songs are meant
STOP_WORDS = frozenset('''
a about above after again all also am an and any anything are as at be been being but by can could did do does
doing for from get give had has have having he her here him his how i if in into is it its just me more most my
no nor not of off on once only or other our out over please some something such than that the their them then
there these they this those through to too under up very want was we were what when where which while who whom
why will with would you your
music musical musician musicians song songs tune tunes track tracks piece pieces sound sounds sounding play plays
played playing recording recordings listen listening hear kind sort style type like find show
'''.split())


def check_mode(mode):
    if mode not in MODES:
        raise UserError(f'unknown query mode {mode!r}; use one of {", ".join(MODES)}')
    return mode


def normalise_tag(text):
    return ' '.join(text.lower().replace('_', ' ').split())


def words_of(part):
    """The words of a comma-separated part: letters, digits, _ and inner apostrophes or hyphens; "'s" dropped."""
    words = [w.strip("'-") for w in re.findall(r"[\w'-]+", part)]
    return [re.sub(r"'s$", '', w) for w in words if w]


def word_forms(text):
    """text, then its singular or plural forms: a user types "reels" for the tag reel, "string" for strings."""
    forms = [text, text + 's', text + 'es']
    if text.endswith('ies'):
        forms.append(text[:-3] + 'y')
    if text.endswith('es'):
        forms.append(text[:-2])
    if text.endswith('s') and not text.endswith('ss'):
        forms.append(text[:-1])
    return forms


# the relations tag_lexicon.py writes, closest first; one a researcher writes that is not here ranks after them
RELATIONS = ('spelled out', 'synonym', 'place', 'period', 'part', 'kind of', 'part of a part', 'family', 'described as')


def closest(entries):
    """A word's tags of its closest relation only: Paris is a part of France, and a part of a part (Texas) of the
    United States; the user means France."""
    rank = [RELATIONS.index(r) if r in RELATIONS else len(RELATIONS) for _, r in entries]
    return [entry for entry, r in zip(entries, rank) if r == min(rank)]


def read_lexicon(path, tags):
    """{word or phrase: [(tag, relation)]} for the given tags, from word<TAB>tag<TAB>relation lines (tag_lexicon.py
    writes them from WordNet; a researcher may add lines). No file: no lexicon, the word vectors alone map words."""
    lexicon, tags = {}, set(tags)
    if not path or not os.path.isfile(path):
        return lexicon
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            fields = line.rstrip('\n').split('\t')
            if not line.strip() or line.startswith('#'):
                continue
            if len(fields) != 3:
                raise UserError(f'{path} line {number}: {line.strip()!r} is not word<TAB>tag<TAB>relation; fix or '
                                'delete the line')
            word, tag, relation = normalise_tag(fields[0]), normalise_tag(fields[1]), fields[2].strip()
            if tag not in tags:  # a tag of another dataset
                continue
            for form in dict.fromkeys([word, word.replace(' ', '').replace('-', '')]):  # squeeze box: squeezebox
                if form and form not in tags:  # a tag always means itself
                    lexicon.setdefault(form, []).append((tag, relation))
    return {word: closest(entries) for word, entries in lexicon.items()}


def dataset_lexicon(data_path):
    """DATA_PATH/tag_lexicon.tsv when a dataset has its own (`tag_lexicon.py --tags DATA/tag_categories.tsv --out
    DATA/tag_lexicon.tsv` for tags of your own); None: the one beside this file."""
    path = os.path.join(data_path, 'tag_lexicon.tsv') if data_path else None
    return path if path and os.path.isfile(path) else None


class UnknownWord(UserError):
    """A word neither a tag nor in the full vectors; `suggestions` holds the nearest known spellings."""

    def __init__(self, message, word, suggestions):
        super().__init__(message)
        self.word, self.suggestions = word, suggestions


def tag_similarities(vector, tag_matrix):
    """Cosine of one word vector with each row of tag_matrix (the tags' word vectors)."""
    norms = np.linalg.norm(tag_matrix, axis=1) * max(float(np.linalg.norm(vector)), 1e-12)
    return tag_matrix @ vector / np.maximum(norms, 1e-12)


def nearest_tags(similarities, tags, top=TOP_TAGS, floor=MIN_SIMILARITY, margin=MARGIN):
    """[(tag, similarity, weight)]: the best `top` tags at least `floor` and within `margin` of the best; the
    weights are the similarities scaled to add up to 1. Empty when no tag reaches `floor`."""
    order = np.argsort(-similarities, kind='stable')[:top]
    best = float(similarities[order[0]]) if len(order) else 0.0
    kept = [i for i in order if similarities[i] >= floor and similarities[i] >= best - margin]
    total = float(sum(similarities[i] for i in kept))
    return [(tags[i], float(similarities[i]), float(similarities[i]) / total) for i in kept]


class Interpreter:
    """Reads queries over a tag vocabulary: tag_vectors {tag: word vector}; w2v_path: the full word vectors for
    other words (loaded on first need: queries made of tags and stop words never load them); lexicon_path: words
    that name tags (None: tag_lexicon.tsv beside this file; '': none)."""

    def __init__(self, tag_vectors, w2v_path=None, lexicon_path=None):
        self.tag_vectors = {normalise_tag(str(k)): np.asarray(v, dtype=np.float32).ravel()
                            for k, v in tag_vectors.items()}
        self.tags = list(self.tag_vectors)
        self.lexicon = read_lexicon(LEXICON_FILE if lexicon_path is None else lexicon_path, self.tags)
        self.tag_matrix = (np.stack(list(self.tag_vectors.values())) if self.tag_vectors
                           else np.zeros((0, 1), np.float32))
        self.max_span = max([3] + [len(t.split()) for t in self.tags] + [len(w.split()) for w in self.lexicon])
        self.w2v_path = w2v_path
        self._full = None

    def full_vectors(self):
        """gensim KeyedVectors of the full vocabulary, loaded on first need."""
        if self._full is None and self.w2v_path and os.path.isfile(self.w2v_path):
            from word_vectors import load_keyed_vectors
            self._full = load_keyed_vectors(self.w2v_path, '--w2v_path')
        return self._full

    def tag_of(self, words, loose=True):
        """The tag a run of words names (loose: in the singular or the plural too); None when it names none."""
        text = normalise_tag(' '.join(words))
        return next((f for f in (word_forms(text) if loose else [text]) if f in self.tag_vectors), None)

    def lexicon_entry(self, words):
        """The lexicon's tags for a run of words (singular or plural), as (text, [(tag, relation)], 'lexicon')."""
        text = normalise_tag(' '.join(words))
        form = next((f for f in word_forms(text) if f in self.lexicon), None)
        return (form, self.lexicon[form], 'lexicon') if form else None

    def lexicon_phrase(self, words):
        """A phrase of the lexicon that may outrank the tags inside it: a tag spelled out ("drum and bass" for
        drumnbass, its inner stop words left out), or a phrase none of whose words is a tag ("middle ages"); "folk
        ballads" stays the two tags folk and ballad, not WordNet's one kind of folk."""
        if len(words) < 2:
            return None
        inner = [w for w in words if w.lower() not in STOP_WORDS]  # "drum and bass": drum bass; not "a drum"
        hit = self.lexicon_entry(words) or (self.lexicon_entry(inner) if len(inner) > 1 and {
            words[0].lower(), words[-1].lower()}.isdisjoint(STOP_WORDS) else None)  # "easy listening" as written
        if hit is None:
            return None
        if any(relation == 'spelled out' for _, relation in hit[1]) or \
                not any(self.tag_of([w]) for w in words if w.lower() not in STOP_WORDS):
            return hit
        return None

    def lookup(self, words, full, loose=True):
        """(key, vector, is_tag) for a run of words: a tag, else a word or phrase ('smooth_jazz') of the full
        vectors; None when neither."""
        tag = self.tag_of(words, loose)
        if tag is not None:
            return tag, self.tag_vectors[tag], True
        if full is not None:
            from word_vectors import vocab_key
            spaced = ' '.join(words).replace('_', ' ')
            cases = (spaced, spaced.lower(), spaced.capitalize(), spaced.title(), spaced.upper())
            for form in dict.fromkeys(cases):  # as typed first; vocab_key tries 'smooth_jazz' for 'smooth jazz'
                key = vocab_key(form, full.key_to_index)
                if key is not None:
                    return key, np.asarray(full[key], dtype=np.float32), False
        return None

    def match(self, words, i, full, drop_stop_words):
        """(term or None, words consumed) at words[i]: the longest tag or lexicon_phrase, a stop word (dropped), the
        longest word or phrase of the lexicon or the full vectors without a stop word in it, else one unknown word
        (term None).
        Without drop_stop_words (the former averaging) words are read as typed: no plurals, no lexicon."""
        spans = range(min(len(words), i + self.max_span), i, -1)
        for j in spans:
            if self.tag_of(words[i:j], drop_stop_words) is not None:
                return self.lookup(words[i:j], None, drop_stop_words), j - i
            hit = self.lexicon_phrase(words[i:j]) if drop_stop_words else None
            if hit is not None:
                return hit, j - i
        if drop_stop_words and words[i].lower() in STOP_WORDS:
            return 'stop', 1
        for j in spans:
            if drop_stop_words and any(w.lower() in STOP_WORDS for w in words[i:j]):
                continue
            hit = self.lexicon_entry(words[i:j]) if drop_stop_words else None
            hit = hit or self.lookup(words[i:j], full, drop_stop_words)
            if hit is not None:
                return hit, j - i
        return None, 1

    def split(self, query, full, drop_stop_words=True):
        """Greedy longest match inside each comma-separated part: ([(text, key, vector, is_tag)], stop words,
        unknown words)."""
        found, stops, unknown = [], [], []
        for part in re.split(r'[,;]', query):
            words = words_of(part)
            i = 0
            while i < len(words):
                hit, n = self.match(words, i, full, drop_stop_words)
                text = ' '.join(words[i:i + n])
                if hit == 'stop':
                    stops.append(text)
                elif hit is None:
                    unknown.append(text)
                else:
                    found.append((text, *hit))
                i += n
        return found, stops, unknown

    def read(self, query, drop_stop_words=True):
        """split(), loading the full vectors only when a word is not a tag."""
        if not query.strip():
            raise UserError('empty query; type a tag or some words')
        found, stops, unknown = self.split(query, None, drop_stop_words)
        if unknown and self.full_vectors() is not None:
            found, stops, unknown = self.split(query, self._full, drop_stop_words)
        if not found and not unknown:
            raise UserError(f'query {query!r} has no words that name music (only stop words: '
                            f'{", ".join(stops) or "none"}); type a tag or some words')
        return found, stops, unknown

    def interpret(self, query, mapper=None):
        """{'tags': [{'tag', 'weight'}], 'terms': [{'text', 'kind', 'tags': [{'tag', 'similarity', 'weight'}]}],
        'stop_words', 'unknown': [{'word', 'suggestions'}], 'unmapped': [{'word', 'nearest', 'similarity'}]}.
        mapper: other words -> tags (default: nearest tags in the word vectors; search_sentence's encoder)."""
        found, stops, unknown = self.read(query)
        extra = list(unknown) if mapper is not None else []  # a sentence encoder reads any word, in pieces
        unknown = [] if mapper is not None else unknown
        if not found and not extra:
            raise self.unknown_word(unknown[0])
        terms, unmapped, loose = [], [], []
        for text, key, vector, is_tag in found:
            if is_tag == 'lexicon':  # vector: [(tag, relation)]; the word means them all, equally
                terms.append({'text': text, 'kind': 'lexicon',
                              'tags': [(tag, 1.0, 1.0 / len(vector), relation) for tag, relation in vector]})
            elif is_tag:
                terms.append({'text': text, 'kind': 'tag', 'tags': [(key, 1.0, 1.0)]})
            elif mapper is None:
                self.map_word(text, vector, terms, unmapped)
            else:  # the union of both readings helped on the development half but not on the held-out one
                loose.append(text)
        if loose or extra:
            text = ' '.join(loose + extra)
            mapped = mapper(text, self.tags)
            terms += [{'text': text, 'kind': 'sentence', 'tags': mapped}] if mapped else []
            unmapped += [] if mapped else [{'word': text, 'nearest': None, 'similarity': None}]
        return self.meaning(query, terms, stops, unknown, unmapped)

    def map_word(self, text, vector, terms, unmapped):
        if vector.shape[0] != self.tag_matrix.shape[1]:
            raise UserError(f'the word vectors of {self.w2v_path} are {vector.shape[0]}-d but the tags\' are '
                            f'{self.tag_matrix.shape[1]}-d; pass the --w2v_path of the vectors the model was '
                            'trained with')
        similarities = tag_similarities(vector, self.tag_matrix)
        tags = nearest_tags(similarities, self.tags)
        if tags:
            terms.append({'text': text, 'kind': 'word', 'tags': tags})
        else:
            best = int(np.argmax(similarities))
            unmapped.append({'word': text, 'nearest': self.tags[best], 'similarity': float(similarities[best])})

    def meaning(self, query, terms, stops, unknown, unmapped):
        if not terms:
            why = '; '.join(f'{u["word"]!r}' + (f' is nearest {u["nearest"]!r} at only {u["similarity"]:.2f}'
                                                 if u['nearest'] else ' is near no tag') for u in unmapped)
            raise UserError(f'no word of {query!r} is close to a tag of this index ({why}; a word must reach a '
                            f'similarity of {MIN_SIMILARITY}); the tags: {", ".join(self.tags)}')
        weights = {}
        typed = any(term['kind'] in EXACT for term in terms)  # without a typed tag the scale changes nothing
        for term in terms:
            term['tags'] = [dict(zip(('tag', 'similarity', 'weight', 'relation'), (t, round(s, 4), round(w, 4)) +
                                     tuple(rest))) for t, s, w, *rest in term['tags']]
            scale = WORD_WEIGHT if typed and term['kind'] not in EXACT else 1.0
            for tag in term['tags']:
                weights[tag['tag']] = weights.get(tag['tag'], 0.0) + scale * tag['weight']
        ranked = sorted(weights.items(), key=lambda item: -item[1])
        return {'tags': [{'tag': t, 'weight': round(w, 4)} for t, w in ranked], 'terms': terms,
                'stop_words': stops, 'unmapped': unmapped,
                'unknown': [{'word': w, 'suggestions': self.suggestions(w)} for w in unknown]}

    def suggestions(self, word, n=5):
        """Nearest known spellings: tags first, then the most frequent words of the full vectors."""
        target = word.lower()
        candidates = list(self.tags)
        if self._full is not None:
            candidates += [w for w in self._full.index_to_key[:SUGGESTION_VOCAB] if abs(len(w) - len(target)) <= 3]
        by_lower = {}
        for c in candidates:  # one spelling per lower-case form, tags first
            by_lower.setdefault(c.lower(), c)
        return [by_lower[m] for m in difflib.get_close_matches(target, list(by_lower), n=n, cutoff=0.6)]

    def unknown_word(self, word):
        close = self.suggestions(word)
        where = (f'neither one of the {len(self.tags)} tags nor in {self.w2v_path}' if self._full is not None
                 else f'not one of the {len(self.tags)} tags, and no full word vectors at {self.w2v_path} '
                      'for other words: pass --w2v_path')
        return UnknownWord(f'unknown word {word!r} ({where}); nearest known words: '
                           + (', '.join(close) if close else '(none close)'), word, close)
