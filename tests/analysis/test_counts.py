"""Analytic counts against the paper (Table 2, eq. 5) and the reference implementations."""
import pytest

import secompile
from secompile.analysis import Counts
from secompile.analysis.counts import report
from support import SPECS

# (spec, conv+fc MACs and params of the reference layouts (senet-paper.md), paper Table 2 GMACs)
REFERENCE = [
    ("resnet50", 3_857_973_248, 25_557_032, 3.86),
    ("se_resnet50", 3_860_488_192, 28_088_024, 3.87),
    ("resnext50", 4_230_479_872, 25_028_904, 4.24),
    ("se_resnext50", 4_232_994_816, 27_559_896, 4.25),
    ("resnet50_tv", 4_089_184_256, 25_557_032, None),
]


@pytest.mark.parametrize("name,conv_fc,params,paper", REFERENCE)
def test_reference_counts(name, conv_fc, params, paper):
    rep = secompile.count(SPECS / f"{name}.yaml")
    assert rep["total"]["conv_linear_macs"] == conv_fc
    assert rep["total"]["params"] == params
    if paper is not None:
        assert abs(rep["total"]["macs"] / 1e9 - paper) / paper < 0.005


def test_report_shape_and_stage_sums():
    rep = secompile.count(SPECS / "se_resnext50.yaml")
    assert rep["name"] == "se_resnext50_32x4d" and rep["input"] == [3, 224, 224]
    assert [s["output_shape"] for s in rep["stages"]] == [[256, 56, 56], [512, 28, 28], [1024, 14, 14], [2048, 7, 7]]
    parts = [rep["stem"]] + rep["stages"] + [rep["head"]]
    assert sum(p["macs"] for p in parts) == rep["total"]["macs"]
    assert sum(p["params"] for p in parts) == rep["total"]["params"]
    assert rep["se"]["blocks"] == 16


def _se_resnet(r, stages="all"):
    text = (SPECS / "se_resnet50.yaml").read_text()
    text = text.replace("{where: {stages: all}, position: standard, reduction: 16}",
                        f"{{where: {{stages: {stages}}}, position: standard, reduction: {r}}}")
    return secompile.load_spec(text, base_dir=str(SPECS))


@pytest.mark.parametrize("r", [4, 8, 16, 32])
def test_eq5_parameter_cost(r):
    """params(SE) - params(plain) == (2/r) sum_s N_s C_s^2 + FC biases (paper eq. 5)."""
    plain = secompile.count(SPECS / "resnet50.yaml")["total"]["params"]
    se = secompile.count(_se_resnet(r))["total"]["params"]
    blocks, channels = [3, 4, 6, 3], [256, 512, 1024, 2048]
    weights = sum(2 * n * c * c // r for n, c in zip(blocks, channels))
    biases = sum(n * (c + c // r) for n, c in zip(blocks, channels))
    assert se - plain == weights + biases


def test_se_without_last_stage():
    """Section 4: SE everywhere but the last stage: ~4% extra params instead of ~10%."""
    plain = secompile.count(SPECS / "resnet50.yaml")["total"]
    full = secompile.count(_se_resnet(16))["total"]
    partial = secompile.count(_se_resnet(16, stages="[0, 1, 2]"))["total"]
    assert 0.09 < full["params"] / plain["params"] - 1 < 0.11
    assert 0.035 < partial["params"] / plain["params"] - 1 < 0.045
    assert 0.0020 < full["macs"] / plain["macs"] - 1 < 0.0040


def test_counting_rules_per_op():
    g = secompile.build_ir(SPECS / "se_resnext50.yaml")
    c = Counts(g)
    conv2 = "stages.0.blocks.0.branch.conv2.conv"      # 3x3, 128 -> 128, 32 groups, 56x56
    assert c.nodes[conv2].macs == 128 * (128 // 32) * 9 * 56 * 56
    assert c.nodes[conv2].params == 128 * 4 * 9
    assert c.nodes["stages.0.blocks.0.branch.conv2.bn"].params == 256
    assert c.nodes["stages.0.blocks.0.branch.conv2.bn"].macs == 0
    assert c.nodes["stages.0.blocks.0.se.pool"].macs == 256 * 56 * 56     # one add per pooled element
    assert c.nodes["stages.0.blocks.0.se.scale"].macs == 256 * 56 * 56    # one multiply per element
    assert c.nodes["stages.0.blocks.0.se.fc1"].params == 256 * 16 + 16
    assert c.nodes["head.fc"].macs == 2048 * 1000 and c.nodes["head.fc"].params == 2048 * 1000 + 1000
    assert c.nodes["stem.pool"].macs == 0 and c.nodes["stages.0.blocks.0.add"].macs == 0


def test_counting_imports_no_torch():
    import subprocess
    import sys
    code = ("import sys, secompile; secompile.count('specs/se_resnext50.yaml'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=SPECS.parent, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_attention_written_as_a_layer_counts_as_an_se_block():
    # mbconv_demo writes its SE as a layer (`block: {template: se}`, as ReXNet does): no rule
    g = secompile.build_ir(SPECS / "mbconv_demo.yaml")
    rep = report(g)
    mods = list(g.attention.values())
    assert rep["se"]["blocks"] == len(mods) == 16
    assert {(m.module, m.kind, m.fusion, m.rule) for m in mods} == {("se", "se", "mul", None)}
    assert rep["se"]["params"] == sum(m.param_count for m in mods) == sum(
        Counts(g).scope(m.scope).params for m in mods)
    assert sum(s["se_blocks"] for s in rep["stages"]) == 16
    # SK attention (a select merge's template) is one module per selective-kernel conv
    sk = secompile.build_ir(SPECS / "skresnet18.yaml")
    assert [(m.kind, m.fusion) for m in sk.attention.values()] == [("sk", "select")] * 8
    assert all(sk.shape(m.output) == sk.shape(m.input) for m in sk.attention.values())
    # CBAM's two gates are one module
    cbam = secompile.build_ir(SPECS / "cbam_resnet50.yaml")
    assert {m.module for m in cbam.attention.values()} == {"cbam"} and len(cbam.attention) == 16
    assert {s.template for p, s in cbam.scopes.items() if p.startswith("stages.0.blocks.0.se.")} \
        == {"cbam_channel", "cbam_spatial"}
