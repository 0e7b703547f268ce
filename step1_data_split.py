"""Step 1: MSD500 annotations -> tag vocabulary, song x tag binaries and an artist-disjoint split.

    python -u step1_data_split.py run DATA_PATH TOP_N_TAGS THRESHOLD
    python -u step1_data_split.py run --root DATA_PATH --top_n 100 --threshold 100   # the original's flags
        [--seed 0] [--max_tries 1000] [--count_by rows|tracks] [--vocab google|both|music|none]
        [--multiword_underscore False] [--google_path DATA_PATH/GoogleNews-vectors-negative300.bin]
        [--music_path DATA_PATH/music_w2v/model_semeval_trigrams_300.model] [--prefix sub_]

Reads DATA_PATH/msd500/track_tags.tsv (no header: song_id, original_tag, cleaned_tag, tag_category,
score 0-100), DATA_PATH/msd500/song_to_artist.pkl or DATA_PATH/song_to_artist.pkl (dict track id ->
artist id; the original read it from DATA_PATH), the word vectors' vocabularies and the ids present
under DATA_PATH/spec/*/*/*/*.npy. The original's rules, in order (each variant is a flag, off by default):
  1. keep annotations with score >= 50 (tags are cleaned_tag, stripped and lower-cased);
  2. keep tags whose exact spelling has a Google News vector (--vocab both: a music vector too, which step 2
     needs; --multiword_underscore True: 'smooth jazz' may also match 'smooth_jazz');
  3. keep tracks that have an artist other than 'unknown', and a spectrogram;
  4. keep the TOP_N_TAGS tags with the most annotation rows (--count_by tracks: with the most tracks; ties:
     alphabetical), and the tracks carrying one;
  5. split ARTISTS 70/15/15 (train/valid/test) by a seeded shuffle, reshuffling (at most --max_tries
     times) until every tag has >= THRESHOLD songs in every split; otherwise exit 2 naming the tag.
Writes into DATA_PATH (each name prefixed with --prefix, e.g. sub_ for main.py --is_subset True):
  binaries.npy        float64 (n_songs, n_tags) 0/1, as the original; row IX = IX-th track id in sorted order
  tags.npy            str array, lower-case, sorted (the column order of binaries.npy)
  existing_ids.npy    str array of the sorted track ids (row IX), as the original wrote it
  train_ids.npy, valid_ids.npy, test_ids.npy   str arrays of "IX//TRACK_ID", sorted by IX
  train_tag_to_ix.pkl dict tag -> ["IX//TRACK_ID", ...] of training songs, keys in tags.npy order
  tag_categories.tsv  "tag<TAB>category" per tag in tags.npy order (most common tag_category)
  step1_report.txt/.json   what each filter kept and dropped
"""
import csv
import os
import sys

import numpy as np
import pandas as pd

from cli_args import BOOL, str2bool
from dataset_split import artist_split, write_outputs
from data_checks import require_utf8
from errors import exit_on_user_error
from errors import UserError
from file_io import existing_spec_ids, require_file
from steps import Report, SCORE_MIN, make_cli
from word_vectors import (add_vector_path_arguments, default_google_path, default_music_path, load_keyed_vectors,
                          read_word2vec_vocab, vocab_key)
from safe_pickle import load_pickle

COLUMNS = ['song_id', 'original_tag', 'cleaned_tag', 'tag_category', 'score']
UNKNOWN_ARTIST = 'unknown'  # the release's artist id of tracks without one; the original dropped them


