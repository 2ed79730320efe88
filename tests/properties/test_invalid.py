"""Property 6: every invalid spec raises SpecError at a file location with the expected message."""
import os
import tempfile

import pytest
from hypothesis import given
from hypothesis import strategies as st
from profiles import scaled

import secompile
from secompile.testing import invalid_specs
from secompile.testing.invalid import KINDS, V3_KINDS


def check_located(problems, inv, file, text):
    lines = text.splitlines()
    for p in problems:
        assert p.mark.file == file, p
        assert 1 <= p.mark.line <= len(lines) + 1 and p.mark.col >= 1, p
    hits = [p for p in problems if inv.matches(p)]
    assert hits, f"expected {inv.path}: /{inv.message}/, got:\n" + "\n".join(map(str, problems))
    if inv.token is not None:
        assert any(inv.token in lines[p.mark.line - 1] for p in hits if p.mark.line <= len(lines)), \
            f"{inv.token!r} not on the reported line: " + "; ".join(f"{p}: {lines[p.mark.line - 1]!r}" for p in hits)


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k in V3_KINDS else k
                                  for k in KINDS])   # v3's twin: tests/properties/test_families.py
@scaled(0.5)
@given(data=st.data())
def test_invalid_spec_raises_located_spec_error(kind, data):
    refused_located(data.draw(invalid_specs(kinds=[kind]), label="invalid spec"))


def refused_located(inv) -> None:
    """The invalid spec, written to a file, is refused with its exact located message(s)."""
    text = inv.text()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "spec.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        with pytest.raises(secompile.SpecError) as err:   # any other exception fails the test
            secompile.build_ir(path)
        check_located(err.value.problems, inv, path, text)
    source = inv.source if isinstance(inv.source, dict) else text
    with pytest.raises(secompile.SpecError) as err:
        secompile.compile(source)
    assert any(inv.matches(p) for p in err.value.problems)
