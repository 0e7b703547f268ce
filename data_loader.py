"""Datasets and the LightningDataModule for the released "reproducible splits" layout (README: data layout).

    from data_loader import TagRetrievalDataModule
    dm = TagRetrievalDataModule(data_path='data/demo', input_type='spec', is_balanced=True)
    dm.setup('fit'); batch = next(iter(dm.train_dataloader()))

Training samples are (tag, positive song) pairs: random sampling draws a training song, then one of its tags;
balanced sampling takes tag `index % n_tags`, then draws a training song that carries it. One epoch is `epoch_size`
samples (10,000 in the original), read in a shuffled order (the original's `shuffle=True`), so a batch holds a random
multiset of tags. The order comes from (seed, epoch) and every draw of sample i from a generator seeded by
(seed, epoch, i), so a run is the same with any number of workers and resumes exactly. Evaluation embeds each song from `num_chunk`
evenly spaced chunks. Spectrogram crops are read from memory-mapped .npy files.
"""
import os

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from errors import UserError
from data_checks import (check_tag_to_ix, read_utf8_lines, real_matrix, refuse_bad_tag_names, refuse_meaningless,
                         refuse_non_finite, text_vector)
from file_io import load_array, spec_path
from safe_pickle import load_pickle
from spec_layout import FRAMES_DIR, FrameMajorSpec, check_frames_copy, frames_file, read_npy_header

N_MELS = 128


def split_name(data_path, prefix, name):
    return os.path.join(data_path, prefix + name)


def load_word_vectors(path, tags):
    """(len(tags), dim) float32 rows in `tags` order from a pickled dict tag -> vector (numpy array or list)."""
    fix = 'rebuild it with step2_word_embedding.py'
    vectors = load_pickle(path, 'tag word vectors', fix)
    if not isinstance(vectors, dict):
        raise UserError(f'{path} holds a {type(vectors).__name__}, expected a dict tag -> vector; {fix}')
    missing = [t for t in tags if t not in vectors]
    if missing:
        raise UserError(f'{path} has no vector for {len(missing)} tag(s): {", ".join(missing[:10])}; '
                        'rerun step2_word_embedding.py for these tags.npy')
    rows = []
    for tag in tags:
        try:
            row = np.asarray(vectors[tag])
        except ValueError:  # a ragged nested list
            row = np.asarray(None)
        if row.dtype.kind not in 'biuf' or row.ndim < 1 or row.size == 0:
            raise UserError(f'{path}: the vector of tag {tag!r} is {type(vectors[tag]).__name__} '
                            f'{str(vectors[tag])[:40]!r}, not an array of numbers; {fix}')
        rows.append(row.astype(np.float32).ravel())
    sizes = {len(row) for row in rows}
    if len(sizes) > 1:
        first = {}
        for tag, row in zip(tags, rows):
            first.setdefault(len(row), tag)
        raise UserError(f'{path} mixes vector lengths ' + ', '.join(f'{n} (tag {t!r})' for n, t in sorted(
                        first.items())) + f'; every tag needs a vector of one length: {fix}')
    return np.stack(rows)


def parse_ids(ids, path, n_songs):
    """'IX//TRACK_ID' strings -> (row indices into binaries.npy, track ids)."""
    rows, track_ids = [], []
    for entry in ids.tolist():
        ix, sep, track_id = str(entry).partition('//')
        if not sep or not ix.isdigit() or not track_id:
            raise UserError(f'{path}: entry {entry!r} is not of the form "IX//TRACK_ID"; rebuild the split with '
                            'step1_data_split.py')
        rows.append(int(ix))
        track_ids.append(track_id)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) and rows.max() >= n_songs:
        raise UserError(f'{path}: row {rows.max()} is out of range for binaries.npy with {n_songs} rows; the split '
                        'and binaries.npy come from different runs of step1_data_split.py')
    return rows, track_ids


