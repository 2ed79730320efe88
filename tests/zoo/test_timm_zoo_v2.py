"""The modern SE family written in language v2 (issue 13): efficientnet_b0, mobilenetv3_large_100,
mobilenetv3_small_100, regnety_008 and regnety_032 are timm's networks.

Without timm (CI): parameters and conv + fc multiply-adds, in total and per timm stage, equal
tests/reference/timm_counts.json; the compiled module's state_dict has timm's shape sequence
(what tools/timm_parity.py's positional mapping relies on); ONNX == torch at 224 x 224; no
dynamo graph break (`slow`). With timm (`pytest.importorskip`): the outputs equal timm's
under timm's weights (BN randomised), and the stochastic-depth schedule is timm's.

    PYTHONPATH=$PWD /work/timmvenv/bin/python -m pytest -q -m "slow or not slow" \
        tests/zoo/test_timm_zoo_v2.py
"""
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch

import secompile
from secompile.analysis.counts import Counts
from support import ROOT, SHARED, slow_unless_cheap

REF = json.loads((ROOT / "tests" / "reference" / "timm_counts.json").read_text())["models"]

# timm's per-stage breakdown (groups of tests/reference/timm_counts.json) -> our scopes. timm's
# stages with blocks of different settings are several stage entries here (MobileNetV3).
STAGES = {
    "efficientnet_b0": [(("conv_stem", "bn1"), ("stem",))]
    + [((f"blocks.{i}",), (f"stages.{i}",)) for i in range(7)]
    + [(("conv_head", "bn2"), ("head.conv_head",)), (("classifier",), ("head.classifier",))],
    # one spec stage per timm stage (per-block settings, issue 21)
    "mobilenetv3_large_100": [(("conv_stem", "bn1"), ("stem",))]
    + [((f"blocks.{i}",), (f"stages.{i}",)) for i in range(7)]
    + [(("conv_head",), ("head.conv_head",)), (("classifier",), ("head.classifier",))],
    "mobilenetv3_small_100": [(("conv_stem", "bn1"), ("stem",))]
    + [((f"blocks.{i}",), (f"stages.{i}",)) for i in range(6)]
    + [(("conv_head",), ("head.conv_head",)), (("classifier",), ("head.classifier",))],
    "regnety_008": [(("stem",), ("stem",))]
    + [((f"s{i + 1}",), (f"stages.{i}",)) for i in range(4)] + [(("head",), ("head",))],
}
STAGES["regnety_032"] = STAGES["regnety_008"]
MODELS = list(STAGES)
# the key that sets the stochastic-depth rate
DROP_PATH_KEY = {name: "params.drop_path_rate" for name in STAGES}   # a network parameter


def spec(name):
    return name   # a zoo name: a spec file or a family file's variant


def _tool(name):
    s = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(s)
    sys.modules[name] = mod          # dataclasses look their module up
    s.loader.exec_module(mod)
    return mod


def _shape(t):
    return "x".join(map(str, t.shape)) if t.dim() else "scalar"


# -- counts (no timm) --------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_counts_equal_timms(name):
    ref, g = REF[name], secompile.build_ir(spec(name))
    c = Counts(g)
    assert c.total.params == ref["params"]
    assert c.by_op("conv2d", "linear").macs == ref["conv_linear_macs"]
    assert c.by_op("conv2d").macs == ref["conv2d_macs"]
    assert c.by_op("linear").macs == ref["linear_macs"]
    report = secompile.count(spec(name))
    assert report["name"] == name and tuple(report["output"]) == tuple(ref["output_shape"][1:])
    assert (report["total"]["params"], report["total"]["conv_linear_macs"]) == \
        (ref["params"], ref["conv_linear_macs"])


@pytest.mark.parametrize("name", MODELS)
def test_counts_per_stage_equal_timms(name):
    """Parameters and conv + fc multiply-adds of every timm stage (an off count says where)."""
    ref, g = REF[name]["breakdown"], secompile.build_ir(spec(name))
    c = Counts(g)
    conv_fc = {p: cost for p, cost in c.nodes.items() if g.op(p) in ("conv2d", "linear")}
    theirs_seen, ours_seen = set(), set()
    for timm_groups, scopes in STAGES[name]:
        theirs = (sum(ref[t]["params"] for t in timm_groups),
                  sum(ref[t]["macs"] for t in timm_groups))
        params = sum(c.scope(s).params for s in scopes)
        macs = sum(cost.macs for p, cost in conv_fc.items()
                   if any(p == s or p.startswith(s + ".") for s in scopes))
        assert (params, macs) == theirs, (timm_groups, scopes)
        theirs_seen.update(timm_groups)
        ours_seen.update(scopes)
    assert theirs_seen == set(ref)                                  # every timm stage compared
    assert sum(c.scope(s).params for s in ours_seen) == c.total.params   # and all of ours


# -- state_dict layout (no timm) ---------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_state_dict_shapes_are_timms_in_timms_order(name):
    ours = [_shape(t) for t in secompile.compile(spec(name), seed=0).state_dict().values()]
    assert ours == [shape for _, shape in REF[name]["state_dict"]]
    tsv = SHARED / "reference" / "state_dicts" / f"{name}.tsv"
    if tsv.exists():                             # the published layout, where the checkout has it
        _, rows = _tool("timm_reference").read_tsv(str(tsv))
        assert ours == [shape for _, shape in rows]


def test_mobilenetv3_head_conv_runs_on_the_pooled_map():
    g = secompile.build_ir(spec("mobilenetv3_large_100"))
    assert g.shape("head.pool") == (960, 1, 1) and g.shape("head.conv_head.conv") == (1280, 1, 1)
    assert g.node("head.conv_head.conv")["attrs"]["bias"] is True
    assert "head.conv_head.bn" not in g


