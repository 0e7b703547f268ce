"""Step 2: word vectors of the tag vocabulary (google_emb.pkl, music_emb.pkl) + the paper's Tab3.

    python -u step2_word_embedding.py run DATA_PATH
        [--google_path DATA_PATH/GoogleNews-vectors-negative300.bin] [--download]
        [--music_path DATA_PATH/music_w2v/model_semeval_trigrams_300.model]
        [--tags_files DATA_PATH/tags.npy [DATA_PATH/sub_tags.npy ...]] [--tag_words DATA_PATH/tag_words.tsv]
        [--nn_tags jungle house country metal chill brazilian "smooth jazz" "deep house"]

Reads the tags of DATA_PATH/tags.npy and, when it exists, DATA_PATH/sub_tags.npy (the training code
loads the unprefixed pickles for both the full and the subset split, so they hold the union), then:
  google_emb.pkl  dict tag -> float32 vector, from Google News vectors in word2vec binary format
                  (--download: fetch 'word2vec-google-news-300' with gensim's downloader instead,
                  only then and failing fast without network);
  music_emb.pkl   dict tag -> float32 vector, from the domain-specific gensim Word2Vec model
                  (Word2Vec.load; a KeyedVectors file or a word2vec .bin works too).
One set of vectors is enough: a set whose file is neither given nor at its default path is skipped with a
note (main.py --w2v_type then needs the one written). A tag is looked up as written, then with '_' joining
its words ('smooth jazz' -> 'smooth_jazz'), the way word2vec stores phrases. With a tag-to-words table
(DATA_PATH/tag_words.tsv, written by import_dataset.py, or --tag_words: "tag<TAB>space-separated words"
lines), a tag the vectors lack takes the mean vector of its words that they have ('easylistening' ->
easy listening); the report lists the words each tag took, and a tag none of whose words is known stops
the step naming the table to edit. The vector size is whatever the files hold (300 for the released ones).
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

from dataset_import import TAG_WORDS, read_tag_table
from errors import exit_on_user_error
from errors import UserError
from file_io import atomic_pickle, atomic_write_bytes, load_array, require_file
from steps import Report, make_cli
from word_vectors import (add_vector_path_arguments, default_google_path, default_music_path, load_keyed_vectors,
                          vocab_key)

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


def tag_vectors(tags, vectors, tag_words=None):
    """(dict tag -> float32 vector, tags missing from the vocabulary, dict tag -> words used for it). With a
    tag-to-words table, a tag without a vector of its own is the mean of its known words' vectors."""
    found, missing, composed = {}, [], {}
    for tag in tags:
        key = vocab_key(tag, vectors.key_to_index)
        if key is not None:
            found[tag] = np.asarray(vectors[key], dtype=np.float32)
            continue
        words = [w for w in (tag_words.get(tag) or tag.split()) if w in vectors.key_to_index] \
            if tag_words is not None else []
        if words:
            found[tag] = np.mean([vectors[w] for w in words], axis=0).astype(np.float32)
            composed[tag] = words
        else:
            missing.append(tag)
    return found, missing, composed


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


def load_embeddings(data_path, google_path, music_path, download, report):
    """dict name -> KeyedVectors of the sets that are there: one is enough (a user often has only one)."""
    embeddings, skipped = {}, []
    google_file = google_path or default_google_path(data_path)
    if os.path.isfile(google_file):
        embeddings['google'] = load_keyed_vectors(google_file, '--google_path')
    elif download:
        embeddings['google'] = download_google_vectors()
    elif google_path:
        raise UserError(f'Google News vectors not found at {google_file} (pass --google_path, or --download '
            'to fetch them with gensim, which needs the internet)')
    else:
        skipped.append(('google', google_file, '--google_path'))
    music_file = music_path or default_music_path(data_path)
    if music_path or os.path.isfile(music_file):
        embeddings['music'] = load_keyed_vectors(music_file, '--music_path')
    else:
        skipped.append(('music', music_file, '--music_path'))
    if not embeddings:
        raise UserError(f'no word vectors: neither {google_file} nor {music_file} exists (pass --google_path '
            'and/or --music_path, or --download to fetch the Google News vectors, which needs the internet)')
    for name, file, flag in skipped:
        report.log(f'note: no {name} vectors ({file} not found), so no {name}_emb.pkl: --w2v_type {name} '
                   f'would need {flag}', **{f'{name}_skipped': file})
    return embeddings


def missing_error(missing, table_path):
    listed = '; '.join(f'{name}: {", ".join(tags)}' for name, tags in missing.items() if tags)
    if table_path:
        return UserError(f'tags none of whose words has a word vector: {listed}; edit their line in {table_path} '
                         '("tag<TAB>words", words the vectors know) and rerun')
    return UserError(f'tags without a word vector: {listed} (rerun step1_data_split.py with --vocab both, which '
                     'keeps only tags that have both vectors)')


def run(data_path, google_path=None, music_path=None, download=False, tags_files=None, nn_tags=None,
        tag_words=None):
    report = Report('step2')
    if tags_files is None:
        tags_files = [os.path.join(data_path, name) for name in ('tags.npy', 'sub_tags.npy')
                      if name == 'tags.npy' or os.path.isfile(os.path.join(data_path, name))]
    tags = read_tags(tags_files)
    report.log(f'tags: {len(tags)} from {", ".join(tags_files)}', n_tags=len(tags), tags_files=tags_files)
    if tag_words is None and os.path.isfile(os.path.join(data_path, TAG_WORDS)):
        tag_words = os.path.join(data_path, TAG_WORDS)
    if tag_words is not None:
        require_file(tag_words, 'tag-to-words table', 'pass an existing file with --tag_words')
    table_of_words = read_tag_table(tag_words)[0] if tag_words else None
    embeddings = load_embeddings(data_path, google_path, music_path, download, report)

    tables, missing = {}, {}
    for name, vectors in embeddings.items():
        tables[name], missing[name], composed = tag_vectors(tags, vectors, table_of_words)
        report.log(f'{name}: {vectors.vector_size}-d vectors, {len(vectors.key_to_index)} words; '
                   f'{len(tables[name]) - len(composed)} tags have their own vector, {len(composed)} the mean of '
                   f'their words\' (table {tag_words}), {len(missing[name])} missing',
                   **{f'{name}_dim': vectors.vector_size, f'{name}_missing': missing[name],
                      f'{name}_composed': composed})
        for tag, words in composed.items():
            report.log(f'  {name}: {tag} <- mean of {" + ".join(words)}')
    if any(missing.values()):
        raise missing_error(missing, tag_words)

    for name, table in tables.items():
        atomic_pickle(os.path.join(data_path, f'{name}_emb.pkl'), table)
    report.log(f'wrote {" and ".join(f"{name}_emb.pkl" for name in tables)} in {data_path}')

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
    run_parser.add_argument('--tag_words', help=f'tag-to-words table (default DATA_PATH/{TAG_WORDS} when it exists): '
                            'a tag without a vector takes the mean of its words\' vectors')
    args = parser.parse_args(argv)
    return run(args.data_path, google_path=args.google_path, music_path=args.music_path,
               download=args.download, tags_files=args.tags_files, nn_tags=args.nn_tags, tag_words=args.tag_words)


if __name__ == '__main__':
    sys.exit(main())
