"""The ONNX backend: checker, onnxruntime == torch for every spec, weights, files, CLI.

Numerics are compared on networks whose BatchNorms are all randomised (so a BN wired to
the wrong tensor, or a block lowered wrongly, cannot hide behind identity statistics).
The randomisation is calibrated: running statistics are measured on a batch (then
perturbed per channel), layer by layer, and the last BN of each residual branch gets a
small scale, as in trained ResNets. Uncalibrated random statistics make deep nets blow up (|logits| ~ 1e7
on ResNet-152), where fp32 torch is itself 1e-1 away from fp64 and a 1e-4 comparison
means nothing.
"""
import copy
import dataclasses
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import secompile
from secompile.api import to_onnx
from secompile.backends.onnx import lowering as onnx_backend
from secompile.backends.onnx.weights import expected_state
from secompile.backends.torch import Unit, lower
from secompile.cli import main
from support import SPECS, all_specs, zoo_cases

TOL = 1e-4
# Reduced inputs: the smallest of these, from half the spec's size, that the spec builds at.
# Smaller maps (2 x 2 before the head) make deep plain nets ill-conditioned: fp32 torch then
# drifts from fp64 by ~1e-4 on its own (SE-BN-Inception at 64 x 64).
SMALL_SIZES = (64, 96, 112, 128, 160, 192, 224, 256, 299)
MAX_REPEAT = 2            # default runs: the first block of a stage and one repeat of it
# default runs also fold BN on one network of each family (every spec: -m slow)
FOLD_SPECS = {"se_resnext50", "se_inception_resnet_v2", "se_bn_inception", "se_mobilenet_v1",
              "se_shufflenet_v1_g3", "se_resnet20_cifar"}

torch.set_num_threads(1)


# -- helpers -------------------------------------------------------------------------------
def reduced(path, max_repeat=MAX_REPEAT):
    """The spec with its input shrunk and stage repeats capped: same block kinds, fewer FLOPs."""
    spec = secompile.load_spec(path)
    stages = [dict(st, repeat=min(st["repeat"], max_repeat))   # an expression repeat stays
              if isinstance(st.get("repeat"), int) else st for st in spec.data["stages"]]
    inp = spec.data.get("input", {"channels": 3, "size": 224})
    full = spec.input_shape[1:]
    for s in SMALL_SIZES:
        if s >= max(full):
            break
        if 2 * s < max(full):
            continue
        small = dataclasses.replace(spec, data={**spec.data, "stages": stages, "input": {**inp, "size": s}})
        try:
            secompile.build_ir(small)
            return small
        except secompile.SpecError:
            continue
    return dataclasses.replace(spec, data={**spec.data, "stages": stages})


def randomise(model, input_shape, seed=0):
    """Randomise every BN's weight, bias, running mean and variance (see the module docstring).

    The running statistics are set in one eval-mode pass, each BN from the batch statistics of
    its own input (then perturbed per channel) as computed with every earlier BN already
    randomised, so their perturbations do not compound with depth.
    """
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    last = {id(bn) for u in model.modules() if isinstance(u, Unit) and hasattr(u, "branch")
            for bn in [b for b in u.branch.modules() if isinstance(b, torch.nn.BatchNorm2d)][-1:]}

    def calibrate(bn, inputs):
        x = inputs[0]
        dims = [0] + list(range(2, x.dim()))
        mean, var = x.mean(dims), x.var(dims)
        # a channel ReLU almost always zeroes has a tiny variance, and dividing by it would
        # amplify rounding noise (the fp32 reference would drift from fp64): floor it
        var = var.clamp(min=0.1 * float(var.mean()))
        bn.running_mean.copy_(mean + 0.1 * var.sqrt() * torch.randn(bn.num_features, generator=gen))
        bn.running_var.copy_(var * torch.empty(bn.num_features).uniform_(0.8, 1.25, generator=gen))

    with torch.no_grad():
        for m in model.modules():   # biases (SE fcs, plain convs, fcs) start at zero: make them matter
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
                m.bias.normal_(0, 0.1, generator=gen)
        for bn in bns:
            bn.weight.uniform_(*((0.1, 0.4) if id(bn) in last else (0.5, 1.5)), generator=gen)
            bn.bias.normal_(0, 0.2, generator=gen)
        hooks = [bn.register_forward_pre_hook(calibrate) for bn in bns]
        try:
            model.eval()(torch.randn(4, *input_shape, generator=gen))
        finally:
            for h in hooks:
                h.remove()
    return model


