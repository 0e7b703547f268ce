"""Bad inputs by kind: data well-formed but wrong in meaning, flags that leave nothing to compute, run folders never
mixed, checkpoints that would score nonsense, credentials in URIs and --extra, audio that is not finite. Each bad
input ends in one `error:` line and exit code 2 before any work, with nothing written."""
import json
import os
import pickle

import numpy as np
import pytest
import soundfile
import torch

import main as cli
import step0_mel_spectrogram
from test_bad_inputs import (FAST, data, expect_one_error, expect_train_refused, run, spec_file,  # noqa: F401
                             trained)  # data and trained: fixtures



def edit_npy(path, change):
    array = np.load(path)
    array = change(array)
    np.save(path, array)


def edit_vectors(root, change):
    vectors = pickle.load(open(root / 'google_emb.pkl', 'rb'))
    change(vectors)
    pickle.dump(vectors, open(root / 'google_emb.pkl', 'wb'))


def rows_of(root, split):
    return [int(str(e).split('//')[0]) for e in np.load(root / f'{split}_ids.npy')]


def set_valid_all_positive(root):
    edit_npy(root / 'binaries.npy', lambda b: (b.__setitem__(rows_of(root, 'valid'), 1), b)[1])


def replace_spec(root, array):
    np.save(spec_file(root, 'train', 1), array)


MEANING_CASES = {  # name: (break the data folder, extra flags, the error names)
    'label 2 in binaries.npy': (lambda r: edit_npy(r / 'binaries.npy', lambda b: (b.__setitem__((3, 1), 2), b)[1]),
                                [], 'holds labels other than 0/1 in 1 row(s) (first: row 3, values [2.0])'),
    'duplicate tag name': (lambda r: edit_npy(r / 'tags.npy', lambda t: np.array(['tag01'] + t[1:].tolist())), [],
                           "duplicate or empty tag names ('tag01')"),
    'empty tag name': (lambda r: edit_npy(r / 'tags.npy', lambda t: np.array([' '] + t[1:].tolist())), [],
                       'duplicate or empty tag names'),
    'a track in train and test': (lambda r: edit_npy(r / 'test_ids.npy', lambda t: np.concatenate(
        [t, np.load(r / 'train_ids.npy')[:1]])), [], 'test_ids.npy (1 such tracks)'),
    'a track twice in train': (lambda r: edit_npy(r / 'train_ids.npy', lambda t: np.concatenate([t, t[:1]])), [],
                               'is listed twice'),
    'an empty valid split': (lambda r: edit_npy(r / 'valid_ids.npy', lambda t: t[:0]), [], 'valid_ids.npy lists no song'),
    'a spectrogram of zero frames': (lambda r: replace_spec(r, np.zeros((128, 0), np.float32)), [],
                                     'shape (128, 0), expected real numbers'),
    'a complex spectrogram': (lambda r: replace_spec(r, np.ones((128, 200), np.complex64)), [],
                              'holds a complex64 array'),
    'a boolean spectrogram': (lambda r: replace_spec(r, np.ones((128, 200), bool)), [], 'holds a bool array'),
    'a structured spectrogram': (lambda r: replace_spec(r, np.zeros((128, 200), [('a', 'f4'), ('b', 'i4')])), [],
                                 'array of shape (128, 200), expected real numbers'),
    'an all-zero word vector': (lambda r: edit_vectors(r, lambda v: v.__setitem__('tag03', v['tag03'] * 0)),
                                ['--input_type', 'cf'], "of 1 tag(s) are all zero (first: 'tag03')"),
    'identical word vectors': (lambda r: edit_vectors(r, lambda v: v.__setitem__('tag04', v['tag01'])),
                               ['--input_type', 'cf'], 'of tags tag01, tag04 are identical'),
    'tag_categories.tsv not UTF-8': (lambda r: (r / 'tag_categories.tsv').write_bytes(
        b'tag00\tgenre\ntag01\tmo\xe9d\n'), ['--input_type', 'cf'], 'tag_categories.tsv line 2 is not UTF-8'),
    'zero-shot list not UTF-8': (lambda r: (r / 'unseen.txt').write_bytes(b'tag01\n\xff\xfe\n'),
                                 ['--input_type', 'cf', '--zeroshot_tags', '{root}/unseen.txt'],
                                 'unseen.txt line 2 is not UTF-8 text (byte 0xff'),
    'a valid split where no tag can be scored': (set_valid_all_positive, ['--input_type', 'cf'],
                                                 'no tag has both a positive and a negative song'),
}


