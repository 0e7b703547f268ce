"""Nothing a file names is trusted to run code: word vectors an index's meta.json points at are read only in a plain
format (a gensim pickle is used only when the user names it), and make_demo_data.py rerun on an existing folder
reads what is there with the restricted unpickler."""
import json
import os
import shutil

import pytest

import search
from errors import UserError
from search_fixtures import ckpt, index, test_index, words  # noqa: F401 (pytest fixtures)
from synthetic_data import write_code_running_pickle


def test_meta_json_cannot_point_queries_at_a_pickle(test_index, words, tmp_path, capsys):  # noqa: F811
    copy = tmp_path / 'idx'
    shutil.copytree(test_index, copy)
    marker = tmp_path / 'marker'
    write_code_running_pickle(tmp_path / 'vectors.model', marker)
    meta = json.load(open(copy / 'meta.json'))
    json.dump({**meta, 'w2v_path': str(tmp_path / 'vectors.model')}, open(copy / 'meta.json', 'w'))
    with pytest.raises(SystemExit) as e:
        search.main(['query', '--index_path', str(copy), '--query', 'piano'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and 'Traceback' not in err and 'pass --w2v_path' in err, err
    assert not marker.exists()
    # named on the command line, plain word2vec vectors are read ('piano' is a random vector: near no tag, so it
    # goes with a tag)
    assert search.main(['query', '--index_path', str(copy), '--query', 'the piano, tag02', '--w2v_path',
                        words['path']]) in (0, None)
    assert "'piano' near no tag (best tag" in capsys.readouterr().out  # read, not 'unknown'


def test_demo_rerun_reads_an_existing_pickle_without_running_it(tmp_path):
    from demo_data.report import collect_facts
    marker = tmp_path / 'marker'
    os.makedirs(tmp_path / 'msd500')
    write_code_running_pickle(tmp_path / 'msd500' / 'song_to_artist.pkl', marker)
    with pytest.raises(UserError, match='song_to_artist.pkl'):
        collect_facts(str(tmp_path), None, [], [], {}, [], {}, 0)
    assert not marker.exists()


def test_stored_embeddings_that_are_not_finite_are_not_reused(dataset, ckpt, test_index, tmp_path, capsys):  # noqa: F811
    """A rebuild reuses embeddings.npy only when it holds one finite row per song: NaN rows are embedded again."""
    import numpy as np
    copy = tmp_path / 'idx'
    shutil.copytree(test_index, copy)
    embeddings = np.load(copy / 'embeddings.npy')
    embeddings[2] = np.nan
    np.save(copy / 'embeddings.npy', embeddings)
    index('--model_load_path', ckpt, '--data_path', dataset['root'], '--split', 'test', '--index_path', copy,
          '--index_type', 'hnsw')
    assert 'reusing the' not in capsys.readouterr().err
    assert np.isfinite(np.load(copy / 'embeddings.npy')).all()
