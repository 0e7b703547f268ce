import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from synthetic_data import write_dataset  # noqa: E402


@pytest.fixture(scope='session')
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('data'))
    info = write_dataset(root)
    info['root'] = root
    return info
