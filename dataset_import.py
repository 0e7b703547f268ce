"""Published tagging datasets -> the release layout (README: data layout), for import_dataset.py.

    from dataset_import import read_mtg_jamendo, read_magnatagatune, read_own_csv, write_dataset
    write_dataset(read_mtg_jamendo('mtg-jamendo-dataset', 'top50tags', 0), 'data/jamendo', audio_dir=None)

Each reader returns a Catalogue: one row per track (track id, audio path relative to the audio folder, split
0/1/2 = train/valid/test), the (track, tag) pairs and each tag's category. write_dataset checks it (tracks in two
splits, tags missing from a split, audio files) before it writes anything.
"""
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from audio import MANIFEST
from dataset_split import SPLITS, artist_split, write_outputs
from errors import UserError
from file_io import atomic_write_bytes, require_file, require_output_dir
from steps import Report

JAMENDO_HEADER = ('TRACK_ID', 'ARTIST_ID', 'ALBUM_ID', 'PATH', 'DURATION', 'TAGS')
JAMENDO_CATEGORIES = ('genre', 'instrument', 'mood/theme')
JAMENDO_SUBSETS = ('top50tags', 'genre', 'instrument', 'moodtheme', 'all')
JAMENDO_FILE_SPLIT = ('train', 'validation', 'test')  # the published file names of train/valid/test
MTAT_FOLDER_SPLIT = {**dict.fromkeys('0123456789ab', 0), 'c': 1, **dict.fromkeys('def', 2)}
MTAT_TOP_N = 50
CSV_COLUMNS = ('track_id', 'path', 'tags', 'artist', 'split')
CSV_SPLITS = {'train': 0, 'valid': 1, 'validation': 1, 'test': 2}
SHIPPED_TAG_WORDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tag_words.tsv')
TAG_WORDS = 'tag_words.tsv'


@dataclass
class Catalogue:
    tracks: pd.DataFrame  # track_id, path, split (0/1/2), one row per track
    pairs: pd.DataFrame  # track_id, tag: one row per annotation
    categories: dict  # tag -> category
    source: str  # what was read, for the report
    notes: list = field(default_factory=list)  # report lines of the reader (what it kept and dropped)


# ---------------------------------------------------------------- MTG-Jamendo
def read_jamendo_file(path):
    """(tracks, pairs) of one published split file: tab-separated, CRLF or LF, one tag per column from the 6th."""
    require_file(path, 'MTG-Jamendo split file', 'pass ROOT = a checkout of github.com/MTG/mtg-jamendo-dataset '
                 '(it holds data/splits/split-N/), and a --subset and --split it publishes')
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()  # universal newlines: the published CRLF and an LF copy read alike
    header = tuple(lines[0].split('\t')) if lines else ()
    if header != JAMENDO_HEADER:
        raise UserError(f'{path} line 1: header {"<TAB>".join(header) or "(empty file)"!r}, expected '
                        f'{"<TAB>".join(JAMENDO_HEADER)!r}; pass the split file as published')
    rows = [line.split('\t') for line in lines[1:] if line]
    short = next((n for n, row in enumerate(rows, 2) if len(row) < len(JAMENDO_HEADER) or not row[0] or not row[3]),
                 None)
    if short is not None:
        raise UserError(f'{path} line {short}: {lines[short - 1]!r} has no TRACK_ID, PATH or tag (expected '
                        f'{len(JAMENDO_HEADER)}+ tab-separated fields); restore the published file')
    tracks = pd.DataFrame({'track_id': [r[0] for r in rows], 'path': [r[3] for r in rows],
                           'artist': [r[1] for r in rows]})
    repeated = tracks.track_id[tracks.track_id.duplicated()]
    if len(repeated):
        raise UserError(f'{path}: track {repeated.iloc[0]} is listed twice ({len(repeated)} repeated rows); '
                        'restore the published file')
    counts = [len(r) - 5 for r in rows]
    pairs = pd.DataFrame({'track_id': np.repeat(tracks.track_id.to_numpy(), counts),
                          'tag': [tag for r in rows for tag in r[5:]]})
    return tracks, pairs