def standardise_columns(array):
    """Each column to zero mean and unit variance over every row (all songs of the file, labels not involved: TRAIN
    and TEST scale alike); a constant column becomes zeros."""
    std = array.std(axis=0)
    return ((array - array.mean(axis=0)) / np.where(std > 0, std, 1)).astype(np.float32)


class SplitData:
    """Everything of one data folder the model needs: tags, labels, word vectors, ids, CF factors, categories.

    Checks the files up front so that a bad input stops before training with one line naming it.
    """

    def __init__(self, data_path, is_subset=False, w2v_type='google', input_type='spec', splits=('train', 'valid'),
                 cf_standardise=False):
        self.data_path = data_path
        self.prefix = 'sub_' if is_subset else ''
        self.input_type = input_type
        fix = 'check --data_path and --is_subset, or build it with step1_data_split.py'
        path = lambda name: split_name(data_path, self.prefix, name)  # noqa: E731

        self.tags = text_vector(load_array(path('tags.npy'), 'tag vocabulary', fix), path('tags.npy'), 'the tags', fix)
        self.binaries = real_matrix(load_array(path('binaries.npy'), 'tag labels', fix), path('binaries.npy'),
                                    'the labels', fix)
        if self.binaries.shape[1] != len(self.tags):
            raise UserError(f"{path('binaries.npy')} has shape {self.binaries.shape}, expected (n_songs, "
                            f"{len(self.tags)}) to match {path('tags.npy')}; rebuild both with step1_data_split.py")
        refuse_bad_tag_names(self.tags, path('tags.npy'))
        self.tag_to_index = {t: i for i, t in enumerate(self.tags)}

        self.ids = {}
        for split in splits:
            file = path(f'{split}_ids.npy')
            entries = text_vector(load_array(file, 'split file', fix), file, 'a split', fix)
            self.ids[split] = parse_ids(entries, file, len(self.binaries))

        # word vectors are shared by every subset of one release and take no prefix, as the original's training
        # loader read them (its evaluation read sub_*_emb.pkl)
        self.w2v_file = w2v_file = os.path.join(data_path, f'{w2v_type}_emb.pkl')
        # rows in tags.npy order; the original took the dict's order, the same for the files its step 2 wrote
        self.tag_vectors = load_word_vectors(w2v_file, self.tags.tolist())
        self.word_dim = self.tag_vectors.shape[1]

        self.cf = self.read_item_factors(path('ix_to_cf.npy'), cf_standardise) if input_type in ('cf', 'hybrid') \
            else None
        self.cf_dim = None if self.cf is None else self.cf.shape[1]
        self.categories = self.read_categories(path('tag_categories.tsv'))

        refuse_meaningless(self, splits)
        refuse_non_finite(self, splits)
        check_tag_to_ix(self, path('train_tag_to_ix.pkl'))
        self.frames = os.path.isdir(os.path.join(data_path, FRAMES_DIR)) and input_type in ('spec', 'hybrid')
        if input_type in ('spec', 'hybrid'):
            for split in splits:
                self.check_spectrograms(self.ids[split][1])

    def read_item_factors(self, cf_file, cf_standardise):
        """ix_to_cf.npy: one row of item factors per row of binaries.npy."""
        cf_fix = 'build it with step3_taste_profile.py'
        cf = real_matrix(load_array(cf_file, 'item factors', cf_fix), cf_file, 'the item factors', cf_fix)
        if len(cf) < len(self.binaries):
            raise UserError(f'{cf_file} has shape {cf.shape}, expected ({len(self.binaries)}, dim): one '
                            'row per row of binaries.npy; rebuild it with step3_taste_profile.py')
        # not the original's (it concatenates the raw factors): zero mean, unit variance
        return standardise_columns(cf) if cf_standardise else cf

    def read_categories(self, category_file):
        """Each tag's category from tag_categories.tsv ('unknown' when unlisted); None without the file."""
        if not os.path.isfile(category_file):
            return None
        lines = read_utf8_lines(category_file, 'It maps tags to categories: tag<TAB>category lines.')
        found = dict(line.split('\t')[:2] for line in lines if '\t' in line)
        return np.array([found.get(t, 'unknown') for t in self.tags])

    def check_spectrograms(self, track_ids):
        """Every song of the split has a (128, T) spectrogram: checked from the .npy headers alone."""
        for track_id in track_ids:
            file = spec_path(self.data_path, track_id)
            if not os.path.isfile(file):
                raise UserError(f'no spectrogram for track {track_id}: {file} is missing; run '
                                'step0_mel_spectrogram.py on its audio or remove it from the split (step1)')
            shape, dtype = read_npy_header(file)
            if len(shape) != 2 or shape[0] != N_MELS or shape[1] == 0 or dtype.kind not in 'fiu':
                raise UserError(f'{file} has shape {shape} and dtype {dtype}, expected ({N_MELS}, n_frames >= 1) of '
                                'real numbers (float32 or float16); recompute it with step0_mel_spectrogram.py')
            if self.frames:
                check_frames_copy(self.data_path, file, shape)

    def spec_file(self, track_id):
        return spec_path(self.data_path, track_id)

    def open_spec(self, track_id):
        """The track's spectrogram, read from its frame-major copy when spec_frames/ exists (spec_frames.py)."""
        if self.frames:
            return FrameMajorSpec(frames_file(self.data_path, self.spec_file(track_id)))
        return open_spec(self.spec_file(track_id))


