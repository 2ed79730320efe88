"""Outputs: whole or nothing, confined to the named place, and nothing lost that secompile did not
write (issue 19 item 1; docs/robustness.md "Output folders")."""
import hashlib
import os
import stat

import pytest

from secompile.cli import main
from secompile.outputs import (
    MARKER,
    OutputError,
    atomic_write,
    marked_files,
    safe_name,
    staged_dir,
)
from support import SPECS

CIFAR = str(SPECS / "se_resnet20_cifar.yaml")


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def snapshot(root):
    """Every entry under `root` (links not followed): path -> file digest, link target or 'dir'."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "-> " + os.readlink(p)
            elif os.path.isdir(p):
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's project folder (the current directory) with files, a sub-folder and a symlink
    pointing outside it, and an outside folder the link points at."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("do not touch")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "train.py").write_text("print('train')\n")
    (proj / "data").mkdir()
    (proj / "data" / "x.csv").write_text("1,2\n")
    (proj / "link").symlink_to(outside)
    monkeypatch.chdir(proj)
    return tmp_path


# -- atomic files ----------------------------------------------------------------------------
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


@pytest.mark.parametrize("target, message", [
    ("notes.txt/x.svg", "notes.txt/x.svg: {root}/notes.txt is a file, not a folder"),
    ("notes.txt/a/b/x.svg", "notes.txt/a/b/x.svg: {root}/notes.txt is a file, not a folder"),
    ("sub", "sub: is a folder; give a file name"),
    ("/proc/x.svg", "/proc/x.svg: cannot write in /proc: No such file or directory"),
])
def test_atomic_write_refuses_bad_paths_with_a_located_error(tmp_path, monkeypatch, target,
                                                              message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("n")
    (tmp_path / "sub").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(OutputError) as e:
        atomic_write(target, "x")
    assert e.value.messages == ["<output>:1:1: <output>: " + message.format(root=tmp_path)]
    assert isinstance(e.value, OSError) and snapshot(tmp_path) == before


# -- staged folders --------------------------------------------------------------------------
def test_staged_dir_swaps_whole_or_not_at_all(tmp_path):
    dest = tmp_path / "out"
    with staged_dir(dest) as d:
        open(os.path.join(d, "a"), "w").write("1")
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o777 & ~_umask()
    assert sorted(os.listdir(dest)) == [MARKER, "a"] and marked_files(dest) == ["a"]
    with pytest.raises(RuntimeError):
        with staged_dir(dest) as d:
            open(os.path.join(d, "b"), "w").write("2")
            raise RuntimeError("a later backend failed")
    assert sorted(os.listdir(dest)) == [MARKER, "a"] and os.listdir(tmp_path) == ["out"]
    with staged_dir(dest) as d:         # ours: replaced whole, no .old left beside it
        open(os.path.join(d, "c"), "w").write("3")
    assert sorted(os.listdir(dest)) == [MARKER, "c"] and os.listdir(tmp_path) == ["out"]


def test_staged_dir_fills_an_empty_folder_in_place_and_refuses_a_foreign_one(tmp_path):
    (tmp_path / "empty").mkdir()
    with staged_dir(tmp_path / "empty") as d:
        open(os.path.join(d, "a"), "w").write("1")
    assert sorted(os.listdir(tmp_path / "empty")) == [MARKER, "a"]
    (tmp_path / "empty" / "mine.txt").write_text("user")     # added by the user afterwards
    with pytest.raises(OutputError, match=r"folder holds files secompile did not write "
                                          r"\(mine.txt\); move them away"):
        with staged_dir(tmp_path / "empty", option="--emit"):
            raise AssertionError("not reached: refused before the work")
    assert (tmp_path / "empty" / "mine.txt").read_text() == "user"
    assert sorted(os.listdir(tmp_path)) == ["empty"]


# -- names from specs ------------------------------------------------------------------------
@pytest.mark.parametrize("name, safe", [
    ("se_resnet50", "se_resnet50"),
    ("/abs/path/victim", "abs_path_victim"),
    ("../../escaped", "escaped"),
    ("../../../x", "x"),
    ("a\x00b\nc", "a_b_c"),
    (".hidden", "hidden"),
    ("..", "unnamed"),
    ("CON", "_CON"),
    ("nul.txt", "_nul.txt"),
    ("C:\\Windows\\x", "C_Windows_x"),
    ("x" * 300, "x" * 120),
])
def test_safe_name_is_one_component(name, safe, capsys):
    assert safe_name(name) == safe
    assert os.path.basename(safe) == safe and safe not in (".", "..") and "/" not in safe
    err = capsys.readouterr().err
    assert (err == "") == (name == safe)
    if name != safe:
        assert err == (f"secompile: note: the spec name {name!r} is not a safe file name; "
                       f"writing {safe!r} instead\n")


def _spec_named(folder, name):
    text = open(CIFAR).read()
    first = next(ln for ln in text.splitlines() if ln.startswith("name:"))
    path = folder / "evil.yaml"
    path.write_text(text.replace(first, f"name: {name!r}"))
    return str(path)


def test_spec_name_with_an_absolute_path_cannot_choose_the_output(project, capsys):
    victim = project / "abs" / "path" / "victim"
    victim.mkdir(parents=True)
    (victim / "important.txt").write_text("mine")
    spec = _spec_named(project / "proj", str(victim))
    before = snapshot(project)
    assert main(["-q", "build", spec, "--no-draw"]) == 0
    assert (victim / "important.txt").read_text() == "mine"
    made = sorted(set(snapshot(project)) - set(before))
    safe = safe_name(str(victim), quiet=True)
    assert made == ["proj/out", f"proj/out/{safe}", f"proj/out/{safe}/{MARKER}",
                    f"proj/out/{safe}/report.json", f"proj/out/{safe}/report.md"]
    assert {k: v for k, v in snapshot(project).items() if k in before} == before
    assert "is not a safe file name" in capsys.readouterr().err


def test_spec_name_with_dot_dots_stays_in_the_output_folder(project):
    spec = _spec_named(project / "proj", "../../escaped")
    before = snapshot(project)
    assert main(["-q", "build", spec, "-o", "o"]) == 0      # the diagram is named from the spec
    made = sorted(set(snapshot(project)) - set(before))
    assert made[:2] == ["proj/o", f"proj/o/{MARKER}"]
    assert all(p.startswith("proj/o/") for p in made[1:]) and len(made) == 5
    assert any(p.startswith("proj/o/escaped.") for p in made)
    assert main(["-q", "draw", spec, "--format", "dot"]) == 0   # draw's default file name too
    assert os.path.exists("escaped-block.dot") and not os.path.exists(project / "escaped-block.dot")


@pytest.mark.parametrize("out, message", [
    (".", ".: folder exists and holds files secompile did not write (data, link, mydir, "
          "notes.txt, train.py); choose a new or empty folder (secompile replaces only folders carrying "
          "its .secompile-output marker)"),
    ("mydir", "mydir: folder exists and holds files secompile did not write (keep.txt); choose "
              "a new or empty folder (secompile replaces only folders carrying its "
              ".secompile-output marker)"),
    ("notes.txt", "notes.txt: exists and is a file, not a folder (give a folder name)"),
    ("notes.txt/sub", "notes.txt/sub: {proj}/notes.txt is a file, not a folder"),
    ("link", "link: is a symbolic link; secompile writes only into folders it created (give "
             "the real path or a new folder)"),
    ("/proc/nope", "/proc/nope: cannot write in /proc: No such file or directory"),
])
def test_build_refuses_output_folders_it_did_not_write(project, capsys, out, message):
    (project / "proj" / "mydir").mkdir()
    (project / "proj" / "mydir" / "keep.txt").write_text("keep")
    (project / "proj" / "notes.txt").write_text("notes")
    before = snapshot(project)
    assert main(["build", CIFAR, "-o", out, "--no-draw"]) == 2
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err == "-o:1:1: <output>: " + message.format(proj=project / "proj") + "\n"
    assert snapshot(project) == before          # every file, and the link's target, untouched


def test_build_replaces_only_its_own_folder_and_keeps_user_files_safe(project, capsys):
    assert main(["-q", "build", CIFAR, "-o", "out", "--no-draw"]) == 0
    assert marked_files("out") == ["report.json", "report.md"]
    assert main(["-q", "build", CIFAR, "-o", "out", "--no-draw", "--onnx"]) == 0
    assert sorted(os.listdir("out")) == [MARKER, "report.json", "report.md",
                                         "se_resnet20_cifar.onnx"]
    assert sorted(os.listdir(".")) == ["data", "link", "out", "train.py"]   # no .old, no staging
    (project / "proj" / "out" / "notes.md").write_text("my notes")
    before = snapshot(project)
    assert main(["build", CIFAR, "-o", "out", "--no-draw"]) == 2
    assert "folder holds files secompile did not write (notes.md)" in capsys.readouterr().err
    assert snapshot(project) == before


def test_export_and_draw_refuse_bad_files(project, capsys):
    (project / "proj" / "notes.txt").write_text("notes")
    before = snapshot(project)
    assert main(["export", CIFAR, "-o", "notes.txt/x.onnx"]) == 2
    assert main(["export", CIFAR, "-o", "data"]) == 2
    assert main(["draw", CIFAR, "-o", "/proc/x.svg"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"-o:1:1: <output>: notes.txt/x.onnx: {project}/proj/notes.txt is a file, not a folder",
        "-o:1:1: <output>: data: is a folder; give a file name",
        "-o:1:1: <output>: /proc/x.svg: cannot write in /proc: No such file or directory"]
    assert snapshot(project) == before
