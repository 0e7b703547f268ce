"""Query latency and recall of the search indexes (search.py) over a catalogue of a million songs.

    python search_bench.py                       # 1M random unit 256-d vectors, as bench.py calls it
    python search_bench.py --n_songs 200000 --data clustered

    from search_bench import bench_query_latency
    rows = bench_query_latency(n_songs=1_000_000, dim=256)

Builds the exact index (IndexFlatIP) and the approximate ones with search_index.build_faiss_index, the code
`search.py index` uses: IVF-Flat (nlist lists trained by k-means on a sample, searched with nprobe 16 and 32) and
HNSW when its build, projected from a small probe build, fits the time allowed (it does not on 2 cores: ~0.6 ms
per inserted vector). For each: build time, latency of one query alone (median over single searches, one thread)
and of a batch of 100 queries (ms per query, all threads), and recall@10 against the exact top 10 over the 100.

`data='random'` (the default) draws i.i.d. Gaussian vectors: the worst case for any approximate index (in 256
dimensions every point is about equally far from every other, so k-means lists carry no neighbourhood).
`data='clustered'` draws songs and queries around 2,000 centres with noise of norm `spread` (1.0: cosine ~0.7 to
the centre, ~0.5 between a query and its cluster's songs, ~0 +- 0.06 to the rest), like a trained model whose tag
query sits near the songs of its tag. With spread 2.5 the top 10 at 1M songs are mostly chance hits from other
clusters and IVF recall falls towards the random case.
"""
import argparse
import time

import numpy as np

from cli_args import HelpFormatter
from search_index import build_faiss_index, set_search_params


def unit_rows(x):
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_vectors(n, dim, n_queries, data, seed, spread=1.0):
    """(catalogue (n, dim), queries (n_queries, dim)), float32 unit rows; built in blocks to bound memory."""
    rng = np.random.default_rng(seed)
    songs = np.empty((n, dim), dtype=np.float32)
    centres = unit_rows(rng.standard_normal((2000, dim), dtype=np.float32)) if data == 'clustered' else None
    block = 1 << 17
    for start in range(0, n, block):
        m = min(block, n - start)
        x = rng.standard_normal((m, dim), dtype=np.float32)
        if centres is not None:  # a centre plus noise of norm ~spread: cosine to its centre ~1/sqrt(1+spread^2)
            x = centres[rng.integers(0, len(centres), m)] + spread * x / np.sqrt(dim)
        songs[start:start + m] = unit_rows(x)
    q = rng.standard_normal((n_queries, dim), dtype=np.float32)
    if centres is not None:
        q = centres[rng.integers(0, len(centres), n_queries)] + spread * q / np.sqrt(dim)
    return songs, unit_rows(q)


def latency(index, queries, k=10, n_single=20, repeat=3):
    """(ms for one query searched alone (median, one thread: a server answers concurrent queries one per thread,
    and one query gains nothing from more), ms per query in a batch of all queries (best of `repeat`, all threads))."""
    import faiss
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    singles = []
    try:
        for q in queries[:n_single]:
            start = time.perf_counter()
            index.search(q[None], k)
            singles.append(time.perf_counter() - start)
    finally:
        faiss.omp_set_num_threads(threads)
    batch = float('inf')
    for _ in range(repeat):
        start = time.perf_counter()
        index.search(queries, k)
        batch = min(batch, time.perf_counter() - start)
    return 1e3 * float(np.median(singles)), 1e3 * batch / len(queries)


def recall_at_k(found, exact):
    k = exact.shape[1]
    return float(np.mean([len(set(f[f >= 0]) & set(e)) / k for f, e in zip(found, exact)]))


