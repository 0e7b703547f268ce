"""Tag-based music search: embed a catalogue once into a FAISS index, then answer text queries.

    # 1. embed the songs once (resumable; rerunning with another --index_type reuses the embeddings)
    python search.py index --model_load_path checkpoints/best.ckpt --data_path data/demo
                           [--split all|train|valid|test] [--index_path search_index]
                           [--index_type flat|ivf|hnsw] [--nlist N] [--nprobe 32] [--batch_size 128]
    python search.py index --model_load_path best.ckpt --audio_dir my_music/ --data_path data/demo  # spec models
    # 2. ask it
    python search.py query --index_path search_index --query "piano" [--k 10] [--json]
    python search.py query --index_path search_index --query "smooth jazz saxophone"   # words averaged
    python search.py query --index_path search_index          # interactive: one query a line, empty line ends

Songs are embedded exactly as the evaluation does (EvalDataset: `num_chunk` evenly spaced chunks, averaged by the
model's chunks_to_embedding in eval mode), L2-normalised and stored in INDEX_PATH/:
  songs.faiss        IndexFlatIP (exact cosine, default), IVF-Flat (`--index_type ivf`, searched with nprobe)
                     or HNSW (`--index_type hnsw`, efSearch) over the normalised 256-d embeddings
  embeddings.npy     the normalised embeddings, row i = track i; embeddings.json says of which checkpoint and
                     songs: an index of another --index_type over the same songs is built from them, not re-embedded
  tracks.npz         track ids, their tags (from binaries.npy / tags.npy where known), audio paths
  meta.json          checkpoint path and sha1, input_type, its hyper-parameters, split, index settings
  query_encoder.pt   the checkpoint's tag branch (fc1, bn1, fc2): queries never load the CNN nor re-embed
  tag_vectors.pkl    the {w2v_type}_emb.pkl word vectors of the tags
  mel/               (--audio_dir) log-mel spectrograms computed with step 0's compute_mel
An interrupted build resumes where it stopped (.embeddings.partial.npy + .progress.json); --force starts over.

A query is one or more terms whose word vectors are averaged: a tag of the vocabulary (a multi-word tag such as
"smooth jazz" or smooth_jazz counts as one term), or any word the full word vectors know: --w2v_path, by default
for google DATA/GoogleNews-vectors-negative300.bin (or DATA/glove-6b-50d.bin, the demo dataset's GloVe, when only
that exists), for music DATA/music_w2v/model_semeval_trigrams_300.model. Queries made of tags never load the full
vectors. Commas separate terms explicitly ("hip hop, piano"). A word nobody knows stops a one-shot query with one
line naming it and the nearest known words (exit 2); in interactive mode only that line is printed.
"""
import argparse
import difflib
import hashlib
import json
import os
import pickle
import re
import shutil
import sys
import time

import numpy as np

from cli_args import non_negative_int, positive_int, str2bool
from errors import UserError, exit_on_user_error
from preprocess_utils import atomic_write, atomic_write_bytes

INDEX_FILE = 'songs.faiss'
EMBEDDINGS_FILE = 'embeddings.npy'
PARTIAL_FILE = '.embeddings.partial.npy'
PROGRESS_FILE = '.progress.json'
EMBEDDINGS_META_FILE = 'embeddings.json'
TRACKS_FILE = 'tracks.npz'
META_FILE = 'meta.json'
ENCODER_FILE = 'query_encoder.pt'
TAG_VECTORS_FILE = 'tag_vectors.pkl'
MEL_DIR = 'mel'
FORMAT_VERSION = 1
TAG_BRANCH = ('fc1', 'bn1', 'fc2')
SUGGESTION_VOCAB = 200_000  # nearest-word suggestions come from the most frequent words of the full vectors


# ---------------------------------------------------------------------------------------------- small helpers
def read_json(path):
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_json(path, obj):
    atomic_write_bytes(path, json.dumps(obj, indent=1, default=str).encode())


def file_sha1(path, block=1 << 20):
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(block), b''):
            digest.update(chunk)
    return digest.hexdigest()


def text_sha1(lines):
    return hashlib.sha1('\n'.join(lines).encode()).hexdigest()


