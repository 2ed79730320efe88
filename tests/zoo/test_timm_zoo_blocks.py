"""New blocks as data (issue 22): gcresnet50t (global context), resnest14d / resnest50d (split
attention in timm's tensor layout) and rexnet_100 (partial residual) are timm's networks.

Without timm (CI): parameters and conv + fc multiply-adds equal tests/reference/timm_counts.json;
the compiled state_dict has timm's shapes in timm's order (tests/reference/state_dicts/, ByobNet's
shortcut registered first: gcresnet50t's blocks are compared with it moved last); ONNX == torch;
feature_info equals timm's. With timm: the outputs equal timm's under timm's weights (BN
randomised).

    PYTHONPATH=$PWD /work/timmvenv/bin/python -m pytest -q -m "slow or not slow" \
        tests/zoo/test_timm_zoo_blocks.py
"""
import json
import re

import numpy as np
import pytest
import torch

import secompile
from secompile.analysis.counts import Counts
from support import ROOT, SPECS

REF = json.loads((ROOT / "tests" / "reference" / "timm_counts.json").read_text())["models"]
LAYOUTS = ROOT / "tests" / "reference" / "state_dicts"
MODELS = ["gcresnet50t", "resnest14d", "resnest50d", "rexnet_100"]
FEATURES = {   # timm's feature_info: (num_chs, reduction) per level
    "gcresnet50t": [(32, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)],
    "resnest14d": [(64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)],
    "resnest50d": [(64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)],
    "rexnet_100": [(16, 2), (38, 4), (61, 8), (128, 16), (185, 32)],
}


def spec(name):
    """The spec file named after the model, or the zoo name (rexnet_100: a rexnet.yaml variant)."""
    path = SPECS / f"{name}.yaml"
    return path if path.exists() else name


def timm_layout(name) -> list[tuple[str, str]]:
    rows = [line.split("\t") for line in (LAYOUTS / f"{name}.tsv").read_text().splitlines()
            if line and not line.startswith("#")]
    return [(k, s) for k, s in rows]


def timm_order_as_built(name) -> list[tuple[str, str]]:
    """timm's layout with ByobNet's `shortcut.*` entries moved after the rest of their block."""
    rows, out = timm_layout(name), []
    block = lambda k: (m := re.match(r"(stages\.\d+\.\d+)\.", k)) and m.group(1)  # noqa: E731
    i = 0
    while i < len(rows):
        b = block(rows[i][0])
        grp = [r for r in rows[i:] if b and block(r[0]) == b] or [rows[i]]
        out += [r for r in grp if ".shortcut." not in r[0]] + \
            [r for r in grp if ".shortcut." in r[0]]
        i += len(grp)
    return out


@pytest.mark.parametrize("name", MODELS)
def test_counts_equal_timms(name):
    ref, c = REF[name], Counts(secompile.build_ir(spec(name)))
    assert c.total.params == ref["params"]
    assert c.by_op("conv2d", "linear").macs == ref["conv_linear_macs"]
    assert c.by_op("linear").macs == ref["linear_macs"]


def test_gc_attention_pooling_is_timms_matmul():
    """timm's flop counter sees the context's batched matmul on top of the convs and the fc."""
    c = Counts(secompile.build_ir(spec("gcresnet50t")))
    ref = REF["gcresnet50t"]
    assert c.by_op("attn_pool").macs == ref["flop_counter_macs"] - ref["conv_linear_macs"] \
        == 1_379_840


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if n in ("gcresnet50t", "resnest50d") else n for n in MODELS])
def test_state_dict_shapes_are_timms(name):
    with torch.device("meta"):
        ours = [tuple(t.shape) for t in secompile.compile(spec(name)).state_dict().values()]
    ours = ["x".join(map(str, s)) if s else "scalar" for s in ours]
    assert ours == [s for _, s in timm_order_as_built(name)]
    assert [s for _, s in REF[name]["state_dict"]] == [s for _, s in timm_layout(name)]


@pytest.mark.parametrize("name", MODELS)
def test_feature_levels_are_timms(name):
    from secompile.passes.truncate import feature_levels
    levels = feature_levels(secompile.build_ir(spec(name)))
    assert [(f["num_chs"], f["reduction"]) for f in levels] == FEATURES[name]


def _randomised(name, size, seed=0):
    """The compiled spec with BN (statistics calibrated on a batch, as test_timm_zoo_v2 does, so
    activations stay O(1)), LayerNorm and conv biases away from their initial values."""
    model = secompile.compile(spec(name), seed=seed, input_size=size).eval()
    gen = torch.Generator().manual_seed(seed)

    def calibrate(bn, inputs):
        x = inputs[0]
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
        var = var.clamp(min=0.1 * float(var.mean()))
        bn.running_mean.copy_(mean + 0.1 * var.sqrt() * torch.randn(bn.num_features, generator=gen))
        bn.running_var.copy_(var * torch.empty(bn.num_features).uniform_(0.8, 1.25, generator=gen))

    with torch.no_grad():
        hooks = []
        for m in model.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.normal_(0, 0.1, generator=gen)
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.2, generator=gen)
            if isinstance(m, torch.nn.BatchNorm2d):
                hooks.append(m.register_forward_pre_hook(calibrate))
        model(torch.randn(4, 3, size, size, generator=gen))
        for h in hooks:
            h.remove()
        # softmax logits of O(1) (random weights give logits in the hundreds deep in the network,
        # where a float rounding of 1e-6 relative moves the softmax by percents)
        for p, d in model.graph.nodes():
            if d["op"] == "softmax" or d["op"] == "split_select":
                src = model.graph.inputs(p)[-1 if d["op"] == "split_select" else 0]
                model.get_submodule(src).weight.mul_(0.1)
    return model


def _onnx_equals_torch(name, size):
    import onnxruntime as ort
    model = _randomised(name, size)
    blob = secompile.to_onnx(spec(name), model, input_size=size).SerializeToString()
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x).numpy()
    got = sess.run(["output"], {"input": x.numpy()})[0]
    assert np.abs(want).max() > 0.1                      # the comparison sees real activations
    assert np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))) <= 1e-4


@pytest.mark.slow   # twin: tests/backends/test_attention_ops.py::test_new_blocks_onnx_equals_torch
@pytest.mark.parametrize("name", MODELS)
def test_onnx_equals_torch_at_224(name):
    _onnx_equals_torch(name, 224)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_outputs_equal_timms(name):
    """timm's weights (BN randomised) in timm's order (gcresnet50t: shortcut last in a block)."""
    timm = pytest.importorskip("timm")
    tm = timm.create_model(name, pretrained=False).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in tm.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.2, generator=gen)
                m.running_mean.normal_(0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
    theirs = tm.state_dict()
    ours = secompile.compile(spec(name)).eval()
    keys = [k for k, _ in timm_order_as_built(name)]
    ours.load_state_dict(dict(zip(ours.state_dict(), (theirs[k] for k in keys))))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = tm(x), ours(x)
    assert float(((got - want).abs() / want.abs().clamp(min=1)).max()) <= 1e-4