def read_track_tags(path):
    require_file(path, 'annotation file', 'put MSD500 track_tags.tsv at DATA_PATH/msd500/')
    require_utf8(path, '')
    try:
        df = pd.read_csv(path, sep='\t', header=None, dtype=str, quoting=csv.QUOTE_NONE,
                         keep_default_na=False)  # tags such as 'null' or 'nan' stay strings
    except pd.errors.EmptyDataError:
        raise UserError(f'{path} is empty (expected lines: song_id, original_tag, cleaned_tag, tag_category, score)')
    except pd.errors.ParserError as error:
        raise UserError(f'{path} is not a 5-column tab-separated file ({error}); fix or re-extract msd500.tar.gz')
    if df.shape[1] != len(COLUMNS):
        raise UserError(f'{path} has {df.shape[1]} columns, expected {len(COLUMNS)} ({", ".join(COLUMNS)}) '
            'separated by tabs, no header')
    df.columns = COLUMNS
    score = pd.to_numeric(df.score, errors='coerce')
    bad = score.isna() | (score < 0) | (score > 100)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f'{path} line {row + 1}: score {df.score.iloc[row]!r} is not a number in 0-100 '
            f'({int(bad.sum())} such lines); fix the 5th column')
    df['score'] = score
    df['cleaned_tag'] = df.cleaned_tag.str.strip().str.lower()
    return df


def read_song_to_artist(data_path):
    candidates = [os.path.join(data_path, 'msd500', 'song_to_artist.pkl'),
                  os.path.join(data_path, 'song_to_artist.pkl')]
    path = next((p for p in candidates if os.path.isfile(p)), candidates[1])
    mapping = load_pickle(path, 'a pickled dict track id -> artist id',
                          f'put the release\'s song_to_artist.pkl at {candidates[0]} or {candidates[1]}')
    if not isinstance(mapping, dict):
        raise UserError(f'{path} holds a {type(mapping).__name__}, expected a dict track id -> artist id')
    return pd.Series(mapping, dtype=object)


def tag_vocabularies(vocab, google_path, music_path):
    """Vocabularies a tag must appear in, by name (only their words are read where possible)."""
    vocabularies = {}
    if vocab in ('both', 'google'):
        vocabularies['google'] = read_word2vec_vocab(google_path)
    if vocab in ('both', 'music'):
        vocabularies['music'] = load_keyed_vectors(music_path, '--music_path').key_to_index
    return vocabularies


class StageLog:
    """Prints, per filter, what is kept and what it dropped (annotations, tracks, tags, artists)."""

    def __init__(self, report):
        self.report, self.previous = report, {}

    def __call__(self, stage, df):
        counts = {'annotations': len(df), 'tracks': df.song_id.nunique(), 'tags': df.cleaned_tag.nunique()}
        if 'artist' in df:
            counts['artists'] = df.artist.nunique()
        self.report.log(f'{stage}: kept ' + ', '.join(
            f'{n} {what}' + (f' (-{self.previous[what] - n})' if what in self.previous else '')
            for what, n in counts.items()), **{stage: counts})
        self.previous = counts


def filtered_annotations(data_path, vocab, google_path, music_path, multiword_underscore, log):
    """Rules 1-3: score, word vector, artist, spectrogram. Returns (annotations, all tag categories)."""
    df = read_track_tags(os.path.join(data_path, 'msd500', 'track_tags.tsv'))
    song_to_artist = read_song_to_artist(data_path)
    if not os.path.isdir(os.path.join(data_path, 'spec')):
        raise UserError(f'{os.path.join(data_path, "spec")} not found; compute spectrograms with step0_mel_spectrogram.py')
    log('all annotations', df)
    categories = df[['cleaned_tag', 'tag_category']]

    df = df[df.score >= SCORE_MIN]
    log(f'score >= {SCORE_MIN}', df)

    if vocab != 'none':
        vocabularies = tag_vocabularies(vocab, google_path or default_google_path(data_path),
                                        music_path or default_music_path(data_path))
        candidates = pd.Index(df.cleaned_tag.unique())
        has_vector = np.array([all(vocab_key(tag, words, multiword_underscore) is not None
                                   for words in vocabularies.values()) for tag in candidates], dtype=bool)
        dropped = sorted(candidates[~has_vector])
        df = df[df.cleaned_tag.isin(candidates[has_vector])]
        log(f'tags with a {"+".join(vocabularies)} word vector', df)
        log.report.log(f'  tags without a vector: {len(dropped)}' + (f' (e.g. {", ".join(dropped[:10])})'
                       if dropped else ''), tags_without_vector=dropped)

    df = df.assign(artist=df.song_id.map(song_to_artist))
    df = df[df.artist.notna()].astype({'artist': str})  # the original stopped with a KeyError at such a track
    log('tracks with an artist', df)
    unknown = df.artist == UNKNOWN_ARTIST
    log.report.log(f"  tracks whose artist is '{UNKNOWN_ARTIST}' (dropped, as the original did): "
                   f'{df.song_id[unknown].nunique()}', unknown_artist_tracks=int(df.song_id[unknown].nunique()))
    df = df[~unknown]
    log('tracks with a known artist', df)

    df = df[df.song_id.isin(existing_spec_ids(data_path))]
    log('tracks with a spectrogram', df)
    return df, categories


