import os

import pytest

import secompile.ir.verify
from support import SPECS

# verify the IR after the front end and after every pass, here and in subprocesses (CLI tests)
os.environ["SECOMPILE_VERIFY"] = "1"
secompile.ir.verify.EVERY_PASS = True


@pytest.fixture
def spec_dir(tmp_path):
    """A temporary directory holding a copy of specs/blocks, for specs written by tests."""
    (tmp_path / "blocks").mkdir()
    for f in (SPECS / "blocks").glob("*.yaml"):
        (tmp_path / "blocks" / f.name).write_text(f.read_text())
    return tmp_path


# one thread per pytest-xdist worker (two workers on two cores), two in a plain run
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")
