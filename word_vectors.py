"""Word-vector files: their default paths and flags, vocabulary look-ups (a tag as written, or `a_b` for `a b`),
the word2vec binary's vocabulary read without loading the vectors, and gensim models loaded with one-line errors.

    from word_vectors import load_keyed_vectors, read_word2vec_vocab
"""
import mmap
import os

from errors import UserError
from file_io import require_file


def default_google_path(data_path):
    return os.path.join(data_path, 'GoogleNews-vectors-negative300.bin')


def default_music_path(data_path):
    return os.path.join(data_path, 'music_w2v', 'model_semeval_trigrams_300.model')


def add_vector_path_arguments(run_parser):
    trusted = ('; a gensim model or KeyedVectors file is a pickle, which can run code when loaded: use only one '
               'from a trusted source')
    run_parser.add_argument('--google_path', help='Google News vectors, word2vec binary format '
                            '(default DATA_PATH/GoogleNews-vectors-negative300.bin); .bin and .txt files are plain '
                            'data' + trusted)
    run_parser.add_argument('--music_path', help='domain-specific vectors, gensim Word2Vec model or KeyedVectors '
                            '(default DATA_PATH/music_w2v/model_semeval_trigrams_300.model)' + trusted)


def vocab_forms(tag, multiword_underscore=True):
    """Keys a tag may have in a vocabulary: as written, then with '_' joining words ('smooth_jazz')."""
    forms = [tag]
    joined = '_'.join(tag.split())
    if multiword_underscore and joined != tag:
        forms.append(joined)
    return forms


def vocab_key(tag, vocab, multiword_underscore=True):
    """The key under which `tag` is stored in `vocab` (anything supporting `in`), else None."""
    return next((form for form in vocab_forms(tag, multiword_underscore) if form in vocab), None)


def has_word2vec_header(path):
    """True when the first line is word2vec's 'COUNT DIM' (GloVe text files have none)."""
    with open(path, 'rb') as f:
        header = f.readline().split()
    return len(header) == 2 and all(token.isdigit() for token in header)


def read_word2vec_vocab(path):
    """Set of words of a word2vec-format file without materialising its vectors.

    Binary format: header 'COUNT DIM', then per word 'word<space>' + DIM float32 (+ optional '\\n').
    Skipping the vectors makes the 3.6 GB Google News file's vocabulary a few seconds' work.
    A file ending in .txt is read as the text format (first token of each line; header optional).
    """
    require_file(path, 'word2vec file', 'pass the right path with --google_path, or --vocab music|none in step 1')
    if path.endswith('.gz'):
        raise UserError(f'{path} is compressed; gunzip it and pass the .bin file with --google_path')
    header = has_word2vec_header(path)
    if path.endswith('.txt'):
        with open(path, 'rb') as f:
            lines = iter(f)
            if header:
                next(lines)
            return {line.split(b' ', 1)[0].decode('utf-8', 'replace') for line in lines if line.strip()}
    if not header:
        raise UserError(f'{path} does not start with a word2vec header "COUNT DIM"; pass a word2vec binary with --google_path')
    with open(path, 'rb') as f:
        count, dim = map(int, f.readline().split())
        start = f.tell()
    words = set()
    with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        pos = start
        for _ in range(count):
            while data[pos:pos + 1] == b'\n':
                pos += 1
            space = data.find(b' ', pos)
            if space < 0:
                raise UserError(f'{path} is truncated after {len(words)} of {count} words; re-download it')
            words.add(data[pos:space].decode('utf-8', 'replace'))
            pos = space + 1 + 4 * dim  # skip the float32 vector
    return words


def load_keyed_vectors(path, option):
    """gensim KeyedVectors from a Word2Vec model (.save), a KeyedVectors file, a word2vec .bin or a .txt."""
    from gensim.models import KeyedVectors, Word2Vec

    require_file(path, 'word vectors', f'pass the right path with {option}')
    if path.endswith(('.bin', '.bin.gz', '.txt')):
        try:
            if path.endswith('.txt'):
                return KeyedVectors.load_word2vec_format(path, binary=False,
                                                         no_header=not has_word2vec_header(path))
            return KeyedVectors.load_word2vec_format(path, binary=True)
        except (EOFError, ValueError, UnicodeDecodeError, OSError) as error:
            raise UserError(f'{path} is not a complete word2vec file ({type(error).__name__}: {error}); download '
                            f'or copy it again, or pass another file with {option}')
    try:  # mmap: large arrays saved beside the model are mapped, not read (fast vocabulary access)
        loaded = Word2Vec.load(path, mmap='r')
    except Exception:  # not a full model: a KeyedVectors file is the other format we accept
        try:
            loaded = KeyedVectors.load(path, mmap='r')
        except Exception as error:
            raise UserError(f'cannot load {path} as a gensim Word2Vec model or KeyedVectors ({error}); '
                f'pass a gensim .model/.kv file or a word2vec .bin with {option}')
    return loaded.wv if hasattr(loaded, 'wv') else loaded
