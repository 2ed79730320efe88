"""`mutations(spec)`: variations of a user's own spec, for their own property tests.

Every mutation keeps a well-formed spec valid:

- channels: every literal channel count (conv/linear `out`; stage parameters and template
  defaults named `out`, `width`, `growth`, `channels`; SE `channels`) times 2 — group counts
  still divide them;
- input_size: the input's height and width times 2 (sizes only grow, parity is kept);
- repeat: a block stage with repeat >= 2 repeats 1 .. repeat+1 times (blocks after the first
  get stride 1; a stage written once may be a block that is not repeatable, e.g. one with a
  fixed stride), never fewer than the block indices its SE selectors name need;
- se: SE rules get smaller reductions, other squeeze/gate/bias options (the paper's SE block
  only: other `module:`s keep their parameters), or are dropped (`position: none` rules are
  kept, so nothing they removed comes back);
- activation: literal activations (conv `act`, bare activation layers) swapped for others;
- dropout: other dropout rates;
- drop_path: other literal drop_path rates (language v2; rates written as expressions stay);
- module: SE rules insert another attention module (`eca`, `effective_se`, `cbam`: modules
  that fit any channel count) in place of theirs, with that module's defaults.

"Well-formed" means what these preserve: a spec whose validity does not hinge on one exact
input size, channel count or repeat (e.g. a residual whose shortcut agrees with its branch at
every size). The result is a new dict each time; `spec` itself is never modified. Doubling
widths and sizes grows the network: bound `max_doublings` for big specs.
"""
from __future__ import annotations

import copy
import os

import yaml
from hypothesis import strategies as st

CHANNEL_KEYS = ("out", "width", "growth", "channels")
ACTS = ("relu", "relu6", "sigmoid", "hard_sigmoid", "hard_swish", "silu", "tanh")
KINDS = ("channels", "input_size", "repeat", "se", "activation", "dropout", "drop_path",
         "module")
RULE_KEYS = ("where", "exclude", "position")
ANY_WIDTH_MODULES = ("eca", "effective_se", "cbam")
LAYER_LISTS = ("branch", "post", "layers", "stem", "head")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _load(spec) -> dict:
    if isinstance(spec, dict):
        return copy.deepcopy(spec)
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and "\n" not in spec
                                         and spec.strip().endswith((".yaml", ".yml"))):
        with open(spec, encoding="utf-8") as f:
            return yaml.safe_load(f)
    if isinstance(spec, str):
        return yaml.safe_load(spec)
    raise TypeError(f"a spec is a dict, YAML text or a path, not {type(spec).__name__}")


def _layers(node):
    """Every layer mapping (and its containing list and index) anywhere in the spec."""
    if isinstance(node, dict):
        for k, v in node.items():
            if isinstance(v, list) and (k in LAYER_LISTS or k == "shortcut"):
                for i, item in enumerate(v):
                    yield v, i, item
            if k == "branches":
                for branch in (v.values() if isinstance(v, dict) else v):
                    if isinstance(branch, list):
                        for i, item in enumerate(branch):
                            yield branch, i, item
            yield from _layers(v)
    elif isinstance(node, list):
        for v in node:
            yield from _layers(v)


def scale_channels(spec: dict, factor: int = 2) -> dict:
    def visit(node, parent_key=None):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("conv", "linear") and isinstance(v, dict) and _is_int(v.get("out")):
                    v["out"] *= factor
                visit(v, k)
        elif isinstance(node, list):
            for v in node:
                visit(v, parent_key)
    visit(spec)
    for stage in spec.get("stages", []):
        if "block" in stage:
            for k in CHANNEL_KEYS:
                if _is_int(stage.get(k)):
                    stage[k] *= factor
    for tmpl in (spec.get("blocks") or {}).values():   # defaults of channel parameters
        params = tmpl.get("params") or {} if isinstance(tmpl, dict) else {}
        for k in CHANNEL_KEYS:
            if _is_int(params.get(k)):
                params[k] *= factor
    for rule in spec.get("se", []):
        if _is_int(rule.get("channels")):
            rule["channels"] *= factor
    return spec


def scale_input(spec: dict, factor: int = 2) -> dict:
    inp = spec.get("input")
    if inp and _is_int(inp.get("size")):
        inp["size"] *= factor
    elif inp and isinstance(inp.get("size"), list):
        inp["size"] = [s * factor for s in inp["size"]]
    return spec


def _repeat(draw, spec):
    # a stage that repeats its block already can repeat it more, or fewer times down to the
    # blocks its SE selectors name by index (`where: {stages: 1, blocks: 1}` needs 2)
    stages = spec.get("stages", [])
    floor = _selected_blocks(spec, len(stages))
    for i, stage in enumerate(stages):
        if ("block" in stage and _is_int(stage.get("repeat")) and stage["repeat"] > 1
                and draw(st.booleans())):
            stage["repeat"] = draw(st.integers(max(1, floor[i]), stage["repeat"] + 1))
    return spec