def session(model, optimize=False):
    """An onnxruntime session; graph optimisations off by default, so what runs is our graph."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    blob = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])


def max_diff(model, onnx_model, input_shape, batches=(1, 3), seed=1, optimize=False):
    """Largest |onnxruntime - torch| over the batch sizes (fp32, eval mode)."""
    sess = session(onnx_model, optimize)
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for b in batches:
        x = torch.randn(b, *input_shape, generator=gen)
        with torch.no_grad():
            want = model(x).numpy()
        got = sess.run(["output"], {"input": x.numpy()})[0]
        assert got.shape == want.shape
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def assert_matches_torch(spec, model, fold_bn=False, optimize=False, **kw):
    """to_onnx -> full checker -> onnxruntime == torch within TOL for batch sizes 1 and 3."""
    g = secompile.build_ir(spec)
    om = to_onnx(spec, model, fold_bn=fold_bn, **kw)
    blob = om.SerializeToString()
    onnx.checker.check_model(blob, full_check=True)
    d = max_diff(model, blob, g.input_shape, optimize=optimize)
    if d > TOL:   # say whether the reference itself is accurate enough to judge by
        x = torch.randn(1, *g.input_shape)
        with torch.no_grad():
            fp = float((copy.deepcopy(model).double()(x.double()) - model(x)).abs().max())
        pytest.fail(f"{g.name}: onnxruntime differs from torch by {d:.3g} (fold_bn={fold_bn}); "
                    f"torch fp32 vs fp64: {fp:.3g}")
    return om


def compiled(spec, seed=0):
    g = secompile.build_ir(spec)
    return g, randomise(lower(g, seed=seed), g.input_shape, seed)


# -- every spec ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", zoo_cases())
def test_spec_matches_torch(path):
    spec = reduced(path)
    g, model = compiled(spec)
    om = assert_matches_torch(spec, model)
    assert {n.name for n in om.graph.node} >= set(g.order) - {"input"}   # one node per IR op, by path
    if path.stem in FOLD_SPECS:
        assert_matches_torch(spec, model, fold_bn=True)


@pytest.mark.slow
@pytest.mark.parametrize("path", zoo_cases())
def test_spec_matches_torch_full_size(path):
    """Full depth and input size, both with and without folding, onnxruntime optimising."""
    spec = secompile.load_spec(path)
    _, model = compiled(spec)
    assert_matches_torch(spec, model, optimize=True)
    assert_matches_torch(spec, model, fold_bn=True, optimize=True)


def test_randomised_bn_is_needed_to_pass():
    """Negative control: the same net with one BN's statistics reset does not match."""
    spec = reduced(SPECS / "se_resnet50.yaml")
    g, model = compiled(spec)
    broken = copy.deepcopy(model)
    bn = broken.stages[1].blocks[0].branch.conv2.bn
    bn.reset_running_stats()
    om = to_onnx(spec, broken)
    assert max_diff(model, om, g.input_shape) > 100 * TOL


