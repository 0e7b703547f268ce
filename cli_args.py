"""Argument types shared by the command lines, and the one place a credential is taken out of a config.

    from cli_args import str2bool, positive_int, public_config
    parser.add_argument('--is_balanced', type=str2bool, default=False)

A value out of range is refused by argparse itself (`error: argument --batch_size: ...`, exit 2), before any
file is read or any work starts.
"""
import argparse
import os
import re

TRUE_WORDS = ('true', '1', 'yes', 'y', 't', 'on')
FALSE_WORDS = ('false', '0', 'no', 'n', 'f', 'off')
NEPTUNE_TOKEN_ENV = 'NEPTUNE_API_TOKEN'  # Neptune's own convention
UNSET = '.'  # the original's default for its Neptune flags
REDACTED = '<redacted>'


BOOL = '{True,False}'  # metavar of every boolean flag: the original's command lines pass True/False


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default (except empty ones, whose help text says what they fall back to) and keeps the
    description and the examples as written."""

    def _get_help_string(self, action):
        flag_without_value = action.nargs == 0 and action.default is False  # store_true
        if action.default is None or flag_without_value or action.default in ('', argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def usage_examples(doc):
    """The indented command lines at the top of a script's docstring, for an argparse epilog."""
    lines = doc.strip('\n').splitlines()[1:]
    block = [line for line in lines[next((i for i, line in enumerate(lines) if line.strip()), 0):]]
    end = next((i for i, line in enumerate(block) if not line.strip()), len(block))
    return 'examples:\n' + '\n'.join(block[:end])


def str2bool(value):
    """The original's `type=bool` made "False" true; this accepts True/False/1/0/yes/no in any case."""
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f'expected True/False/1/0/yes/no, got {value!r}')


def _number(value, kind, low, low_inclusive, what):
    try:
        number = kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected {what}, got {value!r}')
    if number != number or number in (float('inf'), float('-inf')) or \
            (number < low if low_inclusive else number <= low):
        raise argparse.ArgumentTypeError(f'expected {what}, got {value!r}')
    return number


def positive_int(value):
    return _number(value, int, 0, False, 'a whole number >= 1')


def non_negative_int(value):
    return _number(value, int, 0, True, 'a whole number >= 0')


def positive_float(value):
    return _number(value, float, 0.0, False, 'a number > 0')


def learning_rate(value):
    """Adam's step size: above 1 it overflows or diverges at once (a typo such as 1e38 for 1e-3)."""
    number = _number(value, float, 0.0, False, 'a learning rate in (0, 1]')
    if number > 1:
        raise argparse.ArgumentTypeError(f'expected a learning rate in (0, 1], got {value!r}')
    return number


def non_negative_float(value):
    return _number(value, float, 0.0, True, 'a number >= 0')


def int_or_float(value):
    """Lightning's limit_*_batches: a whole number of batches (>= 1) or a fraction of them in (0, 1]. Zero is
    refused: no validation means no best.ckpt, no test batch means no results, and either run would end with
    exit code 0 having written nothing it was asked for."""
    nothing = 'runs no batch: nothing would be validated or scored, so no best.ckpt or results; omit the flag'
    try:
        number = int(value)
    except ValueError:
        number = _number(value, float, 0.0, True, 'a number of batches or a fraction in (0, 1]')
        if number > 1:
            raise argparse.ArgumentTypeError(f'expected a number of batches or a fraction in (0, 1], got {value!r}')
        if number == 0:
            raise argparse.ArgumentTypeError(f'{value!r} {nothing}')
        return number
    if number < 0:
        raise argparse.ArgumentTypeError(f'expected a number of batches >= 1 or a fraction, got {value!r}')
    if number == 0:
        raise argparse.ArgumentTypeError(f'{value!r} {nothing}')
    return number


CNN_MIN_FRAMES = 2 ** 7  # seven 2x2 max-poolings halve time seven times: fewer frames leave none


def chunk_frames(value):
    """--input_length: the short-chunk CNN needs at least 2^7 frames."""
    number = positive_int(value)
    if number < CNN_MIN_FRAMES:
        raise argparse.ArgumentTypeError(f'{value!r} frames is below the CNN\'s minimum of {CNN_MIN_FRAMES} (2^7: '
                                         'its seven 2x poolings would leave no frame); use 128 or more (default 173)')
    return number


def seed_arg(value):
    """numpy and Lightning accept seeds in [0, 2^32 - 1]; outside, np.random.seed raises mid-setup."""
    number = _number(value, int, 0, True, 'a whole number in [0, 4294967295]')
    if number > 2 ** 32 - 1:
        raise argparse.ArgumentTypeError(f'expected a whole number in [0, 4294967295] (numpy\'s seed range), got '
                                         f'{value!r}')
    return number


def devices_arg(value):
    if value == 'auto':
        return value
    try:
        count = int(value)
    except ValueError:
        try:
            return [int(v) for v in value.split(',') if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected a count, "auto" or a list like 0,1; got {value!r}')
    if count < 1:
        raise argparse.ArgumentTypeError(f'expected a count >= 1, "auto" or a list like 0,1; got {value!r}')
    return count


def take_neptune_key(config):
    """Move --neptune_api_key out of the config into the process environment, where Neptune reads it.

    The environment variable wins when both are set. Afterwards the config holds only whether the flag was
    given (REDACTED or UNSET), so printing or saving it (console, config.json, checkpoints, summaries, loggers)
    can never reveal the key.
    """
    given = getattr(config, 'neptune_api_key', UNSET)
    flag_given = given not in (UNSET, REDACTED, None)
    if flag_given and not os.environ.get(NEPTUNE_TOKEN_ENV):
        os.environ[NEPTUNE_TOKEN_ENV] = given
    config.neptune_api_key = REDACTED if flag_given or given == REDACTED else UNSET
    return config


CREDENTIAL = re.compile(r'key|token|password|secret|credential', re.IGNORECASE)
URI_USERINFO = re.compile(r'(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@', re.IGNORECASE)  # scheme://user:password@host


def redact_uri(value):
    """A value with the user:password of every URI in it replaced (http://u:p@host -> http://<redacted>@host)."""
    return URI_USERINFO.sub(rf'\1{REDACTED}@', value) if isinstance(value, str) else value


def public_argv(argv):
    """A command line for logs and files: the value of every credential-like flag (`--api_key K`, `--token=K`) and
    the user:password of every URI redacted."""
    public, hide_next = [], False
    for arg in map(str, argv):
        flag, eq, _ = arg.partition('=')
        if hide_next:
            public.append(REDACTED)
        elif ' ' in arg.strip():  # flags inside one value: experiments.py --extra "--api_key K"
            public.append(' '.join(public_argv(arg.split())))
        elif eq and flag.startswith('-') and CREDENTIAL.search(flag):
            public.append(f'{flag}={REDACTED}')
        else:
            public.append(redact_uri(arg))
        hide_next = not hide_next and not eq and arg.startswith('-') and bool(CREDENTIAL.search(arg))
    return public


def public_config(config):
    """A plain dict of a config (Namespace or nested dict) with every credential-like entry redacted, for logs
    and files."""
    values = dict(vars(config)) if not isinstance(config, dict) else dict(config)
    return {k: public_config(v) if isinstance(v, dict) else
            REDACTED if CREDENTIAL.search(str(k)) and v not in (UNSET, None) else redact_uri(v)
            for k, v in values.items()}
