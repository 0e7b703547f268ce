"""Reading pickles that users hand over (the released `*_emb.pkl`, `song_to_artist.pkl`) without running code.

    from safe_pickle import load_pickle
    vectors = load_pickle('data/google_emb.pkl', 'tag word vectors', 'rebuild it with step2_word_embedding.py')

A plain `pickle.load` calls whatever function the file names, so a crafted file runs code the moment it is read.
This unpickler resolves only the globals that plain data needs: dict, list, tuple, set, str, bytes, numbers, bool,
None (these need no global at all) and numpy arrays and scalars (numpy's reconstruct functions and `dtype`, under
both numpy 1.x's `numpy.core` and numpy 2.x's `numpy._core` module names). Any other global stops the read with one
error naming the file and the global.
"""
import pickle

from errors import UserError
from file_io import require_file

_NUMPY_CORE = ('numpy.core', 'numpy._core')
ALLOWED_GLOBALS = frozenset(
    [('numpy', 'dtype'), ('numpy', 'ndarray'), ('_codecs', 'encode')]  # _codecs.encode: bytes in protocol 2
    + [(f'{core}.multiarray', name) for core in _NUMPY_CORE for name in ('_reconstruct', 'scalar')]
    + [(f'{core}.numeric', '_frombuffer') for core in _NUMPY_CORE]  # arrays in protocol 5
    + [(module, name) for module in ('builtins', '__builtin__')  # protocol <= 3 reduces these by name
       for name in ('set', 'frozenset', 'bytes', 'bytearray', 'complex')])


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module, name):
        super().__init__(f'{module}.{name}')
        self.global_name = f'{module}.{name}'


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise RefusedGlobal(module, name)
        return super().find_class(module, name)


def load_pickle(path, what, fix):
    """The object pickled in `path`, read without running code; a UserError naming the file otherwise.

    what: what the file holds (for the messages); fix: how to get a good one ('rebuild it with step 2').
    """
    require_file(path, what, fix)
    try:
        with open(path, 'rb') as f:
            return RestrictedUnpickler(f).load()
    except RefusedGlobal as refused:
        raise UserError(f'{path} ({what}) asks to load {refused.global_name}, which could run code; only plain '
                        f'containers, strings, numbers and numpy arrays are read from a pickle: {fix}') from None
    except Exception as error:  # truncated, not a pickle, or numpy refusing malformed state
        raise UserError(f'{path} is not a readable pickle of {what} ({type(error).__name__}: {error}); '
                        f'{fix}') from None
