"""Preprocessing steps 0-3 on small inputs in the release's formats, checked against the original's rules."""
import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from errors import exit_on_user_error

sys.path.insert(0, str(Path(__file__).resolve().parent))
from preprocess_fixtures import (CF_DIM, GOOGLE_WORDS, MUSIC_WORDS, N_ARTISTS, ROOT, THRESHOLD,  # noqa: E402
                                 TOP_N, audio_dir, data_copy, pipeline, raw_data)  # noqa: F401  (fixtures)
from synthetic_data import write_code_running_pickle  # noqa: E402

import file_io  # noqa: E402
import word_vectors  # noqa: E402
import audio  # noqa: E402
import dataset_split  # noqa: E402
import step0_mel_spectrogram  # noqa: E402
import step1_data_split  # noqa: E402
import step2_word_embedding  # noqa: E402
import step3_taste_profile  # noqa: E402


def run_script(script, *args):
    """The script as a user runs it: returns (exit code, stdout, stderr)."""
    done = subprocess.run([sys.executable, str(ROOT / script), 'run', *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    return done.returncode, done.stdout, done.stderr


def exits_with_error(capsys, function, *args, **kwargs):
    """Call an in-process step that must stop with exit code 2; return its one error line."""
    with pytest.raises(SystemExit) as stop:
        exit_on_user_error(function)(*args, **kwargs)
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ')
    return lines[0]


def load_split(data_path, prefix=''):
    return {name: np.load(data_path / f'{prefix}{name}_ids.npy') for name in ('train', 'valid', 'test')}


def expected_annotations(raw_data, vocabularies=(GOOGLE_WORDS,), multiword_underscore=False, count_by='rows'):
    """The original's filters written out plainly (defaults: its rules): {track: set(tags)} and the top-N tags.

    Score >= 50; the exact spelling in the Google vectors; an artist other than 'unknown'; a spectrogram; the
    top N tags by annotation rows (Counter(df.merged)), alphabetical among equal counts.
    """
    def has_vector(tag):
        forms = {tag, tag.replace(' ', '_')} if multiword_underscore else {tag}
        return all(forms & set(words) for words in vocabularies)

    rows = [(song, tag.strip().lower()) for song, _, tag, _, score in raw_data.rows if score >= 50]
    rows = [(song, tag) for song, tag in rows if has_vector(tag) and song in raw_data.spec_ids
            and raw_data.song_to_artist.get(song, 'unknown') != 'unknown']
    counts = Counter(tag for _, tag in (rows if count_by == 'rows' else set(rows)))
    top = sorted(sorted(counts, key=lambda tag: (-counts[tag], tag))[:TOP_N])
    assert counts[top[-1]] != counts[sorted(counts, key=lambda tag: (-counts[tag], tag))[TOP_N]]  # no tie at the cut
    songs = {}
    for song, tag in rows:
        if tag in top:
            songs.setdefault(song, set()).add(tag)
    return songs, top


# ------------------------------------------------------------------ step 1
def test_step1_binaries_follow_the_original_rules(raw_data, pipeline):
    songs, top = expected_annotations(raw_data)
    tags = np.load(pipeline / 'tags.npy')
    assert tags.tolist() == top == sorted(top) and all(t == t.lower() for t in tags)
    assert 'smooth jazz' not in top and 'xyzzy' not in top  # no Google / no vector at all
    assert 'samba' in top and 'metal' not in top  # ranked by annotation rows, not by tracks
    assert not set(songs) & set(raw_data.unknown_artist)
    binaries = np.load(pipeline / 'binaries.npy')
    ids = np.load(pipeline / 'existing_ids.npy')
    assert binaries.dtype == np.float64 and binaries.shape == (len(songs), len(top))  # the original's dtype
    assert ids.tolist() == sorted(songs)
    for row, song in zip(binaries, ids):
        assert {tags[j] for j in np.flatnonzero(row)} == songs[song]
    all_ids = np.concatenate(list(load_split(pipeline).values()))
    assert sorted(int(x.split('//')[0]) for x in all_ids) == list(range(len(ids)))
    assert all(ids[int(ix)] == track for ix, track in (x.split('//') for x in all_ids))
    report = (pipeline / 'step1_report.txt').read_text()
    assert 'score >= 50' in report and 'tracks with a spectrogram' in report
    facts = json.loads((pipeline / 'step1_report.json').read_text())
    unknown = {song for song, _, tag, _, score in raw_data.rows if song in raw_data.unknown_artist and score >= 50
               and tag.strip().lower() in GOOGLE_WORDS}
    assert facts['unknown_artist_tracks'] == len(unknown) > 0 and "artist is 'unknown'" in report
    assert 'female vocalists' in facts['tags_without_vector']  # only 'female_vocalists' has a vector


def test_step1_flags_give_the_other_rules(raw_data, data_copy):
    assert step1_data_split.main(['run', str(data_copy), str(TOP_N), str(THRESHOLD), '--count_by', 'tracks',
                                  '--vocab', 'both', '--multiword_underscore', 'True']) == 0
    songs, top = expected_annotations(raw_data, (GOOGLE_WORDS, MUSIC_WORDS), multiword_underscore=True,
                                      count_by='tracks')
    assert np.load(data_copy / 'tags.npy').tolist() == top and 'metal' in top and 'samba' not in top
    assert np.load(data_copy / 'existing_ids.npy').tolist() == sorted(songs)
    dropped = json.loads((data_copy / 'step1_report.json').read_text())['tags_without_vector']
    assert 'female vocalists' not in dropped and 'smooth jazz' in dropped  # Google has no smooth_jazz
    help_text = subprocess.run([sys.executable, str(ROOT / 'step1_data_split.py'), 'run', '--help'],
                               capture_output=True, text=True, cwd=ROOT).stdout
    for flag in ('--count_by', '--vocab', '--multiword_underscore', 'trusted source'):
        assert flag in help_text


def test_step1_refuses_an_artist_pickle_that_would_run_code(data_copy, capsys):
    marker = data_copy / 'marker'
    write_code_running_pickle(data_copy / 'song_to_artist.pkl', marker)
    code, _, err = run_script('step1_data_split.py', data_copy, TOP_N, THRESHOLD)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith('error: ')
    assert str(data_copy / 'song_to_artist.pkl') in err and 'io.open' in err
    assert not marker.exists()
    with open(data_copy / 'song_to_artist.pkl', 'wb') as f:
        pickle.dump(['AR01', 'AR02'], f)
    line = exits_with_error(capsys, step1_data_split.main, ['run', str(data_copy), str(TOP_N), str(THRESHOLD)])
    assert 'holds a list, expected a dict track id -> artist id' in line


def test_step1_split_is_by_artist_70_15_15_and_meets_threshold(raw_data, pipeline):
    binaries = np.load(pipeline / 'binaries.npy')
    artists = {}
    for name, ids in load_split(pipeline).items():
        artists[name] = {raw_data.song_to_artist[x.split('//')[1]] for x in ids}
        rows = [int(x.split('//')[0]) for x in ids]
        assert binaries[rows].sum(axis=0).min() >= THRESHOLD
    assert not (artists['train'] & artists['valid'] or artists['train'] & artists['test']
                or artists['valid'] & artists['test'])
    n = sum(map(len, artists.values()))
    assert n == N_ARTISTS
    assert [len(artists[s]) for s in ('train', 'valid', 'test')] == [int(.7 * n), int(.85 * n) - int(.7 * n),
                                                                     n - int(.85 * n)]


def test_step1_train_tag_to_ix_and_categories(raw_data, pipeline):
    tags = np.load(pipeline / 'tags.npy').tolist()
    binaries = np.load(pipeline / 'binaries.npy')
    train = load_split(pipeline)['train']
    with open(pipeline / 'train_tag_to_ix.pkl', 'rb') as f:
        tag_to_ix = pickle.load(f)
    assert list(tag_to_ix) == tags  # the training code takes the tag order from the dict's keys
    for j, tag in enumerate(tags):
        assert sorted(tag_to_ix[tag]) == sorted(x for x in train if binaries[int(x.split('//')[0]), j])
    lines = (pipeline / 'tag_categories.tsv').read_text().splitlines()
    assert [line.split('\t')[0] for line in lines] == tags
    for line in lines:
        tag, category = line.split('\t')
        counts = Counter(c for _, _, t, c, _ in raw_data.rows if t.lower() == tag)
        assert counts[category] == max(counts.values())


def test_step1_is_deterministic_and_prefix_only_renames(pipeline, data_copy):
    assert step1_data_split.main(['run', str(data_copy), str(TOP_N), str(THRESHOLD), '--prefix', 'sub_']) == 0
    assert not (data_copy / 'binaries.npy').exists() and not (data_copy / 'step1_report.json').exists()
    for name in ('binaries.npy', 'tags.npy', 'train_ids.npy', 'valid_ids.npy', 'test_ids.npy',
                 'train_tag_to_ix.pkl', 'tag_categories.tsv', 'existing_ids.npy'):
        assert (data_copy / f'sub_{name}').read_bytes() == (pipeline / name).read_bytes(), name
    assert step1_data_split.main(['run', str(data_copy), str(TOP_N), str(THRESHOLD), '--seed', '7']) == 0
    assert not np.array_equal(np.load(data_copy / 'train_ids.npy'), np.load(pipeline / 'train_ids.npy'))


def test_step1_reads_the_originals_command_lines(pipeline, data_copy, capsys):
    """fire's run(root, top_n=100, threshold=100): named flags give the same files as positions; the defaults are
    the original's; a value given twice, differently, is one error."""
    assert step1_data_split.main(['run', '--root', str(data_copy), '--top_n', str(TOP_N),
                                  f'--threshold={THRESHOLD}']) == 0
    for name in ('binaries.npy', 'tags.npy', 'train_ids.npy', 'train_tag_to_ix.pkl'):
        assert (data_copy / name).read_bytes() == (pipeline / name).read_bytes(), name
    args = argparse.Namespace(data_path='x', top_n_tags=None, threshold=None, root=None, top_n=None,
                              threshold_flag=None)
    assert step1_data_split.original_arguments(args) == ['x', 100, 100]
    line = exits_with_error(capsys, step1_data_split.main, ['run', str(data_copy), '5', '--top_n', '7'])
    assert 'TOP_N_TAGS given twice, as 5 and by flag as 7' in line


def test_step1_threshold_errors_name_the_tag(pipeline, data_copy, capsys):
    code, out, err = run_script('step1_data_split.py', data_copy, TOP_N, 1000)  # impossible in any split
    assert code == 2 and 'Traceback' not in err and len(err.strip().splitlines()) == 1
    assert 'short by' in err and "tag '" in err
    possible = int(np.load(pipeline / 'binaries.npy').sum(axis=0).min()) // 3  # but not for a 15% split
    line = exits_with_error(capsys, step1_data_split.main,
                            ['run', str(data_copy), str(TOP_N), str(possible), '--max_tries', '1'])
    assert 'in the best of 1 artist shuffles' in line and 'short by' in line and "tag '" in line


def test_step1_bad_inputs_give_one_clear_line(data_copy, capsys):
    tsv = data_copy / 'msd500' / 'track_tags.tsv'
    good = tsv.read_text()
    lines = good.splitlines()
    tsv.write_text(''.join(line.rsplit('\t', 1)[0] + '\n' for line in lines))
    assert '4 columns, expected 5' in exits_with_error(capsys, step1_data_split.run, str(data_copy),
                                                        TOP_N, THRESHOLD)
    lines[3] = '\t'.join(lines[3].split('\t')[:4] + ['high'])
    tsv.write_text('\n'.join(lines) + '\n')
    code, _, err = run_script('step1_data_split.py', data_copy, TOP_N, THRESHOLD)
    assert code == 2 and 'Traceback' not in err
    assert str(tsv) in err and "line 4: score 'high'" in err
    tsv.write_text(good)
    os.remove(data_copy / 'song_to_artist.pkl')
    assert 'song_to_artist.pkl not found' in exits_with_error(capsys, step1_data_split.run, str(data_copy),
                                                              TOP_N, THRESHOLD)


def test_word2vec_vocabulary_reader_matches_gensim(raw_data, tmp_path):
    from gensim.models import KeyedVectors

    path = str(raw_data.path / 'GoogleNews-vectors-negative300.bin')
    vocab = word_vectors.read_word2vec_vocab(path)
    assert vocab == set(KeyedVectors.load_word2vec_format(path, binary=True).key_to_index)
    assert word_vectors.vocab_key('female vocalists', vocab) == 'female_vocalists'
    vectors = KeyedVectors.load_word2vec_format(path, binary=True)
    vectors.save_word2vec_format(str(tmp_path / 'with_header.txt'))
    lines = (tmp_path / 'with_header.txt').read_text().splitlines()
    (tmp_path / 'glove.txt').write_text('\n'.join(lines[1:]) + '\n')  # GloVe: no 'COUNT DIM' line
    for name in ('with_header.txt', 'glove.txt'):
        assert word_vectors.read_word2vec_vocab(str(tmp_path / name)) == vocab
        loaded = word_vectors.load_keyed_vectors(str(tmp_path / name), '--google_path')
        np.testing.assert_allclose(loaded['rock'], vectors['rock'], atol=1e-5)


# ------------------------------------------------------------------ step 2
def test_step2_writes_vectors_and_nearest_neighbours(raw_data, pipeline, capsys):
    from gensim.models import KeyedVectors, Word2Vec

    assert step2_word_embedding.main(['run', str(pipeline)]) == 0
    tags = np.load(pipeline / 'tags.npy').tolist()
    google = KeyedVectors.load_word2vec_format(str(pipeline / 'GoogleNews-vectors-negative300.bin'), binary=True)
    music = Word2Vec.load(str(pipeline / 'music_w2v' / 'model_semeval_trigrams_300.model')).wv
    for name, vectors in (('google', google), ('music', music)):
        with open(pipeline / f'{name}_emb.pkl', 'rb') as f:
            table = pickle.load(f)
        assert list(table) == tags
        for tag, vector in table.items():
            assert vector.dtype == np.float32 and vector.shape == (8,)
            np.testing.assert_array_equal(vector, vectors[tag.replace(' ', '_')])
    table = [line for line in (pipeline / 'nearest_neighbours.md').read_text().splitlines() if line.startswith('|')]
    assert table[0] == '| tag | google | music |'
    rows = {line.split(' | ')[0].strip('| '): line for line in table[2:]}
    assert set(rows) == {'jungle', 'house', 'country', 'brazilian', 'smooth jazz', 'deep house', 'chill', 'metal'}
    assert rows['smooth jazz'].split(' | ')[1] == '(not in vocabulary)'  # Google has no smooth_jazz here
    for tag, line in rows.items():  # each cell: gensim's 10 nearest words of the tag, in its order
        for cell, vectors in zip(line.strip('| ').split(' | ')[1:], (google, music)):
            key = next((k for k in (tag, tag.replace(' ', '_')) if k in vectors.key_to_index), None)
            nearest = [w.replace('_', ' ') for w, _ in vectors.most_similar(key, topn=10)] if key else None
            assert cell == (', '.join(nearest) if key else '(not in vocabulary)'), (tag, cell)
    assert len(rows['jungle'].split(' | ')[2].split(', ')) == 10
    assert '| tag | google | music |' in capsys.readouterr().out


def test_step2_names_the_step1_flag_for_a_tag_without_a_music_vector(raw_data, pipeline, tmp_path, capsys):
    """Step 1 keeps, as the original, tags with a Google vector; one without a music vector (where the original's
    step 2 crashed) stops step 2 with one line that names it and step 1's --vocab both."""
    from gensim.models import Word2Vec

    data_path = tmp_path / 'data'
    shutil.copytree(pipeline, data_path)
    for name in ('google_emb.pkl', 'music_emb.pkl'):  # written when another test ran step 2 on the pipeline
        (data_path / name).unlink(missing_ok=True)
    words = [w for w in MUSIC_WORDS if w != 'samba']
    Word2Vec([words] * 5, vector_size=8, min_count=1, epochs=1, workers=1, seed=0).save(
        str(data_path / 'music_w2v' / 'model_semeval_trigrams_300.model'))
    line = exits_with_error(capsys, step2_word_embedding.main, ['run', str(data_path)])
    assert 'music: samba' in line and 'google' not in line.split('(')[0] and '--vocab both' in line
    assert not (data_path / 'google_emb.pkl').exists() and not (data_path / 'music_emb.pkl').exists()
    assert step1_data_split.main(['run', str(data_path), str(TOP_N), str(THRESHOLD), '--vocab', 'both']) == 0
    assert 'samba' not in np.load(data_path / 'tags.npy')
    assert step2_word_embedding.main(['run', str(data_path)]) == 0


def test_step2_missing_vocabulary_is_one_error(pipeline, tmp_path):
    data_path = tmp_path / 'data'
    shutil.copytree(pipeline, data_path)
    np.save(data_path / 'tags.npy', np.array(['jazz', 'smooth jazz', 'xyzzy']))
    code, _, err = run_script('step2_word_embedding.py', data_path)
    assert code == 2 and 'Traceback' not in err and len(err.strip().splitlines()) == 1
    assert 'google: smooth jazz, xyzzy; music: xyzzy' in err
    code, _, err = run_script('step2_word_embedding.py', data_path, '--google_path', tmp_path / 'none.bin')
    assert code == 2 and 'not found' in err and '--download' in err


# ------------------------------------------------------------------ step 3
def test_step3_joins_factors_by_track_id(raw_data, pipeline):
    assert step3_taste_profile.main(['run', str(pipeline)]) == 0
    factors = np.load(raw_data.path / 'item_factors_MSD.npy')
    index = (raw_data.path / 'items_index_MSD.tsv').read_text().split()
    ix_to_cf = np.load(pipeline / 'ix_to_cf.npy')
    ids = np.load(pipeline / 'existing_ids.npy')
    assert ix_to_cf.dtype == np.float32 and ix_to_cf.shape == (len(ids), CF_DIM)
    for row, track in zip(ix_to_cf, ids):
        np.testing.assert_array_equal(row, factors[index.index(track)])


def test_step3_missing_factors_error_or_zero_rows(pipeline, tmp_path, capsys):
    data_path = tmp_path / 'data'
    shutil.copytree(pipeline, data_path)
    ids = np.load(data_path / 'existing_ids.npy')
    index_file = data_path / 'items_index_MSD.tsv'
    index_file.write_text(index_file.read_text().replace(ids[0], 'TRGONE').replace(ids[5], 'TRGONE2'))
    line = exits_with_error(capsys, step3_taste_profile.main, ['run', str(data_path)])
    assert '2 of' in line and ids[0] in line and '--allow_missing' in line
    assert ids[5] in (data_path / 'step3_report.json').read_text()
    assert step3_taste_profile.main(['run', str(data_path), '--allow_missing']) == 0
    ix_to_cf = np.load(data_path / 'ix_to_cf.npy')
    assert not ix_to_cf[[0, 5]].any() and ix_to_cf[[1, 2, 3, 4]].any(axis=1).all()
    assert '2 rows are zeros' in (data_path / 'step3_report.txt').read_text()


# ------------------------------------------------------------------ step 0
def direct_librosa(path):
    import librosa

    y, _ = librosa.load(path, sr=22050, mono=True)
    mel = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=1024, hop_length=512, window='hann', n_mels=128)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None), len(y)