def top_tags(df, top_n_tags, count_by, log):
    """Rule 4: the top-N tags by annotation rows (the original's Counter(df.merged)) or by tracks.

    Returns (track-tag pairs, sorted tags)."""
    pairs = df.drop_duplicates(['song_id', 'cleaned_tag'])  # several original tags clean to one tag
    counts = (df if count_by == 'rows' else pairs).cleaned_tag.value_counts()
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if not ranked:
        raise UserError('no annotation survives the filters above (see the counts); check the inputs they name')
    if len(ranked) < top_n_tags:
        log.report.log(f'  warning: only {len(ranked)} tags left, fewer than TOP_N_TAGS={top_n_tags}')
    tags = sorted(tag for tag, _ in ranked[:top_n_tags])
    pairs = pairs[pairs.cleaned_tag.isin(tags)]
    log(f'top {len(tags)} tags (one annotation per track and tag)', pairs)
    return pairs, tags


def run(data_path, top_n_tags, threshold, seed=0, max_tries=1000, vocab='google', google_path=None,
        music_path=None, prefix='', count_by='rows', multiword_underscore=False):
    if top_n_tags < 1:
        raise UserError(f'TOP_N_TAGS must be a positive integer, got {top_n_tags}')
    if threshold < 0 or max_tries < 1:
        raise UserError(f'THRESHOLD must be >= 0 and --max_tries >= 1, got {threshold} and {max_tries}')
    report = Report('step1')
    report.log(f'step 1: TOP_N_TAGS={top_n_tags} THRESHOLD={threshold} seed={seed} vocab={vocab} '
               f'multiword_underscore={multiword_underscore} count_by={count_by}', top_n_tags=top_n_tags,
               threshold=threshold, seed=seed, vocab=vocab, multiword_underscore=multiword_underscore,
               count_by=count_by)
    log = StageLog(report)
    df, categories = filtered_annotations(data_path, vocab, google_path, music_path, multiword_underscore, log)
    pairs, tags = top_tags(df, top_n_tags, count_by, log)

    songs = np.array(sorted(pairs.song_id.unique()))  # row IX of binaries.npy = IX-th sorted track id
    song_ix = pd.Categorical(pairs.song_id, categories=songs).codes
    tag_ix = pd.Categorical(pairs.cleaned_tag, categories=tags).codes
    binaries = np.zeros((len(songs), len(tags)), dtype=np.float32)
    binaries[song_ix, tag_ix] = 1

    # rule 5: split artists; songs follow their artist
    artist_of_song = pairs.drop_duplicates('song_id').set_index('song_id').artist.reindex(songs)
    song_split, outcome, split_counts = artist_split(binaries, tags, artist_of_song, threshold, seed, max_tries)
    report.log(f'artist split found after {outcome} shuffle(s): ' + '; '.join(
        f'{name} {c["artists"]} artists, {c["songs"]} songs, >= {c["min_songs_per_tag"]} songs per tag'
        for name, c in split_counts.items()), shuffles=outcome, splits=split_counts)

    write_outputs(data_path, prefix, songs, tags, binaries, song_split, most_common_category(categories, tags))
    report.log(f'wrote {prefix}binaries.npy {binaries.shape}, {prefix}tags.npy, {prefix}existing_ids.npy, '
               f'{prefix}{{train,valid,test}}_ids.npy, {prefix}train_tag_to_ix.pkl, '
               f'{prefix}tag_categories.tsv in {data_path}', tags=tags)
    report.save(data_path, prefix)
    return 0


