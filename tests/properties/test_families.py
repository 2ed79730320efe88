"""Family constructs over generated specs (issue 21): a spec rewritten with network parameters,
`repeat` expressions, per-block settings, `foreach:`, stage `when:` and variants builds the very
same graph; broken ones give the exact located problem."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import PROFILE, scaled
from test_invalid import refused_located

import secompile
from secompile.testing import invalid_specs, specs
from secompile.testing.families import family_rewrite, invalid_family_specs
from secompile.testing.invalid import V3_KINDS

SMALL = dict(max_width=16, input_size=(6, 16), max_repeat=3)


@scaled(0.5)
@given(data=st.data())
def test_family_rewrite_builds_the_same_network(data):
    spec = data.draw(specs(**SMALL), label="spec")
    rewritten = data.draw(family_rewrite(spec), label="rewritten")
    want = secompile.build_ir(spec)
    got = secompile.build_ir(rewritten)
    assert got.structural_hash() == want.structural_hash()
    assert [len(s.blocks) for s in got.stages] == [len(s.blocks) for s in want.stages]
    if "variants" in rewritten:
        member = secompile.load_spec(rewritten, variant="as_written")
        assert secompile.build_ir(member).structural_hash() == want.structural_hash()


@scaled(0.5)
@given(data=st.data())
def test_invalid_family_specs_are_located(data):
    spec = data.draw(specs(**SMALL), label="spec")
    broken, path, message = data.draw(invalid_family_specs(spec), label="broken")
    with pytest.raises(secompile.SpecError) as err:
        if "variants" in broken:
            secompile.load_spec(broken, variant="bad")
        else:
            secompile.build_ir(broken)
    hits = [p for p in err.value.problems if p.path == path and p.message.startswith(message)]
    assert hits, "\n".join(map(str, err.value.problems))
    assert all(p.mark.line >= 1 for p in hits)


@pytest.mark.slow   # torch, ~5 s; the default twins: the rewrite above, test_roundtrip's families
@scaled(0.25)
@given(spec=specs(families=True, **SMALL))
def test_family_specs_compile_to_their_counted_network(spec):
    """`specs(families=True)`: compiled, the module has the IR's output shape and the analytic
    parameter count, and the variant the rewrite wrote down is the same network."""
    torch = pytest.importorskip("torch")
    g = secompile.build_ir(spec)
    model = secompile.compile(spec, seed=0).eval()
    size = g.shape("input")
    with torch.no_grad():
        y = model(torch.randn(2, *size))
    assert tuple(y.shape[1:]) == g.shape(g.output)
    assert sum(p.numel() for p in model.parameters()) == secompile.count(spec)["total"]["params"]
    for variant in spec.get("variants", {}):
        member = secompile.load_spec(spec, variant=variant)
        assert secompile.build_ir(member).structural_hash() == g.structural_hash()


@pytest.mark.parametrize("kind", V3_KINDS)
@settings(PROFILE, max_examples=3)   # the 20-example run: test_invalid.py (slow)
@given(data=st.data())
def test_invalid_family_kinds_give_their_exact_located_message(kind, data):
    refused_located(data.draw(invalid_specs(kinds=[kind]), label="invalid spec"))