def jamendo_tag_names(path_of_tag):
    """tag as published (genre---easylistening) -> (name, category); names shared by two categories keep
    their category as a suffix ('dark-moodtheme'), never merged."""
    parsed = {}
    for tag, path in path_of_tag.items():
        category, sep, name = tag.partition('---')
        if not sep or not name or category not in JAMENDO_CATEGORIES:
            raise UserError(f'{path}: tag {tag!r} is not CATEGORY---NAME with CATEGORY one of '
                            f'{", ".join(JAMENDO_CATEGORIES)}; restore the published file')
        parsed[tag] = (name.strip().lower(), category)
    names = pd.Series([name for name, _ in parsed.values()])
    shared = set(names[names.duplicated()])
    return {tag: (f'{name}-{category.replace("/", "")}' if name in shared else name, category)
            for tag, (name, category) in parsed.items()}


def read_mtg_jamendo(root, subset='top50tags', split=0):
    """The official split-N files of a subset, kept exactly; `all` merges the three category subsets."""
    subsets = ('genre', 'instrument', 'moodtheme') if subset == 'all' else (subset,)
    folder = os.path.join(root, 'data', 'splits', f'split-{split}')
    tracks, pairs, tag_file = [], [], {}
    for k, file_split in enumerate(JAMENDO_FILE_SPLIT):
        for name in subsets:
            path = os.path.join(folder, f'autotagging_{name}-{file_split}.tsv')
            file_tracks, file_pairs = read_jamendo_file(path)
            tracks.append(file_tracks.assign(split=k, file=path))
            pairs.append(file_pairs)
            tag_file.update(dict.fromkeys(file_pairs.tag.unique(), path))
    tracks = pd.concat(tracks, ignore_index=True)
    check_one_split(tracks)
    tracks = tracks.drop_duplicates('track_id')  # `all`: a track is in the files of each of its categories
    names = jamendo_tag_names(tag_file)
    pairs = pd.concat(pairs, ignore_index=True)
    pairs = pairs.assign(tag=pairs.tag.map({tag: name for tag, (name, _) in names.items()})).drop_duplicates()
    return Catalogue(tracks[['track_id', 'path', 'split', 'artist']], pairs, dict(names.values()),
                     f'MTG-Jamendo {subset}, split-{split}: {folder}')


def check_one_split(tracks):
    """A track listed in two of train/valid/test is an error naming both files."""
    splits_of_track = tracks.groupby('track_id').split.nunique()
    if (splits_of_track > 1).any():
        track = splits_of_track.index[splits_of_track.to_numpy() > 1][0]
        files = tracks.file[tracks.track_id == track].unique()
        raise UserError(f'track {track} is in two splits: {files[0]} and {files[-1]} '
                        f'({int((splits_of_track > 1).sum())} such tracks); restore the published split files')


