"""make_demo_data.py: a small demo build has the MSD500 raw files, the preprocessed splits and vectors,
and a second build of the same seed, killed (its workers dying with it) and resumed, gives the same data.

Two 60-song builds (~30 s each on 2 cores), shared by all tests of this module.
"""
import contextlib
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from demo_data.annotations import CATEGORIES  # noqa: E402
from demo_data.vectors import W2V_SIZE  # noqa: E402
from file_io import spec_path

BUILD = [sys.executable, os.path.join(ROOT, 'make_demo_data.py'), '--n_songs', '60', '--threshold', '1',
         '--seed', '0', '--workers', '2']
SPLITS = ('train', 'valid', 'test')


BUILD_TIMEOUT_S = 900  # a 60-song build takes ~1 min on 2 cores


def build(out):
    """Build to the end; a build still running after BUILD_TIMEOUT_S fails the test with the Python stack of each
    of its processes (SIGABRT + faulthandler) instead of holding the suite."""
    process = subprocess.Popen(BUILD + ['--out', out], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, PYTHONFAULTHANDLER='1'))
    try:
        stdout, stderr = process.communicate(timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        for pid in reversed(process_tree(process.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGABRT)
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f'the build hung for {BUILD_TIMEOUT_S} s; the stacks of its processes:\n{stderr[-20000:]}')
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]


def process_tree(pid):
    """`pid` and every living descendant (Linux /proc)."""
    return [pid] + [p for child in children_of(pid) for p in process_tree(child)]


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('demo') / 'demo')
    build(out)
    return out


def children_of(pid):
    """Pids of the living processes whose parent is `pid` (Linux /proc)."""
    children = []
    for entry in os.listdir('/proc'):
        if entry.isdigit() and is_running(int(entry)):
            with open(f'/proc/{entry}/stat') as f:
                if int(f.read().rsplit(')', 1)[1].split()[1]) == pid:
                    children.append(int(entry))
    return children


