"""The attention ops (ECA, CBAM, Selective Kernel, stochastic depth): channel_conv, dual_pool,
spatial_sum, channel_pool, the broadcasting mul, select, channel_slice, drop_path.

Each is built from a small layer-list spec (the multi-input ops, mul and select, are then added
to that graph: their spec syntax is the gate / parallel-merge layers), and checked for shapes,
parameters (== the module's numel), exact multiply-adds, torch == onnxruntime with randomised
weights and BatchNorm statistics, and against a plain-torch reference written independently
of the emitters.
"""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

import secompile
from secompile.analysis.counts import Counts, report
from secompile.api import to_dot
from secompile.backends.onnx import lowering as onnx_backend
from secompile.backends.onnx.weights import expected_state, load_state
from secompile.backends.torch import codegen as torch_backend
from secompile.ir import ops

torch.set_num_threads(1)
TOL = 1e-5


# -- helpers -------------------------------------------------------------------------------
def spec(layers: str, size: int = 8, channels: int = 3) -> str:
    body = "\n".join("      " + ln for ln in layers.strip("\n").splitlines())
    return (f"name: t\ninput: {{channels: {channels}, size: {size}}}\n"
            f"stages:\n  - layers:\n{body}\n")


def build(layers: str, **kw):
    return secompile.build_ir(spec(layers, **kw))


def extend(g, path, op, attrs, inputs):
    """Add a multi-input node after the spec's layers and make it the output."""
    g.output = g.add(path, op, attrs, inputs)
    return g.output


def lowered(g, seed=0):
    """The torch model, every weight and BN statistic randomised (eval mode)."""
    model = torch_backend.lower(g, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.3)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            elif isinstance(m, torch.nn.Conv1d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
    return model.eval()


def probe(model, x):
    """Every IR node's value (unit-relative paths of the one layer stage)."""
    unit = model.stages[0]
    rec = {}
    with torch.no_grad():
        unit._probe(unit, x, rec)
    return rec


def onnx_run(g, model, x, opset=onnx_backend.DEFAULT_OPSET):
    m = onnx_backend.lower(g, load_state(model, g), opset=opset)
    onnx.checker.check_model(m, full_check=True)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x.numpy()})[0], m


def check_model(g, x, node_macs: dict, seed=0):
    """Params == numel, the named nodes' exact MACs, torch == ONNX. -> (model, torch output)."""
    model = lowered(g, seed)
    c = Counts(g)
    assert c.total.params == sum(p.numel() for p in model.parameters())
    assert {p: c.nodes[p].macs for p in node_macs} == node_macs
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    assert expected_state(g) == state
    with torch.no_grad():
        y = model(x)
    assert tuple(y.shape[1:]) == g.shape(g.output)
    y_onnx, _ = onnx_run(g, model, x)
    np.testing.assert_allclose(y_onnx, y.numpy(), atol=TOL, rtol=TOL)
    return model, y


def errors(text):
    with pytest.raises(secompile.SpecError) as e:
        secompile.build_ir(text)
    return e.value.messages


def x_for(g, batch=3, seed=1):
    return torch.randn((batch,) + g.input_shape, generator=torch.Generator().manual_seed(seed))


# -- ECA: channel_conv --------------------------------------------------------------------
ECA = """
- conv: {out: 16, kernel: 3}
- avgpool: {kernel: 8}
- channel_conv: {kernel: %s}
- sigmoid
"""