def most_common_category(categories, tags):
    """tag -> its most frequent tag_category over all its annotation rows (ties: alphabetical)."""
    counts = categories[categories.cleaned_tag.isin(tags)].value_counts().rename('n').reset_index()
    counts = counts.sort_values(['cleaned_tag', 'n', 'tag_category'], ascending=[True, False, True])
    return counts.drop_duplicates('cleaned_tag').set_index('cleaned_tag').tag_category.reindex(tags)


def original_arguments(args):
    """(DATA_PATH, TOP_N_TAGS, THRESHOLD) given by position or by the original's flags, with its defaults 100, 100."""
    chosen = []
    for name, positional, flag, default in (('DATA_PATH', args.data_path, args.root, None),
                                            ('TOP_N_TAGS', args.top_n_tags, args.top_n, 100),
                                            ('THRESHOLD', args.threshold, args.threshold_flag, 100)):
        if positional is not None and flag is not None and positional != flag:
            raise UserError(f'{name} given twice, as {positional} and by flag as {flag}; give it once')
        value = positional if positional is not None else flag if flag is not None else default
        if value is None:
            raise UserError(f'{name} is required: step1_data_split.py run DATA_PATH [TOP_N_TAGS THRESHOLD], '
                         'or --root DATA_PATH as the original')
        chosen.append(value)
    return chosen


@exit_on_user_error
def main(argv=None):
    parser, run_parser = make_cli(__doc__)
    # the original's fire signature run(root, top_n=100, threshold=100): positional or --root/--top_n/--threshold
    run_parser.add_argument('data_path', nargs='?', help='folder with msd500/, spec/ and song_to_artist.pkl')
    run_parser.add_argument('top_n_tags', nargs='?', type=int,
                            help='number of most frequent tags to keep (default 100, MSD100)')
    run_parser.add_argument('threshold', nargs='?', type=int,
                            help='minimum songs per tag in each of train/valid/test (default 100)')
    run_parser.add_argument('--root', help="DATA_PATH by the original's flag name")
    run_parser.add_argument('--top_n', type=int, help="TOP_N_TAGS by the original's flag name")
    run_parser.add_argument('--threshold', dest='threshold_flag', type=int,
                            help="THRESHOLD by the original's flag name")
    run_parser.add_argument('--seed', type=int, default=0, help='seed of the artist shuffles')
    run_parser.add_argument('--max_tries', type=int, default=1000, help='artist shuffles before giving up')
    run_parser.add_argument('--count_by', choices=['rows', 'tracks'], default='rows',
                            help='rank tags by annotation rows, as the original (several original tags of one track '
                            'that clean to one tag count several times), or by distinct tracks')
    run_parser.add_argument('--vocab', choices=['google', 'both', 'music', 'none'], default='google',
                            help='word vectors a tag must have: google, as the original; both also requires the '
                            'music vector that step 2 needs (the original crashed in step 2 without one)')
    run_parser.add_argument('--multiword_underscore', type=str2bool, default=False, metavar=BOOL,
                            help="True: a tag 'a b' also matches the vector 'a_b' (default False: the exact "
                            'spelling, as the original)')
    add_vector_path_arguments(run_parser)
    run_parser.add_argument('--prefix', default='', help="prefix of the written file names ('sub_' for --is_subset)")
    args = parser.parse_args(argv)
    data_path, top_n, threshold = original_arguments(args)
    return run(data_path, top_n, threshold, seed=args.seed, max_tries=args.max_tries,
               vocab=args.vocab, google_path=args.google_path, music_path=args.music_path, prefix=args.prefix,
               count_by=args.count_by, multiword_underscore=args.multiword_underscore)


if __name__ == '__main__':
    sys.exit(main())