# -- every op --------------------------------------------------------------------------------
ALL_OPS = """
name: all_ops
input: {channels: 3, size: [19, 23]}
blocks:
  scaled:
    params: {c: int}
    residual:
      branch:
        - {conv: {out: $c, kernel: 3, act: tanh}}
        - {conv: {out: $c, kernel: 1, act: none}}
      scale: 0.2
      post: [relu]
  mixed:
    params: {}
    parallel:
      branches:
        a: [{conv: {out: 8, kernel: 1}}]
        b: [{avgpool: {kernel: 3, stride: 1, padding: 1, count_include_pad: false}},
            {conv: {out: 8, kernel: 1, act: sigmoid}}]
        c: [identity, {conv: {out: 8, kernel: 1, act: hard_sigmoid}}]
stem:
  - {name: conv1, conv: {out: 12, kernel: [3, 5], stride: 2, act: relu6}}
  - {name: pool, maxpool: {kernel: 3, stride: 2, padding: 1, ceil_mode: true}}
stages:
  - layers:
      - {name: g, conv: {out: 12, kernel: 3, groups: 3, act: hard_swish}}
      - {name: shuffle, channel_shuffle: {groups: 3}}
      - {name: d, conv: {out: 24, kernel: 3, dilation: 2, norm: none, act: silu}}
  - {block: scaled, c: 24}
  - {block: mixed}
  - layers:
      - name: sum
        parallel: {branches: [[identity], [{conv: {out: 24, kernel: 1}}], [{dropout: {p: 0.2}}]], merge: add}
      - name: cat
        residual: {branch: [{conv: {out: 8, kernel: 3}}], merge: concat, shortcut: identity}
      - {name: down, avgpool: {kernel: 3, stride: 2, padding: 1, ceil_mode: true}}
      - {name: down2, maxpool: {kernel: 2, stride: 2, ceil_mode: true}}
      - {name: gconv, conv: {out: 32, kernel: 1, groups: 4, bias: true}}
  - layers:
      - {name: pool, global_avgpool: {}}
      - {name: bn1d, bn: {eps: 0.001}}
head:
  - {name: fc1, linear: {out: 16}}
  - {name: bn, bn: {}}
  - relu
  - {name: drop, dropout: {p: 0.3}}
  - flatten
  - {name: fc, linear: {out: 5, bias: false}}
se:
  - {where: {stages: [1]}, position: standard, reduction: 4, squeeze: max, gate: hard_sigmoid}
  - {where: {stages: [1]}, position: identity, reduction: 4, bias: false}
  - {where: {stages: [2]}, position: pre, channels: 3}
  - {where: {stages: [3]}, position: post, reduction: 4}
  - {where: {path: stages.0.d}, reduction: 6}   # feeds an identity-SE shortcut (request onnx-1)
  - {where: {path: stem}, reduction: 3}
"""


def test_every_op_lowers_and_matches():
    g, model = compiled(ALL_OPS)
    ops = {d["op"] for _, d in g.nodes()}
    assert ops >= {"conv2d", "batchnorm", "act", "maxpool2d", "avgpool2d", "global_pool", "flatten", "linear",
                   "dropout", "identity", "add", "concat", "mul", "channel_shuffle"}
    om = assert_matches_torch(ALL_OPS, model)
    assert_matches_torch(ALL_OPS, model, fold_bn=True)
    by_name = {n.name: n for n in om.graph.node}
    kinds = {n.op_type for n in om.graph.node}
    assert kinds >= {"Conv", "BatchNormalization", "Clip", "HardSwish", "HardSigmoid", "Tanh", "Sigmoid", "Relu",
                     "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Gemm", "Identity",
                     "Add", "Sum", "Concat", "Mul", "Reshape", "Transpose"}
    attr = lambda n, k: onnx.helper.get_attribute_value(next(a for a in n.attribute if a.name == k))  # noqa: E731
    assert attr(by_name["stages.0.g.conv"], "group") == 3
    assert attr(by_name["stages.3.down"], "ceil_mode") == 1
    assert attr(by_name["stages.2.blocks.0.b.0"], "count_include_pad") == 0
    assert by_name["stages.1.blocks.0.se.pool"].op_type == "GlobalMaxPool"
    assert by_name["stages.1.blocks.0.se.gate"].op_type == "HardSigmoid"
    assert by_name["stages.4.bn1d"].op_type == "BatchNormalization"    # BN on a (N, F) vector
    # residual scaling: shortcut + 0.2 * branch
    assert [n.op_type for n in om.graph.node if n.name.startswith("stages.1.blocks.0.add")] == \
        ["Constant", "Mul", "Add"]
    assert onnx.numpy_helper.to_array(by_name["stages.1.blocks.0.add/scale1"].attribute[0].t) == np.float32(0.2)
    assert by_name["stages.3.sum.add"].op_type == "Sum"


@pytest.mark.parametrize("size", [5, 6, 7, 8])
@pytest.mark.parametrize("pool", ["maxpool", "avgpool"])
@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (2, 2, 1), (3, 2, 1), (3, 3, 1), (3, 2, 0)])
def test_pool_ceil_mode(pool, kernel, stride, padding, size):
    """ceil_mode edge cases: the last window must start inside the input (PyTorch's rule)."""
    extra = {"count_include_pad": bool(size % 2)} if pool == "avgpool" else {}
    spec = {"name": "pool", "input": {"channels": 2, "size": [size, size + 1]},
            "stages": [{"layers": [{pool: {"kernel": kernel, "stride": stride, "padding": padding,
                                           "ceil_mode": True, **extra}}]}]}
    g, model = compiled(spec)
    om = to_onnx(spec, model)
    onnx.checker.check_model(om, full_check=True)
    assert max_diff(model, om, g.input_shape, batches=(2,)) <= TOL


