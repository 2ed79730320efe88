"""Atomic outputs: a file appears whole or not at all; an output directory is swapped in whole.

Files are written to a temporary name in the destination's directory and renamed into
place (rename is atomic on POSIX). A build stages a whole directory the same way, so a
failure in a later backend never leaves a half-updated output directory behind.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile


def _umask() -> int:
    mask = os.umask(0o022)   # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: str, data: bytes | str) -> str:
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())   # mkstemp's 0600 would stick to the output
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def staged_dir(dest: str):
    """Yield a fresh staging directory; on success it replaces `dest` whole, else it vanishes."""
    dest = os.path.abspath(dest)
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.", suffix=".staging", dir=parent)
    os.chmod(stage, 0o777 & ~_umask())     # mkdtemp's 0700 would stick to the output directory
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if os.path.exists(dest):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.", suffix=".old", dir=parent)
        os.rmdir(old)
        os.replace(dest, old)
    try:
        os.replace(stage, dest)
    except BaseException:
        if old:
            os.replace(old, dest)
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)