def default_nlist(n):
    """~4 sqrt(n) lists (faiss' rule of thumb), at most one per 39 songs so k-means has enough points."""
    return int(max(1, min(round(4 * np.sqrt(n)), n // 39)))


def check_nlist(nlist, n):
    if nlist and nlist > n:
        raise UserError(f'--nlist {nlist} needs at least {nlist} songs to train on, the catalogue has {n}; '
                        f'pass a smaller --nlist (default ~4*sqrt(n): {default_nlist(n)})')


# ---------------------------------------------------------------------------------------------- FAISS
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


def audio_catalogue(audio_dir, index_path, workers):
    """Every audio file under audio_dir -> INDEX/mel/<id>.npy (kept between runs); track id = relative path
    without extension. Files that cannot be decoded are reported and left out."""
    from tqdm import tqdm

    from step0_mel_spectrogram import AUDIO_EXTENSIONS, find_audio, run_jobs
    if not os.path.isdir(audio_dir):
        raise UserError(f'--audio_dir {audio_dir} is not a directory; pass the folder that holds the audio files')
    files = find_audio(audio_dir)
    if not files:
        raise UserError(f'no {"/".join(AUDIO_EXTENSIONS)} files under {audio_dir}')
    mel_dir = os.path.join(index_path, MEL_DIR)
    os.makedirs(mel_dir, exist_ok=True)
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
    failed = {}
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


def load_model(model_load_path):
    """(model in eval mode, model state, hparams, the training run's config) of a checkpoint."""
    from checkpoint import load_model as load_checkpoint_model
    model, info = load_checkpoint_model(model_load_path)
    return model, model.state_dict(), info.hparams, info.config


def track_tags(binaries, rows):
    """CSR (indptr, indices) of the tags of each song, columns of tags.npy."""
    labels = np.asarray(binaries[rows]) > 0
    song, tag = np.nonzero(labels)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(song, minlength=len(rows)))]).astype(np.int64)
    return indptr, tag.astype(np.int32)


