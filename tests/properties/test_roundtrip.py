"""Property 5: dumping a spec to YAML and loading it again gives an identical IR."""
import os
import tempfile

import yaml
from hypothesis import given
from hypothesis import strategies as st
from profiles import PROFILE

import secompile
from secompile.testing import specs


def order_sensitive_mappings(node) -> bool:
    """A parallel's `branches` mapping whose keys are not sorted (key order is concat order)."""
    if isinstance(node, dict):
        br = node.get("parallel", {}).get("branches") if isinstance(node.get("parallel"), dict) else None
        if isinstance(br, dict) and list(br) != sorted(br):
            return True
        return any(order_sensitive_mappings(v) for v in node.values())
    if isinstance(node, list):
        return any(order_sensitive_mappings(v) for v in node)
    return False


@PROFILE
@given(specs(families=True), st.sampled_from([None, False, True]), st.booleans(),
       st.sampled_from([80, 20, 10_000]),
       st.booleans())
def test_yaml_round_trip_gives_the_same_ir(spec, flow, unicode, width, sort_keys):
    want = secompile.build_ir(spec).structural_hash()
    sort_keys = sort_keys and not order_sensitive_mappings(spec)
    text = yaml.safe_dump(spec, sort_keys=sort_keys, default_flow_style=flow, allow_unicode=unicode, width=width)
    assert secompile.build_ir(text).structural_hash() == want
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "spec.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        assert secompile.build_ir(path).structural_hash() == want
    # and once more through the loader's own data
    again = yaml.safe_dump(secompile.load_spec(text).data, sort_keys=False)
    assert secompile.build_ir(again).structural_hash() == want