def _selected_blocks(spec, n: int) -> list[int]:
    """Per stage, how many blocks the SE rules' selectors (`where`, `exclude`) need it to have
    for every block index they list to exist (-1 needs 1, 1 needs 2)."""
    need = [0] * n

    def ints(v):
        return [v] if _is_int(v) else [x for x in v if _is_int(x)] if isinstance(v, list) else []
    for rule in spec.get("se") or []:
        for key in ("where", "exclude"):
            sel = rule.get(key) if isinstance(rule, dict) else None
            if not isinstance(sel, dict) or not ints(sel.get("blocks")):
                continue
            stages = sel.get("stages", "all")
            which = range(n) if stages == "all" else [s % n for s in ints(stages) if -n <= s < n]
            blocks = max(b + 1 if b >= 0 else -b for b in ints(sel["blocks"]))
            for s in which:
                need[s] = max(need[s], blocks)
    return need


def _se(draw, spec):
    rules = spec.get("se") or []
    if rules and draw(st.booleans()):
        keep = [r for r in rules if r.get("position") == "none" or draw(st.booleans())]
        spec["se"] = keep
        return spec
    for rule in rules:
        if rule.get("position") == "none" or rule.get("module", "se") != "se":
            continue   # another attention module's parameters are its template's own
        r = rule.get("reduction", 16)
        if _is_int(r) and "channels" not in rule and draw(st.booleans()):
            rule["reduction"] = draw(st.integers(1, r))
        if draw(st.booleans()):
            rule["squeeze"] = draw(st.sampled_from(["avg", "max"]))
        if draw(st.booleans()):
            rule["gate"] = draw(st.sampled_from(["sigmoid", "hard_sigmoid"]))
        if draw(st.booleans()):
            rule["bias"] = draw(st.booleans())
    return spec


def _activation(draw, spec):
    for lst, i, item in list(_layers(spec)):
        if isinstance(item, str) and item in ACTS and draw(st.booleans()):
            lst[i] = draw(st.sampled_from(ACTS))
        elif isinstance(item, dict):
            conv = item.get("conv")
            if (isinstance(conv, dict) and conv.get("act", "relu") in ACTS + ("none",)
                    and draw(st.booleans())):
                conv["act"] = draw(st.sampled_from(ACTS + ("none",)))
            acts = [k for k in item if k in ACTS]
            if acts and draw(st.booleans()):
                new = draw(st.sampled_from(ACTS))
                lst[i] = {("name" if k == "name" else new if k == acts[0] else k): v
                          for k, v in item.items()}
    return spec


def _dropout(draw, spec):
    for lst, i, item in list(_layers(spec)):
        if isinstance(item, dict) and isinstance(item.get("dropout"), dict) and draw(st.booleans()):
            item["dropout"]["p"] = draw(st.sampled_from([0.0, 0.1, 0.3, 0.5]))
    return spec


def _drop_path(draw, spec):
    for lst, i, item in list(_layers(spec)):
        dp = item.get("drop_path") if isinstance(item, dict) else None
        if isinstance(dp, dict) and not isinstance(dp.get("p", 0.0), str) and draw(st.booleans()):
            dp["p"] = draw(st.sampled_from([0.0, 0.05, 0.2, 0.5]))
    return spec


def _module(draw, spec):
    rules = spec.get("se") or []
    for i, rule in enumerate(rules):
        if isinstance(rule, dict) and rule.get("position") != "none" and draw(st.booleans()):
            kept = {k: v for k, v in rule.items() if k in RULE_KEYS}
            rules[i] = {**kept, "module": draw(st.sampled_from(ANY_WIDTH_MODULES))}
    return spec


@st.composite
def _mutate(draw, spec, kinds, max_doublings):
    out = _load(spec)
    chosen = draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=len(kinds), unique=True))
    doublings = 0
    for kind in kinds:                  # a fixed order, whatever the draw order
        if kind not in chosen:
            continue
        if kind in ("channels", "input_size"):
            if doublings >= max_doublings:
                continue
            doublings += 1
            out = scale_channels(out) if kind == "channels" else scale_input(out)
        elif kind == "repeat":
            out = _repeat(draw, out)
        elif kind == "se":
            out = _se(draw, out)
        elif kind == "activation":
            out = _activation(draw, out)
        elif kind == "drop_path":
            out = _drop_path(draw, out)
        elif kind == "module":
            out = _module(draw, out)
        else:
            out = _dropout(draw, out)
    return out


def mutations(spec, *, kinds=KINDS, max_doublings: int = 1) -> st.SearchStrategy:
    """Variations of `spec` (a dict, YAML text or a path), each a new plain dict.

    kinds: which mutations to draw from (see the module docstring); max_doublings: how many of
    the size-growing ones (channels, input_size) one variation may apply.
    """
    bad = set(kinds) - set(KINDS)
    if bad or not kinds:
        raise ValueError(f"kinds: unknown {sorted(bad)}; choose from {KINDS}")
    return _mutate(spec, tuple(kinds), max_doublings)