def embed_songs(model, data, split, input_length, num_chunk, batch_size, num_workers, index_path, fingerprint,
                force=False):
    """(n, 256) L2-normalised song embeddings, written as they come to a memory-mapped partial file, so an
    interrupted run resumes after the last finished batch."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, Subset
    from tqdm import tqdm

    from data_loader import EvalDataset
    from model import EMBEDDING_DIM

    dataset = EvalDataset(data, split, input_length, num_chunk)
    n = len(dataset)
    if n == 0:
        raise UserError(f'the {split} split has no songs to index')
    partial = os.path.join(index_path, PARTIAL_FILE)
    progress_file = os.path.join(index_path, PROGRESS_FILE)
    done = 0
    progress = read_json(progress_file) if not force and os.path.isfile(partial) else None
    if progress and progress.get('fingerprint') == fingerprint:
        done = int(progress['done'])
    if done:
        out = np.lib.format.open_memmap(partial, mode='r+')
        print(f'resuming: {done} of {n} songs already embedded', file=sys.stderr)
    else:
        out = np.lib.format.open_memmap(partial, mode='w+', dtype=np.float32, shape=(n, EMBEDDING_DIM))
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    model = model.to(device)
    songs_per_batch = batch_size if data.input_type == 'cf' else max(1, batch_size // num_chunk)
    loader = DataLoader(Subset(dataset, range(done, n)), batch_size=songs_per_batch, shuffle=False,
                        num_workers=num_workers)
    with torch.inference_mode(), tqdm(total=n, initial=done, desc='embedding songs', unit='song') as bar:
        for batch in loader:
            emb = model.chunks_to_embedding(batch['spec'].to(device), batch['cf'].to(device))
            index = batch['index'].numpy()
            out[index] = F.normalize(emb.float(), dim=-1).cpu().numpy()
            out.flush()
            done = int(index[-1]) + 1
            write_progress(progress_file, {'fingerprint': fingerprint, 'done': done, 'n': n})
            bar.update(len(index))
    del out
    final = os.path.join(index_path, EMBEDDINGS_FILE)
    os.replace(partial, final)
    write_json(os.path.join(index_path, EMBEDDINGS_META_FILE), {'fingerprint': fingerprint, 'n': n})
    os.remove(progress_file)
    return np.load(final)


def write_progress(path, progress):
    write_json(path, progress)


def resolve_w2v_path(w2v_type, data_path, w2v_path=None):
    """The full word vectors for words that are not tags: --w2v_path, else the default file of w2v_type."""
    from preprocess_utils import default_google_path, default_music_path
    if w2v_path:
        return w2v_path
    if data_path is None:
        return None
    if w2v_type == 'music':
        return default_music_path(data_path)
    google = default_google_path(data_path)
    glove = os.path.join(data_path, 'glove-6b-50d.bin')
    return glove if not os.path.isfile(google) and os.path.isfile(glove) else google


@exit_on_user_error
def build_index(args):
    import torch

    from data_loader import SplitData
    from checkpoint import check_fits

    model, state, hparams, config = load_model(args.model_load_path)
    input_type = model.input_type
    w2v_type = args.w2v_type or config.get('w2v_type') or 'google'
    is_subset = args.is_subset if args.is_subset is not None else bool(config.get('is_subset', False))
    num_chunk, input_length = args.num_chunk, args.input_length
    data_path = args.data_path or config.get('data_path')
    if args.audio_dir is None and not data_path:
        raise UserError('pass --data_path (the dataset of the songs to index) or --audio_dir')
    index_path = args.index_path
    os.makedirs(index_path, exist_ok=True)

    if args.audio_dir is not None:
        if input_type != 'spec':
            raise UserError(f'--audio_dir needs an acoustic model (input_type spec); {args.model_load_path} is a '
                            f'{input_type!r} model, which needs item factors: index its --data_path instead')
        if args.force and os.path.isdir(os.path.join(index_path, MEL_DIR)):
            shutil.rmtree(os.path.join(index_path, MEL_DIR))
        data, audio_paths = audio_catalogue(args.audio_dir, index_path, args.num_workers or os.cpu_count() or 1)
        split = 'all'
        rows, track_ids = data.ids[split]
        tags, indptr, indices = np.array([], dtype=str), np.zeros(len(rows) + 1, np.int64), np.zeros(0, np.int32)
        tag_vectors_file = os.path.join(data_path, f'{w2v_type}_emb.pkl') if data_path else None
        audio_fingerprint = [f'{t}\t{os.path.getsize(p)}\t{os.stat(p).st_mtime_ns}'
                             for t, p in zip(track_ids, audio_paths)]
        source = {'audio_dir': os.path.abspath(args.audio_dir), 'tracks': text_sha1(audio_fingerprint)}
    else:
        splits = ('train', 'valid', 'test') if args.split == 'all' else (args.split,)
        data = SplitData(data_path, is_subset, w2v_type, input_type, splits)
        check_fits(args.model_load_path, state, input_type, w2v_type, data)
        split = args.split
        if split == 'all':  # the songs of every split, each once
            rows, track_ids, seen = [], [], set()
            for s in splits:
                for row, track_id in zip(*data.ids[s]):
                    if track_id not in seen:
                        seen.add(track_id)
                        rows.append(row)
                        track_ids.append(track_id)
            data.ids['all'] = (np.asarray(rows, dtype=np.int64), track_ids)
        rows, track_ids = data.ids[split]
        tags = data.tags
        indptr, indices = track_tags(data.binaries, rows)
        audio_paths = None
        tag_vectors_file = os.path.join(data_path, f'{w2v_type}_emb.pkl')
        source = {'data_path': os.path.abspath(data_path), 'is_subset': is_subset, 'split': split,
                  'tracks': text_sha1(track_ids)}

    checkpoint_sha1 = file_sha1(args.model_load_path)
    fingerprint = text_sha1([json.dumps(source, sort_keys=True), checkpoint_sha1, input_type, str(num_chunk),
                             str(input_length)])
    if args.index_type == 'ivf':  # before the embedding, not after it
        check_nlist(args.nlist, len(track_ids))
    meta_file = os.path.join(index_path, META_FILE)
    old_meta = read_json(meta_file)
    if old_meta is not None:  # written again last: until then the folder is no index a query would trust
        os.remove(meta_file)
    emb_file = os.path.join(index_path, EMBEDDINGS_FILE)
    emb_meta = read_json(os.path.join(index_path, EMBEDDINGS_META_FILE)) or {}
    reuse = not args.force and emb_meta.get('fingerprint') == fingerprint and os.path.isfile(emb_file)
    if reuse:
        embeddings = np.load(emb_file, mmap_mode='r')
        reuse = embeddings.shape[0] == len(track_ids)
    if reuse:
        print(f'reusing the {len(track_ids)} song embeddings of {emb_file} (same checkpoint and songs; '
              '--force re-embeds)', file=sys.stderr)
    else:
        for stale in (INDEX_FILE, EMBEDDINGS_FILE, EMBEDDINGS_META_FILE):  # nothing of an older build survives
            if os.path.isfile(os.path.join(index_path, stale)):
                os.remove(os.path.join(index_path, stale))
        embeddings = embed_songs(model, data, split, input_length, num_chunk, args.batch_size, args.num_workers,
                                 index_path, fingerprint, args.force)

    w2v_path = os.path.abspath(args.w2v_path) if args.w2v_path else None
    if w2v_path is None and reuse and old_meta and old_meta.get('w2v_type') == w2v_type:
        w2v_path = old_meta.get('w2v_path')  # a rebuild with another --index_type keeps the recorded vectors
    start = time.perf_counter()
    index = build_faiss_index(embeddings, args.index_type, args.nlist, args.nprobe, args.hnsw_m,
                              args.ef_construction, args.ef_search, progress=True)
    build_s = time.perf_counter() - start
    import faiss
    faiss_file = os.path.join(index_path, INDEX_FILE)
    atomic_write_bytes(faiss_file, faiss.serialize_index(index).tobytes())

    tracks = {'track_ids': np.asarray(track_ids, dtype=str), 'tag_indptr': indptr, 'tag_indices': indices,
              'tags': np.asarray(tags, dtype=str)}
    if audio_paths is not None:
        tracks['paths'] = np.asarray(audio_paths, dtype=str)
    atomic_write(os.path.join(index_path, TRACKS_FILE), lambda f: np.savez(f, **tracks))
    encoder = {k: v for k, v in state.items() if k.split('.')[0] in TAG_BRANCH}
    atomic_write(os.path.join(index_path, ENCODER_FILE), lambda f: torch.save(encoder, f))
    if tag_vectors_file and os.path.isfile(tag_vectors_file):
        shutil.copyfile(tag_vectors_file, os.path.join(index_path, TAG_VECTORS_FILE))
    else:
        print(f'warning: no tag word vectors at {tag_vectors_file}: queries need the full word vectors '
              '(query --w2v_path)', file=sys.stderr)
    ivf_nlist = faiss.extract_index_ivf(index).nlist if args.index_type == 'ivf' else None
    meta = {
        'format': FORMAT_VERSION, 'fingerprint': fingerprint, 'created': time.strftime('%Y-%m-%d %H:%M:%S'),
        'checkpoint': os.path.abspath(args.model_load_path), 'checkpoint_sha1': checkpoint_sha1,
        'input_type': input_type, 'hparams': hparams, 'word_dim': int(state['fc1.weight'].shape[1]),
        'w2v_type': w2v_type, 'w2v_path': w2v_path,
        'data_path': os.path.abspath(data_path) if data_path else None, 'source': source,
        'num_chunk': num_chunk, 'input_length': input_length, 'n_songs': len(track_ids),
        'index': {'type': args.index_type, 'nlist': ivf_nlist, 'nprobe': args.nprobe if ivf_nlist else None,
                  'hnsw_m': args.hnsw_m if args.index_type == 'hnsw' else None,
                  'ef_search': args.ef_search if args.index_type == 'hnsw' else None,
                  'build_seconds': round(build_s, 3)},
    }
    write_json(meta_file, meta)
    print(f'indexed {len(track_ids)} songs ({input_type} model, {args.index_type} index) -> {index_path}')
    return meta


# ---------------------------------------------------------------------------------------------- queries
def normalise_tag(text):
    return ' '.join(text.lower().replace('_', ' ').split())


class UnknownWord(UserError):
    pass


class QueryEncoder:
    """Text -> terms -> averaged word vector -> the model's tag branch -> unit 256-d query vector."""

    def __init__(self, index_path, meta, w2v_path=None, data_path=None):
        import torch

        from model import TripletModel
        self.word_dim = meta['word_dim']
        self.model = TripletModel(self.word_dim)
        self.model.load_state_dict(torch.load(os.path.join(index_path, ENCODER_FILE), map_location='cpu'))
        self.model.eval()
        self.tag_vectors = {}
        tag_file = os.path.join(index_path, TAG_VECTORS_FILE)
        if os.path.isfile(tag_file):
            with open(tag_file, 'rb') as f:
                self.tag_vectors = {normalise_tag(str(k)): np.asarray(v, dtype=np.float32).ravel()
                                    for k, v in pickle.load(f).items()}
        self.max_span = max([3] + [len(t.split()) for t in self.tag_vectors])
        self.w2v_path = resolve_w2v_path(meta['w2v_type'], data_path or meta.get('data_path'),
                                         w2v_path or meta.get('w2v_path'))
        self._full = None

    def full_vectors(self):
        """gensim KeyedVectors of the full vocabulary, loaded on first need (queries of tags never need it)."""
        if self._full is None and self.w2v_path and os.path.isfile(self.w2v_path):
            from preprocess_utils import load_keyed_vectors
            self._full = load_keyed_vectors(self.w2v_path, '--w2v_path')
        return self._full

    def lookup(self, words, full):
        """(term, vector) for a run of words: a tag, else a word or phrase ('smooth_jazz') of the full vectors."""
        tag = normalise_tag(' '.join(words))
        if tag in self.tag_vectors:
            return tag, self.tag_vectors[tag]
        if full is not None:
            from preprocess_utils import vocab_key
            text = ' '.join(words)
            spaced = text.replace('_', ' ')
            cases = (spaced, spaced.lower(), spaced.capitalize(), spaced.title(), spaced.upper())
            for form in dict.fromkeys(cases):  # as typed first; vocab_key tries 'smooth_jazz' for 'smooth jazz'
                key = vocab_key(form, full.key_to_index)
                if key is not None:
                    return key, np.asarray(full[key], dtype=np.float32)
        return None

    def terms(self, query, full):
        """Greedy longest match, left to right, inside each comma-separated part: (terms, unknown words)."""
        found, unknown = [], []
        for part in re.split(r'[,;]', query):
            words = part.split()
            i = 0
            while i < len(words):
                for j in range(min(len(words), i + self.max_span), i, -1):
                    hit = self.lookup(words[i:j], full)
                    if hit is not None:
                        found.append(hit)
                        i = j
                        break
                else:
                    unknown.append(words[i])
                    i += 1
        return found, unknown

    def suggestions(self, word, n=5):
        """Nearest known spellings: tags first, then the most frequent words of the full vectors."""
        target = word.lower()
        candidates = list(self.tag_vectors)
        full = self._full
        if full is not None:
            candidates += [w for w in full.index_to_key[:SUGGESTION_VOCAB] if abs(len(w) - len(target)) <= 3]
        by_lower = {}
        for c in candidates:  # one spelling per lower-case form, tags first
            by_lower.setdefault(c.lower(), c)
        return [by_lower[m] for m in difflib.get_close_matches(target, list(by_lower), n=n, cutoff=0.6)]

    def encode(self, query):
        """(unit query vector (256,), the terms used)."""
        import torch
        import torch.nn.functional as F
        if not query.strip():
            raise UserError('empty query; type a tag or some words')
        found, unknown = self.terms(query, None)
        if unknown:
            full = self.full_vectors()
            if full is not None:
                found, unknown = self.terms(query, full)
        if not found and not unknown:
            raise UserError(f'query {query!r} has no words; type a tag or some words')
        if unknown:
            word = unknown[0]
            close = self.suggestions(word)
            where = (f'neither one of the {len(self.tag_vectors)} tags nor in {self.w2v_path}' if self._full is not None
                     else f'not one of the {len(self.tag_vectors)} tags, and no full word vectors at {self.w2v_path} '
                          'for other words: pass --w2v_path')
            raise UnknownWord(f'unknown word {word!r} ({where}); nearest known words: '
                              + (', '.join(close) if close else '(none close)'))
        vectors = np.stack([v for _, v in found])
        if vectors.shape[1] != self.word_dim:
            raise UserError(f'the word vectors of {self.w2v_path} are {vectors.shape[1]}-d but the model expects '
                            f'{self.word_dim}-d ones; pass the --w2v_path of the vectors it was trained with')
        with torch.inference_mode():
            emb = self.model.word_to_embedding(torch.from_numpy(vectors.mean(axis=0, keepdims=True)))
            return F.normalize(emb.float(), dim=-1)[0].numpy(), [t for t, _ in found]


