"""The broken-spec corpus: every `corpus/NNN-*.yaml` is refused with exactly the lines of its
`.expected` sidecar (`FILE:LINE:COL: spec.path: message`, paths relative to corpus/), through
the API (`secompile.SpecError`) and through the CLI (`secompile validate`: exit 2, those lines
on stderr, nothing on stdout, no traceback). Files included by the corpus live in corpus/inc/.

A case whose fix is requested from the core is marked xfail(strict) with the request name
(/tmp/secompile-requests/fuzz-<n>.md): it flips to a failure, on purpose, once the fix lands,
and the entry below is then deleted.
"""
from __future__ import annotations

import os
import pathlib
import resource
import subprocess
import sys

import pytest

import secompile
from secompile.cli import main

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
CASES = sorted(p.name for p in CORPUS.glob("*.yaml"))

XFAIL: dict[str, str] = {
    # "NNN-case.yaml": "fuzz-<n>",  while a requested core fix is pending (fuzz-1..14 have landed)
}

# Hostile by nature (a hang or gigabytes if a guard is missing, as before fuzz-3/6/10): only ever
# run in a child process with a CPU-time and address-space limit, never inside the test process.
ISOLATE = {"021-billion-laughs.yaml", "154-template-bomb.yaml", "114-expr-round-huge-ndigits.yaml", "125-expr-string-repetition.yaml"}
CHILD_CPU_S = 5
CHILD_AS_BYTES = 2 * 2**30


def named(name: str) -> str:
    """The corpus file called NNN-<name>.yaml (numbers move when cases are added)."""
    [case] = [c for c in CASES if c[4:-5] == name]
    return case


UNKNOWN = named("unknown-template")


def expected(case: str) -> list[str]:
    return (CORPUS / case).with_suffix(".expected").read_text().splitlines()


def _params(cases):
    return [pytest.param(c, id=c[:-5], marks=[pytest.mark.xfail(strict=True, reason=f"request {XFAIL[c]}")]
                         if c in XFAIL else []) for c in cases]


def _limits():   # preexec_fn of the isolated children
    resource.setrlimit(resource.RLIMIT_CPU, (CHILD_CPU_S, CHILD_CPU_S))
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_AS_BYTES, CHILD_AS_BYTES))


def _cli(*args, limits=False, timeout=120):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    return subprocess.run([sys.executable, "-m", "secompile", *args], cwd=CORPUS, capture_output=True,
                          text=True, env=env, timeout=timeout, preexec_fn=_limits if limits else None)


def test_corpus_is_complete():
    assert len(CASES) >= 60
    sidecars = sorted(p.name for p in CORPUS.glob("*.expected"))
    assert sidecars == [c[:-5] + ".expected" for c in CASES]
    numbers = [c.split("-", 1)[0] for c in CASES]
    assert numbers == [f"{i:03d}" for i in range(1, len(CASES) + 1)]
    for c in CASES:
        lines = expected(c)
        assert lines and all(line.count(": ") >= 2 for line in lines), c
    assert set(XFAIL) <= set(CASES) and ISOLATE <= set(CASES)


@pytest.mark.parametrize("case", _params([c for c in CASES if c not in ISOLATE]))
def test_api_refuses_with_exact_messages(case, monkeypatch):
    monkeypatch.chdir(CORPUS)
    with pytest.raises(secompile.SpecError) as e:
        secompile.build_ir(case)
    assert e.value.messages == expected(case)
    for p in e.value.problems:   # located: a real file, a line and column inside it, a spec path
        assert p.mark.line >= 1 and p.mark.col >= 1 and p.path and len(str(p).splitlines()) == 1
        if os.path.isfile(p.mark.file):
            assert p.mark.line <= len(pathlib.Path(p.mark.file).read_bytes().splitlines()) + 1


@pytest.mark.parametrize("case", _params([c for c in CASES if c not in ISOLATE]))
def test_cli_validate_exit_2(case, monkeypatch, capsys):
    monkeypatch.chdir(CORPUS)
    assert main(["validate", case]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == expected(case)


@pytest.mark.parametrize("case", _params(sorted(ISOLATE)))
def test_hostile_cases_in_a_limited_child(case):
    """A hang or a memory blow-up here would show as a killed child, not as a stuck test run."""
    out = _cli("validate", case, limits=True)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.splitlines() == expected(case) and out.stdout == ""


def test_cli_subprocess_whole_corpus():
    """One real `secompile validate` over every case that passes today: exit 2, every expected
    line in argument order on stderr, no traceback, nothing on stdout."""
    cases = [c for c in CASES if c not in XFAIL and c not in ISOLATE]
    out = _cli("validate", *cases, limits=True, timeout=300)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    assert out.stdout == ""
    assert out.stderr.splitlines() == [line for c in cases for line in expected(c)]


def test_cli_valid_and_broken_specs_mixed(monkeypatch, capsys):
    """A valid spec next to a broken one: exit 2; the valid one reported on stdout, silent with --quiet."""
    monkeypatch.chdir(CORPUS)
    g = secompile.build_ir("inc/valid.yaml")
    assert len(g.se) == 4 and g.shape(g.output) == (10,)
    assert main(["validate", "inc/valid.yaml", UNKNOWN]) == 2
    out, err = capsys.readouterr()
    assert out == f"inc/valid.yaml: ok (tiny: {len(g)} ops, 4 SE blocks)\n"
    assert err.splitlines() == expected(UNKNOWN)
    assert main(["--quiet", "validate", "inc/valid.yaml", UNKNOWN]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == expected(UNKNOWN)
    assert main(["--quiet", "validate", "inc/valid.yaml"]) == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("arg,message", [
    ("nothere", "nothere:1:1: <file>: cannot read: No such file or directory"),
    ("spec.yaml.bak", "spec.yaml.bak:1:1: <file>: cannot read: No such file or directory"),
    ("inc", "inc:1:1: <file>: cannot read: Is a directory"),
])
def test_cli_spec_argument_is_always_a_file(arg, message, monkeypatch, capsys):
    """A SPEC that does not end in .yaml is still a path (it used to be parsed as YAML text,
    giving `<string>:1:1: <root>: a spec is a mapping ...`)."""
    monkeypatch.chdir(CORPUS)
    for cmd in ("validate", "count"):
        assert main([cmd, arg]) == 2
        out, err = capsys.readouterr()
        assert err.splitlines() == [message], cmd


@pytest.mark.parametrize("text,message", [
    ("name: a\x00b\nstages: []\n", "<string>:1:8: <yaml>: unacceptable character #x0000: special characters are not allowed"),
    ("name: caf\udce9\nstages: []\n", "<string>:1:10: <yaml>: unacceptable character #xdce9: special characters "
                                      "are not allowed"),
], ids=["nul", "lone-surrogate"])
def test_api_text_with_unacceptable_characters(text, message):
    """YAML text handed to the API may hold NULs or lone surrogates (a file cannot: it is UTF-8)."""
    with pytest.raises(secompile.SpecError) as e:
        secompile.build_ir(text)
    assert e.value.messages == [message]
