"""Step 2: word vectors of the tag vocabulary (google_emb.pkl, music_emb.pkl) + the paper's Tab3.

    python -u step2_word_embedding.py run DATA_PATH
        [--google_path DATA_PATH/GoogleNews-vectors-negative300.bin] [--download]
        [--music_path DATA_PATH/music_w2v/model_semeval_trigrams_300.model]
        [--tags_files DATA_PATH/tags.npy [DATA_PATH/sub_tags.npy ...]]
        [--nn_tags jungle house country metal chill brazilian "smooth jazz" "deep house"]

Reads the tags of DATA_PATH/tags.npy and, when it exists, DATA_PATH/sub_tags.npy (the training code
loads the unprefixed pickles for both the full and the subset split, so they hold the union), then:
  google_emb.pkl  dict tag -> float32 vector, from Google News vectors in word2vec binary format
                  (--download: fetch 'word2vec-google-news-300' with gensim's downloader instead,
                  only then and failing fast without network);
  music_emb.pkl   dict tag -> float32 vector, from the domain-specific gensim Word2Vec model
                  (Word2Vec.load; a KeyedVectors file or a word2vec .bin works too).
A tag is looked up as written, then with '_' joining its words ('smooth jazz' -> 'smooth_jazz'), the
way word2vec stores phrases. The vector size is whatever the files hold (300 for the released ones).
Tags missing from a vocabulary stop the step with one error listing them (exit 2), where the original
crashed: step 1 keeps, as the original, every tag with a Google vector; its --vocab both keeps only tags
that have both. The model files are gensim pickles: use only files from a trusted source.
Also prints and writes DATA_PATH/nearest_neighbours.md: the 10 nearest words of --nn_tags in each
embedding side by side (the paper's Tab3), and DATA_PATH/step2_report.txt/.json.
"""
import os
import socket
import sys

import numpy as np

from errors import exit_on_user_error
from errors import UserError
from preprocess_utils import (Report, add_vector_path_arguments, atomic_pickle, atomic_write_bytes,
                              default_google_path, default_music_path, load_array, load_keyed_vectors,
                              make_cli, vocab_key)

GENSIM_GOOGLE_NAME = 'word2vec-google-news-300'
TAB3_TAGS = ['jungle', 'house', 'country', 'metal', 'chill', 'brazilian', 'smooth jazz', 'deep house']


def read_tags(paths):
    tags = {}  # a dict keeps first-seen order and drops the tags that several files share
    for path in paths:
        array = load_array(path, 'tag array', 'run step1_data_split.py first, or pass --tags_files')
        tags.update(dict.fromkeys(str(tag) for tag in array))
    return list(tags)


def download_google_vectors():
    """gensim's downloader, used only with --download; fails within seconds without network."""
    import gensim.downloader as api

    if not os.path.isdir(os.path.join(api.BASE_DIR, GENSIM_GOOGLE_NAME)):
        try:
            socket.create_connection(('github.com', 443), timeout=5).close()
        except OSError as error:
            raise UserError(f'--download needs the internet and github.com is unreachable ({error}); '
                'download GoogleNews-vectors-negative300.bin elsewhere and pass --google_path')
    try:
        return api.load(GENSIM_GOOGLE_NAME)
    except Exception as error:
        raise UserError(f'gensim could not download {GENSIM_GOOGLE_NAME} ({error}); pass a local file with --google_path')


def tag_vectors(tags, vectors):
    """(dict tag -> float32 vector, tags missing from the vocabulary)."""
    found, missing = {}, []
    for tag in tags:
        key = vocab_key(tag, vectors.key_to_index)
        if key is None:
            missing.append(tag)
        else:
            found[tag] = np.asarray(vectors[key], dtype=np.float32)
    return found, missing


