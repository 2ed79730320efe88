"""The docs are tested: every `$ secompile ...` (and `$ python ...`) example in a fenced block
of README.md and docs/*.md runs, in order, in a fresh folder holding what a user of a checkout
has (specs/, examples/), and its exit code and shown output must be what the docs say.

- The output shown is the lines after the command up to the next `$ ` line or the end of the
  block; none shown: only the exit code is checked. Whitespace is normalised; a line `...`
  (or `... why`, `… why`) stands for any number of lines, `...` inside a line for any text.
- Exit code: the number shown by a following `$ echo $?`; else 2 where the output shown is
  located errors (`FILE:LINE:COL: ...`); else 0.
- Other shell lines (`for`, `torchrun`, pipes) are not run. Commands listed in SLOW run with
  `-m slow`; those in SKIP need what a docs run cannot have (say why).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from support import ROOT

DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^(\s*)(```|~~~)")
LOCATED = re.compile(r"^\S+:\d+:\d+: ")
# substrings of commands that need -m slow (whole-network builds, long sweeps, training steps)
SLOW = (
    "--plot",
    "export specs/se_resnext50.yaml",
    "sweep specs/se_resnet50.yaml --vary 'se.0.where.stages=[all, [0, 1, 2]]' --vary",
    "--layout legacy_senet154",
    "detect_fpn.py",
    "seresnet50.pth",
    "diff specs/resnet50.yaml specs/se_resnet50.yaml --draw",
    "torch.save(secompile.compile('se_resnext50')",   # + the export that loads it: ~8 s
    "-o m.onnx --weights ckpt.pt",
)
# substrings of commands that cannot run here, with the reason
SKIP = {"--metrics 'runs/": "needs the training runs of worked example 3"}


@dataclass
class Example:
    doc: str
    line: int
    command: str
    output: list = field(default_factory=list)
    exit_code: int | None = None

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def examples(path) -> list[Example]:
    """The `$ ` commands of the fenced blocks of one Markdown file, with their shown output."""
    doc = os.path.relpath(path, ROOT)
    out: list[Example] = []
    in_block, current = False, None
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_block, current = not in_block, None
            continue
        if not in_block:
            continue
        if line.startswith("$ "):
            cmd = line[2:].strip()
            if cmd == "echo $?" and out and current is not None:
                current = None
                out[-1].exit_code = "pending"
                continue
            current = Example(doc, n, cmd)
            out.append(current)
        elif out and out[-1].exit_code == "pending":
            out[-1].exit_code = int(line.strip())
        elif current is not None:
            current.output.append(line)
    return out


def runnable(ex: Example) -> bool:
    try:
        words = shlex.split(ex.command)
    except ValueError:  # an unclosed quote: a multi-line shell command
        return False
    shell = {"|", "||", "&&", ";", ">", ">>", "<", "&"}
    return bool(words) and words[0] in ("secompile", "python") and not shell & set(words)


def normalise(lines) -> list[str]:
    return [" ".join(line.split()) for line in lines if line.strip()]


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line; an expected `...` line matches any number of actual lines."""
    if not expected:
        return not actual
    if expected[0] == "..." or expected[0].startswith(("... ", "…")):
        return any(matches(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and same_line(expected[0], actual[0]) and matches(expected[1:], actual[1:])


def same_line(expected: str, actual: str) -> bool:
    """Equal, where `...` inside a line stands for any text (numbers that vary by machine)."""
    if "..." not in expected:
        return expected == actual
    return re.fullmatch(".*".join(map(re.escape, expected.split("..."))), actual) is not None


def expected_code(ex: Example) -> int:
    if isinstance(ex.exit_code, int):
        return ex.exit_code
    shown = normalise(ex.output)
    located = [s for s in shown if LOCATED.match(s)]
    return 2 if located and all(LOCATED.match(s) or s == "..." for s in shown) else 0


def run(ex: Example, cwd) -> tuple[int, str]:
    """Run one command as a user would (a fresh process; `secompile` is `python -m secompile`)."""
    argv = shlex.split(ex.command)
    argv = (
        [sys.executable, "-m", "secompile", *argv[1:]]
        if argv[0] == "secompile"
        else [sys.executable, *argv[1:]]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "COLUMNS": "100"}
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout + p.stderr


def needs_dot(command: str) -> bool:
    """Renders with Graphviz's `dot` (the docs' setup installs it; without it such commands exit 2
    after writing the DOT file)."""
    words = command.split()
    return (
        ("draw" in words[1:2] and "dot" not in words)
        or "build" in words[1:2]
        and "--no-draw" not in words
        or "--draw" in words
    )


def workspace(tmp_path):
    """What a user of a checkout has: specs/ and examples/ (read-only links), a docs/images/ to
    write into."""
    for name in ("specs", "examples"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "docs" / "images").mkdir(parents=True)
    return tmp_path


def _params():
    for path in DOCS:
        exs = [e for e in examples(path) if runnable(e)]
        if not exs:
            continue
        slow = any(s in e.command for e in exs for s in SLOW)
        marks = [pytest.mark.slow] if slow else []
        yield pytest.param(path, exs, id=os.path.relpath(path, ROOT), marks=marks)


def _fast_params():
    """The same documents with their slow commands left out (run by default)."""
    for path in DOCS:
        exs = [e for e in examples(path) if runnable(e) and not any(s in e.command for s in SLOW)]
        if exs and any(s in e.command for e in examples(path) for s in SLOW):
            yield pytest.param(path, exs, id=os.path.relpath(path, ROOT) + "-fast")


def check(exs, tmp_path):
    workspace(tmp_path)
    failures = []
    for ex in exs:
        reason = next((why for s, why in SKIP.items() if s in ex.command), None)
        if reason or (needs_dot(ex.command) and shutil.which("dot") is None):
            continue
        code, out = run(ex, tmp_path)
        want = normalise(ex.output)
        if code != expected_code(ex) or (want and not matches(want, normalise(out.splitlines()))):
            failures.append(
                f"{ex.id}: $ {ex.command}\n  exit {code} (docs: {expected_code(ex)})\n"
                + "  got:\n"
                + "\n".join("    " + s for s in out.splitlines())
                + ("\n  docs:\n" + "\n".join("    " + s for s in ex.output) if want else "")
            )
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("path,exs", list(_params()) + list(_fast_params()))
def test_doc_examples(path, exs, tmp_path):
    check(exs, tmp_path)


def test_the_parser():
    import pathlib
    import tempfile

    text = ("x\n```\n$ secompile count a\nl1\n  l2\n$ echo $?\n3\n$ secompile zoo\n```\n"
            "$ not in a block\n")
    with tempfile.TemporaryDirectory() as d:
        p = pathlib.Path(d) / "t.md"
        p.write_text(text)
        exs = examples(p)
    assert [(e.command, e.output, e.exit_code) for e in exs] == [
        ("secompile count a", ["l1", "  l2"], 3),
        ("secompile zoo", [], None),
    ]
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"]) and not matches(
        ["a", "d"], ["a", "b", "d"]
    )
    assert matches(["loss ... -> ..."], ["loss 5.4 -> 2.6"]) and not matches(
        ["loss ... x"], ["loss 5 y"]
    )
    assert expected_code(Example("d", 1, "c", ["f.yaml:1:2: x: y"])) == 2


def test_the_counts_the_docs_quote():
    """Numbers of files the docs quote (robustness.md: the broken-spec corpus)."""
    corpus = len(list((ROOT / "tests" / "fuzz" / "corpus").glob("*.yaml")))
    assert f"| {corpus} broken specs" in (ROOT / "docs" / "robustness.md").read_text()
    lines = len((ROOT / "examples" / "test_my_spec.py").read_text().splitlines())
    assert f"is a {lines}-line example" in (ROOT / "README.md").read_text()