@pytest.mark.parametrize('name', list(MEANING_CASES))
def test_data_wrong_in_meaning_is_refused_before_training(name, data, tmp_path, capsys):
    expect_train_refused(MEANING_CASES[name], data, tmp_path, capsys)
    assert not (tmp_path / 'ck').exists()  # refused before the run folder was made


def test_track_tags_not_utf8_names_the_line(tmp_path, capsys):
    import step1_data_split
    (tmp_path / 'msd500').mkdir()
    (tmp_path / 'msd500' / 'track_tags.tsv').write_bytes(b'TRA\trock\trock\tgenre\t100\nTRB\tcaf\xe9\tcafe\tmood\t90\n')
    expect_one_error(capsys, lambda: step1_data_split.main(['run', str(tmp_path), '1', '1']),
                     'track_tags.tsv line 2 is not UTF-8 text (byte 0xe9 at column 8)')


# ---------------------------------------------------------------------------------------------- flags
FLAG_CASES = [(['--input_length', '100'], "below the CNN's minimum of 128 (2^7"),
              (['--seed', '-1'], 'argument --seed'), (['--seed', str(2 ** 32)], "numpy's seed range"),
              (['--limit_val_batches', '0'], 'runs no batch'), (['--limit_test_batches', '0.0'], 'runs no batch'),
              (['--limit_train_batches', '0'], 'runs no batch')]


@pytest.mark.parametrize('argv,fragment', FLAG_CASES, ids=[' '.join(c[0]) for c in FLAG_CASES])
def test_flags_that_leave_nothing_to_compute(argv, fragment, capsys):
    expect_one_error(capsys, lambda: cli.build_parser().parse_args(argv), fragment)


def test_a_last_batch_of_one_sample_is_dropped(data, tmp_path, capsys):
    """33 samples in batches of 16: 16, 16 and a last one that BatchNorm cannot train on (it raised); dropped."""
    flags = ['--n_channels', '8', '--batch_size', '16', '--num_chunk', '2', '--logger', 'none']
    result = run('--data_path', data, '--model_save_path', tmp_path / 'ck', '--n_epochs', 1, '--epoch_size', 33,
                 *flags)
    assert torch.load(result.last_model_path, weights_only=True)['global_step'] == 2
    expect_one_error(capsys, lambda: run('--data_path', data, '--model_save_path', tmp_path / 'ck1', '--epoch_size',
                                         1, *flags), 'a batch of one sample cannot train')


def test_step0_n_fft_that_would_take_gigabytes(tmp_path, capsys):
    (tmp_path / 'audio').mkdir()
    soundfile.write(tmp_path / 'audio' / 'TRAB00CD12345678901.wav', np.zeros(22050, np.float32), 22050)
    expect_one_error(capsys, lambda: step0_mel_spectrogram.main(['run', str(tmp_path / 'audio'), str(tmp_path / 'o'),
                                                                 '--n_fft', str(2 ** 30)]),
                     '--n_fft 1073741824 (a window of 48695.8 s) would allocate 274.88 GB')
    assert not (tmp_path / 'o').exists()


# ---------------------------------------------------------------------------------------------- run folders
def test_train_into_another_runs_folder(trained, tmp_path, capsys):
    root, result, _ = trained
    folder = tmp_path / 'run'
    folder.mkdir()
    for name in ('best.ckpt', 'last.ckpt'):
        (folder / name).write_bytes(open(result.best_model_path, 'rb').read())
    before = (folder / 'best.ckpt').read_bytes()
    train = lambda *extra: run('--data_path', root / 'data', '--model_save_path', folder,  # noqa: E731
                               '--n_epochs', 1, '--seed', 5, *FAST, *extra)
    expect_one_error(capsys, train, f'--model_save_path {folder} holds another run\'s checkpoints (best.ckpt, '
                                    f'last.ckpt); resume it with --ckpt_path {folder}/last.ckpt')
    assert (folder / 'best.ckpt').read_bytes() == before
    (folder / 'test').mkdir()
    (folder / 'test' / 'summary.json').write_text('{}')
    train('--overwrite', 'True')  # clears the old run first
    assert (folder / 'best.ckpt').read_bytes() != before and not (folder / 'test').exists()
    assert json.load(open(folder / 'config.json'))['seed'] == 5
    train('--ckpt_path', folder / 'last.ckpt', '--n_epochs', 2)  # a resume of this folder's own run is no mix


