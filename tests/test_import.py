"""import_dataset.py: MTG-Jamendo, MagnaTagATune and an own CSV, from their published files through step 0 (real
MP3 decoding), step 2 (real GloVe vectors, tags composed from their words), TRAIN, TEST and a search index; the
bad inputs each stop with one `error:` line and write nothing; 54,000 tracks of metadata import in seconds."""
import json
import os
import pickle
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from import_fixtures import (CSV_TAGS, JAMENDO_SPLIT_SIZES, JAMENDO_TAGS, MTAT_USED, ROOT, csv_rows, glove,  # noqa
                             jamendo, jamendo_tracks, mtat, mtat_clips, own, write_jamendo, write_mtat)
import main as cli
import search
import step0_mel_spectrogram
import step2_word_embedding
from file_io import spec_folders, spec_path

TRAIN = ['--n_epochs', '1', '--logger', 'none', '--n_channels', '8', '--batch_size', '8', '--epoch_size', '16',
         '--num_chunk', '2', '--is_balanced', 'True', '--is_weighted', 'True']


def run_script(*args):
    done = subprocess.run([sys.executable, os.path.join(ROOT, args[0]), *map(str, args[1:])], capture_output=True,
                          text=True, cwd=ROOT)
    return done.returncode, done.stdout, done.stderr


def import_ok(*args):
    code, out, err = run_script('import_dataset.py', *args)
    assert code == 0, err
    return out


def refused(data_path, *args, script='import_dataset.py'):
    """Exit 2, one `error:` line, no traceback, and (for the importer) nothing written. Returns the line."""
    code, _, err = run_script(script, *args)
    assert code == 2 and err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    if script == 'import_dataset.py':
        assert not os.path.exists(data_path), os.listdir(data_path)
    return err.strip()


def entries(data_path, split):
    return [e.split('//') for e in np.load(os.path.join(data_path, f'{split}_ids.npy'))]


def pipeline(data_path, audio_dir, glove_path, work):
    """step 0 -> step 2 -> TRAIN (the paper's sampling) -> TEST -> search index + query. Returns what TEST wrote."""
    assert step0_mel_spectrogram.main(['run', audio_dir, data_path, '--workers', '2', '--float16']) == 0
    assert step2_word_embedding.main(['run', data_path, '--google_path', glove_path]) == 0
    assert not os.path.exists(os.path.join(data_path, 'music_emb.pkl'))  # one set of vectors is enough
    ckpt = cli.main(cli.build_parser().parse_args(['--data_path', data_path, '--model_save_path',
                                                   str(work / 'ck'), *TRAIN])).best_model_path
    cli.main(cli.build_parser().parse_args(['--mode', 'TEST', '--data_path', data_path, '--model_load_path', ckpt,
                                            '--result_path', str(work / 'test'), '--num_chunk', '2']))
    assert search.main(['index', '--model_load_path', ckpt, '--data_path', data_path, '--split', 'test',
                        '--index_path', str(work / 'index'), '--w2v_path', glove_path]) == 0
    return json.loads((work / 'test' / 'summary.json').read_text()), (work / 'test' / 'per_tag.csv').read_text()


def query(index_path, words, capsys):
    capsys.readouterr()
    assert search.main(['query', '--index_path', str(index_path), '--query', words, '--k', '3', '--json']) == 0
    return json.loads(capsys.readouterr().out)


# ---------------------------------------------------------------------------------------------- MTG-Jamendo
def test_jamendo_keeps_the_official_split_and_runs_to_test_and_search(jamendo, glove, tmp_path, capsys):
    data = str(tmp_path / 'data')
    out = import_ok('mtg-jamendo', jamendo['root'], data, '--audio_dir', jamendo['audio'])
    assert 'train 12, valid 6, test 6' in out
    published = jamendo_tracks()
    for split, file_split in zip(('train', 'valid', 'test'), JAMENDO_SPLIT_SIZES):
        assert sorted(t for _, t in entries(data, split)) == sorted(t[0] for t in published[file_split])
    tags = np.load(os.path.join(data, 'tags.npy')).tolist()
    assert tags == sorted(t.split('---')[1] for t in JAMENDO_TAGS)
    categories = dict(line.split('\t') for line in open(os.path.join(data, 'tag_categories.tsv')).read().splitlines())
    assert categories['easylistening'] == 'genre' and categories['happy'] == 'mood/theme'
    binaries, ids = np.load(os.path.join(data, 'binaries.npy')), np.load(os.path.join(data, 'existing_ids.npy'))
    first = published['train'][0]
    assert {tags[j] for j in np.flatnonzero(binaries[list(ids).index(first[0])])} == \
        {t.split('---')[1] for t in first[3]}
    manifest = open(os.path.join(data, 'audio_manifest.tsv')).read().splitlines()
    assert manifest[0] == 'track_id\tpath' and f'{first[0]}\t{first[2]}' in manifest  # 15/215.mp3 layout
    words = dict(line.split('\t') for line in open(os.path.join(data, 'tag_words.tsv')) if not line.startswith('#'))
    assert words['easylistening'] == 'easy listening\n' and words['drummachine'] == 'drum machine\n'

    summary, per_tag = pipeline(data, jamendo['audio'], glove, tmp_path)
    assert os.path.isfile(spec_path(data, first[0])) and spec_folders(first[0]) != ('a', 'c', 'k')
    assert len(os.listdir(os.path.join(data, 'spec'))) > 4  # ids spread over folders, not all in spec/a/c/k
    report = open(os.path.join(data, 'step2_report.txt')).read()
    assert 'easylistening <- mean of easy + listening' in report and 'instrumentalpop <- mean of' in report
    assert '--w2v_type music would need --music_path' in report
    assert per_tag.splitlines()[0] == 'tag,category,p@10,roc_auc,ap' and len(per_tag.splitlines()) == 1 + 9
    assert set(summary['means']['category']) == {'genre', 'instrument', 'mood/theme'}
    assert 0 <= summary['means']['all']['roc_auc'] <= 1
    test_ids = {t for _, t in entries(data, 'test')}
    hits = query(tmp_path / 'index', 'acoustic guitar', capsys)['results']
    assert len(hits) == 3 and {h['track_id'] for h in hits} <= test_ids