class Searcher:
    """A built index ready for queries: FAISS index, sidecar and query encoder (no song is re-embedded)."""

    def __init__(self, index_path, w2v_path=None, data_path=None, nprobe=None, ef_search=None):
        import faiss
        meta_file = os.path.join(index_path, META_FILE)
        self.meta = read_json(meta_file)
        if self.meta is None:
            raise UserError(f'no search index at {index_path} ({META_FILE} missing); build it with '
                            f'python search.py index --model_load_path CKPT --data_path DATA --index_path {index_path}')
        if self.meta.get('format') != FORMAT_VERSION:
            raise UserError(f'{meta_file} is of format {self.meta.get("format")}, this search.py reads '
                            f'{FORMAT_VERSION}; rebuild the index with python search.py index')
        try:
            self.index = faiss.read_index(os.path.join(index_path, INDEX_FILE))
        except RuntimeError as e:
            raise UserError(f'{os.path.join(index_path, INDEX_FILE)} is not a readable FAISS index '
                            f'({str(e).strip().splitlines()[-1]}); rebuild it with python search.py index')
        stored = self.meta['index']
        set_search_params(self.index, nprobe if nprobe is not None else stored.get('nprobe'),
                          ef_search if ef_search is not None else stored.get('ef_search'))
        with np.load(os.path.join(index_path, TRACKS_FILE), allow_pickle=False) as tracks:
            self.track_ids = tracks['track_ids']
            self.tag_indptr = tracks['tag_indptr']
            self.tag_indices = tracks['tag_indices']
            self.tags = tracks['tags']
            self.paths = tracks['paths'] if 'paths' in tracks.files else None
        if self.index.ntotal != len(self.track_ids):
            raise UserError(f'{index_path}: the FAISS index holds {self.index.ntotal} songs but {TRACKS_FILE} '
                            f'{len(self.track_ids)}; rebuild it with python search.py index')
        self.encoder = QueryEncoder(index_path, self.meta, w2v_path, data_path)

    def tags_of(self, i):
        return [str(t) for t in self.tags[self.tag_indices[self.tag_indptr[i]:self.tag_indptr[i + 1]]]]

    def search(self, query, k=10):
        if k < 1:
            raise UserError(f'--k must be at least 1, got {k}')
        vector, terms = self.encoder.encode(query)
        k = min(k, self.index.ntotal)
        scores, ids = self.index.search(vector[None].astype(np.float32), k)
        results = []
        for score, i in zip(scores[0], ids[0]):
            if i < 0:  # an approximate index may find fewer than k
                continue
            hit = {'rank': len(results) + 1, 'track_id': str(self.track_ids[i]), 'score': float(score),
                   'tags': self.tags_of(i)}
            if self.paths is not None:
                hit['path'] = str(self.paths[i])
            results.append(hit)
        return {'query': query, 'terms': terms, 'k': k, 'index_type': self.meta['index']['type'],
                'n_songs': int(self.index.ntotal), 'results': results}


