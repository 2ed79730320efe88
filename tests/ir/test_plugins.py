"""Plug-in ops (secompile.register_op, ir/plugins.py), through the worked example of
docs/extending.md, examples/coord_attention.py, loaded as a user's program would: nothing in the
package knows coordinate attention."""
import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import secompile
from secompile.analysis.counts import Cost, Counts
from secompile.backends.torch.codegen import trace_shapes
from secompile.ir import ops, plugins
from secompile.lang import schema
from secompile.testing import check_shapes, specs
from support import ROOT, randomise_bn


def _example():
    spec = importlib.util.spec_from_file_location("coord_attention",
                                                  ROOT / "examples" / "coord_attention.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ex = _example()
CA = "stages.0.0.branch.ca"      # the coord_attn node of ex.SPEC
NO_ONNX = ("op 'coord_attn' (registered by coord_attention) has no ONNX emitter; "
           "pass onnx=... to register_op")


@pytest.fixture
def coord():
    with ex.register() as reg:
        yield reg
    assert "coord_attn" not in ops.OPS and "coord_attn" not in schema.layer_kinds()


def _hand_counts(c, h, w, r, minimum=8):
    """Coordinate attention by hand: conv1 C -> m (+ bias), BN(m), conv_h and conv_w m -> C
    (+ bias); two average pools, the shared conv over H + W positions, the gate convs, two
    multiplies per element."""
    m = max(minimum, c // r)
    params = (m * c + m) + 2 * m + 2 * (c * m + c)
    macs = 2 * c * h * w + m * c * (h + w) + c * m * (h + w) + 2 * c * h * w
    return params, macs


def test_count_is_the_hand_count_and_the_torch_modules(coord):
    ca_params, ca_macs = _hand_counts(16, 16, 16, r=4)
    assert (ca_params, ca_macs) == (440, 24576)
    stem = (3 * 16 * 9 + 32, 16 * 3 * 9 * 16 * 16)            # conv 3x3 s2 + BN
    branch = (2 * (16 * 16 * 9 + 32), 2 * 16 * 16 * 9 * 256)  # two conv 3x3 + BN
    head = (16 * 10 + 10, 16 * 256 + 16 * 10)                  # global avg pool, fc
    g = secompile.build_ir(ex.SPEC)
    assert Counts(g).nodes[CA] == Cost(ca_macs, ca_params)
    report = secompile.count(ex.SPEC)["total"]
    assert report["params"] == stem[0] + branch[0] + ca_params + head[0] == 5746
    assert report["macs"] == stem[1] + branch[1] + ca_macs + head[1] == 1_319_072
    model = secompile.compile(ex.SPEC)
    assert sum(p.numel() for p in model.parameters()) == 5746
    ca = model.get_submodule(CA)
    assert isinstance(ca, ex.CoordAttention)
    assert sum(p.numel() for p in ca.parameters()) == ca_params


def test_compile_forward_shapes_and_verifier(coord):
    assert check_shapes(ex.SPEC) == {"train": 24, "eval": 24}   # traced nodes + hooks
    model = secompile.compile(ex.SPEC).eval()
    x = torch.randn(2, 3, 32, 32)
    assert tuple(model(x).shape) == (2, 10)
    assert trace_shapes(model, x)[CA] == (16, 16, 16)
    secompile.build_ir(ex.SPEC).check()   # shapes and tensors re-derived from the registry


def test_onnx_equals_torch_with_bn_randomised(coord):
    import onnxruntime as ort
    gen = torch.Generator().manual_seed(0)
    model = secompile.compile(ex.SPEC, seed=0).eval()
    randomise_bn(model, gen)
    om = secompile.to_onnx(ex.SPEC, model)
    assert [n.name for n in om.graph.node if n.name.startswith(CA) and "/" not in n.name] == [CA]
    assert {i.name for i in om.graph.initializer if i.name.startswith(CA)} == {
        f"{CA}.{k}" for k in ("conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias",
                              "bn1.running_mean", "bn1.running_var", "conv_h.weight",
                              "conv_h.bias", "conv_w.weight", "conv_w.bias")}
    sess = ort.InferenceSession(om.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 32, 32, generator=gen)
    with torch.no_grad():
        want = model(x).numpy()
    got = sess.run(None, {"input": x.numpy()})[0]
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, float(np.abs(want).max()))


def test_no_onnx_emitter_is_a_clear_error_at_export(tmp_path, capsys):
    with ex.register(onnx=False):
        assert secompile.count(ex.SPEC)["total"]["params"] == 5746   # count, compile work
        secompile.compile(ex.SPEC)
        with pytest.raises(secompile.PluginError) as e:
            secompile.to_onnx(ex.SPEC, path=tmp_path / "net.onnx")
        assert str(e.value) == NO_ONNX
        spec = tmp_path / "net.yaml"
        spec.write_text(_yaml(ex.SPEC))
        from secompile.cli import main
        assert main(["export", str(spec), "-o", str(tmp_path / "net.onnx")]) == 2
        assert capsys.readouterr().err == f"secompile: {NO_ONNX}\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["net.yaml"]   # nothing written


def _yaml(spec: dict) -> str:
    import yaml
    return yaml.safe_dump(spec, sort_keys=False)


BAD = [  # (the coord_attn layer as written, the located message)
    ("{reduction: 0}", "5:33: stages[0].layers[0].coord_attn.reduction: coord_attn reduction: "
                       "must be >= 1, got 0"),
    ("{reduction: two}", "5:33: stages[0].layers[0].coord_attn.reduction: expected an integer "
                         "or a $-expression, got string 'two'"),
    ("{act: tanh}", "5:27: stages[0].layers[0].coord_attn.act: expected one of hard_swish, relu, "
                    "silu or a $-expression, got string 'tanh'"),
    ("{reductoin: 4}", "5:22: stages[0].layers[0].coord_attn.reductoin: unknown key 'reductoin' "
                       "(did you mean 'reduction'?)"),
]


@pytest.mark.parametrize("layer, message", BAD)
def test_bad_attributes_are_located(coord, tmp_path, layer, message):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ninput: {channels: 3, size: 8}\nstages:\n"
                    f"  - layers:\n      - coord_attn: {layer}\n")
    with pytest.raises(secompile.SpecError) as e:
        secompile.count(path)
    assert e.value.messages == [f"{path}:{message}"]


