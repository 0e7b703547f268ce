"""Small raw inputs in the formats of the MSD500 release, for tests/test_preprocessing.py.

Imported by that test module (tests/conftest.py belongs to the training tests).
"""
import pickle
import shutil
import string
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the step scripts are flat files at the repository root
    sys.path.insert(0, str(ROOT))

# tag -> (probability that a song carries it, category); 'smooth jazz' has no Google vector and 'xyzzy' no
# vector at all; 'female vocalists' has vectors only as 'female_vocalists'; 'polka' is too rare for the top 6;
# 'samba' is on few tracks but with EXTRA_ROWS more original tags each, so it is in the top 6 by annotation
# rows (the original's count) and not by tracks
TAGS = {'rock': (.6, 'genre'), 'pop': (.5, 'genre'), 'electronic': (.45, 'genre'), 'jazz': (.4, 'genre'),
        'chill': (.35, 'mood'), 'metal': (.3, 'genre'), 'female vocalists': (.15, 'vocal'),
        'smooth jazz': (.5, 'genre'), 'polka': (.03, 'genre'), 'xyzzy': (.4, 'other'), 'samba': (.12, 'genre')}
EXTRA_ROWS = {'samba': 3}
GOOGLE_WORDS = ['rock', 'pop', 'electronic', 'jazz', 'chill', 'metal', 'female_vocalists', 'polka',
                'house', 'country', 'jungle', 'brazilian', 'guitar', 'news', 'tiger', 'stock', 'samba']
MUSIC_WORDS = ['rock', 'pop', 'electronic', 'jazz', 'chill', 'metal', 'female_vocalists', 'polka',
               'smooth_jazz', 'house', 'deep_house', 'jungle', 'drum_and_bass', 'mpb', 'samba', 'guitar']
N_ARTISTS, SONGS_PER_ARTIST, TOP_N, THRESHOLD, CF_DIM = 30, 8, 6, 3, 6


def track_id(rng):
    return 'TR' + ''.join(rng.choice(list(string.ascii_uppercase), 3)) + ''.join(
        rng.choice(list(string.ascii_uppercase + string.digits), 13))


def write_word_vectors(data_path, rng):
    from gensim.models import KeyedVectors, Word2Vec

    google = KeyedVectors(vector_size=8)
    google.add_vectors(GOOGLE_WORDS, rng.standard_normal((len(GOOGLE_WORDS), 8)).astype(np.float32))
    google.save_word2vec_format(str(data_path / 'GoogleNews-vectors-negative300.bin'), binary=True)
    sentences = [list(rng.permutation(MUSIC_WORDS)) for _ in range(20)]
    music = Word2Vec(sentences, vector_size=8, min_count=1, epochs=1, workers=1, seed=0)
    (data_path / 'music_w2v').mkdir()
    music.save(str(data_path / 'music_w2v' / 'model_semeval_trigrams_300.model'))


