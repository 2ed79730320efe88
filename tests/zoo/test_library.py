"""The zoo as a library (issue 14): zoo names, overrides from the API, backbones, and a wheel
installed outside the checkout."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import secompile
from secompile.cli import main
from secompile.lang.errors import SpecError
from support import ROOT, SPECS, all_specs, randomise_bn

FC = 635 * 2049  # the 1000 -> 365 classes of the fc layer: (1000 - 365) x (2048 weights + 1 bias)


def run(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "secompile", *args], cwd=cwd, capture_output=True, text=True, env=env
    )


def params(model):
    return sum(p.numel() for p in model.parameters())


# -- names --------------------------------------------------------------------------------
def test_list_models_is_the_zoo():
    stems = [p.stem for p in all_specs()]
    families = {"efficientnet", "mobilenetv3", "regnet", "rexnet"}   # listed by variant names
    names = secompile.list_models()
    assert names == sorted(names) and len(names) >= 60
    assert set(stems) - families <= set(names) and not families & set(names)
    assert {"efficientnet_b0", "efficientnet_b7", "regnetx_002", "regnety_320",
            "mobilenetv3_small_050", "mobilenetv3_large_100"} <= set(names)
    assert secompile.list_models("se_resnet5*") == ["se_resnet50", "se_resnet50_tv"]
    assert (SPECS.resolve() == (ROOT / "secompile" / "specs")) and (ROOT / "specs").is_symlink()


def test_a_name_is_its_file_stem_or_its_spec_name():
    by_stem = secompile.build_ir("se_resnext50")
    by_name = secompile.build_ir("se_resnext50_32x4d")
    by_path = secompile.build_ir(SPECS / "se_resnext50.yaml")
    assert by_stem.structural_hash() == by_name.structural_hash() == by_path.structural_hash()
    assert secompile.model_path("se_resnext50_32x4d").endswith(
        os.path.join("secompile", "specs", "se_resnext50.yaml")
    )


def test_a_file_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "se_resnet50").write_text((SPECS / "se_resnet20_cifar.yaml").read_text())
    assert secompile.build_ir("se_resnet50").name == "se_resnet20_cifar"  # the file, not the zoo's


def test_unknown_name_did_you_mean(capsys):
    with pytest.raises(SpecError) as e:
        secompile.count("se_resnet5")
    assert e.value.messages == [
        "se_resnet5:1:1: <file>: no such file, and no zoo model of that name "
        "(did you mean 'se_resnet50'?); `secompile zoo` lists the zoo"
    ]
    with pytest.raises(SpecError) as e:
        secompile.count("nothing_like_it")  # no zoo name is close: a missing file
    assert e.value.messages == [
        "nothing_like_it:1:1: <file>: cannot read: No such file or directory"
    ]
    assert main(["build", "se_resnxt50", "-o", "/dev/null"]) == 2
    assert "did you mean 'se_resnext50'?" in capsys.readouterr().err


def test_includes_fall_back_to_the_shipped_blocks(tmp_path):
    spec = tmp_path / "mine.yaml"  # no blocks/ folder next to it
    spec.write_text((SPECS / "se_resnet50.yaml").read_text())
    assert secompile.count(spec)["total"]["params"] == 28_088_024
    (tmp_path / "blocks").mkdir()  # next to the including file comes first
    (tmp_path / "blocks" / "resnet.yaml").write_text("blocks: {}\n")
    with pytest.raises(SpecError, match="unknown block template 'bottleneck'"):
        secompile.count(spec)


def test_cli_by_name_and_flags_after_the_subcommand(tmp_path):
    out = run("count", "se_resnet50", "--json", "-q", "--debug", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["total"]["params"] == 28_088_024
    out = run(
        "build", "se_resnet20_cifar", "-o", str(tmp_path / "b"), "--no-draw", "-q", cwd=tmp_path
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    # `zoo --json` over the whole zoo: tests/zoo/test_zoo.py (in-process, the same rows)


# -- overrides ----------------------------------------------------------------------------
def test_num_classes_and_input_size():
    base = secompile.count("se_resnet50")
    places = secompile.count("se_resnet50", num_classes=365, input_size=320)
    assert base["total"]["params"] - places["total"]["params"] == FC
    assert places["output"] == [365] and places["input"] == [3, 320, 320]
    assert places["overrides"] == {"input.size": 320, "head.1.linear.out": 365}
    assert secompile.count("se_resnet50", input_size=(256, 192))["input"] == [3, 256, 192]
    assert (
        secompile.count("se_resnet50", overrides={"stages.2.repeat": 8})["stages"][2]["blocks"] == 8
    )
    model = secompile.compile("se_resnet20_cifar", num_classes=7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_num_classes_problems_are_located():
    with pytest.raises(SpecError) as e:
        secompile.count("se_resnet50", num_classes=0)
    assert e.value.messages == [
        "<num_classes>:1:19: head[1].linear.out: out must be a positive integer, got 0"
    ]
    headless = (
        "name: t\ninput: {channels: 3, size: 8}\n"
        "stages: [{layers: [{conv: {out: 4, kernel: 3}}]}]\n"
        "head: [{global_avgpool: {}}]\n"
    )
    with pytest.raises(SpecError) as e:
        secompile.count(headless, num_classes=10)
    assert e.value.messages == [
        "<string>:4:7: head: num_classes: the head has no linear layer to resize; "
        "change the head with overrides instead"
    ]


def test_overrides_are_recorded_in_reports_diagrams_and_onnx(tmp_path):
    out = tmp_path / "b"
    assert (
        main(
            [
                "build",
                "se_resnet20_cifar",
                "-o",
                str(out),
                "--onnx",
                "-q",
                "--set",
                "stages.0.repeat=2",
                "--set",
                "se.0.reduction=8",
            ]
        )
        == 0
    )
    assert json.load(open(out / "report.json"))["overrides"] == {
        "stages.0.repeat": 2,
        "se.0.reduction": 8,
    }
    assert (
        "Overrides applied: `stages.0.repeat=2`, `se.0.reduction=8`."
        in (out / "report.md").read_text()
    )
    drawn = next(p for p in out.iterdir() if p.suffix in (".svg", ".dot")).read_text()
    assert "secompile overrides: stages.0.repeat=2; se.0.reduction=8" in drawn
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out / "se_resnet20_cifar.onnx")).metadata_props}
    assert json.loads(props["secompile.overrides"]) == {"stages.0.repeat": 2, "se.0.reduction": 8}
    plain = secompile.to_onnx("se_resnet20_cifar")
    assert "secompile.overrides" not in {p.key for p in plain.metadata_props}
    dot = secompile.api.to_dot("se_resnet20_cifar", overrides={"input.size": 64})
    assert dot.splitlines()[1] == '\tcomment="secompile overrides: input.size=64"'


# -- backbones ----------------------------------------------------------------------------
def test_features_only_on_se_resnet50():
    """timm's levels: the stem's activation at /2 (before the max-pool), then each stage."""
    net = secompile.compile("se_resnet50", features_only=True)
    info = net.feature_info
    assert info.channels() == [64, 256, 512, 1024, 2048] and info.reduction() == [2, 4, 8, 16, 32]
    assert info.module_name() == ["stem_conv1", "stages_0", "stages_1", "stages_2", "stages_3"]
    assert info[3]["num_chs"] == 1024 and len(info) == 5 and info.channels(1) == 256
    assert [f["stage"] for f in info] == [0, 1, 2, 3, 4]
    with torch.no_grad():
        feats = net.eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == [
        (1, 64, 32, 32),
        (1, 256, 16, 16),
        (1, 512, 8, 8),
        (1, 1024, 4, 4),
        (1, 2048, 2, 2),
    ]
    two = secompile.count("se_resnet50", features_only=True, out_indices=(2, 4))["features"]
    assert [(f["num_chs"], f["module"]) for f in two] == [(512, "stages_1"), (2048, "stages_3")]
    last3 = secompile.count("se_resnet50", features_only=True, out_indices=3)   # timm: the last 3
    assert [f["reduction"] for f in last3["features"]] == [8, 16, 32]
    assert secompile.count("se_resnet50")["total"]["params"] - params(net) == 2048 * 1000 + 1000
    from secompile.backends.onnx.weights import expected_state

    sources = net.source_keys()
    want = set(expected_state(secompile.build_ir("se_resnet50")))
    assert {k for k in sources.values() if not k.endswith(".num_batches_tracked")} <= want
    assert sources["stem_conv1.conv1.conv.weight"] == "stem.conv1.conv.weight"
    assert sources["stages_2.blocks.5.se.fc2.bias"] == "stages.2.blocks.5.se.fc2.bias"
    assert [k for k in net.state_dict() if k.startswith("stem")] == [
        k for k in net.state_dict() if k.startswith("stem_conv1.")]    # the max-pool: no weights


def test_features_match_the_whole_network():
    full = secompile.compile("se_resnet20_cifar", seed=3).eval()
    net = secompile.compile(
        "se_resnet20_cifar", seed=3, features_only=True, out_indices=(-1,)
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(x)[0], full.forward_features(x))


def _randomise_bn(model, seed=1):
    return randomise_bn(model, torch.Generator().manual_seed(seed))


def test_every_feature_is_the_whole_networks_tensor_there():
    """seresnet18 at 64 x 64, BN randomised: the stem feature is the stem's activation (the
    whole network's probe), each stage feature that stage's output; a whole network's
    state_dict loads into the backbone (its head left over)."""
    full = _randomise_bn(secompile.compile("seresnet18", input_size=64).eval())
    net = secompile.compile("seresnet18", input_size=64, features_only=True, seed=5).eval()
    loaded = net.load_state_dict(full.state_dict(), strict=False)
    assert loaded.missing_keys == [] and loaded.unexpected_keys == ["head.fc.weight", "head.fc.bias"]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = net(x)
        rec = {}
        y = full.stem._probe(full.stem, x, rec)
        want = [rec["conv1.act"]]
        for stage in full.stages:
            y = stage(y)
            want.append(y)
    assert len(feats) == 5 and all(torch.equal(a, b) for a, b in zip(feats, want))


def test_features_only_with_inference_and_refusals():
    net = _randomise_bn(secompile.compile("se_resnet20_cifar", features_only=True).eval())
    x = torch.randn(2, 3, 32, 32)
    fast = net.optimized(x)
    assert fast.report["bn_folded"] == sum(
        isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 21 and fast.feature_info.channels() == [16, 32, 64]
    with torch.no_grad():
        for a, b in zip(fast(x), net(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * max(1.0, b.abs().max().item()))
    direct = secompile.compile("se_resnet20_cifar", features_only=True, inference=True)
    with torch.no_grad():
        assert [tuple(f.shape) for f in direct(x)] == [tuple(f.shape) for f in net(x)]
    with pytest.raises(RuntimeError, match="cannot train"):
        direct.train()
    with pytest.raises(ValueError, match="num_classes is for a classifier"):
        secompile.compile("seresnet18", features_only=True, num_classes=10)
    with pytest.raises(ValueError, match="out_indices is for features_only=True"):
        secompile.compile("seresnet18", out_indices=(1,))


def test_optimized_backbone_with_fused_silu_and_merged_groups():
    """A backbone of an activation other than ReLU (SiLU runs as a oneDNN post-op) and of a
    grouped conv narrower than a vector: `optimized()` gave KeyError 'act_fused' before."""
    for name, key in (("efficientnet_b0", "act_fused"), ("seresnext26d_32x4d", "groups_merged")):
        net = _randomise_bn(secompile.compile(name, features_only=True, input_size=64).eval())
        x = torch.randn(1, 3, 64, 64)
        fast = net.optimized(x)
        if torch.backends.mkldnn.is_available():
            assert fast.report[key] > 0
        with torch.no_grad():
            for a, b in zip(fast(x), net(x)):
                torch.testing.assert_close(a, b, rtol=1e-4,
                                           atol=1e-4 * max(1.0, b.abs().max().item()))


def test_backbone_with_fpn_takes_module_names():
    torchvision = pytest.importorskip("torchvision")
    from torchvision.models.detection.backbone_utils import BackboneWithFPN

    for name in ("seresnet18", "mobilenetv3_small_100"):
        net = secompile.compile(name, input_size=64, features_only=True).eval()
        info = net.feature_info
        fpn = BackboneWithFPN(net, {m: str(i) for i, m in enumerate(info.module_name())},
                              info.channels(), out_channels=16).eval()
        with torch.no_grad():
            out = fpn(torch.randn(1, 3, 64, 64))
        assert [tuple(v.shape) for v in out.values()] == [
            (1, 16, 64 // r, 64 // r) for r in info.reduction()] + [(1, 16, 1, 1)], torchvision


def test_drop_path_rate_and_the_default_seed():
    """drop_path_rate= sets the block templates' parameter (timm's schedule: test_timm_zoo_v2)."""
    g = secompile.build_ir("efficientnet_b0", drop_path_rate=0.2)
    probs = [d["attrs"]["p"] for _, d in g.nodes() if d["op"] == "drop_path"]
    assert len(probs) == 9 and max(probs) == pytest.approx(0.2 * 14 / 16)
    same = secompile.load_spec("efficientnet_b0",
                               overrides={"blocks.mbconv.params.drop_path_rate": 0.2})
    assert g.structural_hash() == secompile.build_ir(same).structural_hash()
    with pytest.raises(SpecError) as e:
        secompile.compile("se_resnet50", drop_path_rate=0.1)
    assert [m.split(": ", 1)[1] for m in e.value.messages] == [
        "drop_path_rate: se_resnet50 has no drop_path_rate parameter: none of its block "
        "templates declares one"]
    a, b = (secompile.compile("se_resnet20_cifar").state_dict() for _ in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)      # seed 0 by default, as to_onnx


def test_count_of_the_truncated_network():
    full = secompile.count("se_resnet50")
    rep = secompile.count("se_resnet50", features_only=True, out_indices=(2,))
    want = full["stem"]["params"] + sum(s["params"] for s in full["stages"][:2])
    assert rep["total"]["params"] == want and rep["head"] is None and len(rep["stages"]) == 2
    assert rep["se"]["blocks"] == 7 and rep["output"] == [512, 28, 28]
    assert [f["num_chs"] for f in rep["features"]] == [512]
    with pytest.raises(SpecError) as e:
        secompile.count("se_resnet50", features_only=True, out_indices=(5,))
    assert e.value.messages == [
        "<out_indices>:1:1: out_indices: 5 is not a feature index of se_resnet50 "
        "(it has 5 features: 0..4)"
    ]


def test_onnx_backbone_one_output_per_feature(tmp_path):
    import onnxruntime as ort

    net = _randomise_bn(secompile.compile("se_resnet20_cifar", features_only=True, seed=0).eval())
    full = secompile.compile("se_resnet20_cifar", seed=0)
    full.load_state_dict({net.source_keys()[k]: v for k, v in net.state_dict().items()},
                         strict=False)
    path = tmp_path / "b.onnx"
    model = secompile.to_onnx("se_resnet20_cifar", full, path, features_only=True)
    assert [o.name for o in model.graph.output] == ["feature_0", "feature_1", "feature_2"]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 32, 32)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = net(x)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-4, atol=1e-4)
    assert (
        main(
            [
                "export",
                "se_resnet20_cifar",
                "-o",
                str(tmp_path / "c.onnx"),
                "--features-only",
                "--out-indices",
                "0,2",
                "-q",
            ]
        )
        == 0
    )
    import onnx

    assert [o.name for o in onnx.load(str(tmp_path / "c.onnx")).graph.output] == [
        "feature_0",
        "feature_2",
    ]


@pytest.mark.slow   # ~8 s of training steps; the backbone API itself is tested above
def test_detect_fpn_example_trains():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import detect_fpn
    finally:
        sys.path.pop(0)
    losses = detect_fpn.train(steps=6, size=64, batch=2, log=None)
    assert losses[-1] < 0.7 * losses[0], losses


# -- from a wheel, outside the checkout ---------------------------------------------------
ACCEPTANCE = r"""
import json, subprocess, sys
import secompile, torch
assert "site" in secompile.__file__, secompile.__file__
names = secompile.list_models()
print("models", len(names))
out = subprocess.run([sys.executable, "-m", "secompile", "count", "se_resnet50", "--json"],
                     capture_output=True, text=True)
