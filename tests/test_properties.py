"""Property-based tests (hypothesis): malformed arrays, files and flag values for the loaders of the release
layout, the index files and main.py's flags. The contract: the input is accepted, or refused with a UserError (exit
code 2 on the command line) of one line, and nothing is written. A fixed example count and a deadline keep the
file within a couple of minutes on 2 cores; the seed is fixed (derandomize) so a failure reproduces."""
import contextlib
import json
import os
import pickle
import shutil
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import main as cli
import search
from data_loader import SplitData
from errors import UserError
from search_fixtures import ckpt, index, test_index, words  # noqa: F401 (pytest fixtures)
from synthetic_data import write_dataset

CHECKS = settings(max_examples=40, deadline=5000, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

DTYPES = st.sampled_from(['f4', 'f8', 'f2', 'i8', 'u1', 'b1', 'c8', 'U6', 'S4', 'M8[s]', [('a', 'f4'), ('b', 'i4')]])


def arrays(max_dims=3, max_side=6):
    """Arrays of any dtype above (structured and datetime included), 0 to 3 dimensions, any values."""
    return DTYPES.flatmap(lambda d: hnp.arrays(np.dtype(d), hnp.array_shapes(min_dims=0, max_dims=max_dims,
                                                                             min_side=0, max_side=max_side)))


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp('base') / 'data'
    write_dataset(str(root), n_songs=40, spectrograms=False)
    return root


@contextlib.contextmanager
def copy_of(base):
    with tempfile.TemporaryDirectory() as folder:
        root = os.path.join(folder, 'data')
        shutil.copytree(base, root)
        yield root


def listing(root):
    return sorted((os.path.relpath(os.path.join(d, f), root), os.path.getsize(os.path.join(d, f)))
                  for d, _, files in os.walk(root) for f in files)


def loads_or_refuses(root, **kwargs):
    """SplitData accepts the folder or raises one UserError line; it writes nothing either way."""
    before = listing(root)
    try:
        SplitData(root, input_type='cf', **kwargs)
    except UserError as error:
        assert '\n' not in str(error) and str(error).strip(), repr(str(error))
    assert listing(root) == before


@pytest.mark.parametrize('name', ['binaries.npy', 'tags.npy', 'train_ids.npy', 'valid_ids.npy', 'ix_to_cf.npy'])
@CHECKS
@given(value=arrays())
@example(value=np.array([b'\x80'], dtype='S4'))  # found by hypothesis in CI: bytes that are not UTF-8 (a traceback)
def test_release_layout_arrays(base, name, value):
    with copy_of(base) as root:
        np.save(os.path.join(root, name), value, allow_pickle=False)
        loads_or_refuses(root)


ENTRIES = st.one_of(st.text(max_size=12), st.integers(-3, 60).map(lambda i: f'{i}//TRX{i}'),
                    st.sampled_from(['//', '3//', '//TR', '1//a//b', ' 2//TR', '٣//TR']))


@CHECKS
@given(entries=st.lists(ENTRIES, max_size=8))
def test_split_entries(base, entries):
    with copy_of(base) as root:
        np.save(os.path.join(root, 'valid_ids.npy'), np.array(entries, dtype=str))
        loads_or_refuses(root)


VECTORS = st.one_of(arrays(max_dims=2), st.lists(st.floats(), max_size=4), st.text(max_size=4), st.none(),
                    st.integers(), st.lists(st.lists(st.integers(), max_size=3), max_size=3))


@CHECKS
@given(changes=st.dictionaries(st.sampled_from([f'tag{i:02d}' for i in range(7)]), VECTORS, max_size=3),
       dropped=st.booleans())
def test_word_vector_pickles(base, changes, dropped):
    with copy_of(base) as root:
        path = os.path.join(root, 'google_emb.pkl')
        vectors = pickle.load(open(path, 'rb'))
        vectors.update(changes)
        if dropped:
            vectors.pop('tag00')
        pickle.dump(vectors, open(path, 'wb'))
        loads_or_refuses(root)


@CHECKS
@given(content=st.binary(max_size=80))
def test_text_files(base, content):
    with copy_of(base) as root:
        with open(os.path.join(root, 'tag_categories.tsv'), 'wb') as f:
            f.write(content)
        loads_or_refuses(root)


# ------------------------------------------------------------------------------------------------ flags
FLAGS = ['--batch_size', '--epoch_size', '--input_length', '--num_chunk', '--seed', '--lr', '--margin',
         '--limit_val_batches', '--limit_test_batches', '--n_epochs', '--max_steps', '--temperature', '--devices']
VALUES = st.one_of(st.integers(-2 ** 70, 2 ** 70).map(str), st.floats().map(str), st.text(max_size=6),
                   st.sampled_from(['0', '-0', '1e309', 'nan', '0x10', '1_000', ' 3', '2.0']))


@CHECKS
@given(flag=st.sampled_from(FLAGS), value=VALUES)
def test_flag_values(flag, value, capsys):
    """A flag value parses to something usable or exits 2 with one argparse error line naming the flag."""
    try:
        config = cli.build_parser().parse_args([flag, value])
    except SystemExit as e:
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if 'error:' in line]
        assert e.code == 2 and len(errors) == 1 and flag in errors[0] and 'Traceback' not in err, err
        return
    parsed = getattr(config, flag[2:])
    if isinstance(parsed, float):
        assert np.isfinite(parsed), (flag, value)
    if flag == '--seed':
        assert 0 <= parsed < 2 ** 32
    if flag == '--input_length':
        assert parsed >= 128