def crop(spec, start, length):
    """`length` frames from `start` as float32; short spectrograms are zero-padded at the end, as the original did.
    On a memory-mapped array only the bytes of those frames are read."""
    out = np.array(spec[:, start:start + length], dtype=np.float32)
    if out.shape[1] < length:
        out = np.pad(out, ((0, 0), (0, length - out.shape[1])))
    return out


def open_spec(file):
    return np.load(file, mmap_mode='r')


def chunk_starts(n_frames, length, num_chunk):
    """The original's evenly spaced evaluation chunks: hop = (T - length) // num_chunk."""
    hop = max(n_frames - length, 0) // num_chunk
    return [i * hop for i in range(num_chunk)]


_EMPTY = np.zeros(0, dtype=np.float32)


def train_crop_start(rng, n_frames, length):
    """The original's floor(U * (T - L)), U uniform in [0, 1): a start in [0, T - L - 1]; 0 when T <= L."""
    return int(np.floor(rng.random() * max(n_frames - length, 0)))


ORDER_STREAM = 1  # spawn key of the epoch's order, so that it never shares a stream with a sample's draws


def epoch_order(seed, epoch, epoch_size):
    """The epoch's sample order: a permutation from (seed, epoch) alone, as the original's shuffled loader."""
    sequence = np.random.SeedSequence((seed, epoch), spawn_key=(ORDER_STREAM,))
    return np.random.default_rng(sequence).permutation(epoch_size)


