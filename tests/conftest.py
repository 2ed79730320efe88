import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SHARED = ROOT.parent / "shared"


@pytest.fixture
def spec_dir(tmp_path):
    """A temporary directory holding a copy of specs/blocks, for specs written by tests."""
    (tmp_path / "blocks").mkdir()
    for f in (SPECS / "blocks").glob("*.yaml"):
        (tmp_path / "blocks" / f.name).write_text(f.read_text())
    return tmp_path


def all_specs():
    return sorted(p for p in SPECS.glob("*.yaml"))


os.environ.setdefault("OMP_NUM_THREADS", "2")
