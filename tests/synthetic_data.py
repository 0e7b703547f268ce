"""A small dataset written in the exact layout of the released splits (README: data layout), with learnable signal:
each tag has its own mel band pattern and CF direction, and a song's spectrogram and item factor mix those of
its tags with noise."""
import os
import pickle

import numpy as np

TRACK_CHARS = np.array(list('ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'))


def track_id(rng):
    return 'TR' + ''.join(rng.choice(TRACK_CHARS, 16))


def write_dataset(root, n_songs=96, n_tags=6, word_dim=12, cf_dim=10, n_frames=260, seed=0, prefix='',
                  categories=('genre', 'mood', 'instrument'), spectrograms=True):
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    tags = np.array(sorted(f'tag{i:02d}' for i in range(n_tags)))
    binaries = (rng.random((n_songs, n_tags)) < 0.3).astype(np.float32)
    binaries[np.arange(n_songs), rng.integers(0, n_tags, n_songs)] = 1  # every song has a tag
    ids = [track_id(rng) for _ in range(n_songs)]
    entries = np.array([f'{i}//{t}' for i, t in enumerate(ids)])
    order = rng.permutation(n_songs)
    n_train, n_valid = int(0.6 * n_songs), int(0.2 * n_songs)
    splits = {'train': entries[order[:n_train]], 'valid': entries[order[n_train:n_train + n_valid]],
              'test': entries[order[n_train + n_valid:]]}
    for name, split in splits.items():
        np.save(os.path.join(root, f'{prefix}{name}_ids.npy'), split)
    np.save(os.path.join(root, f'{prefix}binaries.npy'), binaries)
    np.save(os.path.join(root, f'{prefix}tags.npy'), tags)
    train_rows = [int(e.split('//')[0]) for e in splits['train']]
    tag_to_ix = {t: [entries[r] for r in train_rows if binaries[r, j]] for j, t in enumerate(tags)}
    with open(os.path.join(root, f'{prefix}train_tag_to_ix.pkl'), 'wb') as f:
        pickle.dump(tag_to_ix, f)
    with open(os.path.join(root, f'{prefix}tag_categories.tsv'), 'w') as f:
        f.writelines(f'{t}\t{categories[j % len(categories)]}\n' for j, t in enumerate(tags))
    for w2v in ('google', 'music'):
        vectors = {t: rng.standard_normal(word_dim).astype(np.float32) for t in tags}
        with open(os.path.join(root, f'{w2v}_emb.pkl'), 'wb') as f:
            pickle.dump(vectors, f)
    tag_cf = rng.standard_normal((n_tags, cf_dim))
    cf = binaries @ tag_cf + 0.3 * rng.standard_normal((n_songs, cf_dim))
    np.save(os.path.join(root, f'{prefix}ix_to_cf.npy'), cf.astype(np.float32))
    bands = rng.integers(0, 120, n_tags)
    for i, tid in enumerate(ids if spectrograms else []):
        length = n_frames if i % 7 else 120  # some spectrograms shorter than a chunk: zero-padded
        spec = rng.standard_normal((128, length)).astype(np.float32) * 0.5
        for j in np.flatnonzero(binaries[i]):
            spec[bands[j]:bands[j] + 8] += 3.0
        folder = os.path.join(root, 'spec', tid[2], tid[3], tid[4])
        os.makedirs(folder, exist_ok=True)
        np.save(os.path.join(folder, tid + '.npy'), spec)
    return {'tags': tags, 'binaries': binaries, 'ids': ids, 'splits': splits}


class CreatesFile:
    """Unpickling this calls open(marker, "w") (pickled as io.open), a stand-in for any code a crafted pickle could run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), 'w')


def write_code_running_pickle(path, marker, keys=('x',)):
    """A pickled dict whose values, once unpickled by plain pickle.load, have created the file `marker`."""
    with open(path, 'wb') as f:
        pickle.dump({key: CreatesFile(marker) for key in keys}, f)