def bench_query_latency(n_songs=1_000_000, dim=256, nlist=4096, nprobes=(16, 32), n_queries=100, k=10,
                        hnsw_m=32, ef_construction=80, ef_search=64, hnsw_max_build_s=60.0, ivf_train_size=None,
                        ivf_niter=10, data='random', spread=1.0, seed=0):
    """Builds the indexes, prints a table and returns its rows (dicts)."""
    import faiss
    t0 = time.perf_counter()
    songs, queries = make_vectors(n_songs, dim, n_queries, data, seed, spread)
    print(f'search indexes over {n_songs:,} {data} unit {dim}-d vectors; {n_queries} queries, recall@{k} vs exact; '
          f'faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads '
          f'(vectors made in {time.perf_counter() - t0:.1f} s)', flush=True)
    rows = []

    def measure(name, index, build_s, exact_ids=None):
        single_ms, batch_ms = latency(index, queries, k)
        ids = index.search(queries, k)[1]
        row = {'index': name, 'build_s': build_s, 'single_ms': single_ms, 'batch_ms_per_query': batch_ms,
               f'recall@{k}': 1.0 if exact_ids is None else recall_at_k(ids, exact_ids)}
        rows.append(row)
        print(f'  {name:<28} build {build_s:7.1f} s   1 query {single_ms:8.2f} ms   '
              f'batch of {n_queries}: {batch_ms:7.3f} ms/query   recall@{k} {row[f"recall@{k}"]:.3f}', flush=True)
        return ids

    start = time.perf_counter()
    flat = build_faiss_index(songs, 'flat')
    exact = measure('exact IndexFlatIP', flat, time.perf_counter() - start)
    del flat

    if nlist:
        nlist = min(nlist, n_songs)
        start = time.perf_counter()
        ivf = build_faiss_index(songs, 'ivf', nlist=nlist, nprobe=nprobes[0],
                                train_size=ivf_train_size or min(n_songs, 20 * nlist), niter=ivf_niter, seed=seed)
        build_s = time.perf_counter() - start
        for nprobe in nprobes:
            set_search_params(ivf, nprobe=nprobe)
            measure(f'IVF{nlist},Flat nprobe={nprobe}', ivf, build_s, exact)
        del ivf

    if hnsw_m:
        bench_hnsw(songs, measure, rows, hnsw_m, ef_construction, ef_search, hnsw_max_build_s, exact)
    print(f'  total {time.perf_counter() - t0:.1f} s', flush=True)
    return rows


def bench_hnsw(songs, measure, rows, hnsw_m, ef_construction, ef_search, max_build_s, exact):
    """HNSW when its build is projected to take at most max_build_s here; else a row that says it was skipped."""
    n_songs, probe = len(songs), min(len(songs), 20000)
    start = time.perf_counter()
    build_faiss_index(songs[:probe], 'hnsw', hnsw_m=hnsw_m, ef_construction=ef_construction)
    # insertion cost grows ~log(n): extrapolate the probe's rate with that factor
    projected = (time.perf_counter() - start) * n_songs / probe * np.log(n_songs) / np.log(probe)
    name = f'HNSW{hnsw_m} efSearch={ef_search}'
    if projected <= max_build_s:
        start = time.perf_counter()
        hnsw = build_faiss_index(songs, 'hnsw', hnsw_m=hnsw_m, ef_construction=ef_construction, ef_search=ef_search)
        measure(name, hnsw, time.perf_counter() - start, exact)
    else:
        rows.append({'index': name, 'skipped': f'projected build {projected:.0f} s > {max_build_s:.0f} s'})
        print(f'  {name:<28} skipped: build projected at ~{projected:.0f} s on this machine '
              f'(> {max_build_s:.0f} s allowed; efConstruction {ef_construction})', flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--n_songs', type=int, default=1_000_000)
    parser.add_argument('--dim', type=int, default=256)
    parser.add_argument('--nlist', type=int, default=4096, help='0: no IVF')
    parser.add_argument('--nprobes', type=int, nargs='+', default=[16, 32])
    parser.add_argument('--hnsw_m', type=int, default=32, help='0: no HNSW')
    parser.add_argument('--hnsw_max_build_s', type=float, default=60.0)
    parser.add_argument('--data', default='random', choices=['random', 'clustered'])
    parser.add_argument('--spread', type=float, default=1.0, help='noise norm around the centres (clustered)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    bench_query_latency(args.n_songs, args.dim, args.nlist, tuple(args.nprobes), hnsw_m=args.hnsw_m,
                        hnsw_max_build_s=args.hnsw_max_build_s, data=args.data, spread=args.spread, seed=args.seed)


if __name__ == '__main__':
    main()