# ---------------------------------------------------------------- MagnaTagATune
def read_magnatagatune(root, top_n=MTAT_TOP_N):
    """annotations_final.csv: the top_n most frequent tags, split by the mp3's folder (0-b/c/d-f), clips without
    one of them dropped; clip ids are the track ids."""
    path = os.path.join(root, 'annotations_final.csv')
    require_file(path, 'MagnaTagATune annotations', 'pass ROOT = the folder holding annotations_final.csv as published')
    try:
        df = pd.read_csv(path, sep='\t', dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f'{path} is not a tab-separated table ({error}); restore the published file')
    columns = list(df.columns)
    if len(columns) < 3 or columns[0] != 'clip_id' or columns[-1] != 'mp3_path':
        raise UserError(f'{path} line 1: columns {columns[:2]}...{columns[-1:]}, expected "clip_id", the tag '
                        'columns, then "mp3_path" (tab-separated, quoted); restore the published file')
    tag_columns = columns[1:-1]
    values = df[tag_columns].to_numpy()
    bad = ~np.isin(values, ['0', '1'])
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        raise UserError(f'{path} line {row + 2}, column "{tag_columns[col]}": {values[row, col]!r} is not 0 or 1')
    if df.clip_id.duplicated().any() or (df.clip_id == '').any():
        row = int(np.flatnonzero(df.clip_id.duplicated().to_numpy() | (df.clip_id == '').to_numpy())[0])
        raise UserError(f'{path} line {row + 2}: clip_id {df.clip_id.iloc[row]!r} is empty or repeated')
    folder = df.mp3_path.str.partition('/')[0]
    split = folder.map(MTAT_FOLDER_SPLIT)
    if split.isna().any():
        row = int(np.flatnonzero(split.isna().to_numpy())[0])
        raise UserError(f'{path} line {row + 2}: mp3_path {df.mp3_path.iloc[row]!r} is not in one of the folders '
                        '0-9, a-f (the published layout, e.g. f/artist-album-01-title-30-59.mp3)')
    labels = values == '1'
    counts = labels.sum(axis=0)
    ranked = sorted(range(len(tag_columns)), key=lambda j: (-counts[j], tag_columns[j]))[:top_n]
    keep = labels[:, ranked].any(axis=1)
    rows, cols = np.nonzero(labels[keep][:, ranked])
    kept = df[keep]
    pairs = pd.DataFrame({'track_id': kept.clip_id.to_numpy()[rows],
                          'tag': np.array([tag_columns[j].strip().lower() for j in ranked])[cols]})
    tracks = pd.DataFrame({'track_id': kept.clip_id.to_numpy(), 'path': kept.mp3_path.to_numpy(),
                           'split': split[keep].astype(int).to_numpy()})
    shipped = read_tag_table(SHIPPED_TAG_WORDS)[1]
    categories = {tag: shipped.get(tag, 'other') for tag in pairs.tag.unique()}
    notes = [f'{len(df)} clips, {len(tag_columns)} tags; kept the {len(ranked)} most frequent tags and the '
             f'{int(keep.sum())} clips carrying one ({len(df) - int(keep.sum())} clips without one dropped)']
    return Catalogue(tracks, pairs, categories, f'MagnaTagATune: {path}', notes)


# ---------------------------------------------------------------- your own CSV
def read_own_csv(path, threshold=1, seed=0, max_tries=1000):
    """track_id,path,tags[,artist][,split] (tags separated by ';'): a given split is kept, otherwise step 1's
    artist-disjoint split with THRESHOLD songs per tag and split."""
    require_file(path, 'track list', 'pass a CSV file with the columns track_id,path,tags[,artist][,split]')
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f'{path} is not a CSV table ({error}); write a header track_id,path,tags[,artist][,split]')
    df.columns = [c.strip() for c in df.columns]
    unknown = [c for c in df.columns if c not in CSV_COLUMNS]
    absent = [c for c in CSV_COLUMNS[:3] if c not in df.columns]
    if unknown or absent:
        raise UserError(f'{path} line 1: ' + (f'unknown column {unknown[0]!r}' if unknown else
                        f'no column {absent[0]!r}') + '; the columns are track_id,path,tags[,artist][,split]')
    df = df.apply(lambda column: column.str.strip())
    tags = df.tags.str.lower().str.split(';').map(lambda words: sorted({w.strip() for w in words if w.strip()}))
    for name, empty in (('track_id', df.track_id == ''), ('path', df.path == ''), ('tags', tags.map(len) == 0)):
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0])
            raise UserError(f'{path} line {row + 2}: track {df.track_id.iloc[row]!r} has an empty {name} '
                            f'({int(empty.sum())} such rows); fill it in (tags are separated by ";")')
    if df.track_id.duplicated().any():
        raise UserError(f'{path}: track {df.track_id[df.track_id.duplicated()].iloc[0]!r} is listed twice; '
                        'one row per track')
    pairs = pd.DataFrame({'track_id': np.repeat(df.track_id.to_numpy(), tags.map(len).to_numpy()),
                          'tag': [t for ts in tags for t in ts]})
    tracks = df[['track_id', 'path']].copy()
    notes = []
    if 'split' in df and (df.split != '').any():
        split = df.split.str.lower().map(CSV_SPLITS)
        if split.isna().any():
            row = int(np.flatnonzero(split.isna().to_numpy())[0])
            raise UserError(f'{path} line {row + 2}: split {df.split.iloc[row]!r} is not one of train, valid '
                            '(or validation), test; give every row a split, or none (an artist split is made)')
        tracks['split'] = split.astype(int)
        notes.append('split: as given in the split column')
    else:
        if 'artist' not in df or (df.artist == '').any():
            raise UserError(f'{path}: without a split column the split is by artist, and the artist column is '
                            'missing or has empty rows; add an artist (or a split) to every row')
        tracks['split'], notes = own_artist_split(pairs, df, threshold, seed, max_tries)
    shipped = read_tag_table(SHIPPED_TAG_WORDS)[1]
    categories = {tag: shipped.get(tag, 'other') for tag in pairs.tag.unique()}
    return Catalogue(tracks, pairs, categories, f'own CSV: {path}', notes)


