"""The music21 corpus as the demo reads it: where it lies, ABC tunes, text folding, stable ids, and the
sources (strata) the songs are drawn from with their share of the songs."""
import hashlib
import os
import re
import unicodedata
from collections import defaultdict


def corpus_dir():
    import music21
    return os.path.join(os.path.dirname(music21.__file__), 'corpus')


def stable_int(*parts):
    """A 64-bit integer from the parts (hashlib: unlike hash(), the same in every process)."""
    return int.from_bytes(hashlib.sha256('\x1f'.join(map(str, parts)).encode()).digest()[:8], 'little')


def msd_id(prefix, key):
    """MSD-shaped id: prefix + 16 chars of [A-Z0-9], a hash of `key` (TR... tracks, AR... artists)."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest(), 'big')
    chars = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'
    return prefix + ''.join(chars[(digest >> (6 * i)) % 36] for i in range(16))


def fold(text):
    """Lower-case ASCII: German umlauts as ae/oe/ue (the Essen encodings spell them so too)."""
    text = text.lower().replace('ä', 'ae').replace('ö', 'oe').replace('ü', 'ue').replace('ß', 'ss')
    return unicodedata.normalize('NFKD', text).encode('ascii', 'ignore').decode()


def clean_text(text):
    return ' '.join(str(text).replace('\t', ' ').split())


def new_work(work_id, source, artist, title, parse, tags, text=''):
    """tags: list of (category, original_tag, cleaned_tag) read from the metadata."""
    return {'work_id': work_id, 'source': source, 'artist': clean_text(artist), 'title': clean_text(title),
            'parse': parse, 'tags': [list(t) for t in tags], 'text': clean_text(text)}


def read_abc(path):
    """Tunes of an ABC file: (header fields {letter: [values]}, tune text) per X: block."""
    raw = open(path, 'rb').read()
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError:  # some Essen files are Latin-1
        text = raw.decode('latin-1')
    tunes = []
    for block in re.split(r'(?m)^(?=X:)', text)[1:]:
        fields = defaultdict(list)
        for line in block.splitlines():
            match = re.match(r'([A-Z]):(.*)', line)
            if match:
                fields[match.group(1)].append(match.group(2).strip().rstrip(']').strip())
        tunes.append((fields, block))
    return tunes


def abc_works(relpath):
    """(work id, fields, parse spec) of every tune of a corpus ABC file."""
    for fields, block in read_abc(os.path.join(corpus_dir(), relpath)):
        number = fields['X'][0] if fields['X'] else '0'
        yield f'{relpath}#{number}', fields, {'abc': block}


STRATA = {  # share of the songs; small art-music sources are taken (almost) whole
    'essen_german': .06, 'essen_neighbours': .17, 'essen_chinese': .09, 'essen_lorraine': .04,
    'essen_luxembourg': .04, 'essen_irish': .03, 'oneills': .12, 'ryans': .08, 'aird': .08,
    'northumbrian': .03, 'fife': .03, 'bach': .04, 'palestrina': .04, 'monteverdi': .03, 'trecento': .06,
    'chamber': .035, 'other_art': .025}


SOURCE_NAMES = {
    'essen_german': 'Essen Folksong Collection: German songs (altdeu, ballad, boehme, dva, erk, fink, kinder, zuccal)',
    'essen_neighbours': 'Essen Folksong Collection: Alsace/Lorraine, Swiss, Austrian, Dutch, Polish, Hungarian, '
                        'Czech, Russian songs',
    'essen_chinese': 'Essen Folksong Collection: Chinese folk songs (han)', 'essen_lorraine': 'Essen: Lorraine (Pinck)',
    'essen_luxembourg': 'Essen: Luxembourg', 'essen_irish': "Essen: Irish songs (O'Sullivan, O Boyle)",
    'oneills': "O'Neill's Music of Ireland (1903)", 'ryans': "Ryan's Mammoth Collection (1883)",
    'aird': "Aird's Selection of Scotch, English, Irish and Foreign Airs (1782-1803)",
    'northumbrian': 'Bruce & Stokoe, Northumbrian Minstrelsy (1882)',
    'fife': 'Colonial and Civil War American Fife Music', 'bach': 'J. S. Bach: chorales',
    'palestrina': 'Palestrina: mass movements', 'monteverdi': 'Monteverdi: madrigals, Books 3-5',
    'trecento': 'Trecento and Ars nova (Polyphonic Music of the Fourteenth Century)',
    'chamber': 'String quartet movements: Haydn, Mozart, Beethoven, R. Schumann',
    'other_art': 'Other art music: Josquin, Handel, Corelli, C.P.E. Bach, Mozart, Schubert, the Schumanns, Chopin, '
                 'Verdi, Weber, Beach, Foster, Joplin, Berlin, Ciconia, ...'}
