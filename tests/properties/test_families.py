"""Family constructs over generated specs (issue 21): a spec rewritten with network parameters,
`repeat` expressions, per-block settings, `foreach:`, stage `when:` and variants builds the very
same graph; broken ones give the exact located problem."""
import pytest
from hypothesis import given
from hypothesis import strategies as st
from profiles import scaled

import secompile
from secompile.testing import specs
from secompile.testing.families import family_rewrite, invalid_family_specs

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