def own_artist_split(pairs, df, threshold, seed, max_tries):
    """Step 1's artist split of a CSV's tracks (in its row order); returns (split per row, report lines)."""
    tags = sorted(pairs.tag.unique())
    binaries = np.zeros((len(df), len(tags)), dtype=np.float32)
    binaries[pd.Categorical(pairs.track_id, categories=df.track_id).codes,
             pd.Categorical(pairs.tag, categories=tags).codes] = 1
    song_split, shuffles, counts = artist_split(binaries, tags, df.artist.to_numpy(), threshold, seed, max_tries,
                                                fix='lower --threshold, or give tags more songs')
    return song_split, [f'artist split (step 1, THRESHOLD={threshold}, seed {seed}) after {shuffles} shuffle(s): '
                        + '; '.join(f'{name} {c["artists"]} artists, {c["songs"]} songs' for name, c in counts.items())]


# ---------------------------------------------------------------- tag-to-words table
def read_tag_table(path):
    """(dict tag -> words, dict tag -> category) of "tag<TAB>words[<TAB>category]" lines; # starts a comment."""
    words, categories = {}, {}
    with open(path, encoding='utf-8') as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip('\r\n')
            if not line.strip() or line.startswith('#'):
                continue
            fields = line.split('\t')
            if len(fields) not in (2, 3) or not fields[0] or not fields[1].split():
                raise UserError(f'{path} line {number}: {line!r} is not "tag<TAB>words" (words separated by '
                                'spaces); fix the line')
            words[fields[0]] = fields[1].split()
            if len(fields) == 3:
                categories[fields[0]] = fields[2]
    return words, categories


def tag_words_text(tags, data_path):
    """DATA_PATH/tag_words.tsv for `tags`: the user's own lines kept, else the shipped table's, else the tag's
    words split at spaces, '_' and '-'."""
    existing = os.path.join(data_path, TAG_WORDS)
    own = read_tag_table(existing)[0] if os.path.isfile(existing) else {}
    shipped = read_tag_table(SHIPPED_TAG_WORDS)[0]
    lines = ['# tag<TAB>words: a tag without a word vector of its own gets the mean vector of these words '
             '(step2_word_embedding.py); edit freely']
    for tag in tags:
        words = own.get(tag) or shipped.get(tag) or tag.replace('_', ' ').replace('-', ' ').split()
        lines.append(f'{tag}\t{" ".join(words)}')
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------- checks and writing
def check_track_ids(tracks, source):
    bad = tracks.track_id[tracks.track_id.str.startswith('.') | tracks.track_id.str.contains('/', regex=False)]
    if len(bad):
        raise UserError(f'{source}: track id {bad.iloc[0]!r} cannot name a spectrogram file (it starts with a dot or '
                        'holds a slash); rename it')


