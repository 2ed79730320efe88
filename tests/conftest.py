import os

import pytest

from support import SPECS


@pytest.fixture
def spec_dir(tmp_path):
    """A temporary directory holding a copy of specs/blocks, for specs written by tests."""
    (tmp_path / "blocks").mkdir()
    for f in (SPECS / "blocks").glob("*.yaml"):
        (tmp_path / "blocks" / f.name).write_text(f.read_text())
    return tmp_path


os.environ.setdefault("OMP_NUM_THREADS", "2")
