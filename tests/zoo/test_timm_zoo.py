"""The modern SE family (issue 13): specs named after timm models are timm's networks.

In CI (no timm): parameter and conv + linear multiply-add counts against
tests/reference/timm_counts.json (measured from timm 1.0.31 by tools/timm_reference.py). Where timm
is importable (the reference venv, see docs/notes/timm-architectures.md): timm's state_dict, with
randomised BatchNorm, loads through `secompile.load_weights(source="timm")` with 0 missing /
0 unexpected and both networks give the same outputs (|diff| <= 1e-4 x max(1, |y|), float32).
"""
import json
import math
import os
import re

import pytest
import torch
from torch import nn

import secompile
from support import ROOT

TIMM = json.loads((ROOT / "tests" / "reference" / "timm_counts.json").read_text())["models"]
PRESENT = [n for n in TIMM if secompile.model_path(n) is not None]   # files and family variants


def test_the_resnet_family_specs_are_present():
    assert {"seresnet18", "seresnet34", "seresnext26d_32x4d"} <= set(PRESENT)


@pytest.mark.parametrize("name", PRESENT)
def test_counts_equal_timm(name):
    total = secompile.count(name)["total"]
    ref = TIMM[name]
    assert (total["params"], total["conv_linear_macs"]) == (ref["params"], ref["conv_linear_macs"])
    with torch.device("meta"):
        model = secompile.compile(name)
    sd = model.state_dict()
    assert len(sd) == ref["state_dict_entries"]
    assert sum(p.numel() for p in model.parameters()) == ref["params"]


@pytest.mark.parametrize("name", PRESENT)
def test_docs_zoo_modern_family_lists_each_spec_with_its_counts(name):
    """docs/zoo.md's "modern SE family" table (static text in templates/zoo.md.in) stays true."""
    section = (ROOT / "docs" / "zoo.md").read_text().split("## The modern SE family", 1)[1]
    total = secompile.count(name)["total"]
    entry = secompile.zoo.lookup(name)
    spec = f"`{name}.yaml`" if entry.variant is None else \
        f"{name} (`{os.path.basename(entry.file)}`)"
    row = f"| {spec} | {total['params']:,} | {total['conv_linear_macs']:,} | "
    row += f"{total['macs'] / 1e9:.3f} |"
    assert row in section


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESENT)
def test_outputs_equal_timm_under_load_weights(name):
    pytest.importorskip("timm")
    import sys
    sys.path.insert(0, str(ROOT / "tools"))
    from timm_parity import parity
    ours = secompile.compile(name, seed=0)
    rep = parity(name, ours, spec=name, mapping="load_weights")
    assert rep.ok, str(rep)
    # the layout is named for a known key grammar, "structural" where weights pair by structure
    # (ByobNet, ResNeSt, ReXNet checkpoints)
    assert re.fullmatch(r"load_weights: weights \((\w+) layout\): " +
                        f"{TIMM[name]['state_dict_entries']} tensors loaded, 0 missing, "
                        "0 unexpected, 0 shape mismatches", rep.notes[0]), rep.notes[0]


# -- initialisation: grouped and depthwise convs count fan_out per group ---------------------
def _mbconv_stack(blocks: int) -> dict:
    """An EfficientNet-like stack: 1x1 expand (x6) -> 3x3 depthwise -> 1x1 project, SiLU."""
    layers = []
    for i in range(blocks):
        layers += [{"name": f"pw{i}", "conv": {"out": 96, "kernel": 1, "act": "silu"}},
                   {"name": f"dw{i}",
                    "conv": {"out": 96, "kernel": 3, "groups": 96, "act": "silu"}},
                   {"name": f"pwl{i}", "conv": {"out": 16, "kernel": 1, "act": "none"}}]
    return {"name": "mbconv_stack", "input": {"channels": 3, "size": [32, 32]},
            "stem": [{"name": "conv_stem", "conv": {"out": 16, "kernel": 3, "act": "silu"}}],
            "stages": [{"name": "blocks", "layers": layers}],
            "head": [{"name": "pool", "global_avgpool": {}}, {"name": "fc", "linear": {"out": 10}}]}


def test_depthwise_stack_keeps_a_live_signal_at_default_init():
    """12 blocks: the last block's output has std ~4e-3 (5e-15 when the depthwise convs drew
    from He's fan_out = k*k*out without dividing by groups: each block shrank it ~10x)."""
    model = secompile.compile(_mbconv_stack(12), seed=0).eval()
    seen = {}
    model.get_submodule("stages.0.pwl11.bn").register_forward_hook(
        lambda mod, args, out: seen.setdefault("features", out))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
    assert 1e-3 < seen["features"].std().item() < 1e2
    assert y.std().item() > 1e-4


def test_conv_init_is_he_fan_out_per_group():
    model = secompile.compile(_mbconv_stack(2), seed=0)
    convs = {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    dw, pw = convs["stages.0.dw0.conv"], convs["stages.0.pw0.conv"]
    assert dw.weight.std().item() == pytest.approx(math.sqrt(2 / (3 * 3 * 96 // 96)), rel=0.15)
    assert pw.weight.std().item() == pytest.approx(math.sqrt(2 / 96), rel=0.05)