def test_jamendo_all_merges_the_three_category_subsets(jamendo, tmp_path):
    import_ok('mtg-jamendo', jamendo['root'], tmp_path / 'top50', '--subset', 'top50tags')
    import_ok('mtg-jamendo', jamendo['root'], tmp_path / 'all', '--subset', 'all')
    for name in ('binaries.npy', 'tags.npy', 'train_ids.npy', 'valid_ids.npy', 'test_ids.npy'):
        np.testing.assert_array_equal(np.load(tmp_path / 'top50' / name), np.load(tmp_path / 'all' / name))
    genre = tmp_path / 'genre'
    import_ok('mtg-jamendo', jamendo['root'], genre, '--subset', 'genre')
    assert np.load(genre / 'tags.npy').tolist() == ['easylistening', 'instrumentalpop', 'newage', 'rock']


# ---------------------------------------------------------------------------------------------- MagnaTagATune
def test_magnatagatune_splits_by_folder_and_runs_to_test_and_search(mtat, glove, tmp_path, capsys):
    data = str(tmp_path / 'data')
    out = import_ok('magnatagatune', mtat['root'], data, '--audio_dir', mtat['audio'])
    clips = mtat_clips()
    assert f'{len(clips)} clips, 188 tags' in out and '2 clips without one dropped' in out
    assert 'train 12, valid 6, test 7' in out
    folders = {t: p[0] for t, p, _ in clips}
    assert {folders[t] for _, t in entries(data, 'valid')} == {'c'}
    assert {folders[t] for _, t in entries(data, 'test')} <= set('def')
    assert {folders[t] for _, t in entries(data, 'train')} <= set('0123456789ab')
    tags = np.load(os.path.join(data, 'tags.npy')).tolist()
    assert tags == sorted(MTAT_USED) and 'no vocals' in tags and 'female voice' in tags

    summary, per_tag = pipeline(data, mtat['audio'], glove, tmp_path)
    assert os.path.isfile(spec_path(data, '2'))  # a one-character clip id
    report = open(os.path.join(data, 'step2_report.txt')).read()
    assert 'harpsicord <- mean of harpsichord' in report  # the table mends the published misspelling
    assert 'no vocals <- mean of no + vocals' in report and 'hard rock' not in report.split('mean of')[0]
    assert len(per_tag.splitlines()) == 1 + len(MTAT_USED)
    assert query(tmp_path / 'index', 'female voice', capsys)['results']


# ---------------------------------------------------------------------------------------------- own CSV
def test_own_csv_gets_an_artist_split_and_runs_to_test_and_search(own, glove, tmp_path, capsys):
    data = str(tmp_path / 'data')
    import_ok('csv', own['file'], data, '--audio_dir', own['audio'])
    rows = {r[0]: r for r in csv_rows()}
    artists = [{rows[t][3] for _, t in entries(data, split)} for split in ('train', 'valid', 'test')]
    assert not (artists[0] & artists[1] or artists[0] & artists[2] or artists[1] & artists[2])
    assert np.load(os.path.join(data, 'tags.npy')).tolist() == sorted(CSV_TAGS)
    summary, per_tag = pipeline(data, own['audio'], glove, tmp_path)
    report = open(os.path.join(data, 'step2_report.txt')).read()
    assert 'drum_machine <- mean of drum + machine' in report
    assert query(tmp_path / 'index', 'slow', capsys)['results']


