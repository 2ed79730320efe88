"""Properties 1 and 2: every valid spec compiles, and the module agrees with the IR's analysis."""
import torch
from helpers import BATCH, check_params_and_macs, compiled, ir_shapes, trace_shapes
from hypothesis import given
from profiles import PROFILE

import secompile
from secompile.testing import specs
from secompile.testing.strategies import networks_with_model


@PROFILE
@given(specs())
def test_valid_spec_compiles_with_the_inferred_shapes(spec):
    """Property 1: validate, build the IR, compile; output and every intermediate shape = the IR's."""
    loaded = secompile.load_spec(spec)
    g = secompile.build_ir(loaded)
    g2, model, x = compiled(spec)
    assert g2.structural_hash() == g.structural_hash()
    with torch.no_grad():
        y = model(x)
    assert tuple(y.shape) == (BATCH, *g.shape(g.output))
    assert trace_shapes(model, x) == ir_shapes(g)
    assert torch.isfinite(y).all()


@PROFILE
@given(specs())
def test_analytic_params_and_macs_match_torch(spec):
    """Property 2: params == numel (per node and in total); conv/linear MACs == FlopCounterMode / 2."""
    check_params_and_macs(*compiled(spec))


@PROFILE
@given(networks_with_model())
def test_generator_model_agrees_with_the_ir(net):
    """The generator's own shape model (which its SE rules rely on) = the compiler's, block by block."""
    g = secompile.build_ir(net.spec, se=False)
    for b in net.blocks:
        comp = g.blocks[b.path]
        assert g.shape(comp.input)[0] == b.in_c, b.path
        assert g.shape(comp.output)[0] == b.out_c, b.path
        assert comp.kind == b.kind and comp.template == b.template, b.path
        if b.kind == "residual":
            assert g.shape(comp.branch_out)[0] == b.branch_c, b.path
            assert g.shape(comp.shortcut_out)[0] == b.short_c, b.path
    scopes = {p for p in g.order} | {p.rsplit(".", k)[0] for p in g.order for k in range(1, p.count(".") + 1)}
    for path, ch in net.tracked.items():
        assert path in scopes, path