def is_running(pid):
    """True while the process exists and is not a zombie (a dead orphan nobody reaped yet)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (FileNotFoundError, ProcessLookupError):
        return False


@pytest.fixture(scope='module')
def resumed_demo(tmp_path_factory, demo):
    """The same build's process killed (kill -9) part-way, then rerun; its render workers must die with it."""
    out = str(tmp_path_factory.mktemp('demo_resumed') / 'demo')
    first = subprocess.Popen(BUILD + ['--out', out], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    rendered = os.path.join(out, '.build', 'render')
    deadline = time.time() + 60
    while first.poll() is None and time.time() < deadline and (
            not os.path.isdir(rendered) or len(os.listdir(rendered)) < 20):  # kill in the middle of rendering
        time.sleep(0.2)
    children = children_of(first.pid)  # 2 render workers, the guardian, multiprocessing's resource tracker
    first.kill()
    first.wait()
    deadline = time.time() + 2
    while any(map(is_running, children)) and time.time() < deadline:
        time.sleep(0.1)
    survivors = [pid for pid in children if is_running(pid)]
    for pid in survivors:  # do not leave them running when the assertion fails
        os.kill(pid, signal.SIGKILL)
    assert not os.path.exists(os.path.join(out, 'demo_report.md'))  # it was interrupted
    build(out)
    return out, children, survivors


def load(path):
    if path.endswith('.npy'):
        return np.load(path)
    with open(path, 'rb') as f:
        return pickle.load(f)


def split_ids(out):
    return {name: [str(e) for e in np.load(os.path.join(out, f'{name}_ids.npy'))] for name in SPLITS}


def test_msd500_files(demo):
    tags = pd.read_csv(os.path.join(demo, 'msd500', 'track_tags.tsv'), sep='\t', header=None, dtype=str,
                       keep_default_na=False)
    assert tags.shape[1] == 5  # song_id, original_tag, cleaned_tag, tag_category, score
    scores = tags[4].astype(int)
    assert scores.between(0, 100).all() and (scores < 50).any() and (scores >= 50).mean() > 0.9
    assert tags[0].str.fullmatch(r'TR[A-Z0-9]{16}').all()
    assert set(tags[3]) <= set(CATEGORIES) and len(set(tags[3])) >= 3  # 5+ at the default size
    assert (tags[2] == tags[2].str.lower()).all()
    artists = load(os.path.join(demo, 'msd500', 'song_to_artist.pkl'))
    assert set(tags[0]) <= set(artists) and all(re.fullmatch(r'AR[A-Z0-9]{16}', a) for a in artists.values())
    plays = pd.read_csv(os.path.join(demo, 'msd500', 'SIMULATED_taste_profile.tsv'), sep='\t', header=None)
    assert plays.shape[1] == 3 and (plays[2] > 0).all() and set(plays[1]) >= set(tags[0])
    assert not os.path.exists(os.path.join(demo, 'audio'))  # deleted after step 0 without --keep_audio


def test_kept_tags_have_known_categories(demo):
    categories = pd.read_csv(os.path.join(demo, 'tag_categories.tsv'), sep='\t', header=None, dtype=str)
    tags = [str(t) for t in np.load(os.path.join(demo, 'tags.npy'))]
    assert list(categories[0]) == tags and set(categories[1]) <= set(CATEGORIES)


def test_spectrograms(demo):
    for entry in np.load(os.path.join(demo, 'existing_ids.npy')):
        spec = np.load(spec_path(demo, str(entry)), mmap_mode='r')
        assert spec.shape[0] == 128 and spec.shape[1] >= 861 and spec.dtype == np.float16  # >= 20 s


def test_splits_are_artist_disjoint(demo):
    ids = split_ids(demo)
    n_songs = len(np.load(os.path.join(demo, 'binaries.npy')))
    rows = sorted(int(e.split('//')[0]) for name in SPLITS for e in ids[name])
    assert rows == list(range(n_songs)) and all(ids[name] for name in SPLITS)
    artist_of = load(os.path.join(demo, 'msd500', 'song_to_artist.pkl'))
    artists = [{artist_of[e.split('//')[1]] for e in ids[name]} for name in SPLITS]
    assert not (artists[0] & artists[1] or artists[0] & artists[2] or artists[1] & artists[2])


def test_vectors_and_item_factors(demo):
    tags = [str(t) for t in np.load(os.path.join(demo, 'tags.npy'))]
    google, music = load(os.path.join(demo, 'google_emb.pkl')), load(os.path.join(demo, 'music_emb.pkl'))
    assert list(google) == tags and list(music) == tags
    assert {v.shape for v in google.values()} == {(50,)} and {v.shape for v in music.values()} == {(W2V_SIZE,)}
    cf = np.load(os.path.join(demo, 'ix_to_cf.npy'))
    assert cf.shape == (len(np.load(os.path.join(demo, 'binaries.npy'))), 200) and np.isfinite(cf).all()
    report = open(os.path.join(demo, 'demo_report.md')).read()
    assert 'SIMULATED' in report and 'PDDL' in report
    # the versions of what shapes the bytes, so that two builds that differ can be told apart
    packages = json.load(open(os.path.join(demo, 'demo_report.json')))['packages']
    assert packages['numpy'] == np.__version__ and packages['music21'] and packages['librosa']


def test_same_seed_same_data_after_resume(demo, resumed_demo):
    resumed = resumed_demo[0]
    for name in ['tags.npy', 'binaries.npy', 'existing_ids.npy', 'train_tag_to_ix.pkl', 'google_emb.pkl',
                 'music_emb.pkl', 'ix_to_cf.npy', 'msd500/song_to_artist.pkl']:
        a, b = load(os.path.join(demo, name)), load(os.path.join(resumed, name))
        if isinstance(a, dict):
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), name
        else:
            assert np.array_equal(a, b), name
    assert split_ids(demo) == split_ids(resumed)
    for name in ['msd500/track_tags.tsv', 'msd500/SIMULATED_taste_profile.tsv', 'tag_categories.tsv']:
        assert open(os.path.join(demo, name)).read() == open(os.path.join(resumed, name)).read(), name
    for entry in np.load(os.path.join(demo, 'existing_ids.npy')):
        a = np.load(spec_path(demo, str(entry))).astype(np.float32)
        b = np.load(spec_path(resumed, str(entry))).astype(np.float32)
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize('option', [['--n_songs', '5'], ['--seed', '1']])  # too few songs; not DIR's options
def test_bad_options_exit_2_with_one_line(demo, option):
    result = subprocess.run(BUILD + option + ['--out', demo], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ''
    assert result.stderr.startswith('error: ') and result.stderr.count('\n') == 1, result.stderr


def test_killed_build_leaves_no_process_behind(resumed_demo):
    _, children, survivors = resumed_demo
    assert len(children) == 4 and survivors == []  # all gone within 2 s


@pytest.mark.parametrize('input_type', ['spec', 'cf', 'hybrid'])
def test_short_train_then_test_on_the_demo(demo, tmp_path, input_type):
    """Steps 0-3 produced everything the core reads: a short TRAIN, then TEST, of every input type."""
    import main as cli
    common = ['--data_path', demo, '--input_type', input_type, '--n_channels', '8', '--batch_size', '16',
              '--num_chunk', '2']
    checkpoint = cli.main(cli.build_parser().parse_args(
        common + ['--model_save_path', str(tmp_path), '--epoch_size', '32', '--n_epochs', '1', '--logger', 'none',
                  '--is_balanced', 'True', '--is_weighted', 'True']))
    result = cli.main(cli.build_parser().parse_args(
        common + ['--mode', 'TEST', '--model_load_path', checkpoint.best_model_path]))
    n_tags = len(np.load(os.path.join(demo, 'tags.npy')))
    assert np.load(tmp_path / 'test' / 'scores.npy').shape == (n_tags, len(np.load(os.path.join(demo, 'test_ids.npy'))))
    assert 0 <= result['summary']['all']['map'] <= 1
