"""The properties over specs with the issue-22 ops and modules (`specs(v3=True)`: softmax,
layernorm, layer_scale, gelu, split_sum, attn_pool, partial_add residuals, global_context and
split_attention as layers and global_context SE rules): shapes == torch's at every node,
params == numel per node, conv/linear MACs == FlopCounterMode (plus GC's attention-pooling
matmul, which the counts keep apart), ONNX == torch with BN randomised, and the oracle's
parameter count of global_context."""
import numpy as np
import onnxruntime as ort
import pytest
import torch
from helpers import BATCH, compiled, counts, ir_shapes, own_params
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import PROFILE, scaled
from torch.utils.flop_counter import FlopCounterMode

import secompile
from secompile.backends.torch import trace_shapes
from secompile.ir.ops import CONV_LINEAR_OPS
from secompile.testing import specs
from secompile.testing.v3 import gc_options, module_params

SMALL = dict(v3=True, max_width=16, input_size=(6, 16), max_stages=2)
TOL = 1e-4


def check(spec):
    g, model, x = compiled(spec)
    assert trace_shapes(model, x) == ir_shapes(g)
    c = counts(g)
    assert sum(p.numel() for p in model.parameters()) == c.total.params
    modules = dict(model.named_modules())
    for path, _ in g.nodes():
        if c.nodes[path].params:
            assert own_params(modules[path]) == c.nodes[path].params, path
    flops = FlopCounterMode(display=False)
    with flops, torch.no_grad():
        want = model(x).numpy()
    total = sum(flops.get_flop_counts().get("Global", {}).values())
    assert total == 2 * BATCH * (c.by_op(*CONV_LINEAR_OPS).macs + c.by_op("attn_pool").macs)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(secompile.to_onnx(spec, model).SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert float(np.abs(got - want).max()) <= TOL * max(1.0, float(np.abs(want).max()))


def _compile_shapes_params_macs_and_onnx(spec):
    check(spec)


def _gc_parameters_follow_the_oracle(data):
    spec = data.draw(specs(se=False, head=False, max_width=16, input_size=(6, 16)), label="spec")

    class _G:
        def pick(self, options):
            return data.draw(st.sampled_from(list(options)))

        def flip(self):
            return data.draw(st.booleans())
    rule = {"module": "global_context", **gc_options(_G())}
    base = secompile.build_ir(spec)
    with_rule = secompile.build_ir({**spec, "se": [{"where": {"stages": "all"},
                                                     "position": "post", **rule}]})
    want = sum(module_params(rule, base.shape(b.output)[0]) for b in base.blocks.values())
    assert counts(with_rule).total.params - counts(base).total.params == want


def _twins(fn, strategy, few: int):
    """(a default-run test of `few` examples, the profile's run marked slow)."""
    return (settings(PROFILE, max_examples=few)(given(strategy)(fn)),
            pytest.mark.slow(scaled(0.5)(given(strategy)(fn))))


test_v3_compile_shapes_params_macs_and_onnx, test_v3_compile_shapes_params_macs_and_onnx_long = \
    _twins(_compile_shapes_params_macs_and_onnx, specs(**SMALL), 4)
test_v3_global_context_parameters_follow_the_oracle, \
    test_v3_global_context_parameters_follow_the_oracle_long = \
    _twins(_gc_parameters_follow_the_oracle, st.data(), 8)


@PROFILE
@given(specs(**SMALL))
def test_v3_specs_verify(spec):
    secompile.build_ir(spec).check()


@pytest.mark.slow
def test_v3_draws_every_new_op():
    seen = set()

    @settings(PROFILE, max_examples=300, derandomize=True)
    @given(specs(**SMALL))
    def collect(spec):
        seen.update(d["op"] for _, d in secompile.build_ir(spec).nodes())
    collect()
    assert {"softmax", "layernorm", "layer_scale", "split_sum", "partial_add",
            "split_select", "attn_pool"} <= seen


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