def test_the_shape_rule_refuses_at_the_layer(coord):
    spec = {"name": "v", "input": {"channels": 3, "size": 8},
            "stages": [{"layers": ["flatten", {"coord_attn": None}]}]}
    with pytest.raises(secompile.SpecError) as e:
        secompile.count(spec)
    assert e.value.messages[0].endswith("stages[0].layers[1].coord_attn: coord_attn needs a "
                                        "feature map (C, H, W), got shape (192,) at stages.0.1")


def test_only_the_registering_program_knows_the_layer(coord, tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(_yaml(ex.SPEC))
    assert secompile.count(path)["total"]["params"] == 5746
    assert "coord_attn" not in str(schema.SCHEMA)          # `secompile schema`, schema.json
    out = subprocess.run([sys.executable, "-m", "secompile", "validate", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr == (f"{path}:22:9: stages[0].layers[0].residual.branch[2].coord_attn: "
                          "unknown key 'coord_attn'\n")


def test_registration_refusals_replace_and_unregister():
    kw = dict(shape=ex.shape, torch=lambda a, ins: torch.nn.Identity())
    with ex.register():
        with pytest.raises(plugins.PluginError) as e:
            secompile.register_op("coord_attn", **kw)
        assert str(e.value) == ("op 'coord_attn' is already registered (by coord_attention); "
                                "pass replace=True to replace it")
        with pytest.raises(plugins.PluginError, match="op 'conv2d' is a built-in op"):
            secompile.register_op("conv2d", **kw)
        with pytest.raises(plugins.PluginError, match="layer kind 'conv' exists"):
            secompile.register_op("my_conv", layer="conv", **kw)
        with pytest.raises(plugins.PluginError, match="attribute 'k': give a default"):
            secompile.register_op("my_op", attrs={"k": [1, 2]}, **kw)
        # an identity now, with the same attributes and no tensors
        secompile.register_op("coord_attn", attrs={"reduction": 32}, replace=True, **kw)
        assert secompile.count(ex.SPEC)["total"]["params"] == 5746 - 440
        secompile.unregister_op("coord_attn")
        with pytest.raises(secompile.SpecError, match="unknown key 'coord_attn'"):
            secompile.count(ex.SPEC)
    assert "coord_attn" not in ops.OPS


def test_torch_module_must_hold_the_declared_tensors():
    with secompile.register_op("bad_scale", shape=ex.shape, weights=lambda a, ins: {},
                               torch=lambda a, ins: torch.nn.BatchNorm2d(ins[0][0])):
        spec = {"name": "n", "input": {"channels": 3, "size": 8},
                "stages": [{"layers": ["bad_scale"]}]}
        with pytest.raises(plugins.PluginError) as e:
            secompile.compile(spec)
    assert str(e.value) == (f"op 'bad_scale' (registered by {__name__}): the torch module's "
                            "tensors differ from the declared weights at 'bias': module (3,), "
                            "declared none")


def test_the_diagram_uses_the_registered_look(coord):
    dot = secompile.to_dot(ex.SPEC, "op")
    assert "coordinate attention, r=4" in dot


def _generated_specs_using_the_op(data):
    """specs(ops=[...]) draws the registered op as a layer (the strategy is made while the op is
    registered: it checks the names it is given); shapes, counts and torch agree."""
    with ex.register():
        spec = data.draw(specs(ops=["coord_attn"], max_stages=2, max_width=16,
                               input_size=(8, 16), max_nesting=1, max_params=60_000))
        assume("coord_attn" in _yaml(spec))
        check_shapes(spec, modes=("eval",))
        g = secompile.build_ir(spec)
        model = secompile.compile(spec)
        assert Counts(g).total.params == sum(p.numel() for p in model.parameters())
        for p in g.order:
            if g.op(p) == "coord_attn":
                c, h, w = g.shape(p)
                a = g.node(p)["attrs"]
                params, macs = _hand_counts(c, h, w, a["reduction"], a["min_channels"])
                assert Counts(g).nodes[p] == Cost(macs, params)


_PROPERTY = dict(deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_property_generated_specs_using_the_op = settings(max_examples=6, **_PROPERTY)(
    given(st.data())(_generated_specs_using_the_op))
test_property_generated_specs_using_the_op_long = pytest.mark.slow(
    settings(max_examples=40, **_PROPERTY)(given(st.data())(_generated_specs_using_the_op)))


def test_specs_refuse_an_op_that_is_not_registered():
    with pytest.raises(ValueError, match="ops: 'coord_attn' is not a registered plug-in op"):
        specs(ops=["coord_attn"])


def test_extending_md_shows_the_example_verbatim():
    doc = (ROOT / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    source = (ROOT / "examples" / "coord_attention.py").read_text()
    assert len(blocks) == 5
    for block in blocks:
        assert block in source


def test_the_examples_property_check_runs():
    ex.check_generated_specs(max_examples=3)


def test_an_included_template_file_sees_the_layer_while_it_is_registered(tmp_path):
    (tmp_path / "blocks.yaml").write_text(
        "blocks:\n  ca_block:\n    params: {r: 4}\n    layers:\n"
        "      - {name: ca, coord_attn: {reduction: $r}}\n")
    spec = tmp_path / "net.yaml"
    spec.write_text("name: n\ninclude: [blocks.yaml]\ninput: {channels: 16, size: 8}\n"
                    "stages:\n  - {block: ca_block}\n")
    with pytest.raises(secompile.SpecError, match="unknown key 'coord_attn'"):
        secompile.count(spec)           # validated (and cached) before the registration
    with ex.register():
        assert secompile.count(spec)["total"]["params"] == _hand_counts(16, 8, 8, r=4)[0]
    with pytest.raises(secompile.SpecError, match="unknown key 'coord_attn'"):
        secompile.count(spec)
