"""`search.py evaluate`: P@10 and AP of a query file, per query mode and typed as tags, against an independent
scikit-learn computation over the index's songs and their annotated tags; bad query files are one error line."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from errors import UserError
from search_fixtures import ckpt, index, test_index, words  # noqa: F401 (pytest fixtures)
from search_query import Searcher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUERIES = [('the tag01 songs', ['tag01']), ('tag01 and tag03, piano', ['tag01', 'tag03']),
           ('some tag02 music', ['tag02']), ('tag04 guitar', ['tag04'])]


def evaluate(*argv):
    return subprocess.run([sys.executable, 'search.py', 'evaluate', *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)


def write_queries(path, queries):
    path.write_text('# a comment, then query<TAB>tags\n\n' + ''.join(f'{q}\t{", ".join(t)}\n' for q, t in queries))
    return str(path)


def expected(searcher, dataset, query, tags, mode):
    """(P@10, AP): the song carries every tag; ranked by the cosine with the stored embeddings; (0, 0) for a query
    the mode cannot read (the fixture's word vectors have no stop words: the former path fails on them)."""
    try:
        vector = searcher.encoder.encode(query, mode)[0]
    except UserError:
        return 0.0, 0.0
    rows = [int(e.split('//')[0]) for e in dataset['splits']['test']]
    columns = [list(dataset['tags']).index(t) for t in tags]
    labels = dataset['binaries'][rows][:, columns].all(axis=1)
    scores = np.load(os.path.join(searcher.files.path, 'embeddings.npy')) @ vector
    top = np.argsort(-scores, kind='stable')[:10]
    return labels[top].mean(), average_precision_score(labels, scores)


def test_evaluate_scores_each_query_in_each_mode(dataset, test_index, tmp_path):
    out = evaluate('--index_path', test_index, '--queries', write_queries(tmp_path / 'q.tsv', QUERIES), '--json')
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    searcher = Searcher(test_index)
    assert [r['query'] for r in report['queries']] == [q for q, _ in QUERIES]
    assert list(report['means']) == ['average', 'tags', 'typed']
    for row, (query, tags) in zip(report['queries'], QUERIES):
        for label, text, mode in (('average', query, 'average'), ('tags', query, 'tags'),
                                  ('typed', ', '.join(tags), 'tags')):
            p, ap = expected(searcher, dataset, text, tags, mode)
            assert abs(row['scores'][label]['p'] - p) < 1e-9, (row, label, p)
            assert abs(row['scores'][label]['ap'] - ap) < 1e-6, (row, label, ap)
    for label in ('average', 'tags', 'typed'):
        assert abs(report['means'][label]['ap'] - np.mean([r['scores'][label]['ap'] for r in report['queries']])) < 1e-9
        # the halves: development the 1st, 3rd... query of the file, held-out the 2nd, 4th...
        for first, half in enumerate(('development', 'held-out')):
            rows = report['queries'][first::2]
            assert report['means'][label]['halves'][half] == pytest.approx(
                {'p': np.mean([r['scores'][label]['p'] for r in rows]),
                 'ap': np.mean([r['scores'][label]['ap'] for r in rows])}, abs=1e-9), (label, half)
    # a query typed as its own tags reads the same in both
    assert report['queries'][0]['scores']['tags']['ap'] == report['queries'][0]['scores']['typed']['ap']
    assert report['queries'][1]['tags'] == ['tag01', 'tag03']

    text = evaluate('--index_path', test_index, '--queries', str(tmp_path / 'q.tsv'))
    lines = text.stdout.splitlines()
    assert text.returncode == 0 and 'old: averaged P@10' in lines[0] and 'typed tags P@10' in lines[0], text.stdout
    mean = [line for line in lines if line.startswith('mean')][0].split()
    assert float(mean[2]) == round(report['means']['average']['ap'], 3)
    held_out = [line for line in lines if line.startswith('mean, held-out')][0].split()
    assert float(held_out[5]) == round(report['means']['tags']['halves']['held-out']['ap'], 3)
    assert any(line.startswith('most improved (AP, old -> new): ') for line in lines)


def test_a_query_a_mode_cannot_read_scores_zero_and_is_named(test_index, tmp_path):
    # `the pianno` is refused by both modes (an unknown word); the other query still counts
    path = write_queries(tmp_path / 'q.tsv', [('the pianno', ['tag01']), ('tag02', ['tag02'])])
    out = evaluate('--index_path', test_index, '--queries', path)
    assert out.returncode == 0, out.stderr
    assert "new: tags could not read 'the pianno': unknown word 'pianno'" in out.stdout, out.stdout
    first = out.stdout.splitlines()[1].split()
    assert first[:2] == ['the', 'pianno'] and first[3:7] == ['0.00', '0.000', '0.00', '0.000'], first
    assert first[7] != '0.00'  # typed as `tag01`, it is read


def test_a_query_no_song_answers_is_left_out_of_the_means(dataset, test_index, tmp_path):
    every = list(dataset['tags'])
    rows = [int(e.split('//')[0]) for e in dataset['splits']['test']]
    assert not dataset['binaries'][rows].all(axis=1).any()  # no test song carries every tag
    path = write_queries(tmp_path / 'q.tsv', [('tag02', ['tag02']), ('tag03 tag04', every)])
    out = evaluate('--index_path', test_index, '--queries', path, '--json')
    report = json.loads(out.stdout)
    assert report['queries'][1]['relevant'] == 0 and report['queries'][1]['scores']['tags'] == {
        'p': None, 'ap': None, 'error': None}
    assert report['means']['tags']['ap'] == report['queries'][0]['scores']['tags']['ap']
    text = evaluate('--index_path', test_index, '--queries', path).stdout
    assert "left out of the means, no song carries their tags: 'tag03 tag04'" in text, text
    path = write_queries(tmp_path / 'none.tsv', [('tag03 tag04', every)])
    out = evaluate('--index_path', test_index, '--queries', path)
    assert out.returncode == 2 and 'carries the tags of any query' in out.stderr, out.stderr


def test_bad_query_files_are_one_error_line(test_index, tmp_path):
    cases = {'tag01 songs\ttag01, tagxx\n': "q.tsv:1: tag 'tagxx' is not one of the index's 6 tags",
             '# nothing\ntag01 songs\n': "q.tsv:2: 'tag01 songs' is not `query<TAB>tag, tag`",
             '# only comments\n': 'holds no queries'}
    for content, message in cases.items():
        (tmp_path / 'q.tsv').write_text(content)
        out = evaluate('--index_path', test_index, '--queries', str(tmp_path / 'q.tsv'))
        assert out.returncode == 2 and out.stderr.count('\n') == 1, out.stderr
        assert out.stderr.startswith('error: ') and message in out.stderr, out.stderr
    for argv, message in ((['--queries', str(tmp_path / 'none.tsv')], 'none.tsv could not be read'),
                          (['--queries', str(tmp_path / 'q.tsv'), '--modes', 'tags,vibes'],
                           "unknown query mode 'vibes'")):
        out = evaluate('--index_path', test_index, *argv)
        assert out.returncode == 2 and message in out.stderr and 'Traceback' not in out.stderr, out.stderr
