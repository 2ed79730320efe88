"""Outputs: confined, atomic, and never at the cost of a file secompile did not write.

Rules (docs/robustness.md, "Output folders"):

- A file appears whole or not at all: it is written to a temporary name beside it and renamed
  into place (rename is atomic on POSIX).
- An output *folder* (`build -o`, `sweep --emit`) is staged beside its destination and swapped
  in whole. It carries a marker file (`.secompile-output`, listing what secompile wrote there);
  only such a folder, holding nothing but what its marker lists, is ever replaced. A new or
  empty folder is filled; any other existing folder, a file, or a path under a file is refused.
- A name that comes from a spec (`name:`) is reduced to one safe file-name component
  (`safe_name`) before it touches a path, and the change is said on stderr.
- Every problem with an output path is an `OutputError` (a SpecError: exit 2, one located line
  naming the option, e.g. `-o:1:1: <output>: notes.txt: exists and is a file, not a folder`).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import re
import shutil
import sys
import tempfile

from .lang.errors import Mark, Problem, SpecError

MARKER = ".secompile-output"
MARKER_HEADER = ("# written by secompile: this folder may be replaced whole by the next run that "
                 "writes it;\n# it holds only the files listed below (a folder holding anything "
                 "else is refused)\n")
MAX_NAME = 120          # characters of a name derived from a spec (file systems allow 255 bytes)
# names Windows reserves whatever the extension (a spec may travel to such a machine)
RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
            *(f"lpt{i}" for i in range(1, 10))}

_option = contextvars.ContextVar("secompile_output_option", default="<output>")


class OutputError(SpecError, OSError):
    """An output path that cannot be used: exit 2 in the CLI (also an OSError for the API)."""


def output_error(path, message: str, option: str | None = None) -> OutputError:
    return OutputError([Problem(Mark(option or _option.get(), 1, 1), "<output>",
                                f"{os.fspath(path)}: {message}")])


@contextlib.contextmanager
def output_option(option: str):
    """Problems with the paths written inside this block name `option` (`-o`, `--csv`, ...)."""
    token = _option.set(option)
    try:
        yield
    finally:
        _option.reset(token)


# -- names from specs ----------------------------------------------------------------------
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


def safe_name(name, what: str = "spec name", *, quiet: bool = False) -> str:
    """`name` as one safe file-name component: path separators, control characters and the
    characters Windows refuses become '_', '..' and leading dots or underscores go, reserved
    device names get a '_' prefix, length is capped. A change is said on stderr."""
    text = str(name)
    safe = _UNSAFE.sub("_", text).replace("..", "_").lstrip("._ ").rstrip(". ")[:MAX_NAME]
    if not safe:
        safe = "unnamed"
    if safe.split(".")[0].lower() in RESERVED:
        safe = "_" + safe
    if safe != text and not quiet:
        print(f"secompile: note: the {what} {text!r} is not a safe file name; "
              f"writing {safe!r} instead", file=sys.stderr)
    return safe


# -- files ---------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0o022)   # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _first_file_above(path: str) -> str | None:
    """The first existing ancestor of `path` that is not a directory (`notes.txt` in
    `notes.txt/x/y`), else None."""
    p = os.path.dirname(path)
    while p and not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            return None
        p = parent
    return p if p and not os.path.isdir(p) else None


def _make_parent(path: str) -> str:
    """Create the folder `path` goes into; a path under a file or an unwritable place is an
    OutputError."""
    parent = os.path.dirname(os.path.abspath(path))
    above = _first_file_above(os.path.abspath(path))
    if above is not None:
        raise output_error(path, f"{above} is a file, not a folder")
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise output_error(path, f"cannot create the folder {parent}: {e.strerror}") from None
    return parent


def atomic_write(path: str, data: bytes | str) -> str:
    """Write `data` to `path` whole or not at all (a temporary name beside it, then renamed)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise output_error(path, "is a folder; give a file name")
    parent = _make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                   dir=parent)
    except OSError as e:
        raise output_error(path, f"cannot write in {parent}: {e.strerror}") from None
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