def test_test_never_reports_an_earlier_tests_results(trained, tmp_path, capsys, monkeypatch):
    import solver
    root, result, _ = trained
    out = tmp_path / 'results'
    out.mkdir()
    (out / 'summary.json').write_text(json.dumps({'means': {'all': {'map': 0.99, 'p@10': 0.9, 'roc_auc': 0.9}}}))
    monkeypatch.setattr(solver.Solver, 'write_results', lambda *a, **k: None, raising=False)
    monkeypatch.setattr(solver.Solver, 'on_test_epoch_end', lambda self: None)
    expect_one_error(capsys, lambda: run('--mode', 'TEST', '--data_path', root / 'data', '--model_load_path',
                                         result.best_model_path, '--result_path', out, *FAST),
                     f'wrote no results to {out}')
    assert not (out / 'summary.json').exists()


# ---------------------------------------------------------------------------------------------- checkpoints
def edited_checkpoint(source, target, change):
    checkpoint = torch.load(source, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, target)
    return target


CHECKPOINT_CASES = {
    'a NaN weight': (lambda c: c['state_dict']['model.fc1.weight'].__setitem__((0, 0), float('nan')),
                     'parameter fc1.weight holds 1 NaN or infinite value(s)'),
    'an infinite bias': (lambda c: c['state_dict']['model.fc1.bias'].fill_(float('inf')),
                         'parameter fc1.bias holds'),
    'a config that is a list': (lambda c: c['hyper_parameters'].__setitem__('config', [1, 2]),
                                'their config hold a list, not a mapping'),
    'weights of the wrong rank': (lambda c: c['state_dict'].__setitem__(
        'model.fc1.weight', c['state_dict']['model.fc1.weight'].flatten()), 'parameter fc1.weight has shape ('),
}


@pytest.mark.parametrize('name', list(CHECKPOINT_CASES))
def test_checkpoints_that_would_score_nonsense(name, trained, tmp_path, capsys):
    from checkpoint import load_model
    from errors import UserError
    root, result, _ = trained
    change, fragment = CHECKPOINT_CASES[name]
    bad = edited_checkpoint(result.best_model_path, tmp_path / 'bad.ckpt', change)
    expect_one_error(capsys, lambda: run('--mode', 'TEST', '--data_path', root / 'data', '--model_load_path', bad,
                                         '--result_path', tmp_path / 'out', *FAST), fragment)
    assert not (tmp_path / 'out').exists()
    with pytest.raises(UserError, match='parameter|mapping'):
        load_model(str(bad))  # what search.py index and the Python API build on


# ---------------------------------------------------------------------------------------------- audio
@pytest.mark.parametrize('sample', [np.nan, np.inf, 1e30])
def test_audio_not_finite_or_absurd_never_becomes_a_spectrogram(sample, tmp_path):
    from audio import compute_mel
    wave = np.sin(np.arange(22050) / 5).astype(np.float32)
    wave[100] = sample
    with pytest.raises(ValueError, match='expected finite samples'):
        compute_mel(wave)
    (tmp_path / 'audio').mkdir()
    soundfile.write(tmp_path / 'audio' / 'TRAB00CD12345678901.wav', wave, 22050, subtype='FLOAT')
    code = step0_mel_spectrogram.main(['run', str(tmp_path / 'audio'), str(tmp_path / 'o'), '--workers', '1'])
    assert code == 1 and not [f for _, _, fs in os.walk(tmp_path / 'o' / 'spec') for f in fs if f.endswith('.npy')]


def test_zero_byte_spectrogram_is_not_done(tmp_path):
    (tmp_path / 'audio').mkdir()
    soundfile.write(tmp_path / 'audio' / 'TRAB00CD12345678901.wav', np.sin(np.arange(22050) / 5) * 0.3, 22050)
    from file_io import spec_path
    out = spec_path(str(tmp_path / 'o'), 'TRAB00CD12345678901')
    os.makedirs(os.path.dirname(out))
    open(out, 'wb').close()
    assert step0_mel_spectrogram.main(['run', str(tmp_path / 'audio'), str(tmp_path / 'o'), '--workers', '1']) == 0
    assert np.load(out).shape == (128, 44)