class TrainDataset(Dataset):
    """epoch_size (tag, positive song) samples in a shuffled order, drawn afresh each epoch from (seed, epoch)."""

    def __init__(self, data, is_balanced, input_length, epoch_size=10000, seed=0, epoch=0, anchor_tags=None):
        self.data = data
        self.is_balanced = is_balanced
        self.input_length = input_length
        self.epoch_size = epoch_size
        self.seed = seed
        self.epoch = epoch
        self.order = epoch_order(seed, epoch, epoch_size)
        rows, track_ids = data.ids['train']
        self.rows, self.track_ids = rows, np.asarray(track_ids)
        n_tags = len(data.tags)
        self.anchor_tags = np.arange(n_tags) if anchor_tags is None else np.asarray(anchor_tags)
        anchor_mask = np.zeros(n_tags, dtype=bool)
        anchor_mask[self.anchor_tags] = True
        labels = data.binaries[rows] > 0
        # songs (positions in the train split) carrying each anchor tag, from binaries.npy rather than
        # train_tag_to_ix.pkl: both come from step 1, and one source of truth cannot disagree with itself
        self.songs_of_tag = {t: np.flatnonzero(labels[:, t]) for t in self.anchor_tags}
        empty = [data.tags[t] for t, songs in self.songs_of_tag.items() if len(songs) == 0]
        if empty:
            raise UserError(f'no training song carries tag(s) {", ".join(empty[:10])}; rebuild the split with a '
                            'higher THRESHOLD in step1_data_split.py')
        self.anchor_labels = labels & anchor_mask
        self.songs_with_tags = np.flatnonzero(self.anchor_labels.any(axis=1))

    def __len__(self):
        return self.epoch_size

    def __getitem__(self, index):
        if not 0 <= index < self.epoch_size:
            raise IndexError(index)
        index = int(self.order[index])
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.is_balanced:
            tag = self.anchor_tags[index % len(self.anchor_tags)]
            song = rng.choice(self.songs_of_tag[tag])
        else:
            song = rng.choice(self.songs_with_tags)
            tag = rng.choice(np.flatnonzero(self.anchor_labels[song]))
        row, track_id = self.rows[song], self.track_ids[song]
        item = {'sample': np.int64(index), 'tag': np.int64(tag), 'tag_vector': self.data.tag_vectors[tag],
                'labels': self.data.binaries[row], 'spec': _EMPTY, 'cf': _EMPTY}
        if self.data.input_type in ('spec', 'hybrid'):
            spec = self.data.open_spec(track_id)
            item['spec'] = crop(spec, train_crop_start(rng, spec.shape[1], self.input_length), self.input_length)
        if self.data.cf is not None:
            item['cf'] = self.data.cf[row]
        return item


class EvalDataset(Dataset):
    """Songs of the valid or test split: num_chunk chunks each, their labels and their position in the split."""

    def __init__(self, data, split, input_length, num_chunk):
        self.data = data
        self.rows, self.track_ids = data.ids[split]
        self.input_length = input_length
        self.num_chunk = num_chunk

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        row, track_id = self.rows[index], self.track_ids[index]
        item = {'index': np.int64(index), 'labels': self.data.binaries[row], 'spec': _EMPTY, 'cf': _EMPTY}
        if self.data.input_type in ('spec', 'hybrid'):
            spec = self.data.open_spec(track_id)
            item['spec'] = np.stack([crop(spec, s, self.input_length)
                                     for s in chunk_starts(spec.shape[1], self.input_length, self.num_chunk)])
        if self.data.cf is not None:
            item['cf'] = self.data.cf[row]
        return item


def choose_zeroshot_tags(spec, tags, seed, fallback=()):
    """--zeroshot_tags FILE (one tag a line, # comments) or COUNT (drawn with the seed) -> sorted tag list.
    None keeps `fallback` (TEST: the list the checkpoint was trained with). Every tag must be in `tags`."""
    if spec is None:
        chosen = list(fallback)
    elif os.path.isfile(spec):
        lines = read_utf8_lines(spec, 'It lists the zero-shot tags (--zeroshot_tags).')
        chosen = [line.strip().lower() for line in lines if line.strip() and not line.startswith('#')]
    elif spec.isdigit():
        count = int(spec)
        if not 0 < count < len(tags):
            raise UserError(f'--zeroshot_tags {spec}: choose between 1 and {len(tags) - 1} tags')
        chosen = np.random.default_rng(seed).choice(tags, size=count, replace=False).tolist()
    else:
        raise UserError(f'--zeroshot_tags {spec!r} is neither a file nor a count; pass a file of tags or a number')
    unknown = sorted(set(chosen) - set(tags))
    if unknown:
        raise UserError(f'--zeroshot_tags {spec}: tag(s) {", ".join(unknown[:10])} are not in tags.npy; list only '
                        'tags of the vocabulary')
    return sorted(chosen)