def test_own_csv_keeps_a_given_split(own, tmp_path):
    lines = open(own['file']).read().splitlines()
    splits = ['train'] * 40 + ['validation'] * 10 + ['test'] * 10
    rows = [lines[0] + ',split'] + [f'{line},{s}' for line, s in zip(lines[1:], splits)]
    (tmp_path / 'split.csv').write_text('\n'.join(rows) + '\n')
    import_ok('csv', tmp_path / 'split.csv', tmp_path / 'data', '--audio_dir', own['audio'])
    order = [r[0] for r in csv_rows()]
    assert sorted(t for _, t in entries(tmp_path / 'data', 'valid')) == sorted(order[40:50])


# ---------------------------------------------------------------------------------------------- bad input
def test_missing_split_file(jamendo, tmp_path):
    root = write_jamendo(str(tmp_path / 'repo'))
    os.remove(os.path.join(root, 'data', 'splits', 'split-0', 'autotagging_top50tags-validation.tsv'))
    line = refused(tmp_path / 'out', 'mtg-jamendo', root, tmp_path / 'out')
    assert 'autotagging_top50tags-validation.tsv not found' in line and 'mtg-jamendo-dataset' in line


def test_wrong_header(tmp_path):
    root = write_jamendo(str(tmp_path / 'repo'))
    path = os.path.join(root, 'data', 'splits', 'split-0', 'autotagging_top50tags-test.tsv')
    text = open(path, newline='').read().replace('TRACK_ID\tARTIST_ID', 'TRACK\tARTIST', 1)
    open(path, 'w', newline='').write(text)
    line = refused(tmp_path / 'out', 'mtg-jamendo', root, tmp_path / 'out')
    assert path in line and 'line 1' in line and 'TRACK_ID<TAB>ARTIST_ID' in line


def test_track_in_two_splits(tmp_path):
    root = write_jamendo(str(tmp_path / 'repo'))
    folder = os.path.join(root, 'data', 'splits', 'split-0')
    train_line = open(os.path.join(folder, 'autotagging_top50tags-train.tsv'), newline='').read().split('\r\n')[1]
    with open(os.path.join(folder, 'autotagging_top50tags-test.tsv'), 'a', newline='') as f:
        f.write(train_line + '\r\n')
    line = refused(tmp_path / 'out', 'mtg-jamendo', root, tmp_path / 'out')
    assert f'track {train_line.split()[0]} is in two splits' in line and '-train.tsv' in line and '-test.tsv' in line


def test_tag_without_a_song_in_a_split(tmp_path):
    root = write_jamendo(str(tmp_path / 'repo'))
    path = os.path.join(root, 'data', 'splits', 'split-0', 'autotagging_top50tags-test.tsv')
    text = open(path, newline='').read().replace('\tgenre---newage', '')
    open(path, 'w', newline='').write(text)
    line = refused(tmp_path / 'out', 'mtg-jamendo', root, tmp_path / 'out')
    assert "tag 'newage' has no song in the test split" in line


def test_missing_audio_is_refused_or_dropped_when_asked(jamendo, tmp_path):
    audio = tmp_path / 'audio'
    shutil.copytree(jamendo['audio'], audio)
    gone = jamendo_tracks()['train'][0]
    os.remove(audio / gone[2])
    line = refused(tmp_path / 'out', 'mtg-jamendo', jamendo['root'], tmp_path / 'out', '--audio_dir', audio)
    assert f'1 of the 24 tracks have no audio file' in line and gone[0] in line and '--drop_missing' in line
    out = import_ok('mtg-jamendo', jamendo['root'], tmp_path / 'out', '--audio_dir', audio, '--drop_missing')
    assert 'train 11, valid 6, test 6' in out
    assert gone[0] in json.load(open(tmp_path / 'out' / 'import_report.json'))['dropped_without_audio']
    (tmp_path / 'none').mkdir()
    line = refused(tmp_path / 'out2', 'mtg-jamendo', jamendo['root'], tmp_path / 'out2', '--audio_dir',
                   tmp_path / 'none', '--drop_missing')
    assert 'no track left to import' in line


def test_manifest_path_that_does_not_exist(jamendo, tmp_path):
    data = tmp_path / 'data'
    import_ok('mtg-jamendo', jamendo['root'], data)
    audio = tmp_path / 'audio'
    shutil.copytree(jamendo['audio'], audio)
    gone = jamendo_tracks()['test'][2]
    os.remove(audio / gone[2])
    line = refused(None, 'run', audio, data, script='step0_mel_spectrogram.py')
    assert 'audio_manifest.tsv' in line and str(audio / gone[2]) in line and '1 of the 24' in line
    assert not (data / 'spec').exists()