def format_result(result):
    lines = [f'query: {result["query"]!r}  terms: {" + ".join(result["terms"])}  '
             f'({result["index_type"]} index of {result["n_songs"]} songs)',
             f'{"rank":>4}  {"score":>7}  {"track_id":<24}  tags']
    for hit in result['results']:
        lines.append(f'{hit["rank"]:>4}  {hit["score"]:>7.4f}  {hit["track_id"]:<24}  '
                     f'{", ".join(hit["tags"]) or hit.get("path", "-")}')
    return '\n'.join(lines)


def show(result, as_json):
    print(json.dumps(result) if as_json else format_result(result), flush=True)


@exit_on_user_error
def run_query(args):
    searcher = Searcher(args.index_path, args.w2v_path, args.data_path, args.nprobe, args.ef_search)
    if args.query is not None:
        show(searcher.search(args.query, args.k), args.json)
        return 0
    interactive = sys.stdin.isatty()
    if interactive and not args.json:
        print(f'{searcher.meta["n_songs"]} songs ({searcher.meta["index"]["type"]} index); type a tag or words, '
              'an empty line ends', file=sys.stderr)
    while True:
        try:
            if interactive:  # the prompt goes to stderr, so that --json output stays pure JSON
                print('query> ', end='', file=sys.stderr, flush=True)
            line = input() if interactive else sys.stdin.readline()
        except EOFError:
            break
        if not line.strip():  # EOF ('') or an empty line
            break
        try:
            show(searcher.search(line.strip(), args.k), args.json)
        except UserError as e:  # a misspelt word ends nothing: say so and read the next line
            print(f'error: {e}', file=sys.stderr, flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- CLI
def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    commands = parser.add_subparsers(dest='command', required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    index = commands.add_parser('index', help='embed the songs once and save the index', formatter_class=fmt)
    index.add_argument('--model_load_path', required=True, help='trained checkpoint (.ckpt), ours or the original\'s')
    index.add_argument('--data_path', default=None,
                       help='dataset (SPEC section 2 layout); default: the checkpoint\'s training data_path')
    index.add_argument('--split', default='all', choices=['all', 'train', 'valid', 'test'])
    index.add_argument('--audio_dir', default=None, help='index a folder of audio files instead (spec models)')
    index.add_argument('--index_path', default='search_index', help='folder the index is written to')
    index.add_argument('--index_type', default='flat', choices=['flat', 'ivf', 'hnsw'],
                       help='flat: exact; ivf / hnsw: approximate, for catalogues of millions')
    index.add_argument('--nlist', type=positive_int, default=None, help='IVF lists (default ~4*sqrt(n_songs))')
    index.add_argument('--nprobe', type=positive_int, default=32, help='IVF lists searched per query')
    index.add_argument('--hnsw_m', type=positive_int, default=32, help='HNSW links per node')
    index.add_argument('--ef_construction', type=positive_int, default=80, help='HNSW build breadth')
    index.add_argument('--ef_search', type=positive_int, default=64, help='HNSW search breadth')
    index.add_argument('--batch_size', type=positive_int, default=128,
                       help='chunks per forward pass (songs per batch = batch_size // num_chunk; cf models: '
                            'batch_size songs), as in main.py')
    index.add_argument('--num_chunk', type=positive_int, default=8, help='chunks averaged per song, as main.py TEST')
    index.add_argument('--input_length', type=positive_int, default=173, help='frames per chunk, as main.py TEST')
    index.add_argument('--w2v_type', default=None, choices=['google', 'music'], help='default: the checkpoint\'s')
    index.add_argument('--w2v_path', default=None, help='full word vectors recorded for queries (see query)')
    index.add_argument('--is_subset', type=str2bool, default=None, help='default: the checkpoint\'s')
    index.add_argument('--num_workers', type=non_negative_int, default=0, help='DataLoader workers (and mel processes)')
    index.add_argument('--force', action='store_true', help='re-embed even if the embeddings are up to date')

    query = commands.add_parser('query', help='search the index; interactive without --query', formatter_class=fmt)
    query.add_argument('--index_path', default='search_index')
    query.add_argument('--query', default=None, help='tag(s) or words; omitted: read queries from stdin')
    query.add_argument('--k', type=positive_int, default=10, help='tracks to return')
    query.add_argument('--json', action='store_true', help='print one JSON object per query')
    query.add_argument('--w2v_path', default=None,
                       help='full word vectors for words that are not tags (default for google: '
                            'DATA/GoogleNews-vectors-negative300.bin, or DATA/glove-6b-50d.bin; for music: '
                            'DATA/music_w2v/model_semeval_trigrams_300.model)')
    query.add_argument('--data_path', default=None, help='DATA above (default: the index\'s data_path)')
    query.add_argument('--nprobe', type=positive_int, default=None, help='IVF lists searched (default: the index\'s)')
    query.add_argument('--ef_search', type=positive_int, default=None, help='HNSW breadth (default: the index\'s)')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == 'index':
        build_index(args)
        return 0
    return run_query(args)


if __name__ == '__main__':
    sys.exit(main())