@pytest.mark.parametrize("k", [3, 5])
def test_eca_channel_conv_and_channel_scale(k):
    g = build(ECA % k)
    gate = extend(g, "stages.0.scale", "mul", {}, ["stages.0.0.act", "stages.0.3"])
    assert g.shape("stages.0.2") == (16, 1, 1) and g.shape(gate) == (16, 8, 8)
    assert ops.OPS["channel_conv"].tensors(g.node("stages.0.2")["attrs"], [(16, 1, 1)]) == \
        {"weight": (1, 1, k)}
    x = x_for(g)
    model, y = check_model(g, x, {"stages.0.2": 16 * k, gate: 16 * 64})
    assert tuple(model.state_dict()["stages.0.2.weight"].shape) == (1, 1, k)   # timm's key shape
    assert report(g)["total"]["conv_linear_macs"] == 16 * 3 * 9 * 64 + 16 * k   # Conv1d counted
    # timm's EcaModule: y = x.mean((2, 3)); conv1d over channels with zero ends; x * sigmoid(y)
    feat = probe(model, x)["0.act"]
    w = model.state_dict()["stages.0.2.weight"]
    attn = F.conv1d(feat.mean((2, 3)).unsqueeze(1), w, padding=(k - 1) // 2).squeeze(1)
    ref = feat * attn.sigmoid()[:, :, None, None]
    torch.testing.assert_close(y, ref, atol=TOL, rtol=TOL)


def test_channel_conv_on_vectors_and_explicit_padding():
    g = build("""
- conv: {out: 12, kernel: 3}
- global_avgpool
- channel_conv: {kernel: 4, padding: 1}
""")
    assert g.shape("stages.0.2") == (11,)          # 12 + 2 - 4 + 1, as Conv1d gives
    x = x_for(g)
    model, y = check_model(g, x, {"stages.0.2": 11 * 4})
    w = model.state_dict()["stages.0.2.weight"]
    ref = F.conv1d(probe(model, x)["1"].unsqueeze(1), w, padding=1).squeeze(1)
    torch.testing.assert_close(y, ref, atol=TOL, rtol=TOL)


# -- CBAM: dual_pool, spatial_sum, channel_pool, spatial scale ------------------------------
CBAM_CHANNEL = """
- conv: {out: 16, kernel: 3}
- dual_pool
- conv: {out: 4, kernel: 1, norm: none, act: relu, bias: false}
- conv: {out: 16, kernel: 1, norm: none, act: none, bias: false}
- spatial_sum
- sigmoid
"""


def test_cbam_channel_attention_shares_one_mlp():
    g = build(CBAM_CHANNEL, size=6)
    gate = extend(g, "stages.0.scale", "mul", {}, ["stages.0.0.act", "stages.0.5"])
    assert [g.shape(f"stages.0.{i}") for i in (1, 4)] == [(16, 2, 1), (16, 1, 1)]
    x = x_for(g)
    model, y = check_model(g, x, {"stages.0.1": 16 * 36, "stages.0.4": 16 * 2,
                                  "stages.0.2.conv": 4 * 16 * 2, gate: 16 * 36})
    # timm's CbamModule.channel: fc(avg) + fc(max), fc = 1x1 conv -> ReLU -> 1x1 conv
    sd = model.state_dict()
    fc = lambda v: F.conv2d(F.conv2d(v, sd["stages.0.2.conv.weight"]).relu(),  # noqa: E731
                            sd["stages.0.3.conv.weight"])
    feat = probe(model, x)["0.act"]
    attn = fc(feat.mean((2, 3), keepdim=True)) + fc(feat.amax((2, 3), keepdim=True))
    ref = feat * attn.sigmoid()
    torch.testing.assert_close(y, ref, atol=TOL, rtol=TOL)


CBAM_SPATIAL = """
- conv: {out: 16, kernel: 3}
- channel_pool
- conv: {out: 1, kernel: 7, act: none, bias: false}
- sigmoid
"""


def test_cbam_spatial_attention_and_spatial_scale():
    g = build(CBAM_SPATIAL, size=9)
    gate = extend(g, "stages.0.scale", "mul", {}, ["stages.0.0.act", "stages.0.3"])
    assert g.shape("stages.0.1") == (2, 9, 9) and g.shape("stages.0.3") == (1, 9, 9)
    x = x_for(g)
    model, y = check_model(g, x, {"stages.0.1": 16 * 81, gate: 16 * 81,
                                  "stages.0.2.conv": 2 * 49 * 81})
    # timm's SpatialAttn: cat(mean over C, max over C) -> 7x7 conv + BN -> sigmoid -> x * gate
    sd = model.state_dict()
    feat = probe(model, x)["0.act"]
    pooled = torch.cat([feat.mean(1, keepdim=True), feat.amax(1, keepdim=True)], 1)
    z = F.conv2d(pooled, sd["stages.0.2.conv.weight"], padding=3)
    z = F.batch_norm(z, sd["stages.0.2.bn.running_mean"], sd["stages.0.2.bn.running_var"],
                     sd["stages.0.2.bn.weight"], sd["stages.0.2.bn.bias"], eps=1e-5)
    torch.testing.assert_close(y, feat * z.sigmoid(), atol=TOL, rtol=TOL)


def test_scale_shapes_other_than_channel_or_spatial_are_refused():
    assert ops.infer("mul", {}, [(8, 4, 5), (1, 4, 5)]) == (8, 4, 5)
    assert ops.infer("mul", {}, [(8, 4, 5), (8, 1, 1)]) == (8, 4, 5)
    with pytest.raises(ops.OpError, match=r"scale needs \(C, H, W\) and \(C, 1, 1\) or \(1, H, W\), "
                                          r"got \(8, 4, 5\) and \(1, 5, 4\)"):
        ops.infer("mul", {}, [(8, 4, 5), (1, 5, 4)])


# -- Selective Kernel: channel_slice, select ----------------------------------------------
def sk_spec(paths: int, c_in: int = 12, c: int = 8, attn: int = 4) -> str:
    part = c_in // paths
    branches = "\n".join(
        f"      - [{{channel_slice: {{start: {i * part}, size: {part}}}}}, "
        f"{{conv: {{out: {c}, kernel: 3, dilation: {i + 1}}}}}]" for i in range(paths))
    return f"""
- conv: {{out: {c_in}, kernel: 1}}
- parallel:
    branches:
{branches}
    merge: add
    post:
      - avgpool: {{kernel: 8}}
      - conv: {{out: {attn}, kernel: 1, bias: false}}
      - conv: {{out: {paths * c}, kernel: 1, norm: none, act: none, bias: false}}
"""


@pytest.mark.parametrize("paths", [2, 3])
def test_selective_kernel_select(paths):
    g = build(sk_spec(paths))
    sk = "stages.0.1"
    branches = g.inputs(f"{sk}.add")
    logits = g.output
    sel = extend(g, f"{sk}.select", "select", {"paths": paths}, [logits] + branches)
    assert g.shape(logits) == (paths * 8, 1, 1) and g.shape(sel) == (8, 8, 8)
    assert g.shape(f"{sk}.branch0.0") == (12 // paths, 8, 8)
    x = x_for(g)
    model, y = check_model(g, x, {sel: paths * 8 * 64, f"{sk}.branch0.0": 0})
    # timm's SelectiveKernelAttn: path-major logits (channel p * C + c), softmax across paths
    rec = probe(model, x)
    rel = lambda p: p[len("stages.0."):]  # noqa: E731
    ls = rec[rel(logits)].flatten(1).chunk(paths, dim=1)            # paths x (B, C)
    weights = torch.stack(ls).softmax(0)                               # across the paths
    ref = sum(weights[i][:, :, None, None] * rec[rel(b)] for i, b in enumerate(branches))
    torch.testing.assert_close(y, ref, atol=TOL, rtol=TOL)
    if paths == 2:   # two paths: the softmax is a sigmoid of the difference
        a0 = (ls[0] - ls[1]).sigmoid()[:, :, None, None]
        b0, b1 = (rec[rel(b)] for b in branches)
        torch.testing.assert_close(y, a0 * b0 + (1 - a0) * b1, atol=TOL, rtol=TOL)
    # the slices are channel ranges of the input
    inp = rec["0.act"]
    torch.testing.assert_close(rec["1.branch1.0"], inp[:, 12 // paths: 2 * (12 // paths)])


def test_op_level_drawing_names_the_new_ops():
    g = build(sk_spec(2))
    extend(g, "stages.0.1.select", "select", {"paths": 2}, [g.output] + g.inputs("stages.0.1.add"))
    dot = to_dot(g, "op")
    for text in ("select (2 paths, softmax)", "channels 0..5", "channels 6..11"):
        assert f"<b>{text}</b>" in dot


@pytest.mark.parametrize("ins, message", [
    ([(16, 1, 1), (8, 4, 4)], "select over 2 paths needs logits and 2 branches, got 2 inputs"),
    ([(16, 1, 1), (8, 4, 4), (8, 4, 3)], "select needs branches of equal shapes, "
                                          "got (8, 4, 4), (8, 4, 3)"),
    ([(8, 1, 1), (8, 4, 4), (8, 4, 4)], "select needs logits (2 x 8, 1, 1) for 2 paths of 8 "
                                         "channels, got (8, 1, 1)"),
])
def test_select_refuses_inconsistent_inputs(ins, message):
    with pytest.raises(ops.OpError) as e:
        ops.infer("select", {"paths": 2}, ins)
    assert str(e.value) == message


# -- drop_path ------------------------------------------------------------------------------
DROP = """
- conv: {out: 4, kernel: 3, norm: none, act: none}
- drop_path: {p: %s}
"""


def test_drop_path_is_the_identity_in_eval_and_in_onnx():
    g = build(DROP % 0.25)
    assert g.shape("stages.0.1") == (4, 8, 8)
    x = x_for(g)
    model, y = check_model(g, x, {"stages.0.1": 0})
    assert ops.params("drop_path", {"p": 0.25}, [(4, 8, 8)]) == 0
    torch.testing.assert_close(y, probe(model, x)["0.conv"], atol=0, rtol=0)
    _, m = onnx_run(g, model, x)
    assert [n.op_type for n in m.graph.node if n.name == "stages.0.1"] == ["Identity"]


def test_drop_path_drops_whole_samples_in_training():
    p = 0.5
    g = build(DROP % p)
    model = lowered(g)
    x = x_for(g, batch=256)
    with torch.no_grad():
        kept = model(x)                                 # eval: the branch itself
        model.train()
        torch.manual_seed(7)
        y = model(x)
        torch.manual_seed(7)                            # timm.layers.drop_path, by the same seed
        mask = x.new_empty((256, 1, 1, 1)).bernoulli_(1 - p)
    torch.testing.assert_close(y, kept * mask / (1 - p), atol=TOL, rtol=TOL)
    per_sample = y.flatten(1)
    zero = (per_sample == 0).all(1)
    scaled = torch.isclose(per_sample, kept.flatten(1) / (1 - p), atol=TOL, rtol=TOL).all(1)
    assert bool((zero ^ scaled).all())                  # every sample: all dropped or all kept
    assert 96 <= int(zero.sum()) <= 160                  # Binomial(256, 0.5): 8 sigma either side
    model.train()
    torch.manual_seed(8)
    assert not torch.equal(model(x), y)                  # a fresh mask per call


def test_drop_path_zero_is_the_identity_in_training():
    g = build(DROP % 0)
    model = lowered(g).train()
    x = x_for(g)
    with torch.no_grad():
        torch.testing.assert_close(model(x), probe(model.eval(), x)["0.conv"], atol=0, rtol=0)


# -- spec syntax and located errors -------------------------------------------------------
def test_bare_kind_names_and_counts_report():
    g = build("""
- conv: {out: 8, kernel: 3}
- dual_pool
- spatial_sum
- channel_conv: {kernel: 3}
- channel_slice: {start: 2, size: 4}
""")
    assert [g.op(p) for p in g.order][-4:] == ["dual_pool", "spatial_sum", "channel_conv",
                                               "channel_slice"]
    assert g.shape(g.output) == (4, 1, 1)
    assert Counts(g).total.macs == 8 * 27 * 64 + 8 * 64 + 8 * 2 + 8 * 3


@pytest.mark.parametrize("layers, message", [
    ("- conv: {out: 8, kernel: 3}\n- channel_conv: {kernel: 0}",
     "6:32: stages[0].layers[1].channel_conv.kernel: kernel must be a positive integer, got 0"),
    ("- conv: {out: 8, kernel: 3}\n- channel_conv: {kernel: 3, padding: -1}",
     "6:44: stages[0].layers[1].channel_conv.padding: padding must be >= 0, got -1"),
    ("- conv: {out: 8, kernel: 3}\n- channel_conv: {kernel: 3}",
     "6:23: stages[0].layers[1].channel_conv: channel_conv needs pooled channels (C, 1, 1) or "
     "(C,), got shape (8, 8, 8) at stages.0.1"),
    ("- conv: {out: 8, kernel: 3}\n- global_avgpool\n- dual_pool",
     "7:9: stages[0].layers[2]: dual_pool needs a feature map (C, H, W), got shape (8,) "
     "at stages.0.2"),
    ("- conv: {out: 8, kernel: 3}\n- channel_slice: {start: 6, size: 4}",
     "6:24: stages[0].layers[1].channel_slice: channel_slice [6, 10) is outside the 8 input "
     "channels at stages.0.1"),
    ("- conv: {out: 8, kernel: 3}\n- channel_slice: {start: -1, size: 4}",
     "6:32: stages[0].layers[1].channel_slice.start: start must be >= 0, got -1"),
    ("- conv: {out: 8, kernel: 3}\n- channel_slice: {start: 0}",
     "6:24: stages[0].layers[1].channel_slice: missing required key 'size'"),
    ("- conv: {out: 8, kernel: 3}\n- drop_path: {p: 1.5}",
     "6:24: stages[0].layers[1].drop_path.p: drop_path p must be in [0, 1), got 1.5"),
    ("- conv: {out: 8, kernel: 3}\n- drop_path: {}",
     "6:20: stages[0].layers[1].drop_path: missing required key 'p'"),
    ("- conv: {out: 8, kernel: 3}\n- dual_pool: {k: 1}",
     "6:21: stages[0].layers[1].dual_pool.k: unknown key 'k'"),
])
def test_located_errors(layers, message):
    assert errors(spec(layers)) == [f"<string>:{message}"]


# -- all of them in one network: fusion, compile/export readiness, CUDA --------------------
def conv_attrs(out, kernel=1, padding=0, bias=False):
    return {"out": out, "kernel": (kernel, kernel), "stride": (1, 1), "padding": (padding, padding),
            "dilation": (1, 1), "groups": 1, "bias": bias}


def all_ops_graph():
    """SK (slices, select) -> CBAM channel -> CBAM spatial, whose scale feeds a residual add
    (fused into addcmul with a (1, H, W) scale) -> ECA -> drop_path."""
    g = build(sk_spec(2))
    s = "stages.0"
    sel = extend(g, f"{s}.1.select", "select", {"paths": 2}, [g.output] + g.inputs(f"{s}.1.add"))

    def add(name, op, attrs, inputs):
        return g.add(f"{s}.{name}", op, attrs, inputs)
    a = add("ca.pool", "dual_pool", {}, [sel])
    a = add("ca.fc1", "conv2d", conv_attrs(2), [a])
    a = add("ca.act", "act", {"kind": "relu"}, [a])
    a = add("ca.fc2", "conv2d", conv_attrs(8), [a])
    a = add("ca.sum", "spatial_sum", {}, [a])
    a = add("ca.gate", "act", {"kind": "sigmoid"}, [a])
    ca = add("ca.scale", "mul", {}, [sel, a])
    a = add("sa.pool", "channel_pool", {}, [ca])
    a = add("sa.conv", "conv2d", conv_attrs(1, 7, 3), [a])
    a = add("sa.bn", "batchnorm", {"eps": 1e-5, "momentum": 0.1}, [a])
    a = add("sa.gate", "act", {"kind": "sigmoid"}, [a])
    sa = add("sa.scale", "mul", {}, [ca, a])
    y = add("add", "add", {"scales": None}, [sel, sa])
    a = add("eca.pool", "global_pool", {"mode": "avg", "keepdim": True}, [y])
    a = add("eca.conv", "channel_conv", {"kernel": 3, "padding": None}, [a])
    a = add("eca.gate", "act", {"kind": "sigmoid"}, [a])
    a = add("eca.scale", "mul", {}, [y, a])
    g.output = add("drop_path", "drop_path", {"p": 0.2}, [a])
    return g


def test_all_ops_in_one_network():
    g = all_ops_graph()
    x = x_for(g)
    model, y = check_model(g, x, {"stages.0.sa.scale": 8 * 64, "stages.0.eca.conv": 8 * 3})
    assert "torch.addcmul(" in model.stages[0].code.split("def probe")[0]   # spatial scale fused
    y18, _ = onnx_run(g, model, x, opset=18)     # reduction axes as inputs from opset 18
    np.testing.assert_allclose(y18, y.numpy(), atol=TOL, rtol=TOL)
    assert Counts(g).total.params == sum(p.numel() for p in model.parameters())


def test_all_ops_compile_to_one_graph_and_run_on_meta():
    g = all_ops_graph()
    model = lowered(g)
    x = x_for(g, batch=2)
    for mode in ("train", "eval"):
        torch._dynamo.reset()
        ex = torch._dynamo.explain(getattr(model, mode)())(x)
        assert ex.graph_break_count == 0 and ex.graph_count == 1, \
            f"{mode}: " + "; ".join(str(b.reason) for b in ex.break_reasons)
    torch._dynamo.reset()
    out = model.to("meta")(torch.randn(2, *g.input_shape, device="meta"))
    assert out.device.type == "meta" and tuple(out.shape) == (2, 8, 8, 8)


def test_all_ops_channels_last_bf16_and_export():
    g = all_ops_graph()
    model = lowered(g)
    x = x_for(g)
    with torch.no_grad():
        want = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(x)
        assert ((got.float() - want).norm() / want.norm()).item() < 0.05
        cl = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(cl(x.contiguous(memory_format=torch.channels_last)), want,
                                   rtol=1e-4, atol=1e-4)
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
    x5 = x_for(g, batch=5, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x5), model(x5), rtol=1e-5, atol=1e-5)
    assert ep.state_dict["stages.0.eca.conv.weight"].shape == (1, 1, 3)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
def test_cuda_all_ops_match_cpu_and_compile():
    g = all_ops_graph()
    model = lowered(g)
    x = x_for(g, batch=4)
    with torch.no_grad():
        want = model(x)
        model = model.to("cuda")
        torch.testing.assert_close(model(x.cuda()).cpu(), want, rtol=1e-4, atol=1e-4)
        compiled = torch.compile(model, fullgraph=True)
        torch.testing.assert_close(compiled(x.cuda()).cpu(), want, rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
@cuda
def test_cuda_drop_path_training_step():
    g = all_ops_graph()
    model = lowered(g).to("cuda").train()
    x = x_for(g, batch=512).cuda()
    with torch.no_grad():
        y = model(x)
    dropped = int((y.flatten(1) == 0).all(1).sum())
    assert 52 <= dropped <= 154                          # Binomial(512, 0.2): ~6 sigma either side
    loss = model(x).square().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# -- issue 22: global context, split attention, partial residual, layer scale, GELU ----------
NEW_BLOCKS = """
name: new_blocks
input: {channels: 3, size: [12, 12]}
blocks:
  rex:
    params: {out: int}
    residual:
      branch:
        - {name: conv, conv: {out: $out, kernel: 3, act: gelu}}
        - {name: ls, layer_scale: {init: 0.5}}
      skip: auto
      merge: partial_add
stem:
  - {name: conv, conv: {out: 16, kernel: 3}}
stages:
  - layers:
      - {name: gc, block: {template: global_context, fuse_scale: true}}
      - {name: sa, block: {template: split_attention, out: 8, radix: 2}}
      - {name: sa4, block: {template: split_attention, out: 8, radix: 4, cardinality: 2}}
      - {name: rex, block: {template: rex, out: 12}}
      - {name: sm, softmax: {axis: channels}}
head:
  - {name: pool, global_avgpool: {}}
  - {name: ln, layernorm: {eps: 1.0e-6}}
"""


def _new_blocks_model():
    from secompile.lang import load_spec
    s = load_spec(NEW_BLOCKS)
    model = secompile.compile(s, seed=0).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0, 0.2, generator=gen)
            if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.normal_(0, 0.5, generator=gen)
    return s, model


def test_new_blocks_graph():
    g = secompile.build_ir(secompile.load_spec(NEW_BLOCKS))
    assert g.op("stages.0.gc.add") == "add" and g.op("stages.0.gc.scale") == "mul"
    assert g.inputs("stages.0.gc.add") == ["stages.0.gc.scale", "stages.0.gc.mlp_add.fc2"]
    assert g.shape("stages.0.gc.pool.pool") == (16, 1, 1)
    assert g.node("stages.0.sa4.attn.select")["attrs"] == {"parts": 4, "groups": 2}
    assert g.shape("stages.0.sa4.conv") == (32, 12, 12) and g.shape("stages.0.sa4.attn.sum") == \
        (8, 12, 12)
    assert g.op("stages.0.rex.partial_add") == "partial_add"
    assert g.inputs("stages.0.rex.partial_add") == ["stages.0.sa4.attn.select",
                                                    "stages.0.rex.branch.ls"]
    assert g.shape("stages.0.rex.partial_add") == (12, 12, 12)


def test_new_blocks_equal_their_definitions():
    """split_select with groups: timm's RadixSoftmax; partial_add: x[:, :C] += shortcut."""
    _, model = _new_blocks_model()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    rec = {}
    for u in (m for m in model.modules() if hasattr(m, "_probe")):
        r = {}
        x = u._probe(u, x, r)
        rec.update({f"{u.path}.{k}": v for k, v in r.items()})
    xs, logits = rec["stages.0.sa4.act0"], rec["stages.0.sa4.attn.fc2"]
    b, rc, h, w = xs.shape
    att = logits.view(b, 2, 4, -1).transpose(1, 2).softmax(1).reshape(b, -1)   # timm RadixSoftmax
    want = (xs.reshape(b, 4, rc // 4, h, w) * att.reshape(b, 4, rc // 4, 1, 1)).sum(1)
    torch.testing.assert_close(rec["stages.0.sa4.attn.select"], want)
    short, branch = rec["stages.0.sa4.attn.select"], rec["stages.0.rex.branch.ls"]
    want = torch.cat([branch[:, :8] + short, branch[:, 8:]], 1)
    torch.testing.assert_close(rec["stages.0.rex.partial_add"], want)


def test_new_blocks_onnx_equals_torch():
    import onnxruntime as ort
    s, model = _new_blocks_model()
    sess = ort.InferenceSession(secompile.to_onnx(s, model).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(x).numpy()
    got = sess.run(["output"], {"input": x.numpy()})[0]
    assert np.abs(want).max() > 0.1
    assert np.max(np.abs(got - want) / np.maximum(1.0, np.abs(want))) <= 1e-5
