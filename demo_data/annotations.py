"""Tags and annotation rows: a song's tags, the curation that keeps tags an artist-disjoint split can
evaluate, the MSD500 track_tags.tsv rows (with noise rows) and the per-song table demo_songs.tsv."""
import os
import pickle

import numpy as np

from demo_data.corpus import msd_id, stable_int
from steps import SPLIT_BOUNDS

CATEGORIES = ('location', 'genre', 'era', 'theme', 'instrument', 'mood')
FAST_BPM, SLOW_BPM = 110, 75  # beats per minute of the rendered tempo -> 'fast' / 'slow'


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


def write_msd500(out, songs, kept_tags, seed):
    """DIR/msd500/track_tags.tsv and song_to_artist.pkl in the release format, and DIR/demo_songs.tsv.
    Returns the rows' facts for the report."""
    rows = annotation_rows(songs, kept_tags, seed)
    with open(os.path.join(out, 'msd500', 'track_tags.tsv'), 'w', encoding='utf-8') as f:
        f.writelines('\t'.join(map(str, row)) + '\n' for row in rows)
    artist_ids = {s['track_id']: msd_id('AR', s['artist']) for s in songs}
    with open(os.path.join(out, 'msd500', 'song_to_artist.pkl'), 'wb') as f:
        pickle.dump(artist_ids, f, protocol=4)
    write_song_table(os.path.join(out, 'demo_songs.tsv'), songs, artist_ids)
    return {'rows': len(rows), 'noise_rows': sum(r[4] < 50 for r in rows)}


def write_song_table(path, songs, artist_ids):
    """What each song is and where it comes from: one line per song."""
    header = ['track_id', 'work_id', 'source', 'artist_id', 'artist', 'title', 'instrument', 'bpm', 'key', 'tags']
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\t'.join(header) + '\n')
        for s in songs:
            r = s['render']
            tags = ','.join(sorted({t for _, _, t in s['tags']}))
            f.write('\t'.join(map(str, [s['track_id'], s['work_id'], s['source'], artist_ids[s['track_id']],
                                        s['artist'], s['title'], r['instrument'], r['bpm'], r['key'], tags])) + '\n')
