"""secompile sweep: exact counts (the paper's eq. 5), invalid variants as rows, located CLI errors."""
import json
import subprocess
import sys

import pytest

import secompile
from secompile.lang.errors import SpecError
from support import ROOT, SPECS

SE50 = SPECS / "se_resnet50.yaml"
RESNET50_PARAMS = 25_557_032
# SE-ResNet-50's stages: N_s blocks whose SE block sees C_s channels
STAGES = [(3, 256), (4, 512), (6, 1024), (3, 2048)]


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "secompile", *args], cwd=cwd, capture_output=True, text=True)


def eq5(r: int) -> int:
    """Section 6.4, eq. 5: SE adds (2/r) * sum_s N_s * C_s^2 weights (the FC layers), exactly here
    (every C_s is divisible by r), plus the biases of the reference models: N_s * (C_s/r + C_s)."""
    weights = sum(n * c * c for n, c in STAGES) * 2 // r
    assert weights * r == 2 * sum(n * c * c for n, c in STAGES)
    return weights + sum(n * (c // r + c) for n, c in STAGES)


def test_reduction_sweep_gives_eq5_exactly():
    out = run("sweep", "specs/se_resnet50.yaml", "--vary", "se.0.reduction=[4, 8, 16, 32]", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["overrides"] for r in rows] == [{"se.0.reduction": r} for r in (4, 8, 16, 32)]
    for row, r in zip(rows, (4, 8, 16, 32)):
        assert row["ok"] and row["base_params"] == RESNET50_PARAMS and row["se_blocks"] == 16
        assert row["se_params"] == eq5(r)
        assert row["params"] == RESNET50_PARAMS + eq5(r)
    assert [r["params"] for r in rows] == [35_635_688, 30_603_912, 28_088_024, 26_830_080]
    assert rows[2]["se_params"] == 2_530_992 and rows[2]["macs"] == 3_871_627_264
    assert rows[2]["conv_linear_macs"] == 3_860_488_192


def test_se_in_every_stage_but_the_last_and_the_product():
    rows = secompile.sweep(SE50, vary={"se.0.where.stages": ["all", [0, 1, 2]], "se.0.reduction": [8, 16]})
    assert [(r["overrides"]["se.0.where.stages"], r["overrides"]["se.0.reduction"]) for r in rows] == [
        ("all", 8), ("all", 16), ([0, 1, 2], 8), ([0, 1, 2], 16)]
    assert [r["se_blocks"] for r in rows] == [16, 16, 13, 13]
    last = sum(n * (c * c * 2 // 16 + c // 16 + c) for n, c in STAGES[3:])
    assert rows[1]["params"] - rows[3]["params"] == last == 1_579_392
    assert rows[3]["label"] == "se.0.where.stages=[0, 1, 2], se.0.reduction=16"
    assert rows[3]["name"] == "se_resnet50-03-se.0.where.stages-0_1_2+se.0.reduction-16"


def test_variants_differing_only_in_se_share_one_expansion(monkeypatch):
    from secompile.sweep import engine
    calls = []
    real = engine.expand
    monkeypatch.setattr(engine, "expand", lambda spec: calls.append(spec.name) or real(spec))
    rows = secompile.sweep(SE50, vary={"se.0.reduction": [2, 4, 8, 16, 32], "stages.3.repeat": [2, 3]})
    assert len(rows) == 10 and len(calls) == 2         # one expansion per stages.3.repeat value
    assert rows[0]["base_params"] == rows[2]["base_params"] != rows[1]["base_params"]


def test_invalid_variants_are_rows_with_located_errors():
    rows = secompile.sweep(SE50, ["se.0.reduction=[16, 0, x, 100000]"])
    assert [r["ok"] for r in rows] == [True, False, False, False]
    assert rows[1]["errors"] == ["--vary:1:21: se[0].reduction: must be >= 1, got 0"]
    assert rows[2]["errors"] == ["--vary:1:24: se[0].reduction: expected a positive integer or a "
                                 "$-expression, got string 'x'"]      # as `count --set` says
    assert rows[3]["errors"][0] == ("--vary:1:27: se[0].reduction: reduction 100000 leaves no channel for "
                                    "1024 channels (1024 // 100000 = 0)")
    assert rows[1]["params"] is None and rows[1]["se_params"] is None
    out = run("sweep", "specs/se_resnet50.yaml", "--vary", "se.0.reduction=[16, 0]")
    assert out.returncode == 0 and "invalid" in out.stdout
    assert "variant 1 (se.0.reduction=0): --vary:1:21: se[0].reduction: must be >= 1, got 0" in out.stdout


@pytest.mark.parametrize("vary, message", [
    ("stagse.0.repeat=[1, 2]", "--vary:1:1: stagse: unknown key 'stagse' in the spec (did you mean 'stages'?)"),
    ("se.0.reductoin=[4, 8]", "--vary:1:6: se[0].reductoin: unknown key 'reductoin' (did you mean 'reduction'?)"),
    ("stages.0.widht=[32, 64]", "--vary:1:10: stages[0].widht: unknown parameter 'widht' of block template "
                                "'bottleneck' (did you mean 'width'?)"),
    ("stages.0.repeat=3", "--vary:1:17: stages.0.repeat: expected a non-empty YAML list of alternatives "
                          "(stages.0.repeat=[A, B, ...]), got '3'"),
    ("stages.0.repeat=[1, 2", "--vary:1:22: <value>: expected ',' or ']', but got '<stream end>' "
                              "(while parsing a flow sequence)"),
    ("stages.7.repeat=[1]", "--vary:1:8: stages[7]: index 7 out of range (stages has 4 items)"),
    ("stages.0.repeat", "--vary:1:1: <override>: expected KEY=[ALTERNATIVES, ...], got 'stages.0.repeat'"),
])
def test_bad_vary_exits_2_located_without_traceback(vary, message):
    out = run("sweep", "specs/se_resnet50.yaml", "--vary", "se.0.reduction=[8]", "--vary", vary)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == message.replace("--vary:1:", "--vary:2:") + "\n"


def test_where_filters_with_the_expression_language():
    rows = secompile.sweep(SE50, vary={"se.0.reduction": [4, 8, 16, 32]}, where="params < 30e6")
    assert [r["overrides"]["se.0.reduction"] for r in rows] == [16, 32]
    rows = secompile.sweep(SE50, vary={"se.0.reduction": [4, 8, 16, 32]},
                           where="se_params_rel < 0.1 and macs > 3.8e9 and se_blocks == 16")
    assert [r["overrides"]["se.0.reduction"] for r in rows] == [16, 32]
    out = run("sweep", "specs/se_resnet50.yaml", "--vary", "se.0.reduction=[4]", "--where", "parms < 30e6")
    assert out.returncode == 2
    assert out.stderr == ("--where:1:1: <where>: unknown parameter 'parms' in expression 'parms < 30e6' "
                          "(did you mean 'params'?)\n")


def test_emit_writes_loadable_specs_with_deterministic_names(tmp_path):
    rows = secompile.sweep(SE50, vary={"se.0.reduction": [8, 16]}, emit=str(tmp_path / "variants"))
    names = sorted(p.name for p in (tmp_path / "variants").iterdir() if p.name != ".secompile-output")
    assert names == ["se_resnet50-00-se.0.reduction-8.yaml", "se_resnet50-01-se.0.reduction-16.yaml"]
    assert [r["file"] for r in rows] == [str(tmp_path / "variants" / n) for n in names]
    text = (tmp_path / "variants" / names[0]).read_text()
    assert "#   --set se.0.reduction=8\n" in text
    rep = secompile.count(tmp_path / "variants" / names[0])
    assert rep["name"] == "se_resnet50-00-se.0.reduction-8" and rep["total"]["params"] == rows[0]["params"]


def test_metrics_join_and_pareto(tmp_path):
    for name, acc in (("se_resnet50-00-se.0.reduction-4", 0.80), ("se_resnet50-01-se.0.reduction-8", 0.79),
                      ("se_resnet50-02-se.0.reduction-16", 0.795)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(
            {"spec": name, "val_acc": acc, "val_loss": 1.0, "epochs": 2, "overrides": {}}))
    # a run of the base spec with --set overrides joins by (spec name, overrides)
    (tmp_path / "r32").mkdir()
    (tmp_path / "r32" / "metrics.json").write_text(json.dumps(
        {"spec": "se_resnet50", "overrides": {"se.0.reduction": 32}, "val_acc": 0.7, "epochs": 2}))
    rows = secompile.sweep(SE50, vary={"se.0.reduction": [4, 8, 16, 32]}, metrics=str(tmp_path / "*/metrics.json"))
    assert [r.get("acc") for r in rows] == [0.80, 0.79, 0.795, 0.7]
    # cheaper and better than r=8: r=16 dominates it; r=4 (best) and r=32 (cheapest) stay
    assert [r["pareto"] for r in rows] == [True, False, True, True]
    rows = secompile.sweep(SE50, vary={"se.0.reduction": [4, 8, 16, 32]}, where="acc > 0.79",
                           metrics=str(tmp_path / "*/metrics.json"))
    assert [r["overrides"]["se.0.reduction"] for r in rows] == [4, 16]


def test_csv_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    out = run("sweep", "specs/se_resnet50.yaml", "--vary", "se.0.reduction=[4, 16]", "--vary",
              "se.0.where.stages=[all, [0, 1, 2]]", "--csv", str(tmp_path / "s.csv"), "--plot", str(tmp_path / "s.svg"))
    assert out.returncode == 0, out.stderr
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0].startswith("se.0.reduction,se.0.where.stages,index,name,label,ok,macs,")
    assert lines[1].startswith("4,all,0,se_resnet50-00-") and len(lines) == 5
    svg = (tmp_path / "s.svg").read_text()
    assert "Pareto front" in svg and "parameters (M)" in svg


def test_dataframe_needs_pandas():
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            secompile.sweep(SE50, vary={"se.0.reduction": [8]}, dataframe=True)
    else:
        df = secompile.sweep(SE50, vary={"se.0.reduction": [8]}, dataframe=True)
        assert list(df["params"]) == [30_603_912]


def test_api_errors():
    with pytest.raises(SpecError, match=r"<vary>:1:1: se.0.reduction: no alternatives given"):
        secompile.sweep(SE50, vary={"se.0.reduction": []})
    with pytest.raises(TypeError):
        secompile.sweep(SE50, vary={"se.0.reduction": 8})


def test_train_py_writes_metrics_that_the_sweep_joins(tmp_path):
    """examples/train.py --set ... writes <out>/metrics.json; sweep --metrics joins it by spec and overrides."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("examples_train_metrics", ROOT / "examples" / "train.py")
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    cifar = str(SPECS / "se_resnet20_cifar.yaml")
    assert train.main(["--spec", cifar, "--set", "se.0.reduction=8", "--data", "synthetic", "--epochs", "1",
                       "--train-size", "64", "--val-size", "32", "--batch-size", "16",
                       "--out", str(tmp_path / "runs" / "r8")]) == 0
    m = json.loads((tmp_path / "runs" / "r8" / "metrics.json").read_text())
    assert (m["spec"], m["overrides"], m["epochs"], m["epochs_planned"]) == ("se_resnet20_cifar", {"se.0.reduction": 8}, 1, 1)
    assert 0.0 <= m["val_acc"] <= 1.0 and m["val_loss"] > 0
    rows = secompile.sweep(cifar, vary={"se.0.reduction": [4, 8]}, metrics=str(tmp_path / "runs/*/metrics.json"))
    assert rows[0].get("acc") is None and rows[1]["acc"] == m["val_acc"] and rows[1]["runs"] == 1
    with pytest.raises(SystemExit, match=r"^--set:1:17: stages\[0\].repeat: expected a positive integer or a \$-expression, got string 'x'$"):
        train.main(["--spec", cifar, "--set", "stages.0.repeat=x", "--out", str(tmp_path / "bad")])


def test_plot_without_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    from secompile.sweep import plot
    rows = secompile.sweep(SE50, vary={"se.0.reduction": [8]})
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SpecError) as e:
        plot(rows, str(tmp_path / "p.svg"))
    assert e.value.messages == ["--plot:1:1: <plot>: plotting needs matplotlib (pip install matplotlib, "
                                "or pip install 'secompile[plot]')"]


# -- the package, limits, streaming (issues 19, 20) -------------------------------------------
CIFAR = SPECS / "se_resnet20_cifar.yaml"


def test_sweep_is_the_package_and_callable():
    import secompile.sweep as sw
    assert type(sw).__name__ == "_CallableModule" and sw.__name__ == "secompile.sweep"
    assert sw.engine.__name__ == "secompile.sweep.engine" and callable(sw)
    rows = secompile.sweep(CIFAR, vary={"se.0.reduction": [8]})
    assert rows == sw.run("se_resnet20_cifar", vary={"se.0.reduction": [8]})   # zoo names too
    assert rows[0]["params"] == secompile.count(CIFAR, overrides={"se.0.reduction": 8})["total"]["params"]
    assert rows[0]["params"] == 276_884 and secompile.diff is sw.diff


def test_too_many_variants_are_refused_before_anything_runs(capsys):
    from secompile.cli import main
    vary = [a for k in ("stages.0.repeat", "stages.1.repeat", "stages.2.repeat")
            for a in ("--vary", f"{k}=range(1, 101)")]
    assert main(["sweep", str(CIFAR), *vary]) == 2
    assert capsys.readouterr().err == (
        "--vary:1:1: <sweep>: 1,000,000 variants (100 x 100 x 100) exceed the limit of 10,000; "
        "pass --max-variants 1000000 to run them all\n")
    with pytest.raises(SpecError, match="3 variants exceed the limit of 2"):
        secompile.sweep(CIFAR, vary={"se.0.reduction": [4, 8, 16]}, max_variants=2)
    assert len(secompile.sweep(CIFAR, vary={"se.0.reduction": [4, 8, 16]}, max_variants=3)) == 3


def test_rows_stream_without_keeping_graphs(monkeypatch):
    from secompile.sweep import engine
    monkeypatch.setattr(engine, "KEPT_EXPANSIONS", 2)
    axes = engine.axes_of(["input.size=[16, 20, 24, 28, 32]"])
    sweep = engine.Sweep(CIFAR, axes)
    sizes = []
    for row in engine.iter_grid(sweep, axes):       # a generator: one row at a time
        sizes.append(len(sweep.expansions.kept))
        assert row["ok"]
    assert sizes == [1, 2, 2, 2, 2]


def test_a_sweep_with_no_valid_variant_exits_2(capsys):
    from secompile.cli import main
    assert main(["sweep", str(CIFAR), "--vary", "se.0.reduction=[0, -1]", "-q"]) == 2
    assert capsys.readouterr().err == ("secompile sweep: every variant is invalid (2); the first:\n"
                                       "--vary:1:17: se[0].reduction: must be >= 1, got 0\n")
    assert main(["sweep", str(CIFAR), "--vary", "se.0.reduction=[0, 8]", "-q"]) == 0


def test_emit_names_stay_inside_the_folder(tmp_path, monkeypatch, capsys):
    from secompile.cli import main
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "resnet.yaml").write_text((SPECS / "blocks" / "resnet.yaml").read_text())
    (tmp_path / "x.yaml").write_text(CIFAR.read_text().replace("name: se_resnet20_cifar",
                                                               "name: ../../../x"))
    (tmp_path / "afile").write_text("mine")
    assert main(["-q", "sweep", "x.yaml", "--vary", "se.0.reduction=[8, 16]", "--emit", "e/d"]) == 0
    made = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert made == ["afile", "blocks/resnet.yaml", "e/d/.secompile-output",
                    "e/d/x-00-se.0.reduction-8.yaml", "e/d/x-01-se.0.reduction-16.yaml", "x.yaml"]
    assert secompile.count(tmp_path / "e/d/x-00-se.0.reduction-8.yaml")["name"] == \
        "x-00-se.0.reduction-8"
    capsys.readouterr()
    for args in (["--emit", "afile"], ["--emit", "/proc/x"], ["--csv", "/proc/x.csv"],
                 ["--csv", "e"], ["--plot", "afile/p.svg"]):
        assert main(["-q", "sweep", "x.yaml", "--vary", "se.0.reduction=[8]", *args]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "--emit:1:1: <output>: afile: exists and is a file, not a folder (give a folder name)",
        "--emit:1:1: <output>: /proc/x: cannot write in /proc: No such file or directory",
        "--csv:1:1: <output>: /proc/x.csv: cannot write in /proc: No such file or directory",
        "--csv:1:1: <output>: e: is a folder; give a file name",
        f"--plot:1:1: <output>: afile/p.svg: {tmp_path}/afile is a file, not a folder"]
    assert (tmp_path / "afile").read_text() == "mine"


def test_diff_draw_with_an_unknown_format_is_refused(tmp_path, capsys):
    from secompile.cli import main
    assert main(["diff", "resnet50", "se_resnet50", "--draw", str(tmp_path / "out.xyz"), "-q"]) == 2
    assert capsys.readouterr().err == (f"--draw:1:1: <output>: {tmp_path}/out.xyz: unknown diagram "
                                       "format 'xyz': name the file .svg, .png, .pdf or .dot\n")
    assert list(tmp_path.iterdir()) == []


# -- design-space sampling (issue 21 item 6) ----------------------------------------------------
SPACE = ["stages.0.out=range(8, 64, 8)", "input.size=choice(24, 32, 40)",
         "se.0.reduction=[4, 8, 16]"]


def test_sample_is_reproducible_for_a_seed_and_respects_the_band():
    rows = secompile.sweep(CIFAR, SPACE, sample=6, seed=7, where="macs >= 40e6 and macs <= 150e6")
    again = secompile.sweep(CIFAR, SPACE, sample=6, seed=7, where="macs >= 40e6 and macs <= 150e6")
    other = secompile.sweep(CIFAR, SPACE, sample=6, seed=8, where="macs >= 40e6 and macs <= 150e6")
    assert rows == again and [r["label"] for r in rows] != [r["label"] for r in other]
    assert len(rows) == 6 and all(40e6 <= r["macs"] <= 150e6 for r in rows)
    assert len({r["label"] for r in rows}) == 6                  # distinct models
    assert [r["index"] for r in rows] == list(range(6))
    s = rows.summary
    assert s["kept"] == 6 and s["drawn"] == 6 + s["outside"] + s["invalid"] + s["repeats"]
    assert s["outside"] > 0                                      # the band rejected some
    for r in rows:     # each row is exactly the plain count of its overrides
        o = r["overrides"]
        assert set(o) == {"stages.0.out", "input.size", "se.0.reduction"}
        assert o["stages.0.out"] in range(8, 64, 8) and o["input.size"] in (24, 32, 40)
    r = rows[0]
    rep = secompile.count(CIFAR, overrides=r["overrides"])
    assert (rep["total"]["params"], rep["total"]["macs"]) == (r["params"], r["macs"])


def test_sample_distributions_and_a_small_space_is_exhausted():
    rows = secompile.sweep(CIFAR, ["se.0.reduction=loguniform(2, 64, 2)", "input.size=uniform(24, 40, 8)"],
                           sample=5, seed=1)
    assert all(r["overrides"]["se.0.reduction"] % 2 == 0 and 2 <= r["overrides"]["se.0.reduction"] <= 64
               for r in rows)
    assert all(r["overrides"]["input.size"] in (24, 32, 40) for r in rows)
    rows = secompile.sweep(CIFAR, ["se.0.reduction=[4, 8]"], sample=5, seed=0)
    assert sorted(r["overrides"]["se.0.reduction"] for r in rows) == [4, 8]
    assert rows.summary["kept"] == 2 and rows.summary["drawn"] < 250     # stopped: nothing left


@pytest.mark.parametrize("vary, message", [
    ("stages.0.out=range(8, x)", "--vary:1:14: stages.0.out: range(...) takes numbers, got x"),
    ("stages.0.out=rnage(8, 16)", "--vary:1:14: stages.0.out: unknown distribution 'rnage': write a "
                                  "YAML list [a, b, ...] or one of range, choice, uniform, loguniform"),
    ("stages.0.out=uniform(8, 16)", "--vary:1:14: stages.0.out: uniform(...) is continuous: sample it "
                                    "with --sample N"),
    ("stages.0.out=range(8, 8)", "--vary:1:14: stages.0.out: range(8, 8, 1) holds no value"),
    ("stages.0.out=loguniform(0, 3)", "--vary:1:14: stages.0.out: loguniform(a, b): a must be > 0, got 0"),
    ("stages.0.out=uniform(9, 3)", "--vary:1:14: stages.0.out: uniform(a, b): a must not exceed b, "
                                   "got 9 > 3"),
    ("stagse.0.out=range(8, 16)", "--vary:1:1: stagse: unknown key 'stagse' in the spec (did you mean "
                                  "'stages'?)"),
])
def test_bad_distributions_exit_2_located(vary, message, capsys):
    from secompile.cli import main
    assert main(["sweep", str(CIFAR), "--vary", vary]) == 2
    assert capsys.readouterr().err == message + "\n"


def test_sample_cli_csv_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from secompile.cli import main
    args = ["sweep", str(CIFAR), *[a for v in SPACE for a in ("--vary", v)], "--sample", "12",
            "--seed", "3", "--where", "macs <= 200e6", "--csv", str(tmp_path / "s.csv"),
            "--plot", str(tmp_path / "s.svg")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "se_resnet20_cifar: 12 variant(s)" in out
    assert "sample (seed 3): kept 12 of 12 asked for, " in out
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert len(lines) == 13 and lines[0].startswith("stages.0.out,input.size,se.0.reduction,index,")
    svg = (tmp_path / "s.svg").read_text()
    assert "Pareto front" in svg and "parameters (k)" in svg
    first = (tmp_path / "s.csv").read_text()
    assert main(args) == 0 and (tmp_path / "s.csv").read_text() == first     # same seed, same file
    assert main(["sweep", str(CIFAR), "--vary", SPACE[0], "--seed", "3"]) == 2
    assert capsys.readouterr().err.endswith("--seed and --max-draws are for --sample N\n")


# -- memory as a sweep metric -------------------------------------------------------------------
def sweep_run(*args, **kwargs):
    import secompile.sweep
    return secompile.sweep.run(*args, **kwargs)


def test_memory_metrics_in_rows_and_where_with_units():
    from secompile.analysis.memory import memory
    from secompile.lang.overrides import make_override
    rows = sweep_run("se_resnet50", vary={"se.0.reduction": [4, 16]}, batch=8, optimizer="adamw")
    for r in rows:
        g = secompile.build_ir("se_resnet50", overrides=[
            make_override("se.0.reduction", r["overrides"]["se.0.reduction"])])
        m = memory(g, 8, "fp32", "adamw")
        assert (r["train_mem"], r["infer_mem"], r["act_mem"]) == (
            m.train_peak, m.inference_peak, m.activations_total)
    assert rows[0]["train_mem"] > rows[1]["train_mem"]          # reduction 4: bigger SE FCs
    # sizes in a --where take units
    cut = (rows[0]["train_mem"] + rows[1]["train_mem"]) / 2 / 2**20
    kept = sweep_run("se_resnet50", vary={"se.0.reduction": [4, 16]}, batch=8,
                     optimizer="adamw", where=f"train_mem < {cut:.3f}MiB")
    assert [r["overrides"]["se.0.reduction"] for r in kept] == [16]
    # a --where reading a memory metric gets it (at batch 1) without a batch
    plain = sweep_run("se_resnet50", vary={"se.0.reduction": [16]})
    assert "train_mem" not in plain[0]                           # not estimated unless asked
    one = sweep_run("se_resnet50", vary={"se.0.reduction": [16]}, where="train_mem < 24GiB")
    assert one[0]["train_mem"] == memory(secompile.build_ir("se_resnet50"), 1).train_peak


def test_cli_memory_flags_and_variant_names(tmp_path):
    """A family's variant by name (it has no file of its own), memory for a batch, a --where in
    GiB; `diff` between two variants."""
    out = run("sweep", "regnety_002", "--vary", "params.w0=range(16, 64, 8)", "--sample", "4",
              "--seed", "0", "--batch", "32", "--where", "train_mem < 1GiB", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows and all(r["spec"] == "regnety_002" and r["train_mem"] < 2**30 for r in rows)
    assert all(r["overrides"]["params.w0"] in range(16, 64, 8) for r in rows)
    py = sweep_run("regnety_002", vary=["params.w0=range(16, 64, 8)"], sample=4, seed=0, batch=32,
                   where="train_mem < 1GiB")
    assert [r["train_mem"] for r in rows] == [r["train_mem"] for r in py]
    out = run("diff", "efficientnet_b0", "efficientnet_b1", cwd=tmp_path)
    assert out.returncode == 0 and "params     5,288,548 -> 7,794,184" in out.stdout, out.stderr
