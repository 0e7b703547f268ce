"""Building a search index: the catalogue of songs (a dataset split or a folder of audio), their resumable
embedding, and the FAISS index. `search.py index` calls build_index; search_store.py owns the files.

    from search_index import build_faiss_index
    index = build_faiss_index(unit_vectors, 'ivf', nlist=1024, nprobe=32)
"""
import hashlib
import json
import os
import shutil
import sys
import time

import numpy as np

from errors import UserError
from file_io import read_json, write_json
from search_store import (EMBEDDINGS_FILE, EMBEDDINGS_META_FILE, INDEX_FILE, META_FILE, MEL_DIR, PARTIAL_FILE,
                          PROGRESS_FILE, FORMAT_VERSION, build_lock, output_errors, write_index_files)


def file_sha1(path, block=1 << 20):
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(block), b''):
            digest.update(chunk)
    return digest.hexdigest()


def text_sha1(lines):
    return hashlib.sha1('\n'.join(lines).encode()).hexdigest()


def read_json_if_any(path):
    """Our own bookkeeping (progress, embeddings.json, an older meta.json): absent or unreadable means none."""
    try:
        return read_json(path, 'search index bookkeeping', 'it is rewritten') if os.path.isfile(path) else None
    except UserError:
        return None


# ---------------------------------------------------------------------------------------------- FAISS
def default_nlist(n):
    """~4 sqrt(n) lists (faiss' rule of thumb), at most one per 39 songs so k-means has enough points."""
    return int(max(1, min(round(4 * np.sqrt(n)), n // 39)))


def check_nlist(nlist, n):
    if nlist and nlist > n:
        raise UserError(f'--nlist {nlist} needs at least {nlist} songs to train on, the catalogue has {n}; '
                        f'pass a smaller --nlist (default ~4*sqrt(n): {default_nlist(n)})')


def ivf_index(emb, dim, nlist, nprobe, train_size, niter, seed):
    import faiss
    n = len(emb)
    nlist = nlist or default_nlist(n)
    check_nlist(nlist, n)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = niter
    index.cp.seed = seed
    index.cp.min_points_per_centroid = 1  # small catalogues: train anyway, without faiss' warning
    sample_size = min(n, train_size or 64 * nlist)
    sample = emb if sample_size == n else emb[np.sort(np.random.default_rng(seed).choice(n, sample_size,
                                                                                        replace=False))]
    index.train(sample)
    index.nprobe = nprobe
    return index


def build_faiss_index(emb, index_type='flat', nlist=None, nprobe=32, hnsw_m=32, ef_construction=80, ef_search=64,
                      train_size=None, niter=20, seed=0, progress=False):
    """A FAISS inner-product index over L2-normalised rows of `emb` (float32, (n, d)); inner product = cosine.

    flat: exact (IndexFlatIP). ivf: IVF-Flat with `nlist` k-means lists trained on a random sample of
    `train_size` rows (default 64 per list), searched in `nprobe` lists. hnsw: HNSW graph with M = `hnsw_m`."""
    import faiss
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n, dim = emb.shape
    if index_type == 'flat':
        index = faiss.IndexFlatIP(dim)
    elif index_type == 'ivf':
        index = ivf_index(emb, dim, nlist, nprobe, train_size, niter, seed)
    elif index_type == 'hnsw':
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    else:
        raise UserError(f'unknown index type {index_type!r}; use flat, ivf or hnsw')
    step = 1 << 16
    chunks = range(0, n, step)
    if progress and n > step:
        from tqdm import tqdm
        chunks = tqdm(chunks, desc=f'{index_type} index', unit_scale=step, unit='song')
    for start in chunks:
        index.add(emb[start:start + step])
    return index


def set_search_params(index, nprobe=None, ef_search=None):
    import faiss
    if nprobe is not None:
        try:
            faiss.extract_index_ivf(index).nprobe = nprobe
        except RuntimeError:
            pass
    if ef_search is not None and hasattr(index, 'hnsw'):
        index.hnsw.efSearch = ef_search


# ---------------------------------------------------------------------------------------------- the catalogue
class AudioCatalogue:
    """What EvalDataset reads of SplitData, for a folder of audio files turned into spectrograms."""

    input_type = 'spec'
    cf = None

    def __init__(self, track_ids, spec_files):
        self.ids = {'all': (np.arange(len(track_ids)), list(track_ids))}
        self.binaries = np.zeros((len(track_ids), 0), dtype=np.float32)
        self._files = dict(zip(track_ids, spec_files))

    def spec_file(self, track_id):
        return self._files[track_id]

    def open_spec(self, track_id):
        from data_loader import open_spec  # torch-free import of search.py: data_loader only when embedding
        return open_spec(self.spec_file(track_id))


def plan_mel_jobs(files, audio_dir, mel_dir):
    """(track ids, mel files, absolute audio paths, jobs): track id = relative path without extension."""
    track_ids, mel_files, sources, jobs, seen = [], [], [], [], set()
    for path in files:
        track_id = os.path.splitext(os.path.relpath(path, audio_dir))[0].replace(os.sep, '/')
        if track_id in seen:  # song.mp3 beside song.wav: the first in sorted order wins
            continue
        seen.add(track_id)
        mel_file = os.path.join(mel_dir, track_id.replace('/', '__') + '.npy')
        track_ids.append(track_id)
        mel_files.append(mel_file)
        sources.append(os.path.abspath(path))
        # recomputed when missing or older than its audio (an edited file must not keep its old spectrogram)
        if not os.path.isfile(mel_file) or os.path.getmtime(mel_file) < os.path.getmtime(path):
            jobs.append((path, mel_file, {}, np.float32))
    return track_ids, mel_files, sources, jobs


def audio_catalogue(audio_dir, index_path, workers):
    """Every audio file under audio_dir -> INDEX/mel/<id>.npy (kept between runs). Files that cannot be decoded
    are reported and left out; a full disk stops the build."""
    from tqdm import tqdm

    from audio import AUDIO_EXTENSIONS, find_audio, run_jobs
    if not os.path.isdir(audio_dir):
        raise UserError(f'--audio_dir {audio_dir} is not a directory; pass the folder that holds the audio files')
    files = find_audio(audio_dir)
    if not files:
        raise UserError(f'no {"/".join(AUDIO_EXTENSIONS)} files under {audio_dir}')
    mel_dir = os.path.join(index_path, MEL_DIR)
    os.makedirs(mel_dir, exist_ok=True)
    track_ids, mel_files, sources, jobs = plan_mel_jobs(files, audio_dir, mel_dir)
    failed = {}  # run_jobs itself stops on a write that fails (a full disk), with one line
    for path, error in tqdm(run_jobs(jobs, workers), total=len(jobs), desc='mel spectrograms', unit='file',
                            disable=not jobs):
        if error:
            failed[os.path.abspath(path)] = error
    for path, error in sorted(failed.items()):
        print(f'warning: left out {path}: {error}', file=sys.stderr)
    keep = [i for i, source in enumerate(sources) if source not in failed]
    if not keep:
        raise UserError(f'none of the {len(files)} audio files under {audio_dir} could be decoded')
    catalogue = AudioCatalogue([track_ids[i] for i in keep], [mel_files[i] for i in keep])
    return catalogue, [sources[i] for i in keep]


def track_tags(binaries, rows):
    """CSR (indptr, indices) of the tags of each song, columns of tags.npy."""
    labels = np.asarray(binaries[rows]) > 0
    song, tag = np.nonzero(labels)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(song, minlength=len(rows)))]).astype(np.int64)
    return indptr, tag.astype(np.int32)


