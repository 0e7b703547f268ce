"""What the preprocessing steps share: the `run` sub-command (the original's fire CLI), the report of what a step
kept and dropped, and step 1's constants (score threshold, split bounds, split files).

    from steps import Report, make_cli
"""
import argparse
import json
import os

from cli_args import HelpFormatter, usage_examples
from file_io import atomic_write_bytes, json_default

SCORE_MIN = 50  # Last.fm tag score threshold of the original (keep score >= 50)
SPLIT_BOUNDS = (0.7, 0.85)  # step 1's artist shuffle cut points: 70% train, 15% valid, 15% test
SPLIT_FILES = ('train_ids.npy', 'valid_ids.npy', 'test_ids.npy')


def make_cli(doc, prog=None):
    """An argparse parser whose only sub-command is `run` (the original used fire's `run`, and its command lines
    keep working). Returns (parser, run_parser); add the step's arguments to run_parser."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=HelpFormatter,
                                     epilog=f'The options are those of the `run` command: {prog or "%(prog)s"} '
                                            'run --help')
    commands = parser.add_subparsers(dest='command', required=True)
    run = commands.add_parser('run', help='run this preprocessing step (run --help lists its options)',
                              description=doc.strip().splitlines()[0], epilog=usage_examples(doc),
                              formatter_class=HelpFormatter)
    return parser, run


class Report:
    """Collects what a step kept and dropped: prints each line and saves .txt + .json together."""

    def __init__(self, step):
        self.step = step
        self.lines = []
        self.data = {}

    def log(self, line, **data):
        print(line, flush=True)
        self.lines.append(line)
        self.data.update(data)

    def save(self, directory, prefix=''):
        """Write <prefix><step>_report.txt (the printed lines) and .json (lines + counts)."""
        base = os.path.join(directory, f'{prefix}{self.step}_report')
        atomic_write_bytes(base + '.txt', ('\n'.join(self.lines) + '\n').encode())
        payload = {'step': self.step, 'lines': self.lines, **self.data}
        atomic_write_bytes(base + '.json', json.dumps(payload, indent=1, default=json_default).encode())
        return base + '.txt'
