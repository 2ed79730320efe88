"""The op registry (secompile/ir/ops.py) is the one list of ops: every backend has an emitter for
each op, the spec schema's enums are generated from it, and what it declares about weights is
what the torch modules hold and what the counts and the ONNX weight check use."""
import pytest
import torch

from secompile.api import build_ir
from secompile.backends.graphviz import style as graphviz_style
from secompile.backends.onnx import lowering as onnx_backend
from secompile.backends.onnx.weights import expected_state
from secompile.backends.torch import codegen as torch_backend
from secompile.ir import ops, schema_gen
from secompile.lang import schema
from support import SPECS


@pytest.mark.parametrize("backend, table, skipped", [
    ("torch", torch_backend.EMITTERS, torch_backend.NOT_EMITTED),
    ("onnx", onnx_backend.EMITTERS, onnx_backend.NOT_EMITTED),
    ("graphviz", graphviz_style.LOOKS, set()),
])
def test_every_op_has_one_emitter_per_backend(backend, table, skipped):
    missing = set(ops.OPS) - set(table) - skipped
    assert not missing, f"{backend}: no emitter for {sorted(missing)} (design.md: Adding an op)"
    assert not set(table) - set(ops.OPS), f"{backend} emits ops the registry does not know"
    assert not set(table) & skipped


def test_schema_is_generated_from_the_registry():
    assert schema_gen.stale() == [], "regenerate: python -m secompile.ir.schema_gen"
    assert schema.ACTS == [*ops.ACTIVATIONS, "none"]
    assert schema.OP_ENUMS["pool_modes"] == list(ops.POOL_MODES)


def test_every_activation_lowers_in_every_backend():
    for kind in ops.ACTIVATIONS:
        assert kind in torch_backend._ACT_MODULES or kind in torch_backend._ACT_INLINE, kind
        assert kind in onnx_backend._ACT or kind in ("relu6", "silu", "gelu"), kind
        assert kind in graphviz_style.ACT_NAMES, kind


CASES = [   # op, attrs, input shape
    ("conv2d", {"out": 8, "kernel": (3, 1), "stride": (1, 1), "padding": (1, 0), "dilation": (1, 1),
                "groups": 2, "bias": True}, (4, 5, 5)),
    ("conv2d", {"out": 6, "kernel": (1, 1), "stride": (2, 2), "padding": (0, 0), "dilation": (1, 1),
                "groups": 1, "bias": False}, (3, 4, 4)),
    ("linear", {"out": 7, "bias": True}, (5,)),
    ("linear", {"out": 7, "bias": False}, (5,)),
    ("batchnorm", {"eps": 1e-5, "momentum": 0.1}, (6, 2, 2)),
    ("batchnorm", {"eps": 1e-5, "momentum": 0.1}, (6,)),
    ("channel_conv", {"kernel": 5, "padding": None}, (16, 1, 1)),
    ("drop_path", {"p": 0.1}, (6, 2, 2)),
    ("layernorm", {"eps": 1e-6}, (6, 3, 3)),
    ("layernorm", {"eps": 1e-5}, (6,)),
    ("layer_scale", {"init": 1e-5}, (6, 2, 2)),
]


@pytest.mark.parametrize("op, attrs, shape", CASES)
def test_declared_weights_are_the_torch_modules_tensors(op, attrs, shape):
    """Names, shapes and parameter counts from the registry's weight declarations."""
    ops.check_attrs(op, attrs)
    mod = torch_backend.EMITTERS[op].module(attrs, shape)
    state = {k: tuple(v.shape) for k, v in mod.state_dict().items()}
    assert ops.OPS[op].tensors(attrs, [shape]) == state
    assert ops.params(op, attrs, [shape]) == sum(p.numel() for p in mod.parameters())


def test_expected_state_is_the_state_dict_at_inference():
    g = build_ir(SPECS / "se_resnext50.yaml")
    with torch.device("meta"):
        model = torch_backend.lower(g)
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    assert list(expected_state(g).items()) == list(state.items())


def test_undeclared_or_missing_attributes_are_refused():
    with pytest.raises(ValueError, match="undeclared"):
        ops.check_attrs("linear", {"out": 3, "bias": True, "bais": False})
    with pytest.raises(ValueError, match="missing"):
        ops.check_attrs("act", {})
    with pytest.raises(ValueError, match="unknown IR op"):
        ops.check_attrs("conv3d", {})