# ---------------------------------------------------------------------------------------------- embedding
def open_partial(partial, progress_file, fingerprint, n, force):
    """(memory-mapped (n, 256) partial embeddings, songs already done). The file is allocated up front, so a
    full disk fails here with ENOSPC rather than later as a bus error inside the memory map."""
    from model import EMBEDDING_DIM
    progress = read_json_if_any(progress_file) if not force and os.path.isfile(partial) else None
    if progress and progress.get('fingerprint') == fingerprint and progress.get('n') == n:
        print(f'resuming: {progress["done"]} of {n} songs already embedded', file=sys.stderr)
        return np.lib.format.open_memmap(partial, mode='r+'), int(progress['done'])
    try:
        out = np.lib.format.open_memmap(partial, mode='w+', dtype=np.float32, shape=(n, EMBEDDING_DIM))
        with open(partial, 'r+b') as f:
            os.posix_fallocate(f.fileno(), 0, os.path.getsize(partial))
    except OSError:
        if os.path.exists(partial):  # nothing embedded yet: nothing to keep
            os.remove(partial)
        raise
    return out, 0


def embed_songs(model, data, split, input_length, num_chunk, batch_size, num_workers, index_path, fingerprint,
                force=False):
    """(n, 256) L2-normalised song embeddings, written as they come to a memory-mapped partial file, so an
    interrupted run resumes after the last finished batch."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from data_loader import EvalDataset
    dataset = EvalDataset(data, split, input_length, num_chunk)
    n = len(dataset)
    if n == 0:
        raise UserError(f'the {split} split has no songs to index')
    partial, progress_file = os.path.join(index_path, PARTIAL_FILE), os.path.join(index_path, PROGRESS_FILE)
    out, done = open_partial(partial, progress_file, fingerprint, n, force)
    device = next(model.parameters()).device
    songs_per_batch = batch_size if data.input_type == 'cf' else max(1, batch_size // num_chunk)
    loader = DataLoader(Subset(dataset, range(done, n)), batch_size=songs_per_batch, shuffle=False,
                        num_workers=num_workers)
    with torch.inference_mode(), tqdm(total=n, initial=done, desc='embedding songs', unit='song') as bar:
        for batch in loader:
            emb = model.chunks_to_embedding(batch['spec'].to(device), batch['cf'].to(device))
            index = batch['index'].numpy()
            out[index] = F.normalize(emb.float(), dim=-1).cpu().numpy()
            out.flush()
            write_json(progress_file, {'fingerprint': fingerprint, 'done': int(index[-1]) + 1, 'n': n})
            bar.update(len(index))
    del out
    final = os.path.join(index_path, EMBEDDINGS_FILE)
    os.replace(partial, final)
    write_json(os.path.join(index_path, EMBEDDINGS_META_FILE), {'fingerprint': fingerprint, 'n': n})
    os.remove(progress_file)
    return np.load(final, allow_pickle=False)


# ---------------------------------------------------------------------------------------------- the build
def dataset_songs(data, split):
    """(rows, track ids) of a split, or of every split with each song once ('all')."""
    if split != 'all':
        return data.ids[split]
    rows, track_ids, seen = [], [], set()
    for name in ('train', 'valid', 'test'):
        for row, track_id in zip(*data.ids[name]):
            if track_id not in seen:
                seen.add(track_id)
                rows.append(row)
                track_ids.append(track_id)
    data.ids['all'] = (np.asarray(rows, dtype=np.int64), track_ids)
    return data.ids['all']


def tag_vocabulary(data_path, is_subset, w2v_type):
    """(tags, their word vectors) of a dataset, for the queries of an --audio_dir index; (None, None) without."""
    from data_loader import SplitData
    try:
        data = SplitData(data_path, is_subset, w2v_type, 'spec', splits=())
    except UserError as error:
        print(f'warning: no tag vocabulary ({error}): queries need the full word vectors (query --w2v_path)',
              file=sys.stderr)
        return None, None
    return data.tags, data.tag_vectors


def catalogue(args, model_path, input_type, w2v_type, is_subset, data_path, model_state):
    """What to embed and what the index records of it: a dict of data, split, track_ids, tags, indptr, indices,
    audio paths (or None), the tag vocabulary with its vectors, and `source` (for the fingerprint)."""
    from checkpoint import check_fits
    from data_loader import SplitData
    if args.audio_dir is not None:
        if input_type != 'spec':
            raise UserError(f'--audio_dir needs an acoustic model (input_type spec); {model_path} is a '
                            f'{input_type!r} model, which needs item factors: index its --data_path instead')
        if args.force and os.path.isdir(os.path.join(args.index_path, MEL_DIR)):
            shutil.rmtree(os.path.join(args.index_path, MEL_DIR))
        data, audio_paths = audio_catalogue(args.audio_dir, args.index_path, args.num_workers or os.cpu_count() or 1)
        track_ids = data.ids['all'][1]
        tags, vectors = tag_vocabulary(data_path, is_subset, w2v_type) if data_path else (None, None)
        fingerprint = [f'{t}\t{os.path.getsize(p)}\t{os.stat(p).st_mtime_ns}' for t, p in zip(track_ids, audio_paths)]
        return {'data': data, 'split': 'all', 'track_ids': track_ids, 'tags': np.array([], dtype=str),
                'indptr': np.zeros(len(track_ids) + 1, np.int64), 'indices': np.zeros(0, np.int32),
                'audio_paths': audio_paths, 'vocabulary': tags, 'tag_vectors': vectors,
                'source': {'audio_dir': os.path.abspath(args.audio_dir), 'tracks': text_sha1(fingerprint)}}
    splits = ('train', 'valid', 'test') if args.split == 'all' else (args.split,)
    data = SplitData(data_path, is_subset, w2v_type, input_type, splits)
    check_fits(model_path, model_state, input_type, w2v_type, data)
    rows, track_ids = dataset_songs(data, args.split)
    indptr, indices = track_tags(data.binaries, rows)
    return {'data': data, 'split': args.split, 'track_ids': track_ids, 'tags': data.tags, 'indptr': indptr,
            'indices': indices, 'audio_paths': None, 'vocabulary': data.tags, 'tag_vectors': data.tag_vectors,
            'source': {'data_path': os.path.abspath(data_path), 'is_subset': is_subset, 'split': args.split,
                       'tracks': text_sha1(track_ids)}}


def song_embeddings(args, model, songs, fingerprint):
    """(embeddings, reused): the stored ones when the checkpoint and songs are the same, else embedded now."""
    emb_file = os.path.join(args.index_path, EMBEDDINGS_FILE)
    emb_meta = read_json_if_any(os.path.join(args.index_path, EMBEDDINGS_META_FILE)) or {}
    if not args.force and emb_meta.get('fingerprint') == fingerprint and os.path.isfile(emb_file):
        try:
            embeddings = np.load(emb_file, mmap_mode='r', allow_pickle=False)
        except ValueError:  # damaged or not a plain array: embedded again below
            embeddings = None
        if embeddings is not None and embeddings.ndim == 2 and embeddings.shape[0] == len(songs['track_ids']) \
                and np.isfinite(embeddings).all():  # else damaged: a NaN row would rank as noise
            print(f'reusing the {len(songs["track_ids"])} song embeddings of {emb_file} (same checkpoint and '
                  'songs; --force re-embeds)', file=sys.stderr)
            return embeddings, True
    for stale in (INDEX_FILE, EMBEDDINGS_FILE, EMBEDDINGS_META_FILE):  # nothing of an older build survives
        if os.path.isfile(os.path.join(args.index_path, stale)):
            os.remove(os.path.join(args.index_path, stale))
    return embed_songs(model, songs['data'], songs['split'], args.input_length, args.num_chunk, args.batch_size,
                       args.num_workers, args.index_path, fingerprint, args.force), False


def build_index(args):
    """`search.py index`: embed the catalogue (or reuse its embeddings), build the FAISS index, write the files."""
    with build_lock(args.index_path), output_errors(args.index_path):
        return build_locked(args)


def build_locked(args):
    import torch

    from checkpoint import load_model
    model, info = load_model(args.model_load_path, 'cuda' if torch.cuda.is_available() else 'cpu')
    config = info.config
    w2v_type = args.w2v_type or config.get('w2v_type') or 'google'
    is_subset = args.is_subset if args.is_subset is not None else bool(config.get('is_subset', False))
    data_path = args.data_path or config.get('data_path')
    if args.audio_dir is None and not data_path:
        raise UserError('pass --data_path (the dataset of the songs to index) or --audio_dir')
    state = model.state_dict()
    songs = catalogue(args, args.model_load_path, info.input_type, w2v_type, is_subset, data_path, state)
    checkpoint_sha1 = file_sha1(args.model_load_path)
    fingerprint = text_sha1([json.dumps(songs['source'], sort_keys=True), checkpoint_sha1, info.input_type,
                             str(args.num_chunk), str(args.input_length)])
    if args.index_type == 'ivf':  # before the embedding, not after it
        check_nlist(args.nlist, len(songs['track_ids']))
    meta_file = os.path.join(args.index_path, META_FILE)
    old_meta = read_json_if_any(meta_file)
    if os.path.isfile(meta_file):  # written again last: until then the folder is no index a query would trust
        os.remove(meta_file)
    embeddings, reused = song_embeddings(args, model, songs, fingerprint)
    w2v_path = os.path.abspath(args.w2v_path) if args.w2v_path else None
    if w2v_path is None and reused and old_meta and old_meta.get('w2v_type') == w2v_type:
        w2v_path = old_meta.get('w2v_path')  # a rebuild with another --index_type keeps the recorded vectors
    start = time.perf_counter()
    index = build_faiss_index(embeddings, args.index_type, args.nlist, args.nprobe, args.hnsw_m,
                              args.ef_construction, args.ef_search, progress=True)
    meta = index_meta(args, info, songs, fingerprint, checkpoint_sha1, w2v_type, w2v_path, data_path, index,
                      time.perf_counter() - start)
    tracks = {'track_ids': np.asarray(songs['track_ids'], dtype=str), 'tag_indptr': songs['indptr'],
              'tag_indices': songs['indices'], 'tags': np.asarray(songs['tags'], dtype=str)}
    if songs['audio_paths'] is not None:
        tracks['paths'] = np.asarray(songs['audio_paths'], dtype=str)
    write_index_files(args.index_path, index, tracks, state, songs['vocabulary'], songs['tag_vectors'], meta)
    print(f'indexed {len(songs["track_ids"])} songs ({info.input_type} model, {args.index_type} index) -> '
          f'{args.index_path}')
    return meta


def index_meta(args, info, songs, fingerprint, checkpoint_sha1, w2v_type, w2v_path, data_path, index, build_s):
    import faiss
    ivf_nlist = faiss.extract_index_ivf(index).nlist if args.index_type == 'ivf' else None
    return {
        'format': FORMAT_VERSION, 'fingerprint': fingerprint, 'created': time.strftime('%Y-%m-%d %H:%M:%S'),
        'checkpoint': os.path.abspath(args.model_load_path), 'checkpoint_sha1': checkpoint_sha1,
        'input_type': info.input_type, 'hparams': info.hparams, 'word_dim': int(info.dims['word_dim']),
        'w2v_type': w2v_type, 'w2v_path': w2v_path, 'is_subset': songs['source'].get('is_subset'),
        'data_path': os.path.abspath(data_path) if data_path else None, 'source': songs['source'],
        'num_chunk': args.num_chunk, 'input_length': args.input_length, 'n_songs': len(songs['track_ids']),
        'index': {'type': args.index_type, 'nlist': ivf_nlist, 'nprobe': args.nprobe if ivf_nlist else None,
                  'hnsw_m': args.hnsw_m if args.index_type == 'hnsw' else None,
                  'ef_search': args.ef_search if args.index_type == 'hnsw' else None,
                  'build_seconds': round(build_s, 3)},
    }
