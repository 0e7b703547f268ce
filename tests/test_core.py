"""Core: negative sampling and the losses, flags, TRAIN/TEST of every model and sampling mode,
original parameter names, resume, one vs two processes, and bad inputs."""
import json
import os
import pickle

import numpy as np
import pytest
import torch

import main as cli
from solver import infonce_loss, sample_negatives, triplet_loss
from synthetic_data import write_dataset

FAST = ['--n_channels', '8', '--batch_size', '32', '--epoch_size', '64', '--num_chunk', '4']


def run(*argv):
    return cli.main(cli.build_parser().parse_args([str(a) for a in argv]))


def train(data, out, *extra):
    return run('--data_path', data, '--model_save_path', out, '--n_epochs', 1, '--logger', 'none', *FAST, *extra)


def evaluate(data, ckpt, out, *extra):
    return run('--mode', 'TEST', '--data_path', data, '--model_load_path', ckpt, '--result_path', out, *FAST, *extra)


# ---------------------------------------------------------------------------------------------- negatives
def test_negatives_never_carry_the_anchor_tag():
    torch.manual_seed(0)
    labels = (torch.rand(64, 10) < 0.4).float()
    tag = torch.randint(0, 10, (64,))
    labels[torch.arange(64), tag] = 1
    for weighted in (False, True):
        neg, ok = sample_negatives(torch.randn(64, 16), torch.randn(64, 16), tag, labels, weighted)
        assert ok.all()
        assert (labels[neg, tag] == 0).all()


def test_weighted_negatives_follow_cosine_weights():
    torch.manual_seed(0)
    tag_emb, song_emb = torch.randn(1, 8), torch.randn(6, 8)
    labels = torch.zeros(6, 2)
    labels[0, 0] = 1  # song 0 is the positive: never drawn
    counts = {True: torch.zeros(6), 'default': torch.zeros(6)}
    for _ in range(4000):
        for weighted, extra in ((True, {'weighted': True}), ('default', {})):
            neg, _ = sample_negatives(tag_emb, song_emb, torch.tensor([0]), labels, **extra)
            counts[weighted][neg] += 1
    cos = torch.nn.functional.cosine_similarity(tag_emb, song_emb)
    expected = (cos + 1) / 2
    expected[0] = 0
    expected /= expected.sum()
    assert counts[True][0] == 0 and counts['default'][0] == 0
    assert torch.allclose(counts[True] / 4000, expected, atol=0.03)
    uniform = torch.tensor([0] + [1 / 5] * 5)  # the default: uniform over the valid negatives
    assert torch.allclose(counts['default'] / 4000, uniform, atol=0.03)
    assert (expected - uniform).abs().max() > 0.06  # and the two rules differ here


def test_negative_draw_at_its_bounds(monkeypatch):
    """u = 0 (torch.rand's lowest value) never picks a song of zero weight; a row without a valid negative still
    gets an index that exists, so song_emb[negative] works before the row is left out of the loss."""
    labels = torch.zeros(4, 2)
    labels[:2, 0] = 1  # songs 0 and 1 carry tag 0
    monkeypatch.setattr(torch, 'rand', lambda shape, device=None, dtype=None: torch.zeros(shape, dtype=dtype))
    for weighted in (False, True):
        neg, ok = sample_negatives(torch.randn(4, 8), torch.randn(4, 8), torch.zeros(4, dtype=torch.long), labels,
                                   weighted)
        assert ok.all() and (neg == 2).all()
    neg, ok = sample_negatives(torch.randn(4, 8), torch.randn(4, 8), torch.zeros(4, dtype=torch.long),
                               torch.ones(4, 2))
    assert not ok.any() and ((0 <= neg) & (neg < 4)).all()


def test_batch_where_every_song_carries_the_anchor():
    labels = torch.ones(8, 3)
    tag_emb = torch.randn(8, 4, requires_grad=True)
    song_emb = torch.randn(8, 4, requires_grad=True)
    neg, ok = sample_negatives(tag_emb, song_emb, torch.zeros(8, dtype=torch.long), labels, weighted=True)
    assert not ok.any()
    labels[3, 0] = 0  # now song 3 is the only valid negative, for every row but its own
    neg, ok = sample_negatives(tag_emb, song_emb, torch.zeros(8, dtype=torch.long), labels)
    assert ok.all() and (neg == 3).all()
    loss = triplet_loss(tag_emb, song_emb, song_emb[neg], 0.4)
    assert loss.shape == (8,)


