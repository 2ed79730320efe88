"""Properties 1-3 on specs whose layer lists also hold the attention layers (channel_conv,
dual_pool, spatial_sum, channel_pool, channel_slice, drop_path): shapes, parameters and
conv/linear multiply-adds (channel_conv is a Conv1d: counted with them) against the module,
and the ONNX export against torch."""
import numpy as np
import pytest
import torch
from helpers import check_params_and_macs, compiled, ir_shapes, trace_shapes
from hypothesis import given
from profiles import scaled

from secompile.api import to_onnx
from secompile.testing import specs

ort = pytest.importorskip("onnxruntime")
TOL = 1e-4


@scaled(1.0)
@given(specs(attention=True, max_width=16, input_size=(8, 24)))
def test_attention_layers_compile_count_and_export(spec):
    check(spec)


@scaled(1.0)
@given(specs(attention=True, max_width=16, input_size=(1, 3)))
def test_attention_layers_on_pooled_maps(spec):
    """Tiny inputs reach (C, 1, 1) early: where channel_conv (ECA) can be drawn."""
    check(spec)


def check(spec):
    g, model, x = compiled(spec)
    with torch.no_grad():
        model(x)
    assert trace_shapes(model, x) == ir_shapes(g)
    want = check_params_and_macs(g, model, x)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(to_onnx(spec, model).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == want.shape
    assert float(np.abs(got - want).max()) <= TOL * max(1.0, float(np.abs(want).max()))