def nearest_neighbours_table(embeddings, nn_tags, topn=10):
    """Markdown: one row per tag present in some embedding, its `topn` nearest words per embedding."""
    names = list(embeddings)
    lines = ['| tag | ' + ' | '.join(names) + ' |', '|---' * (len(names) + 1) + '|']
    for tag in nn_tags:
        cells = []
        for vectors in embeddings.values():
            key = vocab_key(tag, vectors.key_to_index)
            if key is None:
                cells.append('(not in vocabulary)')
            else:
                cells.append(', '.join(word.replace('_', ' ') for word, _ in vectors.most_similar(key, topn=topn)))
        if any(cell != '(not in vocabulary)' for cell in cells):
            lines.append(f'| {tag} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def run(data_path, google_path=None, music_path=None, download=False, tags_files=None, nn_tags=None):
    report = Report('step2')
    if tags_files is None:
        tags_files = [os.path.join(data_path, name) for name in ('tags.npy', 'sub_tags.npy')
                      if name == 'tags.npy' or os.path.isfile(os.path.join(data_path, name))]
    tags = read_tags(tags_files)
    report.log(f'tags: {len(tags)} from {", ".join(tags_files)}', n_tags=len(tags), tags_files=tags_files)

    google_path = google_path or default_google_path(data_path)
    if os.path.isfile(google_path):
        google = load_keyed_vectors(google_path, '--google_path')
    elif download:
        google = download_google_vectors()
    else:
        raise UserError(f'Google News vectors not found at {google_path} (pass --google_path, or --download '
            'to fetch them with gensim, which needs the internet)')
    music = load_keyed_vectors(music_path or default_music_path(data_path), '--music_path')
    embeddings = {'google': google, 'music': music}

    tables, missing = {}, {}
    for name, vectors in embeddings.items():
        tables[name], missing[name] = tag_vectors(tags, vectors)
        report.log(f'{name}: {vectors.vector_size}-d vectors, {len(vectors.key_to_index)} words; '
                   f'{len(tables[name])} tags found, {len(missing[name])} missing',
                   **{f'{name}_dim': vectors.vector_size, f'{name}_missing': missing[name]})
    if any(missing.values()):
        raise UserError('tags without a word vector: ' + '; '.join(f'{name}: {", ".join(tags)}'
                                                       for name, tags in missing.items() if tags)
            + ' (rerun step1_data_split.py with --vocab both, which keeps only tags that have both vectors)')

    for name, table in tables.items():
        atomic_pickle(os.path.join(data_path, f'{name}_emb.pkl'), table)
    report.log(f'wrote google_emb.pkl and music_emb.pkl in {data_path}')

    table = nearest_neighbours_table(embeddings, nn_tags or TAB3_TAGS)
    atomic_write_bytes(os.path.join(data_path, 'nearest_neighbours.md'),
                       ('# 10 nearest words per embedding (cf. the paper\'s Tab3)\n\n' + table).encode())
    print(table)
    report.log(f'wrote nearest_neighbours.md in {data_path}', nearest_neighbours=table)
    report.save(data_path)
    return 0


@exit_on_user_error
def main(argv=None):
    parser, run_parser = make_cli(__doc__)
    run_parser.add_argument('data_path', help='folder with tags.npy (from step 1) and the word vectors')
    add_vector_path_arguments(run_parser)
    run_parser.add_argument('--download', action='store_true',
                            help=f"fetch '{GENSIM_GOOGLE_NAME}' with gensim.downloader if --google_path is absent")
    run_parser.add_argument('--tags_files', nargs='+', help='tag arrays to cover (default tags.npy [+ sub_tags.npy])')
    run_parser.add_argument('--nn_tags', nargs='+', default=TAB3_TAGS, help='tags of the nearest-neighbour table')
    args = parser.parse_args(argv)
    return run(args.data_path, google_path=args.google_path, music_path=args.music_path,
               download=args.download, tags_files=args.tags_files, nn_tags=args.nn_tags)


if __name__ == '__main__':
    sys.exit(main())