def test_triplet_loss_is_the_hinge_of_the_cosine_gap():
    torch.manual_seed(0)
    anchor, positive, negative = torch.randn(3, 64, 8)

    def cos(x, y):
        return (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1))
    gap = 0.4 - cos(anchor, positive) + cos(anchor, negative)
    loss = triplet_loss(anchor, positive, negative, 0.4)
    assert (gap > 0).any() and (gap < 0).any()  # rows on both sides of the hinge
    assert torch.allclose(loss, gap.clamp_min(0), atol=1e-6)


def test_infonce_never_uses_a_positive_as_negative():
    torch.manual_seed(0)
    tag_emb, song_emb = torch.randn(4, 8), torch.randn(4, 8)
    labels = torch.zeros(4, 3)
    tag = torch.tensor([0, 1, 2, 0])
    labels[[0, 1, 2, 3], tag] = 1
    scale = torch.tensor(1.5)  # logits are the cosines times e^1.5
    loss = infonce_loss(tag_emb, song_emb, tag, labels, scale)
    # row 0 (tag 0): song 3 also carries tag 0, so only songs 1 and 2 are negatives
    logits = torch.nn.functional.cosine_similarity(tag_emb[0:1], song_emb) * np.exp(1.5)
    expected = -torch.log_softmax(logits[[0, 1, 2]], 0)[0]
    assert loss[0] == pytest.approx(expected.item(), abs=1e-5)
    # moving song 3 anywhere leaves row 0 unchanged
    song_emb2 = song_emb.clone()
    song_emb2[3] = torch.randn(8) * 5
    assert infonce_loss(tag_emb, song_emb2, tag, labels, scale)[0] == pytest.approx(loss[0].item(), abs=1e-6)


# ---------------------------------------------------------------------------------------------- flags
@pytest.mark.parametrize('word,value', [('False', False), ('false', False), ('0', False), ('no', False),
                                        ('True', True), ('TRUE', True), ('1', True), ('yes', True)])
def test_boolean_flags(word, value):
    assert cli.build_parser().parse_args(['--is_balanced', word]).is_balanced is value


