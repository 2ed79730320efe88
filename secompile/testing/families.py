"""Family constructs (issue 21) drawn over generated specs: rewrites that keep the network.

`family_rewrite(spec)` draws an equivalent spec written with the family constructs: network
parameters (`params:`) used by stage entries and `repeat` expressions, per-block settings
(`blocks:`), stage entries over `$block_index`, a `foreach:` over a one-entry
`regnet_stages(...)`, stage `when: true` and a false extra stage, `variants:`. The rewritten
spec must build the very same graph (structural hash), which is the property
tests/properties/test_families.py checks; `specs(families=True)` draws specs written so.

`invalid_family_specs(spec)` draws a broken variant of such a spec and the exact problem it
must give (`(spec dict, spec path, message start)`).

`V3_BREAKERS`: the `invalid_specs()` kinds of the family constructs (`v3_*`, see invalid.py):
each breaks a generated spec in one way and gives the exact located problem.
"""
from __future__ import annotations

import copy
import re

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
        form = draw(st.sampled_from(["param", "expr", "blocks", "index", "foreach", "plain"]))
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
        elif form == "index":       # the same values, said over the per-block names
            if "stride" in stage and _int(stage["stride"]):
                stage["stride"] = f"{stage['stride']} if $block_index == 0 else 1"
            stage["repeat"] = f"{repeat} + 0 * $w{i}"
            params[f"w{i}"] = 1
        elif form == "foreach" and "name" not in stage:   # generated names get a number
            # wa = 0: one stage of `repeat` blocks (pycls); a `$`-less string is no expression
            stage.pop("repeat", None)
            params[f"w{i}"] = 8
            stages[i] = {"foreach": f"regnet_stages($w{i}, 0, 2, {repeat}, 8)", "as": "g",
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


# -- invalid_specs() kinds (invalid.py's `(draw, spec, net) -> (spec, path, message, token)`) --
V3_ORDER = ["name", "description", "version", "include", "input", "params", "variants", "blocks",
            "stem", "stages", "head", "se"]


def _v3_stage(spec, **entry):
    """Give the spec network parameters and append a stage of a small template (a 1x1 conv to
    `out` channels, any input) with `entry` over its defaults; -> (spec, its stage index)."""
    spec.setdefault("params", {}).update({"width": 1.0, "depth": 1})
    spec.setdefault("blocks", {})["v3unit"] = {
        "params": {"out": "int", "stride": 1, "k": 1},
        "layers": [{"name": "c", "conv": {"out": "$out", "kernel": "$k"}}]}
    spec = {k: spec[k] for k in V3_ORDER if k in spec}
    spec["stages"].append({"block": "v3unit", "out": 4, **entry})
    return spec, len(spec["stages"]) - 1


def v3_param(draw, spec, net):
    spec, i = _v3_stage(spec, out="int(4 * $widht)")
    return spec, f"stages[{i}].out", re.escape(
        "unknown parameter 'widht' in expression 'int(4 * $widht)' (did you mean 'width'?)"), \
        "widht"


def v3_repeat(draw, spec, net):
    spec, i = _v3_stage(spec, repeat="int($width) - 1")
    return spec, f"stages[{i}].repeat", \
        re.escape("repeat must be a positive integer, got 0"), "int($width) - 1"


def v3_blocks(draw, spec, net):
    if draw(st.booleans()):
        spec, i = _v3_stage(spec, repeat=1, blocks=[{}, {"k": 3}])
        return spec, f"stages[{i}].blocks", \
            re.escape("2 per-block entries for 1 blocks (repeat: 1)"), None
    spec, i = _v3_stage(spec, blocks=[{"k": 1}, {"kk": 3}])
    return spec, f"stages[{i}].blocks[1].kk", re.escape(
        "unknown parameter 'kk' of block template 'v3unit' (did you mean 'k'?)"), "kk"


def v3_block_index(draw, spec, net):
    spec, i = _v3_stage(spec, repeat=2, out="4 + $block_indx")
    return spec, f"stages[{i}].out", re.escape(
        "unknown parameter 'block_indx' in expression '4 + $block_indx' "
        "(did you mean 'block_index'?)"), "block_indx"


def v3_stage_when(draw, spec, net):
    spec, i = _v3_stage(spec, when="$width")
    return spec, f"stages[{i}].when", re.escape("when: expected true or false, got 1.0"), "when"


def v3_foreach(draw, spec, net):
    form = draw(st.sampled_from(["scalar", "pycls", "field", "as"]))
    gen = {"foreach": "regnet_stages($depth * 8, 8.0, 2.0, 2, 8)", "as": "g"}
    if form == "scalar":
        spec, i = _v3_stage(spec, foreach="$width * 2")
        return spec, f"stages[{i}].foreach", \
            re.escape("foreach: expected a non-empty list, got 2.0"), "$width * 2"
    if form == "pycls":
        spec, i = _v3_stage(spec, **{**gen, "foreach": "regnet_stages($depth * 8, 8.0, 0.5, 2, 8)"})
        return spec, f"stages[{i}].foreach", re.escape(
            "regnet_stages(): needs wa >= 0, wm > 1 and w0 a multiple of 8 (pycls), got wa=8.0, "
            "wm=0.5, w0=8"), "regnet_stages"
    if form == "field":
        spec, i = _v3_stage(spec, **gen, repeat="$g.dept")
        return spec, f"stages[{i}].repeat", re.escape(
            "no field 'dept' in expression '$g.dept' (the entry has width, depth, group_width, "
            f"bottleneck_width, index) (did you mean 'depth'?) (in stages[{i}][entry 0])"), "dept"
    spec, i = _v3_stage(spec, **{**gen, "as": "2g"})
    return spec, f"stages[{i}].as", re.escape(
        "'2g' is not a valid name (letters, digits and _, not starting with a digit)"), "2g"


def v3_variant(draw, spec, net):
    spec, _ = _v3_stage(spec)
    spec["variants"] = {"v_small": {"params": {"width": 0.5}}, "v_typo": {"parms": {}}}
    spec = {k: spec[k] for k in V3_ORDER if k in spec}
    return spec, "variants.v_typo.parms", \
        re.escape("unknown key 'parms' (did you mean 'params'?)"), "parms"


V3_BREAKERS = {"v3_param": v3_param, "v3_repeat": v3_repeat, "v3_blocks": v3_blocks,
               "v3_block_index": v3_block_index, "v3_stage_when": v3_stage_when,
               "v3_foreach": v3_foreach, "v3_variant": v3_variant}
