"""passes/fuse.py: SE scale + residual add -> one scale_add node, lowered by the torch backend
as torch.addcmul; counts, shapes and the rest of the graph are unchanged."""
import numpy as np
import onnxruntime as ort
import torch

import secompile
from secompile.analysis import Counts
from secompile.api import build_ir
from secompile.backends.onnx import lowering as onnx_backend
from secompile.backends.onnx.weights import load_state
from secompile.backends.torch.codegen import _dead_after, _unit_nodes
from secompile.passes import fuse_scale_add
from support import SPECS


def test_every_residual_se_scale_is_fused_and_counts_stay():
    g = build_ir(SPECS / "se_resnet50.yaml")
    f = fuse_scale_add(g)
    fused = [p for p in f.order if f.op(p) == "scale_add"]
    assert len(fused) == len(g.se) == 16
    assert all(f.inputs(p)[1:] == g.inputs(p.rsplit(".", 1)[0] + ".se.scale") for p in fused)
    assert not any(f.op(p) == "mul" for p in f.order)
    assert f.order == [p for p in g.order if g.op(p) != "mul"]
    assert all(f.shape(p) == g.shape(p) for p in f.order)
    assert Counts(f).total == Counts(g).total
    assert g.op(fused[0]) == "add"   # the input graph is left alone


def test_no_fusion_without_a_plain_two_input_add():
    g = build_ir(SPECS / "se_inception_resnet_v2.yaml")   # residual scaling: add has scale 0.1-0.2
    f = fuse_scale_add(g)
    scaled = [p for p in g.order
              if g.op(p) == "add" and any(s != 1.0 for s in g.node(p)["attrs"]["scales"])]
    assert scaled and all(f.op(p) == "add" for p in scaled)


def test_a_fused_attention_scale_on_the_shortcut_is_still_its_shortcut_out():
    """Found by the fuzz campaign (a gate module as the shortcut's last layer): the record kept
    naming the removed mul, and compiling failed the verifier (an internal error)."""
    spec = {"name": "t", "input": {"channels": 4, "size": 8}, "stages": [{"layers": [
        {"name": "y", "residual": {"branch": [{"name": "c", "conv": {"out": 4}}],
                                   "shortcut": [{"name": "att", "block": {"template": "eca"}}]}}]}]}
    f = fuse_scale_add(build_ir(spec))
    assert f.op("stages.0.y.add") == "scale_add" and "stages.0.y.shortcut.att.scale" not in f
    assert f.composites["stages.0.y"].shortcut_out == "stages.0.y.add"
    f.check()
    x = torch.randn(2, 4, 8, 8)
    assert secompile.compile(spec)(x).shape == (2, 4, 8, 8)


def test_forward_frees_each_intermediate_once_after_its_last_reader():
    g = fuse_scale_add(build_ir(SPECS / "se_resnext50.yaml"))
    for unit, nodes in _unit_nodes(g).items():
        x_in = next(i for p in nodes for i in g.inputs(p) if i not in nodes)
        dead = _dead_after(g, nodes, x_in, nodes[-1])
        freed = [v for vs in dead.values() for v in vs]
        assert sorted(freed) == sorted([x_in] + nodes[:-1]), unit
        for i, vs in dead.items():
            for v in vs:
                assert max(nodes.index(c) for c in g.consumers(v) if c in nodes) == i


def test_generated_forward_frees_without_rereading_its_text():
    model = secompile.compile(SPECS / "se_resnet50.yaml")
    code = model.stages[1].blocks[1].code
    forward = code.split("def probe")[0]
    assert "torch.addcmul(" in forward and "x = None" in forward
    assert "se_scale =" not in forward and "rec[" not in forward


def test_onnx_lowers_a_fused_graph_to_the_same_values():
    g = build_ir(SPECS / "se_resnet20_cifar.yaml")
    state = load_state(None, g, seed=0)
    x = np.random.default_rng(0).standard_normal((2, *g.input_shape)).astype(np.float32)
    outs = []
    for graph in (g, fuse_scale_add(g)):
        m = onnx_backend.lower(graph, state)
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, {"input": x})[0])
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)
    with torch.no_grad():   # and both are the torch module's result
        model = secompile.compile(SPECS / "se_resnet20_cifar.yaml", seed=0).eval()
        y = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(outs[1], y, rtol=1e-4, atol=1e-4)


def _hooked_outputs(model, x, grad: bool) -> dict:
    """Every module's output as its forward hook received it (the tensor itself, not a copy: a
    later in-place write into it shows)."""
    seen, handles = {}, []
    for name, m in model.named_modules():
        if name:
            handles.append(m.register_forward_hook(
                lambda mod, inp, out, name=name: seen.__setitem__(name, out)))
    with torch.set_grad_enabled(grad):
        seen[""] = model(x)
    for h in handles:
        h.remove()
    return {k: v.detach() for k, v in seen.items()}


def test_no_module_output_is_overwritten_without_autograd():
    """Issue 19: under no_grad the fused SE scale + add wrote into the branch's last BN output, so
    a hook on that BN held the SE-scaled sum (max diff 2.1 on seresnet18). Every hooked output is
    the same with and without autograd, and the BN's is what the BN computes."""
    model = secompile.compile("seresnet18", seed=0).eval()
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):   # an identity BN would hide an overwrite
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.running_mean.normal_(0, 0.2, generator=g)
    x = torch.randn(2, 3, 32, 32, generator=g)
    grad, no_grad = _hooked_outputs(model, x, True), _hooked_outputs(model, x, False)
    with torch.inference_mode():
        inference = _hooked_outputs(model, x, False)
    assert grad.keys() == no_grad.keys() == inference.keys()
    assert len(grad) > 100
    for k in grad:
        assert torch.equal(grad[k], no_grad[k]), k
        assert torch.equal(grad[k], inference[k]), k
    block = model.stages[0].blocks[0]
    bn = "stages.0.blocks.0.branch.conv2.bn"
    assert "torch.addcmul(" in block.code
    assert bn in no_grad and bn + ".act" not in no_grad   # the BN feeding the fused add
    with torch.no_grad():
        conv_out = _hooked_outputs(model, x, False)["stages.0.blocks.0.branch.conv2.conv"]
        assert torch.equal(no_grad[bn], block.branch.conv2.bn(conv_out))