@pytest.fixture(scope='session')
def raw_data(tmp_path_factory):
    """DATA_PATH with msd500/track_tags.tsv, song_to_artist.pkl, spec/, word vectors, CF inputs."""
    rng = np.random.default_rng(1)
    data_path = tmp_path_factory.mktemp('raw')
    songs = {track_id(rng): f'AR{a:02d}' for a in range(N_ARTISTS) for _ in range(SONGS_PER_ARTIST)}
    no_artist = [track_id(rng) for _ in range(10)]
    no_spec = [track_id(rng) for _ in range(10)]
    unknown_artist = [track_id(rng) for _ in range(8)]  # the release's artist 'unknown': dropped
    rows = []
    for song in list(songs) + no_artist + no_spec + unknown_artist:
        carried = [tag for tag, (p, _) in TAGS.items() if rng.random() < p] or ['rock']
        for tag in carried:
            category = TAGS[tag][1] if rng.random() < .8 else 'misc'
            score = int(rng.integers(0, 101))
            rows.append((song, tag + ' music', tag.title() if rng.random() < .2 else tag, category, score))
            if rng.random() < .2:  # a second original tag cleaned to the same tag
                rows.append((song, tag + ' song', tag, category, max(score, 60)))
            rows += [(song, f'{tag} {k}', tag, category, 60 + k) for k in range(EXTRA_ROWS.get(tag, 0))]
    (data_path / 'msd500').mkdir()
    (data_path / 'msd500' / 'track_tags.tsv').write_text(''.join('\t'.join(map(str, r)) + '\n' for r in rows))
    with open(data_path / 'song_to_artist.pkl', 'wb') as f:
        pickle.dump({**songs, **{s: 'AR99' for s in no_spec}, **{s: 'unknown' for s in unknown_artist}}, f)
    for song in list(songs) + unknown_artist:
        spec = data_path / 'spec' / song[2] / song[3] / song[4] / f'{song}.npy'
        spec.parent.mkdir(parents=True, exist_ok=True)
        np.save(spec, np.zeros((128, 4), dtype=np.float32))
    write_word_vectors(data_path, rng)

    cf_ids = list(rng.permutation(list(songs) + no_spec))  # factor rows in an unrelated order
    np.save(data_path / 'item_factors_MSD.npy', rng.standard_normal((len(cf_ids), CF_DIM)).astype(np.float32))
    (data_path / 'items_index_MSD.tsv').write_text(''.join(f'{s}\n' for s in cf_ids))
    taste = [(f'U{u:03d}', song, int(rng.integers(1, 30)))
             for u in range(60) for song in rng.choice(cf_ids, 25, replace=False)]
    taste += [(f'U{i % 60:03d}', song, 1) for i, song in enumerate(cf_ids)]  # every item played; repeats sum
    (data_path / 'taste_profile.tsv').write_text(''.join(f'{u}\t{s}\t{c}\n' for u, s, c in taste))
    return SimpleNamespace(path=data_path, rows=rows, song_to_artist={**songs, **dict.fromkeys(unknown_artist,
                           'unknown')}, spec_ids=set(songs) | set(unknown_artist), unknown_artist=unknown_artist)


@pytest.fixture(scope='session')
def pipeline(raw_data, tmp_path_factory):
    """A copy of raw_data on which step 1 has run with TOP_N and THRESHOLD (seed 0)."""
    import step1_data_split

    data_path = tmp_path_factory.mktemp('pipeline') / 'data'
    shutil.copytree(raw_data.path, data_path)
    assert step1_data_split.main(['run', str(data_path), str(TOP_N), str(THRESHOLD)]) == 0
    return data_path


@pytest.fixture
def data_copy(raw_data, tmp_path):
    """A fresh, writable copy of raw_data for tests that change or break inputs."""
    data_path = tmp_path / 'data'
    shutil.copytree(raw_data.path, data_path)
    return data_path


@pytest.fixture(scope='session')
def audio_dir(tmp_path_factory):
    """Short sine/chirp files in wav, flac (44.1 kHz stereo) and ogg, in nested folders, + one corrupt."""
    import soundfile

    folder = tmp_path_factory.mktemp('audio')
    (folder / 'sub' / 'deeper').mkdir(parents=True)
    t = np.arange(int(1.5 * 22050)) / 22050
    soundfile.write(folder / 'TRAAAAW128F429D538.wav', 0.5 * np.sin(2 * np.pi * 440 * t), 22050)
    t = np.arange(44100) / 44100
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 2000 * t) * t)
    soundfile.write(folder / 'sub' / 'TRBBBBB12345678901.flac', np.stack([chirp, chirp[::-1]], 1), 44100)
    t = np.arange(int(0.7 * 22050)) / 22050
    soundfile.write(folder / 'sub' / 'deeper' / 'TRCCCCC12345678901.ogg', 0.4 * np.sin(2 * np.pi * 880 * t), 22050)
    (folder / 'TRDDDDD12345678901.wav').write_bytes(np.random.default_rng(0).bytes(5000))  # corrupt
    (folder / 'notes.txt').write_text('not audio')
    return folder