@pytest.mark.parametrize("name,se_blocks,skips", [
    ("efficientnet_b0", 16, 9), ("mobilenetv3_large_100", 8, 10), ("mobilenetv3_small_100", 9, 6),
    ("regnety_008", 14, 14), ("regnety_032", 21, 21)])
def test_se_rules_and_skips(name, se_blocks, skips):
    """SE is an insertion rule in every one of these specs (counted as SE; removable), and
    `skip: auto` leaves the merge out where the block changes the shape."""
    g = secompile.build_ir(spec(name))
    assert len(g.se) == se_blocks
    assert sum(1 for _, d in g.nodes() if d["op"] == "add") == skips
    plain = secompile.build_ir(spec(name), se=False)
    assert Counts(plain).total.params < Counts(g).total.params


@pytest.mark.parametrize("name", MODELS)
def test_no_drop_path_by_default_and_timms_schedule_when_set(name):
    g = secompile.build_ir(spec(name))
    assert not [p for p, d in g.nodes() if d["op"] == "drop_path"]   # timm's default rate is 0
    g = secompile.build_ir(spec(name), overrides={DROP_PATH_KEY[name]: 0.2})
    probs = [d["attrs"]["p"] for _, d in g.nodes() if d["op"] == "drop_path"]
    assert probs and max(probs) < 0.2 + 1e-9 and min(probs) > 0
    assert Counts(g).total.params == REF[name]["params"]


# -- ONNX and dynamo (no timm; the dynamo traces are slow) -------------------------------------
def _randomised(name, seed=0):
    """The compiled spec with BN weights and statistics randomised, the statistics calibrated
    on a batch so that activations stay O(1) through the depth (He init alone decays them)."""
    model = secompile.compile(spec(name), seed=seed).eval()
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    def calibrate(bn, inputs):
        x = inputs[0]
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
        var = var.clamp(min=0.1 * float(var.mean()))
        bn.running_mean.copy_(mean + 0.1 * var.sqrt() * torch.randn(bn.num_features, generator=gen))
        bn.running_var.copy_(var * torch.empty(bn.num_features).uniform_(0.8, 1.25, generator=gen))

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.normal_(0, 0.1, generator=gen)
        for bn in bns:
            bn.weight.uniform_(0.5, 1.5, generator=gen)
            bn.bias.normal_(0, 0.2, generator=gen)
        hooks = [bn.register_forward_pre_hook(calibrate) for bn in bns]
        model(torch.randn(4, 3, 224, 224, generator=gen))
        for h in hooks:
            h.remove()
    return model


@pytest.mark.parametrize("name", slow_unless_cheap(MODELS, ("mobilenetv3_small_100", "efficientnet_b0")))
def test_onnx_equals_torch(name):
    """Full size, batch 2, randomised BN: onnxruntime (no graph optimisation) == torch."""
    import onnxruntime as ort
    model = _randomised(name)
    blob = secompile.to_onnx(spec(name), model).SerializeToString()
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x).numpy()
    got = sess.run(["output"], {"input": x.numpy()})[0]
    assert np.abs(want).max() > 0.1                      # the comparison sees real activations
    assert np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_zero_dynamo_graph_breaks(name):
    torch._dynamo.reset()
    try:
        model = secompile.compile(spec(name), seed=0).eval()
        ex = torch._dynamo.explain(model)(torch.randn(2, 3, 224, 224))
    finally:
        torch._dynamo.reset()
    assert ex.graph_break_count == 0, "; ".join(str(b.reason) for b in ex.break_reasons)
    assert ex.graph_count == 1


# -- timm itself (skips where timm is not importable) ------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_outputs_equal_timms(name):
    pytest.importorskip("timm")
    parity = _tool("timm_parity")
    torch.set_num_threads(1)
    rep = parity.parity(name, secompile.compile(spec(name), seed=0), spec=str(spec(name)))
    assert rep.ok, str(rep)
    assert rep.max_abs_timm > 0.1          # timm's outputs are not vanishingly small


@pytest.mark.parametrize("name", MODELS)
def test_drop_path_schedule_is_timms(name):
    """With drop_path_rate 0.2 at creation, timm's DropPath modules that are applied (the block
    has its skip) carry the probabilities our drop_path nodes carry, block by block."""
    timm = pytest.importorskip("timm")
    from timm.layers import DropPath
    model = timm.create_model(name, pretrained=False, drop_path_rate=0.2)
    theirs = [m.drop_path.drop_prob for m in model.modules()
              if isinstance(getattr(m, "drop_path", None), DropPath)
              and getattr(m, "has_skip", True)]     # EfficientNet/MobileNet: unused without skip
    g = secompile.build_ir(spec(name), overrides={DROP_PATH_KEY[name]: 0.2})
    ours = [d["attrs"]["p"] for _, d in g.nodes() if d["op"] == "drop_path"]
    assert theirs and ours == pytest.approx(theirs, rel=1e-6)


def test_sweep_counts_v2_se_rules_as_count_does():
    """A sweep inserts SE through the spec's attention modules, as build_ir does: the rule's
    `channels` expression and `act` are the `se` template's parameters (before, the sweep's
    built-in SE block ignored them: regnety_008 swept to 5,700,836 parameters)."""
    rows = secompile.sweep(spec("regnety_008"), ["input.size=[224]"])
    assert rows[0]["ok"] and rows[0]["params"] == REF["regnety_008"]["params"]
    assert rows[0]["conv_linear_macs"] == REF["regnety_008"]["conv_linear_macs"]
    assert rows[0]["se_blocks"] == 14