assert out.returncode == 0, out.stderr
print("count params", json.loads(out.stdout)["total"]["params"])
a = subprocess.run([sys.executable, "-m", "secompile", "count", "se_resnet50", "--json", "--set",
                    "input.size=320"], capture_output=True, text=True)
b = subprocess.run([sys.executable, "-m", "secompile", "count", "edited_320.yaml", "--json"],
                   capture_output=True, text=True)
ta, tb = json.loads(a.stdout)["total"], json.loads(b.stdout)["total"]
print("320", ta == tb, ta["macs"])
m = secompile.compile("se_resnet50", num_classes=365)
full = secompile.compile("se_resnet50")
n = lambda m: sum(p.numel() for p in m.parameters())
print("365", m(torch.randn(1, 3, 224, 224)).shape[1], n(full) - n(m))
bad = subprocess.run([sys.executable, "-m", "secompile", "count", "se_resnet50", "--set",
                      "stages.0.repeat=x"],
                     capture_output=True, text=True)
print("bad", bad.returncode, bad.stderr.strip(), "Traceback" in bad.stderr)
f = secompile.compile("se_resnet50", features_only=True)
print("features", f.feature_info.channels(), f.feature_info.reduction(),
      len(secompile.compile("se_resnet50", features_only=True, out_indices=(2, 4))(
          torch.randn(1, 3, 64, 64))))