# -- structure ---------------------------------------------------------------------------------
def test_se_block_pattern_and_groups():
    spec = reduced(SPECS / "se_resnext50.yaml")
    g = secompile.build_ir(spec)
    om = to_onnx(spec)
    by_name = {n.name: n for n in om.graph.node}
    for s in g.se:
        seq = [by_name[f"{s}.{k}"] for k in ("pool", "fc1", "act", "fc2", "gate", "scale")]
        assert [n.op_type for n in seq] == ["GlobalAveragePool", "Conv", "Relu", "Conv", "Sigmoid", "Mul"]
        for a, b in zip(seq, seq[1:]):
            assert a.output[0] in b.input        # a chain: each node reads the previous one
    conv2 = by_name["stages.0.blocks.0.branch.conv2.conv"]
    assert onnx.helper.get_attribute_value(next(a for a in conv2.attribute if a.name == "group")) == 32


def test_shapes_batch_and_opset():
    spec = reduced(SPECS / "se_resnet50.yaml")
    g = secompile.build_ir(spec)
    om = to_onnx(spec)
    assert om.opset_import[0].version == 17 and om.opset_import[0].domain == ""
    dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(om.graph.input[0]) == ["N", *g.input_shape]
    assert dims(om.graph.output[0]) == ["N", *g.shape(g.output)]
    info = {vi.name: dims(vi) for vi in om.graph.value_info}
    for p in g.order:
        if p not in ("input", g.output):
            assert info[p] == ["N", *g.shape(p)], p
    inferred = onnx.shape_inference.infer_shapes(om, strict_mode=True, data_prop=True)
    assert {vi.name: dims(vi) for vi in inferred.graph.value_info if vi.name in info} == info


@pytest.mark.parametrize("opset", [18, 21])
def test_newer_opsets(opset):
    """Opset 18 moved ReduceMean's axes to an input; a head that pools to a vector uses it."""
    spec = reduced(SPECS / "se_resnet20_cifar.yaml")
    g, model = compiled(spec)
    om = assert_matches_torch(spec, model, opset=opset)
    assert om.opset_import[0].version == opset
    assert any(n.op_type == "ReduceMean" and len(n.input) == 2 for n in om.graph.node)


# -- weights -----------------------------------------------------------------------------------
def test_initializers_are_exactly_parameters_and_bn_statistics():
    spec = reduced(SPECS / "se_resnext50.yaml")
    g, model = compiled(spec)
    om = to_onnx(spec, model)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in om.graph.initializer}
    want = {k: v.detach().numpy() for k, v in model.named_parameters()}
    want.update({k: v.numpy() for k, v in model.named_buffers() if k.endswith(("running_mean", "running_var"))})
    assert set(inits) == set(want) == set(expected_state(g))
    assert len(om.graph.initializer) == len(inits)    # no duplicates
    for k, v in want.items():
        np.testing.assert_array_equal(inits[k], v, err_msg=k)
    assert sum(v.size for k, v in inits.items() if "running" not in k) == secompile.count(spec)["total"]["params"]


def test_fold_bn_leaves_no_conv_bn_pairs():
    spec = reduced(SPECS / "se_resnet50.yaml")
    g, model = compiled(spec)
    om = to_onnx(spec, model, fold_bn=True)
    assert not [n for n in om.graph.node if n.op_type == "BatchNormalization"]
    convs = [p for p, d in g.nodes() if d["op"] == "conv2d"]
    names = {t.name for t in om.graph.initializer}
    assert names == {f"{p}.{k}" for p in convs for k in ("weight", "bias")} | {"head.fc.weight", "head.fc.bias"}
    assert om.metadata_props[1].key == "secompile.fold_bn" and om.metadata_props[1].value == "true"


