"""Art-music sources of the catalogue (Bach ... Webern, trecento/Ars nova): each work with the location, era
and genre tags its composer and file give, and its artist (the composer, or composer + work)."""
import glob
import os
import re

from demo_data.corpus import corpus_dir, fold, new_work

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
    return works + trecento_catalogue(art_artist) + early_15th_century_works()


def trecento_catalogue(art_artist):
    """Polyphonic Music of the Fourteenth Century: composer or anonymous volume, place, genre."""
    works = []
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
    return works


def early_15th_century_works():
    """Two early-15th-century pieces filed apart from the trecento volumes."""
    works = []
    for relpath, composer, tags in [
            ('luca/gloria.xml', 'D. Luca', [('location', 'D. Luca', 'italian'), ('era', 'early 15th c.', 'medieval'),
                                            ('genre', 'Gloria', 'mass'), ('genre', 'Gloria', 'sacred')]),
            ('ciconia/quod_jactatur.xml', 'Johannes Ciconia', [('location', 'Padua', 'italian'),
                                                               ('era', 'Ars nova', 'medieval')])]:
        works.append(new_work(relpath, 'other_art', composer, relpath, {'file': relpath}, tags, text=composer))
    return works
