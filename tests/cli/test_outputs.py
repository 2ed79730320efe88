"""Atomic outputs: whole or nothing, with the permissions plain files would get."""
import os
import stat

import pytest

from secompile.outputs import atomic_write, staged_dir


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_atomic_write_mode_and_content(tmp_path):
    atomic_write(tmp_path / "x.txt", "a")
    assert (tmp_path / "x.txt").read_text() == "a"
    assert stat.S_IMODE(os.stat(tmp_path / "x.txt").st_mode) == 0o666 & ~_umask()
    assert os.listdir(tmp_path) == ["x.txt"]


def test_atomic_write_failure_leaves_old_file(tmp_path, monkeypatch):
    atomic_write(tmp_path / "x.txt", "old")

    def fail(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        atomic_write(tmp_path / "x.txt", "new")
    assert (tmp_path / "x.txt").read_text() == "old" and os.listdir(tmp_path) == ["x.txt"]


def test_staged_dir_swaps_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "out"
    with staged_dir(dest) as d:
        open(os.path.join(d, "a"), "w").write("1")
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o777 & ~_umask()
    with pytest.raises(RuntimeError):
        with staged_dir(dest) as d:
            open(os.path.join(d, "b"), "w").write("2")
            raise RuntimeError("a later backend failed")
    assert os.listdir(dest) == ["a"] and os.listdir(tmp_path) == ["out"]