class TagRetrievalDataModule(pl.LightningDataModule):
    """Owns the data and the anchor sampling; the LightningModule owns the negatives."""

    def __init__(self, data_path='.', input_type='spec', w2v_type='google', is_subset=False, is_balanced=False,
                 batch_size=128, num_workers=0, input_length=173, num_chunk=8, epoch_size=10000, seed=0,
                 unseen_tags=(), cf_standardise=False):
        super().__init__()
        self.data_path = data_path
        self.input_type = input_type
        self.w2v_type = w2v_type
        self.is_subset = is_subset
        self.is_balanced = is_balanced
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.input_length = input_length
        self.num_chunk = num_chunk
        self.epoch_size = epoch_size
        self.seed = seed
        self.unseen_tags = list(unseen_tags)
        self.cf_standardise = cf_standardise
        self.data = None

    def load(self, splits):
        if self.data is None or any(s not in self.data.ids for s in splits):
            self.data = SplitData(self.data_path, self.is_subset, self.w2v_type, self.input_type, splits,
                                  self.cf_standardise)
            unknown = [t for t in self.unseen_tags if t not in self.data.tag_to_index]
            if unknown:
                raise UserError(f'zero-shot tag(s) {", ".join(unknown[:10])} are not in tags.npy of '
                                f'{self.data_path}; list only tags of the vocabulary')
        return self.data

    def setup(self, stage=None):
        self.load(('test',) if stage == 'test' else ('train', 'valid'))

    @property
    def tags(self):
        return self.data.tags

    @property
    def tag_vectors(self):
        return torch.from_numpy(self.data.tag_vectors)

    @property
    def seen_mask(self):
        """True for tags used as training anchors; the zero-shot tags are False."""
        mask = np.ones(len(self.data.tags), dtype=bool)
        mask[[self.data.tag_to_index[t] for t in self.unseen_tags]] = False
        return mask

    def _loader(self, dataset, batch_size, shuffle, sampler=None, drop_last=False):
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          sampler=sampler, pin_memory=torch.cuda.is_available(), persistent_workers=False,
                          drop_last=drop_last)

    def train_dataloader(self):
        # rebuilt each epoch (Trainer reload_dataloaders_every_n_epochs=1) so the draws depend on the epoch; the
        # dataset shuffles its own order from (seed, epoch): a shuffling sampler would draw from the global seed
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        dataset = TrainDataset(self.data, self.is_balanced, self.input_length, self.epoch_size, self.seed, epoch,
                               anchor_tags=np.flatnonzero(self.seen_mask))
        sampler = self._rank_sampler(dataset)
        # a last batch of one sample is dropped: BatchNorm cannot normalise a batch of one (it raises)
        samples = len(sampler) if sampler is not None else len(dataset)
        return self._loader(dataset, self.batch_size, shuffle=False, sampler=sampler,
                            drop_last=samples % self.batch_size == 1)

    def _rank_sampler(self, dataset):
        """Under DDP, rank r of W takes positions r, r + W, r + 2W... of the epoch's order: distinct samples on
        every rank (each drawn from its own (seed, epoch, sample) generator), the same on every run, and the W ranks
        together read the epoch's epoch_size samples, the tail that does not divide by W left out (Lightning's own
        sampler would pad it with repeats: two ranks on one draw). One process: no sampler, as before."""
        trainer = self.trainer
        if trainer is None or trainer.world_size <= 1:
            return None
        return DistributedSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False,
                                  drop_last=True)

    def _eval_loader(self, split):
        dataset = EvalDataset(self.data, split, self.input_length, self.num_chunk)
        return self._loader(dataset, max(1, self.batch_size // self.num_chunk), shuffle=False)

    def val_dataloader(self):
        return self._eval_loader('valid')

    def test_dataloader(self):
        return self._eval_loader('test')
