"""Folk and dance-tune sources of the catalogue (Essen, O'Neill, Ryan, Aird, Northumbrian, American fife):
each work with the location, genre and theme tags its ABC header fields give."""
import glob
import os
import re

from demo_data.corpus import SOURCE_NAMES, abc_works, clean_text, corpus_dir, fold, new_work

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