def test_boolean_flag_rejects_other_words(capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(['--is_weighted', 'maybe'])
    assert e.value.code == 2
    assert "expected True/False/1/0/yes/no, got 'maybe'" in capsys.readouterr().err


def test_defaults_are_the_originals():
    c = cli.build_parser().parse_args([])
    assert (c.num_workers, c.mode, c.batch_size, c.num_chunk, c.input_length, c.margin, c.input_type,
            c.w2v_type, c.is_balanced, c.is_weighted, c.is_subset, c.n_epochs, c.gpu_id, c.lr, c.model_save_path,
            c.model_load_path, c.data_path, c.neptune_project, c.neptune_api_key) == \
        (0, 'TRAIN', 128, 8, 173, 0.4, 'spec', 'google', False, False, False, 200, '0', 1e-4, './checkpoints',
         '.', '.', '.', '.')


# ---------------------------------------------------------------------------------------------- train + test
SAMPLING = {'random': ['--is_balanced', 'False'], 'balanced': ['--is_balanced', 'True'],
            'balanced_weighted': ['--is_balanced', 'True', '--is_weighted', 'True']}


@pytest.mark.parametrize('input_type', ['spec', 'cf', 'hybrid'])
@pytest.mark.parametrize('sampling', list(SAMPLING))
def test_train_then_test(dataset, tmp_path, input_type, sampling):
    ckpt = train(dataset['root'], tmp_path / 'ck', '--input_type', input_type, *SAMPLING[sampling])
    assert os.path.isfile(ckpt.best_model_path) and os.path.isfile(ckpt.last_model_path)
    saved = torch.load(ckpt.best_model_path, weights_only=False)
    assert saved['hyper_parameters']['config']['input_type'] == input_type
    assert json.load(open(tmp_path / 'ck' / 'config.json'))['is_balanced'] == (sampling != 'random')
    result = evaluate(dataset['root'], ckpt.best_model_path, tmp_path / 'res', '--input_type', input_type)
    n_test = len(dataset['splits']['test'])
    scores = np.load(tmp_path / 'res' / 'scores.npy')
    assert scores.shape == (len(dataset['tags']), n_test)
    assert np.abs(scores).max() <= 1 + 1e-5
    summary = json.load(open(tmp_path / 'res' / 'summary.json'))
    assert summary['means']['all']['map'] == pytest.approx(np.nanmean(result['per_tag']['ap']))
    assert set(summary['means']['category']) == {'genre', 'mood', 'instrument'}
    lines = open(tmp_path / 'res' / 'per_tag.csv').read().splitlines()
    assert lines[0] == 'tag,category,p@10,roc_auc,ap' and len(lines) == 1 + len(dataset['tags'])


def test_training_learns_the_synthetic_signal(dataset, tmp_path):
    ckpt = run('--data_path', dataset['root'], '--model_save_path', tmp_path / 'ck', '--logger', 'csv',
               '--input_type', 'cf', '--n_epochs', 4, '--epoch_size', 512, '--batch_size', 32, '--lr', 1e-3,
               '--is_balanced', 'True', '--is_weighted', 'True')
    result = evaluate(dataset['root'], ckpt.best_model_path, tmp_path / 'res', '--input_type', 'cf')
    prevalence = dataset['binaries'][[int(e.split('//')[0]) for e in dataset['splits']['test']]].mean()
    assert np.nanmean(result['per_tag']['ap']) > 1.5 * prevalence
    assert np.nanmean(result['per_tag']['roc_auc']) > 0.75
    assert os.path.isfile(tmp_path / 'ck' / 'logs' / 'version_0' / 'metrics.csv')


# ---------------------------------------------------------------------------------------------- checkpoints
def test_parameter_names_match_the_original():
    from model import build_model
    spec = set(build_model('spec').state_dict())
    assert {'spec_bn.weight', 'layer1.conv.weight', 'layer1.bn.running_var', 'layer7.conv.weight',
            'layer8.conv.weight', 'layer8.bn.weight', 'fc1.weight', 'bn1.weight', 'fc2.weight'} <= spec
    assert build_model('spec').state_dict()['layer7.conv.weight'].shape == (512, 256, 3, 3)
    hybrid = build_model('hybrid').state_dict()
    assert hybrid['layer8.conv.weight'].shape == (200, 512, 1, 1) and hybrid['cat_fc1.weight'].shape == (512, 400)
    assert {k.split('.')[0] for k in build_model('cf').state_dict()} == {'cf_fc1', 'cf_bn1', 'cf_fc2', 'fc1', 'bn1',
                                                                          'fc2'}


def test_resume_continues_steps_and_optimiser(dataset, tmp_path):
    first = train(dataset['root'], tmp_path / 'ck', '--input_type', 'cf')
    steps = torch.load(first.last_model_path, weights_only=False)['global_step']
    resumed = run('--data_path', dataset['root'], '--model_save_path', tmp_path / 'ck2', '--n_epochs', 2,
                  '--logger', 'none', '--input_type', 'cf', '--ckpt_path', first.last_model_path, *FAST)
    after = torch.load(resumed.last_model_path, weights_only=False)
    assert after['global_step'] == 2 * steps and after['epoch'] == 1
    assert after['optimizer_states'][0]['state'][0]['step'] == 2 * steps


def test_one_and_two_processes_give_the_same_metrics(dataset, tmp_path):
    ckpt = train(dataset['root'], tmp_path / 'ck', '--input_type', 'spec')
    evaluate(dataset['root'], ckpt.best_model_path, tmp_path / 'one')
    evaluate(dataset['root'], ckpt.best_model_path, tmp_path / 'two', '--accelerator', 'cpu', '--devices', 2,
             '--strategy', 'ddp_spawn', '--batch_size', 24)  # 3 songs a batch: the last batch is padded
    one = json.load(open(tmp_path / 'one' / 'summary.json'))['means']
    two = json.load(open(tmp_path / 'two' / 'summary.json'))['means']
    for metric in ('map', 'p@10', 'roc_auc'):
        assert two['all'][metric] == pytest.approx(one['all'][metric], abs=1e-6)
    assert np.allclose(np.load(tmp_path / 'one' / 'scores.npy'), np.load(tmp_path / 'two' / 'scores.npy'), atol=1e-5)


# ---------------------------------------------------------------------------------------------- bad input
@pytest.fixture()
def own_data(tmp_path):
    root = tmp_path / 'data'
    info = write_dataset(str(root), n_songs=40)
    return root, info


def expect_error(capsys, fragment, *argv):
    with pytest.raises(SystemExit) as e:
        run(*argv)
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert fragment in err, err
    assert 'Traceback' not in err
    assert len(err.strip().splitlines()) == 1, err


def test_missing_file(own_data, tmp_path, capsys):
    root, _ = own_data
    os.remove(root / 'valid_ids.npy')
    expect_error(capsys, f'{root}/valid_ids.npy not found', '--data_path', root, '--logger', 'none')


def test_truncated_file(own_data, capsys):
    root, _ = own_data
    (root / 'binaries.npy').write_bytes(b'')  # an interrupted copy: np.load raises EOFError
    expect_error(capsys, f'{root}/binaries.npy is not a readable .npy array', '--data_path', root, '--logger', 'none')


def test_missing_subset_file_names_the_prefix(own_data, capsys):
    root, _ = own_data
    expect_error(capsys, 'sub_tags.npy not found', '--data_path', root, '--is_subset', 'True')


def test_track_without_spectrogram(own_data, capsys):
    root, info = own_data
    tid = info['splits']['valid'][0].split('//')[1]
    os.remove(root / 'spec' / tid[2] / tid[3] / tid[4] / f'{tid}.npy')
    expect_error(capsys, f'no spectrogram for track {tid}', '--data_path', root)


def test_spectrogram_of_wrong_shape(own_data, capsys):
    root, info = own_data
    tid = info['splits']['train'][0].split('//')[1]
    np.save(root / 'spec' / tid[2] / tid[3] / tid[4] / f'{tid}.npy', np.zeros((96, 300), np.float32))
    expect_error(capsys, 'has shape (96, 300) and dtype float32, expected (128, n_frames >= 1)', '--data_path', root)


def test_binaries_of_wrong_shape(own_data, capsys):
    root, _ = own_data
    np.save(root / 'binaries.npy', np.zeros((40, 3), np.float32))
    expect_error(capsys, 'binaries.npy has shape (40, 3), expected (n_songs, 6)', '--data_path', root)


def test_tag_without_word_vector(own_data, capsys):
    root, _ = own_data
    vectors = pickle.load(open(root / 'music_emb.pkl', 'rb'))
    del vectors['tag03']
    pickle.dump(vectors, open(root / 'music_emb.pkl', 'wb'))
    expect_error(capsys, 'music_emb.pkl has no vector for 1 tag(s): tag03', '--data_path', root,
                 '--w2v_type', 'music')


def test_unknown_flag_value(capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(['--input_type', 'video'])
    assert e.value.code == 2 and "invalid choice: 'video'" in capsys.readouterr().err


def test_checkpoint_of_another_input_type(dataset, tmp_path, capsys):
    ckpt = train(dataset['root'], tmp_path / 'ck', '--input_type', 'cf')
    expect_error(capsys, "is a checkpoint of input_type 'cf' but --input_type is 'spec'; pass --input_type cf",
                 '--mode', 'TEST', '--data_path', dataset['root'], '--model_load_path', ckpt.best_model_path)
    expect_error(capsys, "is a checkpoint of input_type 'cf'", '--data_path', dataset['root'],
                 '--ckpt_path', ckpt.last_model_path, '--input_type', 'hybrid')


def test_checkpoint_of_other_item_factors(own_data, tmp_path, capsys):
    root, _ = own_data
    ckpt = train(root, tmp_path / 'ck', '--input_type', 'hybrid')
    cf = np.load(root / 'ix_to_cf.npy')
    np.save(root / 'ix_to_cf.npy', cf[:, :cf.shape[1] // 2])
    expect_error(capsys, f'expects {cf.shape[1]}-d item factors but ix_to_cf.npy of {root} has {cf.shape[1] // 2}-d',
                 '--mode', 'TEST', '--data_path', root, '--model_load_path', ckpt.best_model_path,
                 '--input_type', 'hybrid')


def test_missing_checkpoint(dataset, capsys):
    expect_error(capsys, "checkpoint 'nowhere.ckpt' not found", '--mode', 'TEST', '--data_path', dataset['root'],
                 '--model_load_path', 'nowhere.ckpt')


def test_neptune_offline_records_locally_and_async_fails_fast(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv('NEPTUNE_API_TOKEN', raising=False)
    run('--data_path', dataset['root'], '--model_save_path', tmp_path / 'ck', '--n_epochs', 1, '--input_type', 'cf',
        '--logger', 'neptune', '--neptune_mode', 'offline', '--neptune_project', 'lab/tags', *FAST)
    assert os.path.isdir(tmp_path / '.neptune')
    expect_error(capsys, 'Neptune (async mode) failed', '--data_path', dataset['root'], '--input_type', 'cf',
                 '--neptune_project', 'lab/tags', '--model_save_path', tmp_path / 'ck3', *FAST)


# ---------------------------------------------------------------------------------------------- zero-shot
def test_unseen_tags_are_never_anchors(dataset):
    from data_loader import TagRetrievalDataModule
    unseen = ['tag01', 'tag04']
    for balanced in (False, True):
        dm = TagRetrievalDataModule(dataset['root'], 'cf', is_balanced=balanced, epoch_size=600, unseen_tags=unseen)
        dm.setup('fit')
        train_set = dm.train_dataloader().dataset
        anchors = {dm.tags[int(train_set[i]['tag'])] for i in range(len(train_set))}
        assert anchors.isdisjoint(unseen)
        assert anchors == set(dm.tags) - set(unseen)


def test_zeroshot_test_reports_seen_and_unseen(dataset, tmp_path):
    (tmp_path / 'unseen.txt').write_text('tag02\ntag05\n')
    ckpt = train(dataset['root'], tmp_path / 'ck', '--input_type', 'cf', '--zeroshot_tags', tmp_path / 'unseen.txt',
                 '--loss', 'infonce')
    evaluate(dataset['root'], ckpt.best_model_path, tmp_path / 'res', '--input_type', 'cf')  # list from the ckpt
    summary = json.load(open(tmp_path / 'res' / 'summary.json'))
    assert summary['means']['zeroshot']['unseen']['n_tags'] == 2 and summary['means']['zeroshot']['seen']['n_tags'] == 4
    # the random-score baseline of the unseen tags alone: their mean prevalence among the test songs
    root = dataset['root']
    tags, binaries = np.load(os.path.join(root, 'tags.npy')), np.load(os.path.join(root, 'binaries.npy'))
    test_rows = [int(e.split('//')[0]) for e in np.load(os.path.join(root, 'test_ids.npy'))]
    prevalence = binaries[test_rows][:, np.isin(tags, ['tag02', 'tag05'])].mean()
    assert summary['means']['random_baseline']['zeroshot']['unseen'] == pytest.approx(prevalence)
    rows = [line.split(',') for line in open(tmp_path / 'res' / 'per_tag.csv').read().splitlines()[1:]]
    assert {r[0] for r in rows if r[2] == 'unseen'} == {'tag02', 'tag05'}
    assert summary['settings']['loss'] == 'infonce'


# ---------------------------------------------------------------------------------------------- item factors
def test_cf_standardise_scales_the_item_factors_only_when_asked(dataset):
    from data_loader import SplitData
    raw = SplitData(dataset['root'], input_type='hybrid')
    scaled = SplitData(dataset['root'], input_type='hybrid', cf_standardise=True)
    assert np.allclose(raw.cf, np.load(os.path.join(dataset['root'], 'ix_to_cf.npy')))
    assert np.allclose(scaled.cf.mean(axis=0), 0, atol=1e-5) and np.allclose(scaled.cf.std(axis=0), 1, atol=1e-4)
    assert np.allclose((raw.cf - raw.cf.mean(0)) / raw.cf.std(0), scaled.cf, atol=1e-5)


def test_test_follows_the_checkpoints_item_factor_scaling(dataset, tmp_path):
    """A checkpoint trained with --cf_standardise True is scored on standardised factors without the flag."""
    ckpt = train(dataset['root'], tmp_path / 'ck', '--input_type', 'cf', '--cf_standardise', 'True')
    evaluate(dataset['root'], ckpt.best_model_path, tmp_path / 'implicit', '--input_type', 'cf')
    evaluate(dataset['root'], ckpt.best_model_path, tmp_path / 'explicit', '--input_type', 'cf',
             '--cf_standardise', 'True')
    implicit, explicit = (np.load(tmp_path / d / 'scores.npy') for d in ('implicit', 'explicit'))
    assert np.array_equal(implicit, explicit)