def test_weights_from_module_state_dict_and_checkpoint(tmp_path):
    spec = reduced(SPECS / "se_resnet20_cifar.yaml")
    _, model = compiled(spec)
    ref = to_onnx(spec, model).SerializeToString()
    sd = model.state_dict()
    torch.save(sd, tmp_path / "plain.pt")
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "wrapped.pt")
    for w in (sd, str(tmp_path / "plain.pt"), tmp_path / "wrapped.pt",
              {k: v.numpy() for k, v in sd.items() if not k.endswith("num_batches_tracked")}):
        assert to_onnx(spec, w).SerializeToString() == ref
    assert to_onnx(spec, seed=0).SerializeToString() != ref   # the seed's weights are other weights


def _ckpt(tmp_path, edit):
    path = SPECS / "se_resnet20_cifar.yaml"
    sd = secompile.compile(path, seed=0).state_dict()
    edit(sd)
    ckpt = tmp_path / "ckpt.pt"
    torch.save(sd, ckpt)
    return path, ckpt


KEY = "stages.0.blocks.0.branch.conv1.conv.weight"


@pytest.mark.parametrize("edit,message", [
    (lambda sd: sd.__setitem__(KEY, torch.zeros(16, 8, 3, 3)),
     f"{KEY}: shape 16x8x3x3 in the checkpoint, 16x16x3x3 in the model"),
    (lambda sd: sd.pop(KEY), f"{KEY}: missing from the checkpoint (the model expects 16x16x3x3)"),
    (lambda sd: sd.__setitem__("head.extra.weight", torch.zeros(3)),
     "head.extra.weight: in the checkpoint (shape 3) but not in the model"),
    (lambda sd: (sd.pop(KEY), sd.__setitem__("head.fc.bias", torch.zeros(7))),
     f"{KEY}: missing from the checkpoint (the model expects 16x16x3x3) (and 1 more mismatching key)"),
])
def test_broken_weights_exit_2_and_write_nothing(tmp_path, capsys, edit, message):
    spec, ckpt = _ckpt(tmp_path, edit)
    out = tmp_path / "out" / "net.onnx"
    assert main(["export", str(spec), "-o", str(out), "--weights", str(ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"{ckpt}:1:1: {message}"
    assert not out.exists() and not (out.parent.exists() and os.listdir(out.parent))


def test_unreadable_checkpoint(tmp_path, capsys):
    bad = tmp_path / "junk.pt"
    bad.write_bytes(b"not a checkpoint")
    spec = str(SPECS / "se_resnet20_cifar.yaml")
    assert main(["export", spec, "-o", str(tmp_path / "x.onnx"), "--weights", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"{bad}:1:1: <weights>: cannot read the checkpoint")
    with pytest.raises(secompile.SpecError, match="no such checkpoint file"):
        to_onnx(spec, tmp_path / "missing.pt")
    assert not (tmp_path / "x.onnx").exists()


# -- files and CLI -----------------------------------------------------------------------------
def test_same_spec_and_weights_give_identical_bytes(tmp_path):
    spec = SPECS / "se_resnet20_cifar.yaml"
    a, b, c = (tmp_path / n for n in ("a.onnx", "b.onnx", "c.onnx"))
    to_onnx(spec, path=a)
    to_onnx(str(spec), path=b)
    to_onnx(spec, path=c, seed=1)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert main(["-q", "export", str(spec), "-o", str(c), "--fold-bn"]) == 0
    d = tmp_path / "d.onnx"
    assert main(["-q", "export", str(spec), "-o", str(d), "--fold-bn"]) == 0
    assert c.read_bytes() == d.read_bytes() != a.read_bytes()
    # another process, another hash seed: still the same bytes
    e = tmp_path / "e.onnx"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-m", "secompile", "-q", "export", str(spec), "-o", str(e)], env=env, check=True,
                   cwd=SPECS.parent)
    assert e.read_bytes() == a.read_bytes()


def test_export_cli_and_build_onnx(tmp_path, capsys):
    spec = SPECS / "se_resnet20_cifar.yaml"
    out = tmp_path / "net.onnx"
    assert main(["export", str(spec), "-o", str(out), "--seed", "3", "--opset", "18"]) == 0
    assert "wrote" in capsys.readouterr().out
    m = onnx.load(out)
    onnx.checker.check_model(m, full_check=True)
    assert m.opset_import[0].version == 18
    assert main(["-q", "build", str(spec), "-o", str(tmp_path / "build"), "--onnx", "--no-draw"]) == 0
    name = secompile.load_spec(spec).name
    assert main(["-q", "build", str(spec), "-o", str(tmp_path / "again"), "--onnx", "--no-draw"]) == 0
    assert (tmp_path / "build" / f"{name}.onnx").read_bytes() == (tmp_path / "again" / f"{name}.onnx").read_bytes()
    built = onnx.load(tmp_path / "build" / f"{name}.onnx")
    sd = secompile.compile(spec, seed=0).state_dict()   # the build's module is initialised with seed 0
    for t in built.graph.initializer:
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(t), sd[t.name].numpy())
    assert main(["export", str(spec), "-o", str(tmp_path / "x.onnx"), "--opset", "9"]) == 2
    assert "opset 9 is not supported" in capsys.readouterr().err
    assert main(["export", str(spec), "-o", str(tmp_path / "x.onnx"), "--max-params", "1000"]) == 2
    assert not (tmp_path / "x.onnx").exists()


def test_external_data_for_big_models(tmp_path, monkeypatch):
    """Over the 2 GiB protobuf limit tensors go to `<file>.data`; forced here with a 0 threshold."""
    monkeypatch.setattr(onnx_backend, "EXTERNAL_DATA_THRESHOLD", 0)
    spec = reduced(SPECS / "se_resnet20_cifar.yaml")
    g, model = compiled(spec)
    path = tmp_path / "big.onnx"
    om = to_onnx(spec, model, path=path)
    assert sorted(os.listdir(tmp_path)) == ["big.onnx", "big.onnx.data"]
    assert all(t.data_location == onnx.TensorProto.DEFAULT and t.raw_data for t in om.graph.initializer)
    assert os.path.getsize(path) < os.path.getsize(tmp_path / "big.onnx.data")
    onnx.checker.check_model(str(path), full_check=True)
    loaded = onnx.load(path)
    assert max_diff(model, loaded, g.input_shape) <= TOL
    first = (path.read_bytes(), (tmp_path / "big.onnx.data").read_bytes())
    to_onnx(spec, model, path=path)
    assert (path.read_bytes(), (tmp_path / "big.onnx.data").read_bytes()) == first


# -- generated specs ---------------------------------------------------------------------------
def _check_generated(examples, **constraints):
    testing = pytest.importorskip("secompile.testing")
    hypothesis = pytest.importorskip("hypothesis")

    @hypothesis.settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(testing.specs(**constraints))
    def check(spec):
        g, model = compiled(spec)
        for fold_bn in (False, True):
            om = to_onnx(spec, model, fold_bn=fold_bn)
            blob = om.SerializeToString()
            onnx.checker.check_model(blob, full_check=True)
            assert max_diff(model, blob, g.input_shape) <= TOL, (fold_bn, spec)

    check()


def test_generated_specs_match_torch():
    """The property-test generator's networks (every block kind, SE anywhere) lower and match."""
    _check_generated(6, max_params=200_000)   # tests/properties/test_onnx.py draws more


@pytest.mark.thorough
def test_generated_specs_match_torch_thorough():
    _check_generated(500, max_params=2_000_000)


if __name__ == "__main__":   # the parity table behind the tests: python tests/backends/onnx/test_onnx_export.py [--full]
    full = "--full" in sys.argv
    print(f"{'spec':28} {'input':>13} {'nodes':>6} {'checker':>8} {'max |ORT - torch|':>18} {'folded':>9}")
    for path in all_specs():
        spec = secompile.load_spec(path) if full else reduced(path)
        g, model = compiled(spec)
        diffs, nodes = [], 0
        for fold_bn in (False, True):
            om = to_onnx(spec, model, fold_bn=fold_bn)
            blob = om.SerializeToString()
            onnx.checker.check_model(blob, full_check=True)
            nodes = nodes or len(om.graph.node)
            diffs.append(max_diff(model, blob, g.input_shape, optimize=full))
        print(f"{path.stem:28} {'x'.join(map(str, g.input_shape)):>13} {nodes:6d} {'ok':>8} {diffs[0]:18.2e} "
              f"{diffs[1]:9.2e}", flush=True)
