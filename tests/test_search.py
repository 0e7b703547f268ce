"""search.py: the index answers exactly what a brute-force cosine ranking of the evaluation's song embeddings
answers, multi-word queries, unknown words, --json, interactive mode, approximate indexes, resume, audio folders."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import main as cli
import search
import search_index
from checkpoint import load_model
from search_fixtures import ckpt, index, test_index, words  # noqa: F401 (pytest fixtures)
from search_query import Searcher

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def full_model(ckpt):
    model, _ = load_model(ckpt)
    return model


def brute_force(ckpt, embeddings, vectors):
    """numpy cosine ranking: mean word vector -> tag branch (eval) -> cosine with every song embedding."""
    with torch.no_grad():
        query = full_model(ckpt).word_to_embedding(torch.from_numpy(np.mean(vectors, axis=0, keepdims=True)))
    query = query.numpy()[0]
    emb = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    return emb @ (query / np.linalg.norm(query))


def assert_same_top_k(result, scores, track_ids, k):
    """Same scores rank by rank, and the same track wherever the score is not tied with a neighbour."""
    order = np.argsort(-scores, kind='stable')[:k]
    got = result['results']
    assert len(got) == k
    assert np.allclose([h['score'] for h in got], scores[order], atol=1e-5)
    for hit, expected in zip(got, order):
        if hit['track_id'] != track_ids[expected]:
            assert abs(scores[track_ids.index(hit['track_id'])] - scores[expected]) < 1e-5  # a tie
    assert {h['track_id'] for h in got} <= set(track_ids)


def test_queries_match_evaluation_and_brute_force(dataset, ckpt, words, test_index, tmp_path):
    # the evaluation's own scores (main.py TEST): tags x test songs, in test_ids order
    cli.main(cli.build_parser().parse_args(['--mode', 'TEST', '--data_path', dataset['root'], '--model_load_path',
                                            ckpt, '--result_path', str(tmp_path / 'res')]))  # --num_chunk 8
    eval_scores = np.load(tmp_path / 'res' / 'scores.npy')
    test_ids = [e.split('//')[1] for e in dataset['splits']['test']]
    searcher = Searcher(test_index)
    assert list(searcher.track_ids) == test_ids
    for i, tag in enumerate(dataset['tags']):
        result = searcher.search(tag, k=5)
        assert result['terms'] == [tag]
        assert_same_top_k(result, eval_scores[i], test_ids, 5)
        for hit in result['results']:  # tags of each hit are the song's tags in binaries.npy
            row = int(dataset['splits']['test'][test_ids.index(hit['track_id'])].split('//')[0])
            assert hit['tags'] == [t for t, b in zip(dataset['tags'], dataset['binaries'][row]) if b]

    embeddings = np.load(os.path.join(test_index, 'embeddings.npy'))
    kv, tag_vectors = words['kv'], words['tags']
    queries = {'tag01 tag03': [tag_vectors['tag01'], tag_vectors['tag03']],
               'tag02, piano': [tag_vectors['tag02'], kv['piano']],
               'smooth jazz piano': [kv['smooth_jazz'], kv['piano']],  # a phrase stored as smooth_jazz: one term
               'violin': [kv['Violin']]}
    for text, vectors in queries.items():  # the former path, kept as --query_mode average
        result = searcher.search(text, k=7, mode='average')
        assert len(result['terms']) == len(vectors)
        assert_same_top_k(result, brute_force(ckpt, embeddings, vectors), test_ids, 7)
    assert searcher.search('smooth jazz piano', mode='average')['terms'] == ['smooth_jazz', 'piano']
    # the default path: two tags are two unit tag embeddings summed in the joint space, not averaged words
    tag_emb = {t: brute_force(ckpt, np.eye(256, dtype=np.float32), [tag_vectors[t]]) for t in ('tag01', 'tag03')}
    joint = (tag_emb['tag01'] + tag_emb['tag03']) / np.linalg.norm(tag_emb['tag01'] + tag_emb['tag03'])
    emb = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    result = searcher.search('the tag01 and tag03', k=7)
    assert result['terms'] == ['tag01', 'tag03'] and result['interpretation']['stop_words'] == ['the', 'and']
    assert_same_top_k(result, emb @ joint, test_ids, 7)


def test_unknown_word_is_one_clear_line(test_index, capsys):
    with pytest.raises(SystemExit) as e:  # no word of the query is known
        search.main(['query', '--index_path', test_index, '--query', 'the pianno'])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert len(err.strip().splitlines()) == 1 and 'Traceback' not in err, err
    assert "unknown word 'pianno'" in err and 'nearest known words: piano' in err, err
    # beside a known word, an unknown one is shown with its suggestions, and the rest is searched
    assert search.main(['query', '--index_path', test_index, '--query', 'tag01 pianno', '--k', '2']) == 0
    out = capsys.readouterr().out
    assert "interpreted as: tag01 1.00  (unknown 'pianno' (did you mean piano" in out, out
    with pytest.raises(SystemExit) as e:  # the former path stops at any unknown word, as it did
        search.main(['query', '--index_path', test_index, '--query', 'tag01 pianno', '--query_mode', 'average'])
    assert e.value.code == 2 and "unknown word 'pianno'" in capsys.readouterr().err


def test_unknown_word_without_full_vectors_names_the_tags(test_index, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        search.main(['query', '--index_path', test_index, '--query', 'tagg03', '--w2v_path', str(tmp_path / 'no.bin')])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "unknown word 'tagg03'" in err and 'no full word vectors' in err and 'tag03' in err, err


def test_json_and_interactive_cli(test_index, capsys):
    assert search.main(['query', '--index_path', test_index, '--query', 'tag00', '--k', '3', '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['terms'] == ['tag00'] and len(result['results']) == 3
    assert all({'track_id', 'score', 'tags'} <= set(hit) for hit in result['results'])
    assert isinstance(result['results'][0]['tags'], list) and isinstance(result['results'][0]['score'], float)

    # interactive: one result per line, a misspelt word only prints its message, an empty line ends
    script = os.path.join(ROOT, 'search.py')
    out = subprocess.run([sys.executable, script, 'query', '--index_path', test_index, '--json', '--k', '2'],
                         input='tag01\npianno\nguitar drums\n\nnever read\n', capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r['query'] for r in lines] == ['tag01', 'guitar drums']
    assert out.stderr.count("unknown word 'pianno'") == 1 and 'Traceback' not in out.stderr


def recall(approx, exact, queries, k):
    hits = [len({h['track_id'] for h in approx.search(q, k)['results']}
                & {h['track_id'] for h in exact.search(q, k)['results']}) / k for q in queries]
    return float(np.mean(hits))


def test_approximate_indexes_build_and_answer(dataset, ckpt, words, tmp_path, capsys):
    ivf = tmp_path / 'ivf'
    index('--model_load_path', ckpt, '--data_path', dataset['root'], '--index_path', ivf, '--index_type', 'ivf',
          '--nlist', 6, '--nprobe', 2, '--w2v_path', words['path'])
    meta = json.load(open(ivf / 'meta.json'))
    assert meta['index']['type'] == 'ivf' and meta['index']['nlist'] == 6 and meta['n_songs'] == len(dataset['ids'])
    # the same songs as flat and hnsw: the embeddings are reused, not recomputed
    for kind in ('flat', 'hnsw'):
        shutil.copytree(ivf, tmp_path / kind)
        capsys.readouterr()
        index('--model_load_path', ckpt, '--data_path', dataset['root'], '--index_path', tmp_path / kind,
              '--index_type', kind)
        assert 'reusing the 96 song embeddings' in capsys.readouterr().err
    exact = Searcher(str(tmp_path / 'flat'))
    queries = list(dataset['tags']) + ['tag01 tag04', 'the piano, tag02', 'guitar, tag05', 'smooth jazz tag00']
    assert recall(Searcher(str(ivf)), exact, queries, 10) >= 0.5
    assert recall(Searcher(str(ivf), nprobe=6), exact, queries, 10) == 1.0  # every list: exact
    assert recall(Searcher(str(tmp_path / 'hnsw')), exact, queries, 10) >= 0.9


def test_interrupted_build_resumes(dataset, ckpt, test_index, tmp_path, monkeypatch, capsys):
    calls = []
    real = search_index.write_json

    def interrupt_after_two(path, progress):
        real(path, progress)
        if path.endswith('.progress.json'):
            calls.append(progress['done'])
            if len(calls) == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(search_index, 'write_json', interrupt_after_two)
    argv = ['--model_load_path', ckpt, '--data_path', dataset['root'], '--split', 'test', '--index_path',
            tmp_path / 'idx', '--batch_size', 32]  # 32 chunks: 4 songs a batch
    with pytest.raises(KeyboardInterrupt):
        index(*argv)
    assert not os.path.exists(tmp_path / 'idx' / 'meta.json')
    monkeypatch.setattr(search_index, 'write_json', real)
    capsys.readouterr()
    index(*argv)
    assert f'resuming: 8 of {len(dataset["splits"]["test"])} songs already embedded' in capsys.readouterr().err
    assert np.allclose(np.load(tmp_path / 'idx' / 'embeddings.npy'),
                       np.load(os.path.join(test_index, 'embeddings.npy')), atol=1e-5)
    assert not os.path.exists(tmp_path / 'idx' / '.progress.json')


def test_audio_folder(dataset, ckpt, tmp_path):
    import soundfile
    audio = tmp_path / 'music' / 'album'
    audio.mkdir(parents=True)
    t = np.arange(3 * 22050) / 22050
    for i, freq in enumerate((220, 440, 880)):
        soundfile.write(audio / f'song{i}.wav', 0.3 * np.sin(2 * np.pi * freq * t), 22050)
    (audio / 'broken.wav').write_bytes(b'not audio')
    index('--model_load_path', ckpt, '--audio_dir', tmp_path / 'music', '--data_path', dataset['root'],
          '--index_path', tmp_path / 'idx')
    assert np.load(tmp_path / 'idx' / 'mel' / 'album__song0.npy').shape[0] == 128
    result = Searcher(str(tmp_path / 'idx')).search('tag02', k=5)
    assert sorted(h['track_id'] for h in result['results']) == ['album/song0', 'album/song1', 'album/song2']
    assert all(h['path'].endswith('.wav') and h['tags'] == [] for h in result['results'])
    # an edited audio file gets a new spectrogram, not its cached one
    mel_file = tmp_path / 'idx' / 'mel' / 'album__song0.npy'
    soundfile.write(audio / 'song0.wav', 0.3 * np.sin(2 * np.pi * 3000 * t), 22050)
    os.utime(audio / 'song0.wav', ns=(mel_file.stat().st_mtime_ns + 10**9,) * 2)
    before = np.load(mel_file)
    index('--model_load_path', ckpt, '--audio_dir', tmp_path / 'music', '--data_path', dataset['root'],
          '--index_path', tmp_path / 'idx')
    assert not np.allclose(np.load(mel_file), before)
