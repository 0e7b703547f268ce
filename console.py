"""What the entry points print: the configuration once, in one line, and none of Lightning's chatter.

    from console import quiet_lightning, config_line
    quiet_lightning()                       # before the Trainer is built
    print(config_line(args, parser))        # TRAIN spec ... --data_path data/demo --n_channels 32 (others: defaults)

A researcher reads the progress bar, the result table and real warnings (a data problem, a fallback). Lightning
adds product tips, facts that hold for every CPU run (no GPU, no TPU, 100% of the batches used), the seed it was
told, and a deprecation warning raised inside its own code; those lines are dropped here, by their text, so any other
message of Lightning still shows.
"""
import logging
import re
import sys
import warnings

NOISE = re.compile('|'.join([
    r'Tip: For seamless',                               # product advertisements (litlogger, litmodels)
    r'^(GPU|TPU|HPU|IPU) available: ',                   # the accelerator summary: the config line says it
    r'^`Trainer\(limit_\w+_batches=1\.0\)` was configured so 100%',  # the default, restated per split
    r'^Seed set to \d+$',                               # the config line holds --seed
    r'^`Trainer\.fit` stopped: `max_(epochs|steps)=\d+` reached\.$',  # main.py says how many steps it trained
    r'^You are using a CUDA device .* that has Tensor Cores',  # advice that --precision already answers
]))
# raised inside Lightning's own code by a torch API it calls (not by ours): nothing for a user to change
LIGHTNING_DEPRECATIONS = [r'`isinstance\(treespec, LeafSpec\)` is deprecated']
# warnings about a case main.py settles before Lightning looks: another run's checkpoints in --model_save_path are
# refused (checkpoint.claim_run_folder), and our own logs/ there set this one off on every fresh TRAIN
SETTLED = [r'Checkpoint directory .* exists and is not empty']
LOGGERS = ('pytorch_lightning', 'lightning_fabric', 'lightning', 'lightning.pytorch', 'lightning.fabric')


class DropNoise(logging.Filter):
    def filter(self, record):
        return not NOISE.search(record.getMessage())


def quiet_lightning():
    """Drops Lightning's noise lines (NOISE) from its loggers and handlers; idempotent."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for target in [logger, *logger.handlers]:
            if not any(isinstance(f, DropNoise) for f in target.filters):
                target.addFilter(DropNoise())
    # rank_zero_info and the seed message come from child loggers whose records reach these handlers by propagation
    for name in ('pytorch_lightning.utilities.rank_zero', 'lightning_fabric.utilities.rank_zero',
                 'lightning_fabric.utilities.seed'):
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropNoise) for f in logger.filters):
            logger.addFilter(DropNoise())
    for message in LIGHTNING_DEPRECATIONS + SETTLED:
        warnings.filterwarnings('ignore', message=message)


class RedactingStream:
    """A console stream that writes through with the user:password of every URI replaced: libraries print the URLs
    they were given (MLflow: "View run ... at: http://user:password@host/#/experiments/1/runs/...")."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        from cli_args import redact_uri
        return self._stream.write(redact_uri(text))

    def __getattr__(self, name):
        return getattr(self._stream, name)


def redact_console():
    """sys.stdout and sys.stderr through RedactingStream; call first in an entry point (idempotent)."""
    for name in ('stdout', 'stderr'):
        if not isinstance(getattr(sys, name), RedactingStream):
            setattr(sys, name, RedactingStream(getattr(sys, name)))


def config_line(config, parser):
    """'MODE input_type, then every flag whose value is not its default' on one line; credentials redacted."""
    from cli_args import public_config
    values = public_config(config)
    changed = [f'--{k} {v}' for k, v in values.items() if k not in ('mode', 'input_type')
               and parser.get_default(k) != v]
    return f"{values.get('mode', '')} {values.get('input_type', '')}: " + (' '.join(changed) or 'all defaults') + \
        ' (other flags: defaults; --help lists them)'