def spec_files(data_path):
    return sorted((data_path / 'spec').rglob('*.npy'))


def test_step0_spectrograms_match_librosa_and_report_failures(audio_dir, tmp_path, capsys):
    data_path = tmp_path / 'data'
    assert step0_mel_spectrogram.main(['run', str(audio_dir), str(data_path), '--workers', '2']) == 1
    files = spec_files(data_path)
    assert [f.name for f in files] == ['TRAAAAW128F429D538.npy', 'TRBBBBB12345678901.npy', 'TRCCCCC12345678901.npy']
    assert files[0] == data_path / 'spec' / 'A' / 'A' / 'A' / 'TRAAAAW128F429D538.npy'
    for file, audio_file in zip(files, sorted(p for p in audio_dir.rglob('TR*') if 'DDD' not in p.name)):
        mel = np.load(file)
        expected, n_samples = direct_librosa(audio_file)
        assert mel.dtype == np.float32 and mel.shape == (128, 1 + n_samples // 512)
        np.testing.assert_allclose(mel, expected, atol=1e-5)
    out = capsys.readouterr().out
    assert 'FAILED' in out and 'TRDDDDD12345678901.wav' in out
    assert 'TRDDDDD12345678901.wav' in (data_path / 'step0_report.json').read_text()
    code, _, err = run_script('step0_mel_spectrogram.py', audio_dir, data_path)
    assert code == 1 and 'Traceback' not in err


def test_step0_resumes_without_recomputing(audio_dir, tmp_path):
    data_path = tmp_path / 'data'
    step0_mel_spectrogram.main(['run', str(audio_dir), str(data_path), '--workers', '1'])
    done, redo = spec_files(data_path)[:2]
    os.utime(done, (1_000_000, 1_000_000))  # an old mtime: a recompute would change it
    expected = np.load(redo)
    os.remove(redo)
    finished = subprocess.Popen(['true'])
    finished.wait()  # the pid of a process that is gone: the writer killed mid-write
    partial = Path(file_io.partial_path(str(redo), pid=finished.pid))
    partial.write_bytes(b'interrupted write')
    step0_mel_spectrogram.main(['run', str(audio_dir), str(data_path), '--workers', '2'])
    assert os.path.getmtime(done) == 1_000_000
    np.testing.assert_array_equal(np.load(redo), expected)
    assert not partial.exists()
    assert len(spec_files(data_path)) == 3


def test_step0_float16_and_compute_mel_on_arrays(audio_dir, tmp_path):
    data_path = tmp_path / 'data'
    step0_mel_spectrogram.main(['run', str(audio_dir), str(data_path), '--workers', '1', '--float16'])
    assert all(np.load(f).dtype == np.float16 for f in spec_files(data_path))
    wave = np.sin(np.linspace(0, 2000, 22050)).astype(np.float32)
    mel = audio.compute_mel(wave)
    assert mel.shape == (128, 1 + 22050 // 512) and mel.dtype == np.float32


def test_bad_arguments_exit_2_without_traceback(tmp_path):
    code, _, err = run_script('step0_mel_spectrogram.py', tmp_path / 'nowhere', tmp_path)
    assert code == 2 and err.startswith('error: ') and 'Traceback' not in err
    code, _, err = run_script('step3_taste_profile.py', tmp_path)
    assert code == 2 and 'train_ids.npy' in err and 'step1_data_split.py' in err


def test_artist_split_reshuffles_until_every_split_has_enough():
    counts = np.zeros((20, 2), dtype=np.int64)
    counts[:, 0] = 4
    counts[[3, 8, 15], 1] = 5  # tag 1 needs these three artists in three different splits
    artist_split, shuffles = dataset_split.split_artists(counts, 5, seed=0, max_tries=1000)
    assert shuffles > 1 and sorted(artist_split[[3, 8, 15]]) == [0, 1, 2]
    assert np.bincount(artist_split).tolist() == [14, 3, 3]
    again, _ = dataset_split.split_artists(counts, 5, seed=0, max_tries=1000)
    np.testing.assert_array_equal(again, artist_split)
    assert dataset_split.split_artists(counts, 6, seed=0, max_tries=5)[0] is None


def test_music_vectors_load_from_a_model_or_keyed_vectors(raw_data, tmp_path):
    from gensim.models import Word2Vec

    model = Word2Vec.load(str(raw_data.path / 'music_w2v' / 'model_semeval_trigrams_300.model'))
    model.wv.save(str(tmp_path / 'music.kv'))
    loaded = word_vectors.load_keyed_vectors(str(tmp_path / 'music.kv'), '--music_path')
    np.testing.assert_array_equal(loaded['smooth_jazz'], model.wv['smooth_jazz'])
