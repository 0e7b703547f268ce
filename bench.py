"""Speed of the hot paths against the original implementation, measured in one run.

    python bench.py                 # everything below
    python bench.py --only negatives metrics crop
    python bench.py --only train e2e loader --data_path data/demo --repeat 5    # training speed (bench_train.py)

- negatives: in-batch negative sampling at batch 128, vectorised (solver.sample_negatives) vs the original's
  per-row `random.choices` loop; random and distance-weighted.
- metrics: per-tag P@10, ROC-AUC and AP for 100 tags x 20,000 songs (metrics.retrieval_metrics) vs the original's
  per-tag loops (cosine per tag, sklearn precision_score per tag, roc_auc_score / average_precision_score).
- crop: one 173-frame chunk from a memory-mapped spectrogram vs np.load of the whole file (30 s and 10 min songs).
- train: one training step of the acoustic model, float32 vs bf16 vs bf16 + channels-last (bench_train.py).
- e2e: trainer.fit steps/s against the model step alone, at the same width, batch and precision (bench_train.py).
- loader: training samples/s the DataLoader supplies from memory-mapped spectrograms, 0-2 workers (bench_train.py).
- search: query latency over 1 million random 256-d songs, exact vs approximate FAISS indexes, with the recall@10
  of the approximate ones (search_bench.py; ~2 minutes and ~3 GB).
- supply: training crops per second of one loader worker from full-track float16 spectrograms (128 x 10,000) read
  cold (evicted from the page cache) and warm, spec/ against the frame-major spec_frames/ (bench_scaling.py).
- scaling: step 0 per hour of audio, one validation pass, TEST scoring + metrics and search.py index per 1,000
  songs at 1k, 10k and 50k songs, with memory peaks (bench_scaling.py; docs/scaling.md).
"""
import argparse
import os
import random
import tempfile
import time

import numpy as np
import torch
from sklearn import metrics as skm

import bench_scaling
import bench_train
from cli_args import HelpFormatter
from data_loader import crop, open_spec
from metrics import retrieval_metrics
from solver import sample_negatives


def timeit(fn, repeat=5, number=1):
    """Best of `repeat` runs of `number` calls, in seconds per call."""
    best = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def report(name, ours, original):
    print(f'{name:<46} ours {ours * 1e3:9.3f} ms   original {original * 1e3:9.3f} ms   {original / ours:7.1f}x')


def original_negatives(tag_emb, song_emb, tag_binary, song_binary, weighted):
    """The original's Solver.triplet_sampling (its argument order fixed so the mask means what it should)."""
    num_batch = len(tag_emb)
    mask = 1 - torch.matmul(tag_binary, song_binary.T)
    if weighted:
        tag_norm = tag_emb / tag_emb.norm(dim=1)[:, None]
        song_norm = song_emb / song_emb.norm(dim=1)[:, None]
        mask = (torch.matmul(tag_norm, song_norm.T) + 1) / 2 * mask
    index_array = torch.arange(num_batch)
    return [random.choices(index_array, weights=mask[i], k=1)[0].item() for i in range(num_batch)]


def bench_negatives(batch=128, n_tags=100):
    torch.manual_seed(0)
    tag_emb, song_emb = torch.randn(batch, 256), torch.randn(batch, 256)
    tag_index = torch.randint(0, n_tags, (batch,))
    song_labels = (torch.rand(batch, n_tags) < 0.05).float()
    song_labels[torch.arange(batch), tag_index] = 1
    tag_binary = torch.nn.functional.one_hot(tag_index, n_tags).float()
    for weighted in (False, True):
        ours = timeit(lambda: sample_negatives(tag_emb, song_emb, tag_index, song_labels, weighted), 10, 20)
        original = timeit(lambda: original_negatives(tag_emb, song_emb, tag_binary, song_labels, weighted), 3, 2)
        report(f'negatives, batch {batch}, {"weighted" if weighted else "random"}', ours, original)


def original_metrics(sim_scores, ground_truth, k=10):
    """The original's get_precision / get_roc_auc / get_ap loops (ground_truth: songs x tags)."""
    p_ks = []
    for i in range(len(sim_scores)):
        sorted_ix = np.argsort(sim_scores[i])[::-1][:k]
        p_ks.append(skm.precision_score(ground_truth.T[i][sorted_ix], np.ones(k)))
    roc = skm.roc_auc_score(ground_truth, sim_scores.T, average=None)
    ap = skm.average_precision_score(ground_truth, sim_scores.T, average=None)
    return p_ks, roc, ap