# ------------------------------------------------------------------------------------------------ index files
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10 ** 20, 10 ** 20) | st.floats(allow_nan=False)
                           | st.text(max_size=6), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=6)
META_KEYS = ['word_dim', 'w2v_type', 'index', 'n_songs', 'format', 'input_length', 'num_chunk', 'w2v_path', 'data_path']


def test_an_untouched_index_answers(test_index, capsys):  # noqa: F811
    """The control of the two index properties below: unchanged, the copy answers (so a refusal there is real)."""
    with tempfile.TemporaryDirectory() as folder:
        shutil.copytree(test_index, os.path.join(folder, 'idx'))
        assert search.main(['query', '--index_path', os.path.join(folder, 'idx'), '--query', 'tag01']) in (0, None)
    assert "query: 'tag01'" in capsys.readouterr().out


def query_exits_cleanly(path, capsys):
    try:
        search.main(['query', '--index_path', str(path), '--query', 'tag01'])
    except SystemExit as e:
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith('error: ')]
        assert e.code == 2 and len(errors) == 1 and 'Traceback' not in err, err
    else:
        capsys.readouterr()


@CHECKS
@given(key=st.sampled_from(META_KEYS), value=JSON_VALUES)
def test_index_meta_values(test_index, key, value, capsys):  # noqa: F811
    with tempfile.TemporaryDirectory() as folder:
        copy = os.path.join(folder, 'idx')
        shutil.copytree(test_index, copy)
        meta = json.load(open(os.path.join(copy, 'meta.json')))
        json.dump({**meta, key: value}, open(os.path.join(copy, 'meta.json'), 'w'))
        query_exits_cleanly(copy, capsys)


@CHECKS
@given(name=st.sampled_from(['tracks.npz', 'query_encoder.npz', 'tag_vectors.npz', 'songs.faiss']),
       member=st.sampled_from(['track_ids', 'paths', 'tags', 'vectors', 'fc1.weight', 'x']), value=arrays())
def test_index_array_files(test_index, name, member, value, capsys):  # noqa: F811
    with tempfile.TemporaryDirectory() as folder:
        copy = os.path.join(folder, 'idx')
        shutil.copytree(test_index, copy)
        path = os.path.join(copy, name)
        if name.endswith('.npz'):
            with np.load(path, allow_pickle=False) as old:
                members = dict(old)
            members[member] = value
            with open(path, 'wb') as f:
                np.savez(f, **members)
        else:
            np.save(path + '.npy', value, allow_pickle=False)
            os.replace(path + '.npy', path)
        query_exits_cleanly(copy, capsys)
