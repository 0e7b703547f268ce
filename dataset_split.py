"""The artist-disjoint split of step 1 and the files of the release layout, shared by step1_data_split.py and
import_dataset.py (README: data layout).

    from dataset_split import artist_split, write_outputs
    song_split, shuffles, counts = artist_split(binaries, tags, artist_of_song, threshold, seed, max_tries)
"""
import os

import numpy as np
import pandas as pd
from scipy import sparse

from errors import UserError
from file_io import atomic_pickle, atomic_save_npy, atomic_write_bytes
from steps import SPLIT_BOUNDS

SPLITS = ('train', 'valid', 'test')


def split_artists(artist_tag_counts, threshold, seed, max_tries):
    """Shuffle artists until every tag has >= threshold songs in each split.

    artist_tag_counts: (n_artists, n_tags) songs per artist and tag. Returns (split of each artist
    0/1/2, shuffles used) or, when no shuffle works, (None, the best shuffle's (3, n_tags) counts).
    """
    n_artists = len(artist_tag_counts)
    starts = [0] + [int(n_artists * bound) for bound in SPLIT_BOUNDS]
    position_split = np.repeat([0, 1, 2], np.diff(starts + [n_artists]))
    rng = np.random.default_rng(seed)
    best = None
    for attempt in range(1, max_tries + 1):
        order = rng.permutation(n_artists)  # artists order[starts[k]:starts[k+1]] form split k
        counts = np.add.reduceat(artist_tag_counts[order], starts, axis=0)
        if counts.min() >= threshold:
            artist_split = np.empty(n_artists, dtype=np.int64)
            artist_split[order] = position_split
            return artist_split, attempt
        if best is None or counts.min() > best.min():
            best = counts
    return None, best


def artist_split(binaries, tags, artist_of_song, threshold, seed, max_tries, fix='lower THRESHOLD or TOP_N_TAGS'):
    """Step 1's rule 5: split ARTISTS 70/15/15 so that every tag has >= threshold songs in every split; songs
    follow their artist. Returns (split 0/1/2 of each song, shuffles used, counts per split for the report)."""
    artist_codes, artists = pd.factorize(np.asarray(artist_of_song), sort=True)
    if not 0 < int(len(artists) * SPLIT_BOUNDS[0]) < int(len(artists) * SPLIT_BOUNDS[1]) < len(artists):
        raise UserError(f'only {len(artists)} artists remain; a 70/15/15 artist split needs at least 4 '
            '(see the counts above for what the filters dropped)')
    n_songs = len(binaries)
    artist_by_song = sparse.csr_matrix((np.ones(n_songs), (artist_codes, np.arange(n_songs))),
                                       shape=(len(artists), n_songs))
    artist_tag_counts = np.asarray(artist_by_song @ binaries, dtype=np.int64)
    totals = artist_tag_counts.sum(axis=0)
    if totals.min() < 3 * threshold:  # no shuffle can give three splits >= threshold
        worst = int(totals.argmin())
        raise UserError(f"tag '{tags[worst]}' has only {totals[worst]} songs in all, fewer than 3 x THRESHOLD="
            f'{3 * threshold} (short by {3 * threshold - totals[worst]}); {fix}')
    split_of_artist, outcome = split_artists(artist_tag_counts, threshold, seed, max_tries)
    if split_of_artist is None:
        split_k, tag_k = np.unravel_index(outcome.argmin(), outcome.shape)
        raise UserError(f"tag '{tags[tag_k]}' has only {outcome[split_k, tag_k]} songs in the {SPLITS[split_k]} split, "
            f'short by {threshold - outcome[split_k, tag_k]} of THRESHOLD={threshold}, in the best of '
            f'{max_tries} artist shuffles (seed {seed}); {fix}, or raise --max_tries')
    song_split = split_of_artist[artist_codes]
    counts = {name: {'artists': int((split_of_artist == k).sum()), 'songs': int((song_split == k).sum()),
                     'min_songs_per_tag': int(binaries[song_split == k].sum(axis=0).min())}
              for k, name in enumerate(SPLITS)}
    return song_split, outcome, counts


def write_outputs(data_path, prefix, songs, tags, binaries, song_split, tag_category):
    """The release layout: binaries, tags, existing_ids, the three split files, train_tag_to_ix.pkl and
    tag_categories.tsv (tag_category: a mapping tag -> category in tags order). Row IX = IX-th of `songs`."""
    def out(name):
        return os.path.join(data_path, prefix + name)

    ids = np.array([f'{ix}//{song}' for ix, song in enumerate(songs)])
    # float64 as the original's step 1 wrote it: its trainer multiplies the rows with float64 one-hot tag vectors,
    # and torch refuses float32 there
    atomic_save_npy(out('binaries.npy'), np.asarray(binaries, dtype=np.float64))
    atomic_save_npy(out('tags.npy'), np.array(tags))
    atomic_save_npy(out('existing_ids.npy'), np.asarray(songs))
    for k, name in enumerate(SPLITS):
        atomic_save_npy(out(f'{name}_ids.npy'), ids[song_split == k])
    train = song_split == 0
    # keys in tags.npy order: the training code derives the tag order from this dict
    train_tag_to_ix = {tag: ids[train & (binaries[:, t] == 1)].tolist() for t, tag in enumerate(tags)}
    atomic_pickle(out('train_tag_to_ix.pkl'), train_tag_to_ix)
    atomic_write_bytes(out('tag_categories.tsv'),
                       ''.join(f'{tag}\t{category}\n' for tag, category in tag_category.items()).encode())