def original_similarity(tag_embs, song_embs):
    sim = np.zeros((len(tag_embs), len(song_embs)))
    for i in range(len(tag_embs)):
        sim[i] = torch.nn.CosineSimilarity(dim=-1)(tag_embs[i], song_embs).numpy()
    return sim


def bench_metrics(n_tags=100, n_songs=20000):
    rng = np.random.default_rng(0)
    tag_embs, song_embs = torch.randn(n_tags, 256), torch.randn(n_songs, 256)
    labels = (rng.random((n_tags, n_songs)) < 0.03).astype(np.float32)

    def ours():
        scores = (torch.nn.functional.normalize(tag_embs, dim=1) @ torch.nn.functional.normalize(song_embs, dim=1).T)
        return retrieval_metrics(scores.numpy(), labels)

    def original():
        return original_metrics(original_similarity(tag_embs, song_embs), labels.T)

    mine, theirs = ours(), original()
    assert np.allclose(mine['ap'], theirs[2], atol=1e-6) and np.allclose(mine['roc_auc'], theirs[1], atol=1e-6)
    report(f'metrics, {n_tags} tags x {n_songs} songs (same values)', timeit(ours, 3), timeit(original, 2))


def bench_crop(length=173):
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in (30, 600):
            frames = int(seconds * 22050 / 512) + 1
            path = os.path.join(tmp, f'{seconds}.npy')
            np.save(path, np.random.default_rng(0).standard_normal((128, frames)).astype(np.float32))
            starts = np.random.default_rng(1).integers(0, frames - length, 200)
            it = iter(np.tile(starts, 100))
            ours = timeit(lambda: crop(open_spec(path), int(next(it)), length), 5, 100)
            whole = timeit(lambda: np.load(path)[:, int(next(it)):int(next(it)) + length], 5, 20)
            report(f'crop {length} frames of a {seconds} s spectrogram (cached)', ours, whole)


def bench_search():
    from search_bench import bench_query_latency
    bench_query_latency()


def sizes_arg(value):
    try:
        return [tuple(int(n) for n in size.split('x')) for size in value.split(',') if size]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected WIDTHxBATCH[,WIDTHxBATCH...], got {value!r}')


BENCHES = {'negatives': lambda args: bench_negatives(), 'metrics': lambda args: bench_metrics(),
           'crop': lambda args: bench_crop(),
           'train': lambda args: bench_train.bench_train_step(args.repeat, args.sizes),
           'e2e': lambda args: bench_train.bench_end_to_end(args.data_path, args.repeat, args.steps, args.num_workers,
                                                            args.sizes),
           'loader': lambda args: bench_train.bench_loader(args.data_path),
           'search': lambda args: bench_search(),
           'supply': lambda args: bench_scaling.bench_supply(args.bench_dir, args.supply_files),
           'scaling': lambda args: bench_scaling.bench_scaling(args.scaling_songs, bench_dir=args.bench_dir)}

if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--only', nargs='*', default=list(BENCHES),
                        help=f'any of {",".join(BENCHES)}, space- or comma-separated')
    parser.add_argument('--data_path', default=None, help='e2e/loader: a dataset (default: a synthetic one)')
    parser.add_argument('--repeat', type=int, default=3, help='train/e2e: timed model steps (median)')
    parser.add_argument('--steps', type=int, default=12, help='e2e: timed trainer.fit steps')
    parser.add_argument('--num_workers', type=int, default=0, help='e2e: DataLoader workers')
    parser.add_argument('--sizes', type=sizes_arg, default=bench_train.SIZES,
                        help='train/e2e: CNN base width x batch, comma-separated, e.g. 32x64,64x32')
    parser.add_argument('--bench_dir', default=None, help='supply: a folder on the disk to measure (default: .)')
    parser.add_argument('--supply_files', type=int, default=200, help='supply: tracks written (2.4 MiB each, twice)')
    parser.add_argument('--scaling_songs', type=lambda v: [int(n) for n in v.split(',')], default=[1000, 10000, 50000],
                        help='scaling: song counts, comma-separated')
    arguments = parser.parse_args()
    chosen = [name for item in arguments.only for name in item.split(',') if name]
    unknown = sorted(set(chosen) - set(BENCHES))
    if unknown:
        parser.error(f'--only {",".join(unknown)}: choose from {",".join(BENCHES)}')
    for name in chosen:
        BENCHES[name](arguments)
