"""The command line: build/count/validate/schema behave as documented."""
import json
import subprocess
import sys

import jsonschema
import pytest

from secompile.cli import main
from secompile.lang.schema import SCHEMA
from support import ROOT, SPECS


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "secompile", *args], cwd=cwd, capture_output=True, text=True)


def test_count_json_matches_build_report(tmp_path, capsys):
    assert main(["count", str(SPECS / "se_resnext50.yaml"), "--json"]) == 0
    counted = json.loads(capsys.readouterr().out)
    assert main(["-q", "build", str(SPECS / "se_resnext50.yaml"), "-o", str(tmp_path / "out"), "--no-draw"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report == counted
    assert set(report) >= {"name", "input", "total", "stages"}
    assert set(report["total"]) >= {"macs", "params"}
    assert all(set(s) >= {"name", "macs", "params", "output_shape"} for s in report["stages"])
    assert (tmp_path / "out" / "report.md").read_text().startswith("# se_resnext50_32x4d")


def test_build_prints_summary():
    out = run("build", "specs/se_resnet50.yaml", "-o", "out/test-cli", "--no-draw")
    assert out.returncode == 0, out.stderr
    assert "multiply-adds 3,871,627,264 (conv+fc 3,860,488,192); parameters 28,088,024" in out.stdout
    assert "stage3" in out.stdout and "2048x7x7" in out.stdout


def test_build_replaces_previous_output_whole(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "stale.txt").write_text("from an older build")     # listed in secompile's marker
    (out / ".secompile-output").write_text("# written by secompile\nstale.txt\n")
    assert main(["-q", "build", str(SPECS / "resnet50.yaml"), "-o", str(out), "--no-draw"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".secompile-output", "report.json",
                                                     "report.md"]
    assert [p.name for p in tmp_path.iterdir()] == ["o"]     # no staging leftovers


def test_limits_refuse_before_building(tmp_path, capsys):
    assert main(["build", str(SPECS / "resnet50.yaml"), "-o", str(tmp_path / "o"), "--max-params", "1e6"]) == 2
    err = capsys.readouterr().err
    assert "<network>: 25,557,032 parameters exceed the limit of 1,000,000 (raise it with --max-params)" in err
    assert not (tmp_path / "o").exists()


def test_validate_many_and_schema():
    out = run("validate", *[str(p.relative_to(ROOT)) for p in sorted(SPECS.glob("*.yaml"))])
    assert out.returncode == 0, out.stderr
    out = run("schema")
    schema = json.loads(out.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema == SCHEMA


def test_shipped_schema_json_is_current():
    shipped = json.loads((ROOT / "secompile" / "lang" / "schema.json").read_text())
    assert shipped == json.loads(json.dumps(SCHEMA)), "regenerate: secompile schema > secompile/lang/schema.json"


def test_help_everywhere():
    for cmd in ([], ["validate"], ["count"], ["build"], ["export"], ["draw"], ["zoo"], ["schema"]):
        out = run(*cmd, "--help")
        assert out.returncode == 0 and "usage: secompile" in out.stdout


def test_python_m_and_console_script_agree():
    a = run("count", "specs/resnet50.yaml", "--json")
    b = subprocess.run(["secompile", "count", "specs/resnet50.yaml", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert a.returncode == b.returncode == 0 and a.stdout == b.stdout


QUIET_FAST = [["count", "se_resnet20_cifar"], ["validate", "se_resnet20_cifar"],
              ["diff", "se_resnet20_cifar", "resnet50"],
              ["sweep", "se_resnet20_cifar", "--vary", "se.0.reduction=[4,8]"],
              ["draw", "se_resnet20_cifar", "--format", "dot", "-o", "{tmp}/n.dot"]]
QUIET_TORCH = [["export", "se_resnet20_cifar", "-o", "{tmp}/n.onnx"],
               ["build", "se_resnet20_cifar", "-o", "{tmp}/b", "--no-draw"]]


def _quiet_is_silent(commands, tmp_path, capsys):
    for argv in ([a.format(tmp=tmp_path) for a in argv] for argv in commands):
        for quiet in (["-q", *argv], [*argv, "-q"]):
            assert main(quiet) == 0, quiet
            assert capsys.readouterr().out == "", quiet
        assert main(argv) == 0 and capsys.readouterr().out != "", argv


def test_quiet_means_only_errors_in_every_command(tmp_path, capsys):
    """-q (before or after the command) leaves stdout empty, except for the output --json,
    --markdown or `schema` asks for; errors still reach stderr."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "se_resnet20_cifar.yaml").write_text((SPECS / "se_resnet20_cifar.yaml").read_text())
    _quiet_is_silent(QUIET_FAST + [["zoo", str(zoo)]], tmp_path, capsys)
    for argv in (["count", "se_resnet20_cifar", "--json"], ["zoo", str(zoo), "--markdown"],
                 ["schema"]):
        assert main(["-q", *argv]) == 0 and capsys.readouterr().out != "", argv
    assert main(["-q", "count", "no_such_model"]) == 2
    assert capsys.readouterr().err.startswith("no_such_model:")


@pytest.mark.slow
def test_quiet_in_the_commands_that_compile(tmp_path, capsys):
    _quiet_is_silent(QUIET_TORCH, tmp_path, capsys)


HEAVY = ("torch", "numpy", "onnx", "onnxruntime", "networkx", "graphviz", "matplotlib", "pandas",
         "rich", "jsonschema")     # jsonschema: only to word a valid spec's problems (none)


@pytest.mark.parametrize("args, loads_rich", [
    (["count", "se_resnet20_cifar"], True),          # the table is rich's
    (["count", "se_resnet20_cifar", "--json"], False),
    (["validate", "se_resnet20_cifar"], False)])
def test_count_imports_only_what_it_needs(args, loads_rich):
    """`secompile count`/`validate` of a valid spec import no torch, numpy, onnx, networkx,
    graphviz, jsonschema or sweep engine (only the light argument modules of `sweep`/`diff`),
    and rich only to print its table: the command starts quickly (benchmarks/bench_startup.py)."""
    code = ("import contextlib, io, sys\nfrom secompile.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main({args!r}) == 0\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('secompile.sweep', "
            "'secompile.backends.', 'secompile.outputs', 'secompile.build'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    heavy = "['rich']" if loads_rich else "[]"
    assert (out.returncode, out.stdout, out.stderr) == (
        0, f"{heavy}\n['secompile.sweep', 'secompile.sweep.cli', 'secompile.sweep.options']\n", "")


def test_public_names_are_listed_and_lazy_ones_resolve():
    import secompile

    for name in ("load_weights", "optimize_for_inference", "sweep", "diff", "to_dot",
                 "load_spec", "count", "compile"):
        assert name in secompile.__all__ and name in dir(secompile)
    assert set(secompile.__all__) <= set(dir(secompile))
    import secompile.sweep as sw

    assert type(sw).__name__ != "function" and sw is secompile.sweep     # the module ...
    assert callable(secompile.sweep) and callable(secompile.diff)          # ... called as sweep()
    assert secompile.load_spec("se_resnet50").name == secompile.load("se_resnet50").name