# -- folders -------------------------------------------------------------------------------
def marked_files(folder: str) -> list[str] | None:
    """The files the marker of `folder` lists, or None where it has no (readable) marker."""
    marker = os.path.join(folder, MARKER)
    if os.path.islink(marker) or not os.path.isfile(marker):
        return None
    try:
        with open(marker, encoding="utf-8") as f:
            lines = f.read(1 << 20).splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return [s for s in lines if s and not s.startswith("#")]


def check_folder(dest, option: str | None = None) -> str:
    """What is at the output folder `dest`: 'new' (nothing), 'empty' or 'ours' (a marked folder
    holding only what its marker lists). Anything else raises an OutputError that says why
    (call it before the work, to refuse early; staged_dir checks again)."""
    with output_option(option or _option.get()):
        return _existing_folder(os.fspath(dest))


def _existing_folder(shown: str) -> str:
    dest = os.path.abspath(shown)
    if os.path.islink(dest):
        raise output_error(shown, "is a symbolic link; secompile writes only into folders it "
                                  "created (give the real path or a new folder)")
    if not os.path.exists(dest):
        if _first_file_above(dest) is not None:
            raise output_error(shown, f"{_first_file_above(dest)} is a file, not a folder")
        return "new"
    if not os.path.isdir(dest):
        raise output_error(shown, "exists and is a file, not a folder (give a folder name)")
    try:
        entries = sorted(os.listdir(dest))
    except OSError as e:
        raise output_error(shown, f"cannot read the folder: {e.strerror}") from None
    if not entries:
        return "empty"
    listed = marked_files(dest)
    if listed is None:
        some = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise output_error(shown, f"folder exists and holds files secompile did not write "
                                  f"({some}); choose a new or empty folder (secompile replaces "
                                  f"only folders carrying its {MARKER} marker)")
    foreign = [e for e in entries if e != MARKER and e not in listed]
    if foreign:
        some = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise output_error(shown, f"folder holds files secompile did not write ({some}); "
                                  f"move them away or choose another folder")
    return "ours"


def _write_marker(folder: str, files) -> None:
    atomic_write(os.path.join(folder, MARKER), MARKER_HEADER + "".join(f"{f}\n" for f in files))


def _contains_cwd(dest: str) -> bool:
    try:
        cwd = os.getcwd()
    except OSError:
        return False
    return os.path.commonpath([cwd, dest]) == dest


def _fill_in_place(stage: str, dest: str) -> None:
    """Move the staged files into `dest` (empty, or ours and the current folder, which must not
    be renamed away): the marker first, so an interrupted run leaves a folder the next run may
    replace."""
    names = sorted(n for n in os.listdir(stage) if n != MARKER)
    old = marked_files(dest) or []
    _write_marker(dest, sorted(set(names) | set(old)))
    for n in names:
        os.replace(os.path.join(stage, n), os.path.join(dest, n))
    for n in old:
        if n not in names:
            p = os.path.join(dest, n)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(p)
    _write_marker(dest, names)
    shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(dest: str, option: str | None = None):
    """Yield a fresh staging folder; on success it becomes `dest` whole (with the marker), else
    it vanishes. `dest` must be new, empty, or a folder secompile wrote (see the module doc)."""
    option = option or _option.get()
    shown = os.fspath(dest)
    dest = os.path.abspath(shown)
    with output_option(option):
        state = _existing_folder(shown)
        parent = _make_parent(dest)
        try:
            stage = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.", suffix=".staging",
                                     dir=parent)
        except OSError as e:
            raise output_error(shown, f"cannot write in {parent}: {e.strerror}") from None
    os.chmod(stage, 0o777 & ~_umask())     # mkdtemp's 0700 would stick to the output directory
    try:
        yield stage
        _write_marker(stage, sorted(n for n in os.listdir(stage) if n != MARKER))
        if state == "empty" or (state == "ours" and _contains_cwd(dest)):
            _fill_in_place(stage, dest)
            return
        old = None
        if state == "ours":
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.", suffix=".old", dir=parent)
            os.rmdir(old)
            os.replace(dest, old)
        try:
            os.replace(stage, dest)
        except BaseException:
            if old:
                os.replace(old, dest)
            raise
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


__all__ = ["atomic_write", "staged_dir", "check_folder", "safe_name", "output_option",
           "OutputError", "MARKER", "marked_files"]