def test_csv_with_an_unknown_column_or_an_empty_tag_list(own, tmp_path):
    (tmp_path / 'a.csv').write_text('track_id,path,tags,genre\nx1,a.mp3,rock,pop\n')
    line = refused(tmp_path / 'out', 'csv', tmp_path / 'a.csv', tmp_path / 'out', '--audio_dir', own['audio'])
    assert "unknown column 'genre'" in line and 'track_id,path,tags[,artist][,split]' in line
    (tmp_path / 'b.csv').write_text('track_id,path,tags,artist\nx1,a.mp3,rock;pop,ann\nx2,b.mp3, ; ,bob\n')
    line = refused(tmp_path / 'out', 'csv', tmp_path / 'b.csv', tmp_path / 'out', '--audio_dir', own['audio'])
    assert 'line 3' in line and "'x2'" in line and 'empty tags' in line


def test_magnatagatune_value_that_is_not_0_or_1(tmp_path):
    root = write_mtat(str(tmp_path / 'mtat'))
    path = os.path.join(root, 'annotations_final.csv')
    lines = open(path).read().splitlines()
    lines[3] = lines[3].replace('"0"', '"yes"', 1)
    open(path, 'w').write('\n'.join(lines) + '\n')
    line = refused(tmp_path / 'out', 'magnatagatune', root, tmp_path / 'out')
    assert 'line 4' in line and "'yes' is not 0 or 1" in line


def test_tag_none_of_whose_words_is_known(jamendo, glove, tmp_path, capsys):
    data = tmp_path / 'data'
    import_ok('mtg-jamendo', jamendo['root'], data)
    table = (data / 'tag_words.tsv').read_text().replace('easylistening\teasy listening', 'easylistening\tqzxv wvvq')
    (data / 'tag_words.tsv').write_text(table)
    line = refused(None, 'run', data, '--google_path', glove,
                   script='step2_word_embedding.py')
    assert 'google: easylistening' in line and str(data / 'tag_words.tsv') in line
    assert not (data / 'google_emb.pkl').exists()


def test_step0_max_seconds_keeps_the_middle_of_each_track(jamendo, tmp_path):
    data = tmp_path / 'data'
    import_ok('mtg-jamendo', jamendo['root'], data)
    assert step0_mel_spectrogram.main(['run', jamendo['audio'], str(data), '--workers', '1', '--max_seconds', '2']) == 0
    track = jamendo_tracks()['validation'][0][0]
    assert np.load(spec_path(str(data), track)).shape == (128, 1 + 2 * 22050 // 512)
    report = json.load(open(data / 'step0_report.json'))
    assert report['computed'] == 24 and not report.get('short') and report['mel_params']['max_seconds'] == 2


# ---------------------------------------------------------------------------------------------- layout, speed
def test_spectrogram_layout_keeps_msd_ids_and_spreads_others():
    assert spec_folders('TRAAAAW128F429D538') == ('A', 'A', 'A')  # the released data's ID[2], ID[3], ID[4]
    folders = {spec_folders(f'track_{n:07d}') for n in range(2000)}
    assert len(folders) > 1000  # 2,000 Jamendo ids over ~1,600 of the 4,096 folders, not one
    assert spec_path('D', '7').endswith(os.path.join('spec', *spec_folders('7'), '7.npy'))
    with pytest.raises(ValueError):
        spec_path('D', '../x')


def test_importing_54000_tracks_of_metadata_takes_seconds(tmp_path):
    rng = np.random.default_rng(0)
    header = 'TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS'
    folder = tmp_path / 'repo' / 'data' / 'splits' / 'split-0'
    folder.mkdir(parents=True)
    n = 0
    for split, size in (('train', 32136), ('validation', 10888), ('test', 11356)):
        lines = [header]
        for _ in range(size):
            tags = rng.choice(JAMENDO_TAGS, rng.integers(1, 6), replace=False)
            lines.append(f'track_{n:07d}\tartist_{n // 9:06d}\talbum_{n // 3:06d}\t{n % 100:02d}/{n}.mp3\t240.0\t'
                         + '\t'.join(tags))
            n += 1
        (folder / f'autotagging_top50tags-{split}.tsv').write_bytes(('\r\n'.join(lines) + '\r\n').encode())
    start = time.perf_counter()
    out = import_ok('mtg-jamendo', tmp_path / 'repo', tmp_path / 'data')
    seconds = time.perf_counter() - start
    print(f'54,380 tracks imported in {seconds:.1f} s (process start included)')
    assert 'train 32136, valid 10888, test 11356' in out
    assert seconds < 60
    with open(tmp_path / 'data' / 'train_tag_to_ix.pkl', 'rb') as f:
        assert sum(map(len, pickle.load(f).values())) == int(np.load(tmp_path / 'data' / 'binaries.npy')[
            [int(e.split('//')[0]) for e in np.load(tmp_path / 'data' / 'train_ids.npy')]].sum())
