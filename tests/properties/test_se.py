"""Property 4: SE insertion is idempotent, removable, and adds eq. 5's parameters."""
from math import gcd

from helpers import counts, strip_se
from hypothesis import given
from hypothesis import strategies as st
from profiles import PROFILE

import secompile
from secompile.frontend import attention_modules
from secompile.passes import insert_se
from secompile.testing import specs

RESIDUAL_KINDS = ("basic", "bottleneck", "resnext", "preact", "dense")


def plain(spec) -> dict:
    return {k: v for k, v in spec.items() if k != "se"}


@PROFILE
@given(specs(se=True))
def test_applying_the_rules_twice_equals_once(spec):
    loaded = secompile.load_spec(spec)
    once = secompile.build_ir(loaded)
    twice = insert_se(once, loaded.data["se"], loaded.smap, modules=attention_modules(loaded))
    assert twice.structural_hash() == once.structural_hash()
    assert set(twice.se) == set(once.se)


@PROFILE
@given(specs(se=True))
def test_removing_every_se_rule_gives_the_plain_network(spec):
    base = secompile.build_ir(plain(spec))
    assert secompile.build_ir(spec, se=False).structural_hash() == base.structural_hash()
    # a catch-all `position: none` rule cancels every earlier rule
    cancelled = {**spec, "se": spec["se"] + [{"where": {"path": "**"}, "position": "none"}]}
    assert secompile.build_ir(cancelled).structural_hash() == base.structural_hash()
    # SE insertion only adds SE scopes: without them the graph is the plain one, edge for edge
    g = secompile.build_ir(spec)
    stripped, want = strip_se(g), base.to_dict()
    assert stripped["output"] == want["output"]
    assert stripped["nodes"] == want["nodes"]


@st.composite
def standard_everywhere(draw):
    """A residual network plus reduction r dividing every block's channels, bias on or off."""
    spec = draw(specs(se=False, block_kinds=RESIDUAL_KINDS, max_nesting=1))
    g = secompile.build_ir(spec)
    chans = [g.shape(b.branch_out)[0] for b in g.blocks.values()]
    d = 0
    for c in chans:
        d = gcd(d, c)
    r = draw(st.sampled_from([k for k in range(1, d + 1) if d % k == 0]))
    bias = draw(st.booleans())
    rule = {"where": {"stages": "all"}, "reduction": r, "bias": bias}
    if draw(st.booleans()):
        rule["squeeze"] = draw(st.sampled_from(["avg", "max"]))
        rule["gate"] = draw(st.sampled_from(["sigmoid", "hard_sigmoid"]))
    return spec, g, chans, r, bias, {**spec, "se": [rule]}


@PROFILE
@given(standard_everywhere())
def test_param_delta_is_eq5(case):
    """Eq. 5: SE on every block (standard, C_s divisible by r) adds 2/r * sum_s N_s C_s^2 weights (+ biases)."""
    spec, g, chans, r, bias, with_se = case
    delta = counts(secompile.build_ir(with_se)).total.params - counts(g).total.params
    weights = sum(2 * c * c for c in chans) // r
    biases = sum(c // r + c for c in chans) if bias else 0
    assert delta == weights + biases
    assert 2 * sum(c * c for c in chans) % r == 0