"""


def test_wheel_installed_outside_the_checkout(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(
        ROOT / "secompile", src / "secompile", ignore=shutil.ignore_patterns("__pycache__")
    )
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(
        pip + ["wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
        check=True,
        capture_output=True,
    )
    wheel = next(wheels.glob("secompile-*.whl"))
    subprocess.run(
        pip + ["install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    work.mkdir()
    shipped = site / "secompile" / "specs"
    assert sorted(p.stem for p in shipped.glob("*.yaml")) == sorted(p.stem for p in all_specs())
    assert sorted(p.name for p in (shipped / "blocks").glob("*.yaml")) == sorted(
        p.name for p in (SPECS / "blocks").glob("*.yaml")
    )
    (work / "edited_320.yaml").write_text(
        (SPECS / "se_resnet50.yaml").read_text().replace("size: [224, 224]", "size: 320")
    )  # includes: shipped blocks
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run(
        [sys.executable, "-c", ACCEPTANCE], cwd=work, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines == {
        "models": str(len(secompile.list_models())),
        "count": "params 28088024",
        "320": "True 7896530944",
        "365": f"365 {FC}",
        "bad": "2 --set:1:17: stages[0].repeat: expected a positive integer or a $-expression, got string 'x' False",
        "features": "[64, 256, 512, 1024, 2048] [2, 4, 8, 16, 32] 2",
    }, out.stdout
    assert not pathlib.Path(work / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is missing")
def test_bench_torch_without_cuda_is_a_clear_error():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_torch.py"), "--device", "cuda"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--device cuda: this torch" in out.stderr and "sees no CUDA device" in out.stderr