def check_audio(catalogue, audio_dir, drop_missing, report):
    """Every track's audio file under audio_dir, else an error that counts and names them; --drop_missing leaves
    them out (listed in the report)."""
    if not os.path.isdir(audio_dir):
        raise UserError(f'--audio_dir {audio_dir} is not a folder; pass the folder the audio was extracted to')
    tracks = catalogue.tracks
    exists = np.fromiter((os.path.isfile(os.path.join(audio_dir, p)) for p in tracks.path), bool, len(tracks))
    missing = tracks[~exists]
    if len(missing) and not drop_missing:
        raise UserError(f'{len(missing)} of the {len(tracks)} tracks have no audio file under {audio_dir}: '
                        + ', '.join(f'{t} ({p})' for t, p in zip(missing.track_id[:5], missing.path[:5]))
                        + (', ...' if len(missing) > 5 else '') + '; pass the folder the audio was extracted to, '
                        'or add --drop_missing to leave those tracks out')
    report.log(f'audio: {int(exists.sum())} of {len(tracks)} files found under {audio_dir}'
               + (f'; {len(missing)} tracks without audio dropped (--drop_missing)' if len(missing) else ''),
               audio_found=int(exists.sum()), dropped_without_audio=missing.track_id.tolist())
    kept = set(tracks.track_id[exists])
    catalogue.tracks = tracks[exists]
    catalogue.pairs = catalogue.pairs[catalogue.pairs.track_id.isin(kept)]


def check_every_split(binaries, song_split, tags, source):
    """Each tag needs a song in each split (training anchors, validation and TEST metrics)."""
    counts = np.stack([binaries[song_split == k].sum(axis=0) for k in range(len(SPLITS))])
    if counts.min() == 0:
        split_k, tag_k = np.unravel_index(counts.argmin(), counts.shape)
        raise UserError(f"{source}: tag '{tags[tag_k]}' has no song in the {SPLITS[split_k]} split "
                        f'({int((counts == 0).any(axis=0).sum())} such tags); every tag needs songs in train, valid '
                        'and test: move songs, drop the tag, or let the importer make an artist split')
    return counts


def write_dataset(catalogue, data_path, audio_dir=None, drop_missing=False):
    """Check, then write the release layout + audio_manifest.tsv + tag_words.tsv + import_report.txt/.json."""
    report = Report('import')
    report.log(f'read {catalogue.source}')
    for note in catalogue.notes:
        report.log(note)
    check_track_ids(catalogue.tracks, catalogue.source)
    if audio_dir is not None:
        check_audio(catalogue, audio_dir, drop_missing, report)
    if catalogue.tracks.empty:
        raise UserError(f'{catalogue.source}: no track left to import (see the lines above); check --audio_dir')
    songs = np.sort(catalogue.tracks.track_id.to_numpy().astype(str))  # row IX = IX-th track id, as step 1
    tags = sorted(catalogue.pairs.tag.unique())
    binaries = np.zeros((len(songs), len(tags)), dtype=np.float32)
    binaries[pd.Categorical(catalogue.pairs.track_id, categories=songs).codes,
             pd.Categorical(catalogue.pairs.tag, categories=tags).codes] = 1
    song_split = catalogue.tracks.set_index('track_id').split.reindex(songs).to_numpy().astype(np.int64)
    counts = check_every_split(binaries, song_split, tags, catalogue.source)
    require_output_dir(data_path, 'DATA_PATH')
    write_outputs(data_path, '', songs, tags, binaries, song_split, {t: catalogue.categories[t] for t in tags})
    paths = catalogue.tracks.set_index('track_id').path.reindex(songs)
    atomic_write_bytes(os.path.join(data_path, MANIFEST), ('track_id\tpath\n' + ''.join(
        f'{t}\t{p}\n' for t, p in zip(songs, paths))).encode())
    atomic_write_bytes(os.path.join(data_path, TAG_WORDS), tag_words_text(tags, data_path).encode())
    sizes = {name: int((song_split == k).sum()) for k, name in enumerate(SPLITS)}
    report.log(f'tracks: {len(songs)} (train {sizes["train"]}, valid {sizes["valid"]}, test {sizes["test"]}); '
               f'tags: {len(tags)}; annotations: {int(binaries.sum())}; fewest songs of a tag: '
               + ', '.join(f'{name} {int(counts[k].min())}' for k, name in enumerate(SPLITS)),
               tracks=len(songs), splits=sizes, tags=tags, annotations=int(binaries.sum()))
    report.log(f'wrote binaries.npy {binaries.shape}, tags.npy, existing_ids.npy, {{train,valid,test}}_ids.npy, '
               f'train_tag_to_ix.pkl, tag_categories.tsv, {MANIFEST}, {TAG_WORDS} in {data_path}')
    report.save(data_path)
    return sizes
