"""Family constructs (issue 21) drawn over generated specs: rewrites that keep the network.

`family_rewrite(spec)` draws an equivalent spec written with the family constructs: network
parameters (`params:`) used by stage entries and `repeat` expressions, per-block settings
(`blocks:`), a `foreach:` over a one-entry `regnet_stages(...)`, stage `when: true` and a false
extra stage, `variants:`. The rewritten spec must build the very same graph (structural hash),
which is the property tests/properties/test_families.py checks.

`invalid_family_specs(spec)` draws a broken variant of such a spec and the exact problem it
must give (`(spec dict, spec path, message start)`).
"""
from __future__ import annotations

import copy

from hypothesis import strategies as st

STAGE_KEYS = ("block", "repeat", "name", "layers", "blocks", "when", "foreach", "as")


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _block_stages(spec) -> list[int]:
    return [i for i, s in enumerate(spec["stages"]) if isinstance(s, dict) and "block" in s]


@st.composite
def family_rewrite(draw, spec: dict) -> dict:
    spec = copy.deepcopy(spec)
    params: dict = {}
    stages = spec["stages"]
    for i in _block_stages(spec):
        stage = stages[i]
        repeat = stage.get("repeat", 1)
        form = draw(st.sampled_from(["param", "expr", "blocks", "foreach", "plain"]))
        if form == "param":
            params[f"r{i}"] = repeat
            stage["repeat"] = f"$r{i}"
            for k, v in list(stage.items()):
                if k not in STAGE_KEYS and _int(v) and draw(st.booleans()):
                    params[f"p{i}_{k}"] = v
                    stage[k] = f"$p{i}_{k}"
        elif form == "expr":
            params[f"d{i}"] = 1.0
            stage["repeat"] = f"ceil({repeat} * $d{i})"
        elif form == "blocks":
            entries = [{} for _ in range(repeat)]
            if "stride" in stage and draw(st.booleans()):
                entries[0]["stride"] = stage["stride"]   # the same value, said per block
            stage.pop("repeat", None)
            stage["blocks"] = entries
        elif form == "foreach" and "name" not in stage:   # generated names get a number
            stage.pop("repeat", None)
            stages[i] = {"foreach": f"regnet_stages(8, 0, 2, {repeat}, 8)", "as": "g",
                         "repeat": "$g.depth", **stage}
    if draw(st.booleans()):
        for s in stages:
            if isinstance(s, dict):
                s["when"] = True
    if _block_stages(spec) and draw(st.booleans()):   # a stage that is never there
        left_out = copy.deepcopy(stages[_block_stages(spec)[0]])
        params["on"] = True
        left_out["when"] = "not $on"
        stages.insert(draw(st.integers(0, len(stages))), left_out)
    if params or draw(st.booleans()):
        spec["params"] = params or {"unused": 1}
        spec["variants"] = {"as_written": {"params": dict(params)}}
    return spec


@st.composite
def invalid_family_specs(draw, spec: dict) -> tuple[dict, str, str]:
    """-> (broken spec, the problem's spec path, the start of its message)."""
    spec = copy.deepcopy(spec)
    blocks = _block_stages(spec)
    kind = draw(st.sampled_from(["unknown_param", "param_type", "repeat_zero", "too_many",
                                 "foreach_scalar"] if blocks else ["unknown_param", "param_type"]))
    spec.setdefault("params", {})["width"] = 1.0
    if kind == "unknown_param":
        spec["stages"][-1]["when"] = "$widht > 0"
        return spec, f"stages[{len(spec['stages']) - 1}].when", "unknown parameter 'widht'"
    if kind == "param_type":
        spec["variants"] = {"bad": {"params": {"width": "wide"}}}
        return spec, "params.width", "network parameter 'width' is a number"
    i = draw(st.sampled_from(blocks))
    if kind == "repeat_zero":
        spec["stages"][i]["repeat"] = "int($width) - 1"
        return spec, f"stages[{i}].repeat", "repeat must be a positive integer, got 0"
    if kind == "too_many":
        spec["stages"][i]["repeat"] = 1
        spec["stages"][i]["blocks"] = [{}, {}]
        return spec, f"stages[{i}].blocks", "2 per-block entries for 1 blocks"
    spec["stages"][i]["foreach"] = "$width * 2"
    return spec, f"stages[{i}].foreach", "foreach: expected a non-empty list, got 2.0"
