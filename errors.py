"""User-facing errors: one clear line (file, value, fix) instead of a traceback.

    from errors import UserError, exit_on_user_error
    raise UserError(f'{path}: missing. Run step1_data_split.py first or fix --data_path.')
"""
import functools
import sys


class UserError(Exception):
    """A mistake in the user's input or flags; its message says what and how to fix it."""


class NotFound(UserError):
    """The input names something that does not exist (a track id, a song's audio): HTTP 404 in search.py serve."""


def exit_on_user_error(fn):
    """Decorate a CLI entry point: a UserError prints `error: ...` on stderr and exits with status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(f'error: {e}', file=sys.stderr)
            sys.exit(2)
    return wrapper
