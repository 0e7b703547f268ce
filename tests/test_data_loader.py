"""Training draws as the original's (shuffled balanced batches, crop starts) and word-vector pickles read safely."""
import copy
import pickle

import numpy as np
import pytest

import main as cli
from data_loader import SplitData, TrainDataset
from errors import UserError
from synthetic_data import write_code_running_pickle, write_dataset


def tags_of(dataset):
    return np.array([int(dataset[i]['tag']) for i in range(len(dataset))])


# ---------------------------------------------------------------------------------------------- balanced batches
@pytest.fixture(scope='module')
def hundred_tags(tmp_path_factory):
    root = tmp_path_factory.mktemp('hundred')
    write_dataset(str(root), n_songs=300, n_tags=100, word_dim=4, cf_dim=4, spectrograms=False)
    return SplitData(str(root), input_type='cf')


def test_balanced_batches_hold_a_random_multiset_of_tags(hundred_tags):
    """Balanced sampling takes tag index % n over a shuffled order, so a batch of B holds on average
    n (1 - (1 - 1/n)^B) distinct tags (72.4 for n = 100, B = 128), not every tag."""
    n, batch, epoch_size = 100, 128, 6400
    distinct = []
    for epoch in (0, 1):
        tags = tags_of(TrainDataset(hundred_tags, True, 10, epoch_size, seed=0, epoch=epoch))
        assert np.bincount(tags, minlength=n).tolist() == [epoch_size // n] * n  # still balanced over the epoch
        distinct += [len(set(tags[i:i + batch])) for i in range(0, epoch_size, batch)]
    expected = n * (1 - (1 - 1 / n) ** batch)
    # 100 batches: the mean's standard error is about 0.32, and drawing without replacement from a finite
    # epoch raises it by 0.36 over the closed form; reading the indices in order would give 100 every time
    assert abs(np.mean(distinct) - expected) < 1.5, (np.mean(distinct), expected)
    assert 2.0 < np.std(distinct) < 4.5 and max(distinct) < n


def test_epoch_order_depends_on_seed_and_epoch_only(hundred_tags):
    for balanced in (True, False):
        first = tags_of(TrainDataset(hundred_tags, balanced, 10, 500, seed=3, epoch=2))
        np.testing.assert_array_equal(tags_of(TrainDataset(hundred_tags, balanced, 10, 500, seed=3, epoch=2)), first)
        assert not np.array_equal(tags_of(TrainDataset(hundred_tags, balanced, 10, 500, seed=3, epoch=3)), first)
        assert not np.array_equal(tags_of(TrainDataset(hundred_tags, balanced, 10, 500, seed=4, epoch=2)), first)
    # the order only permutes the epoch's samples: sample i is drawn from (seed, epoch, i) wherever it lands
    shuffled = TrainDataset(hundred_tags, False, 10, 500, seed=3, epoch=2)
    in_order = TrainDataset(hundred_tags, False, 10, 500, seed=3, epoch=2)
    in_order.order = np.arange(500)
    for position in range(0, 500, 37):
        a, b = shuffled[position], in_order[int(shuffled.order[position])]
        assert a['tag'] == b['tag'] and np.array_equal(a['labels'], b['labels'])


def test_every_draw_is_a_song_that_carries_its_tag(hundred_tags):
    """Balanced or not, each sample's song carries its anchor tag, and its labels and item factor are that song's."""
    cf_rows = {row.tobytes(): r for r, row in enumerate(hundred_tags.cf)}
    for balanced in (True, False):
        dataset = TrainDataset(hundred_tags, balanced, 10, 1000, seed=0)
        for i in range(1000):
            item = dataset[i]
            row = cf_rows[item['cf'].tobytes()]
            assert item['labels'][item['tag']] == 1 and np.array_equal(item['labels'], hundred_tags.binaries[row])
            assert row in dataset.rows


def test_a_tag_without_training_songs_is_refused_one_song_is_enough(hundred_tags):
    data = copy.copy(hundred_tags)
    data.binaries = hundred_tags.binaries.copy()
    train_rows = data.ids['train'][0]
    data.binaries[train_rows, 5] = 0
    with pytest.raises(UserError, match=f'no training song carries tag.s. {data.tags[5]};'):
        TrainDataset(data, True, 10, 100)
    data.binaries[train_rows[7], 5] = 1
    dataset = TrainDataset(data, True, 10, 1000)
    drawn = [item['cf'] for item in (dataset[i] for i in range(1000)) if item['tag'] == 5]
    assert len(drawn) == 10 and all(np.array_equal(cf, data.cf[train_rows[7]]) for cf in drawn)


def test_items_hold_what_each_model_reads(tmp_path):
    write_dataset(str(tmp_path), n_songs=30, n_tags=3)
    for input_type in ('spec', 'cf', 'hybrid'):
        item = TrainDataset(SplitData(str(tmp_path), input_type=input_type), False, 10, 5)[0]
        assert {'tag', 'tag_vector', 'labels', 'spec', 'cf'} <= set(item)
        assert (item['spec'].shape == (128, 10)) == (input_type != 'cf')
        assert (item['cf'].shape == (10,)) == (input_type != 'spec')


# ---------------------------------------------------------------------------------------------- crop start
def test_training_crop_start_is_the_originals(tmp_path):
    """floor(U * (T - L)): a start in [0, T - L - 1]; a spectrogram of L frames or fewer starts at 0."""
    length = 10
    write_dataset(str(tmp_path), n_songs=30, n_tags=3)
    data = SplitData(str(tmp_path), input_type='spec')
    frames = {}
    for k, track in enumerate(data.ids['train'][1]):
        n_frames = (length + 3, length, length - 4)[k % 3]
        frames[track] = n_frames
        ramp = np.tile(np.arange(1, n_frames + 1, dtype=np.float32), (128, 1))  # frame i holds i + 1
        np.save(data.spec_file(track), ramp)
    dataset = TrainDataset(data, False, length, epoch_size=600, seed=0)
    starts = {n: set() for n in set(frames.values())}
    for i in range(len(dataset)):
        song = int(np.random.default_rng((0, 0, int(dataset.order[i]))).choice(dataset.songs_with_tags))
        n_frames = frames[dataset.track_ids[song]]
        spec = dataset[i]['spec']
        assert spec.shape == (128, length)
        start = int(spec[0, 0]) - 1
        np.testing.assert_array_equal(spec[0, :min(length, n_frames)], np.arange(min(length, n_frames)) + start + 1)
        starts[n_frames].add(start)
    assert starts[length + 3] == {0, 1, 2}  # never 3 = T - L
    assert starts[length] == {0} and starts[length - 4] == {0}


# ---------------------------------------------------------------------------------------------- word vectors
def expect_error(capsys, data_path, *extra):
    argv = ['--data_path', data_path, '--input_type', 'cf', '--logger', 'none', '--n_epochs', '1',
            '--model_save_path', f'{data_path}/ck', *extra]
    with pytest.raises(SystemExit) as stop:
        cli.main(cli.build_parser().parse_args([str(a) for a in argv]))
    err = capsys.readouterr().err
    assert stop.value.code == 2 and 'Traceback' not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    return lines[0]


@pytest.fixture()
def small(tmp_path):
    root = tmp_path / 'data'
    write_dataset(str(root), n_songs=30, spectrograms=False)
    return root


@pytest.mark.parametrize('mode', ['TRAIN', 'TEST'])
def test_word_vectors_that_would_run_code_are_refused(small, capsys, mode):
    marker = small / 'marker'
    write_code_running_pickle(small / 'google_emb.pkl', marker, keys=[f'tag{i:02d}' for i in range(6)])
    line = expect_error(capsys, small, '--mode', mode, '--model_load_path', small / 'none.ckpt')
    assert str(small / 'google_emb.pkl') in line and 'asks to load io.open' in line
    assert not marker.exists()


@pytest.mark.parametrize('content, fragment', [
    (7, 'holds a int, expected a dict tag -> vector'),
    ({f'tag{i:02d}': np.zeros(4 + (i == 3), np.float32) for i in range(6)}, "mixes vector lengths 4 (tag 'tag00'), "
                                                                           "5 (tag 'tag03')"),
    ({f'tag{i:02d}': 'rock' for i in range(6)}, "the vector of tag 'tag00' is str 'rock'"),
    ({f'tag{i:02d}': [[1.0], [1.0, 2.0]] for i in range(6)}, "the vector of tag 'tag00' is list"),
])
def test_malformed_word_vectors_are_one_error(small, capsys, content, fragment):
    with open(small / 'google_emb.pkl', 'wb') as f:
        pickle.dump(content, f)
    line = expect_error(capsys, small)
    assert str(small / 'google_emb.pkl') in line and fragment in line, line


def test_the_originals_word_vector_formats_load(small):
    tags = np.load(small / 'tags.npy').tolist()
    vectors = {tag: np.arange(5, dtype=np.float32) + i for i, tag in enumerate(reversed(tags))}  # any dict order
    for as_list in (False, True):
        with open(small / 'google_emb.pkl', 'wb') as f:
            pickle.dump({t: v.tolist() if as_list else v for t, v in vectors.items()}, f, protocol=3)
        data = SplitData(str(small), input_type='cf')
        np.testing.assert_array_equal(data.tag_vectors, np.stack([vectors[t] for t in tags]))
        assert data.tag_vectors.dtype == np.float32
