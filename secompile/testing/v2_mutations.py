"""Structured mutations of language-v2 specs, for the fuzz campaign (tools/fuzz_campaign.py).

Text mutations (text_mutations.py) almost always break a spec: about 2% of mutated v2 files
stay valid, too few to reach the compiler's later stages. These edit the spec's data instead,
one construct at a time, with values near the ones a valid spec would hold (channel counts
times or over 2, strides 1/2, odd kernels, repeats 1-3, expressions with a constant or an
operator changed, `when:` conditions over the per-block names, attention modules inserted as
layers and as SE rules at every position, network `params:`, per-block `blocks:` entries,
`skip:` forms, drop path rates), so that most results still build and the rest are refused for
a reason a user could have written. Nothing here models validity: the compiler decides, and the
campaign's oracles (the IR verifier, torch's shapes) check what it accepted.

`mutate_v2(spec, rng, n)` -> (new dict, names of the n mutations applied); `spec` is unchanged.
Every choice comes from `rng` (a random.Random), so a campaign seed replays exactly.

Over 400 lines on purpose: one function per mutation, in one table the campaign draws from.
"""
from __future__ import annotations

import copy
import re

CHANNEL_KEYS = ("out", "width", "channels", "mid", "growth")
LAYER_LISTS = ("branch", "post", "layers", "stem", "head", "gate", "context", "add")
ACTS = ("relu", "relu6", "silu", "hard_swish", "sigmoid", "hard_sigmoid", "tanh", "gelu")
POSITIONS = ("standard", "identity", "pre", "post", "none")
BUILTIN_MODULES = ("se", "eca", "cbam", "effective_se", "global_context")
NUMBER_CHOICES = {
    "expand": (1, 2, 3, 4, 6, 2.5), "se_ratio": (0.25, 0.5, 0.125, 1.0),
    "reduction": (1, 2, 4, 8, 16), "divisor": (1, 4, 8), "ratio": (1, 2, 4),
    "drop_path_rate": (0.0, 0.1, 0.3), "dilation": (1, 2), "cardinality": (1, 2, 4),
    "groups": (1, 2, 4), "radix": (1, 2), "round_limit": (0.0, 0.9), "gamma": (1, 2, 3),
    "beta": (0, 1, 2), "min_width": (4, 8, 32), "p": (0.0, 0.1, 0.5, 0.9),
}
WHENS = ("$block_index % 2 == 0", "$block_index > 0", "$stage_index == 0",
         "$net_block_index % 3 == 1", "$stage_blocks > 1", "true", "false",
         "$in_channels > 8", "$block_in == $in_channels", "$net_block_index < $net_blocks - 1")
SKIPS = ("auto", True, False, "$block_index > 0", "$in_channels == $block_in")
EXPR_SWAPS = ((" * ", " // "), (" // ", " * "), (" + ", " - "), (" - ", " + "),
              (" == ", " != "), (" != ", " == "), (" > ", " >= "), (" and ", " or "),
              ("$in_channels", "$block_in"), ("$block_index", "$net_block_index"))
INT_IN_EXPR = re.compile(r"(?<![\w.$])\d+(?![\w.])")
PATH_GLOBS = ("**.conv_dw", "**.conv_dw.conv", "stem.*", "stages.*.blocks.0.branch.*",
              "**.conv", "**.conv2", "stages.0.**", "**.branch.*")


# -- walking the spec ----------------------------------------------------------------------------
def _entries(node, path=()):
    """Every (container, key, value, path) of the spec, dict entries and list items alike."""
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for k, v in list(items):
        yield node, k, v, path + (k,)
        yield from _entries(v, path + (k,))


def _layer_lists(spec):
    """Every list of layer items (template bodies, layer stages, stem, head, branches)."""
    out = []
    for _, k, v, _ in _entries(spec):
        if k in LAYER_LISTS and isinstance(v, list):
            out.append(v)
        elif k == "branches":
            out += [b for b in (v.values() if isinstance(v, dict) else v if isinstance(v, list)
                                else ()) if isinstance(b, list)]
    return [lst for lst in out if all(isinstance(i, (dict, str)) for i in lst)]


def _layer_items(spec):
    return [(lst, i) for lst in _layer_lists(spec) for i, item in enumerate(lst)
            if isinstance(item, dict)]


def _block_stages(spec):
    return [s for s in spec.get("stages") or [] if isinstance(s, dict) and "block" in s]


def _templates(spec) -> dict:
    b = spec.get("blocks")
    return b if isinstance(b, dict) else {}


def _gate_templates(spec):
    return sorted(n for n, t in _templates(spec).items() if isinstance(t, dict) and "gate" in t)


def _names(spec):
    """Layer names written in the spec (for `{after: NAME}` and path globs)."""
    return sorted({v for _, k, v, _ in _entries(spec) if k == "name" and isinstance(v, str)})


def _pick(rng, seq):
    seq = list(seq)
    return rng.choice(seq) if seq else None


# -- the mutations (each returns False where it has nothing to change) ---------------------------
def _channels(spec, rng):
    sites = [(p, k, v) for p, k, v, _ in _entries(spec)
             if k in CHANNEL_KEYS and isinstance(v, int) and not isinstance(v, bool)]
    if not sites:
        return False
    p, k, v = rng.choice(sites)
    p[k] = min(96, max(1, rng.choice([v * 2, v // 2, v + 8, v - 8, 8, 16, 24, 32])))
    return True


def _set_key(spec, rng, key, choices, where=None):
    sites = [(p, k) for p, k, v, _ in _entries(spec) if k == key and not isinstance(v, bool)
             and isinstance(v, (int, float)) and (where is None or where(p))]
    if not sites:
        return False
    p, k = rng.choice(sites)
    p[k] = rng.choice(choices)
    return True


def _repeat(spec, rng):
    stages = _block_stages(spec)
    if stages and rng.random() < 0.4:
        rng.choice(stages)["repeat"] = rng.randint(1, 3)
        return True
    return _set_key(spec, rng, "repeat", (1, 2, 3))


def _stride(spec, rng):
    stages = _block_stages(spec)
    if stages and rng.random() < 0.3:
        rng.choice(stages)["stride"] = rng.choice((1, 2))
        return True
    return _set_key(spec, rng, "stride", (1, 2))


def _kernel(spec, rng):
    return _set_key(spec, rng, "kernel", (1, 3, 5, 7))


def _number(spec, rng):
    sites = [(p, k) for p, k, v, _ in _entries(spec) if k in NUMBER_CHOICES
             and isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not sites:
        return False
    p, k = rng.choice(sites)
    p[k] = rng.choice(NUMBER_CHOICES[k])
    return True


def _input(spec, rng):
    inp = spec.setdefault("input", {})
    if not isinstance(inp, dict):
        return False
    if rng.random() < 0.8:
        inp["size"] = rng.randint(16, 64) if rng.random() < 0.8 else \
            [rng.randint(16, 64), rng.randint(16, 64)]
    else:
        inp["channels"] = rng.randint(1, 4)
    return True


def _expression(spec, rng):
    sites = [(p, k, v) for p, k, v, _ in _entries(spec) if isinstance(v, str) and "$" in v]
    if not sites:
        return False
    p, k, v = rng.choice(sites)
    swaps = [(a, b) for a, b in EXPR_SWAPS if a in v]
    ints = list(INT_IN_EXPR.finditer(v))
    if ints and (not swaps or rng.random() < 0.5):
        m = rng.choice(ints)
        n = int(m.group(0))
        new = rng.choice([n + 1, max(0, n - 1), n * 2, n // 2, 1, 8])
        p[k] = v[:m.start()] + str(new) + v[m.end():]
    elif swaps:
        a, b = rng.choice(swaps)
        p[k] = v.replace(a, b, 1)
    else:
        p[k] = f"max(1, {v})" if k in CHANNEL_KEYS else f"({v})"
    return True


def _when(spec, rng):
    stages = spec.get("stages") if isinstance(spec.get("stages"), list) else []
    items = _layer_items(spec) + [(stages, i) for i, s in enumerate(stages) if isinstance(s, dict)]
    if not items:
        return False
    lst, i = rng.choice(items)
    item = lst[i]
    if "when" in item and rng.random() < 0.5:
        if rng.random() < 0.5:
            del item["when"]
        else:
            item["when"] = f"not ({item['when']})" if isinstance(item["when"], str) else \
                not item["when"]
    else:
        item["when"] = rng.choice(WHENS)
    return True


def _skip(spec, rng):
    residuals = [v for _, k, v, _ in _entries(spec) if k == "residual" and isinstance(v, dict)]
    if not residuals:
        return False
    r = rng.choice(residuals)
    if "shortcut" in r and rng.random() < 0.5:
        del r["shortcut"]
    if "shortcut" not in r:
        r["skip"] = rng.choice(SKIPS)
    return True


def _drop_path(spec, rng):
    dps = [v for _, k, v, _ in _entries(spec) if k == "drop_path" and isinstance(v, dict)]
    if dps and rng.random() < 0.6:
        rng.choice(dps)["p"] = rng.choice([0.0, 0.1, 0.5, "$net_block_index / ($net_blocks + 1)",
                                           "0.2 * $block_index / $stage_blocks"])
        return True
    lists = _layer_lists(spec)
    if not lists:
        return False
    lst = rng.choice(lists)
    item = {"name": f"dp{rng.randint(0, 9)}", "drop_path": {"p": rng.choice([0.0, 0.2])}}
    if rng.random() < 0.5:
        item["when"] = rng.choice(WHENS)
    lst.insert(rng.randint(0, len(lst)), item)
    return True


def _module_params(spec, rng, module):
    """A few of the module's own parameters (docs/spec-language.md, the modules' table)."""
    opts = {}
    if module == "se":
        form = rng.choice(["reduction", "channels", "expr", "divisor", "none"])
        if form == "reduction":
            opts["reduction"] = rng.choice((1, 2, 4, 8, 16))
        elif form == "channels":
            opts["channels"] = rng.choice((1, 4, 8))
        elif form == "expr":
            opts["channels"] = rng.choice(["max(1, $in_channels // 4)",
                                           "make_divisible($in_channels / 4, 8)",
                                           "max(1, round($block_in * 0.25))"])
        elif form == "divisor":
            opts.update(reduction=rng.choice((2, 4)), divisor=rng.choice((4, 8)))
        if rng.random() < 0.3:
            opts["act"] = rng.choice(("relu", "silu"))
        if rng.random() < 0.3:
            opts["gate"] = rng.choice(("sigmoid", "hard_sigmoid"))
    elif module == "eca" and rng.random() < 0.5:
        opts["kernel"] = rng.choice((0, 1, 3, 5))
    elif module == "cbam" and rng.random() < 0.6:
        opts.update(reduction=rng.choice((1, 2, 4)), kernel=rng.choice((3, 7)))
    elif module == "global_context" and rng.random() < 0.6:
        opts.update(fuse_scale=rng.choice((True, False)), reduction=rng.choice((2, 4, 8)))
    return opts


def _modules(spec):
    return BUILTIN_MODULES + tuple(_gate_templates(spec))


def _attention_layer(spec, rng):
    lists = _layer_lists(spec)
    if not lists:
        return False
    module = rng.choice(_modules(spec))
    lst = rng.choice(lists)
    item = {"name": f"att{rng.randint(0, 9)}",
            "block": {"template": module, **_module_params(spec, rng, module)}}
    lst.insert(rng.randint(0, len(lst)), item)
    return True


def _where(spec, rng):
    n = len(spec.get("stages") or []) or 1
    form = rng.choice(["all", "stage", "stages", "blocks", "template", "path", "name"])
    if form == "all":
        return {"stages": "all"}
    if form == "stage":
        return {"stages": rng.randint(-1, n - 1)}
    if form == "stages":
        return {"stages": sorted(rng.sample(range(n), min(n, 2)))}
    if form == "blocks":
        return {"stages": "all", "blocks": rng.choice([0, -1, [0, 1], "all"])}
    if form == "template":
        names = [s["block"] for s in _block_stages(spec) if isinstance(s.get("block"), str)]
        return {"blocks": rng.choice(names) if names else "*"}
    if form == "name":
        stage_names = [s["name"] for s in spec.get("stages") or []
                       if isinstance(s, dict) and isinstance(s.get("name"), str)]
        return {"name": rng.choice(stage_names) if stage_names else "*"}
    names = _names(spec)
    globs = list(PATH_GLOBS) + [f"**.{nm}" for nm in names[:20]]
    return {"path": rng.choice(globs)}


def _position(spec, rng):
    if rng.random() < 0.15:
        names = _names(spec)
        if names:
            return {"after": rng.choice(names)}
    return rng.choice(POSITIONS[:-1])


def _se_rules(spec):
    rules = spec.get("se")
    return rules if isinstance(rules, list) else None


def _se_add(spec, rng):
    if not isinstance(spec.get("se", []), list):
        return False
    module = rng.choice(_modules(spec))
    rule = {"where": _where(spec, rng), "position": _position(spec, rng)}
    if module != "se" or rng.random() < 0.5:
        rule["module"] = module
    rule.update(_module_params(spec, rng, module))
    spec.setdefault("se", []).append(rule)
    return True


def _se_change(spec, rng):
    rules = [r for r in _se_rules(spec) or [] if isinstance(r, dict)]
    if not rules:
        return False
    rule = rng.choice(rules)
    what = rng.choice(["drop", "position", "module", "param", "where", "exclude"])
    if what == "drop":
        spec["se"].remove(rule)
    elif what == "position":
        rule["position"] = _position(spec, rng) if rng.random() < 0.9 else "none"
    elif what == "module":
        module = rng.choice(_modules(spec))
        for k in [k for k in rule if k not in ("where", "exclude", "position")]:
            del rule[k]
        rule["module"] = module
        rule.update(_module_params(spec, rng, module))
    elif what == "param":
        rule.update(_module_params(spec, rng, rule.get("module", "se")))
    elif what == "where":
        rule["where"] = _where(spec, rng)
    else:
        rule["exclude"] = _where(spec, rng)
    return True


def _net_params(spec, rng):
    params = spec.get("params")
    if isinstance(params, dict) and params and rng.random() < 0.7:
        k = rng.choice(sorted(params))
        v = params[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        params[k] = rng.choice([v * 0.5, v * 1.5, v + 1, 1]) if isinstance(v, float) else \
            rng.choice([max(1, v // 2), v + 1, 1])
        return True
    # a new network parameter, read by a stage width
    stages = [s for s in _block_stages(spec)
              if isinstance(s.get("out"), int) and not isinstance(s.get("out"), bool)]
    if not stages or (params is not None and not isinstance(params, dict)):
        return False
    spec.setdefault("params", {})["wm"] = rng.choice([0.5, 1.0, 1.5])
    s = rng.choice(stages)
    s["out"] = f"make_divisible({s['out']} * $wm, {rng.choice((4, 8))})"
    return True


def _stage_blocks(spec, rng):
    stages = _block_stages(spec)
    if not stages:
        return False
    s = rng.choice(stages)
    if "blocks" in s and rng.random() < 0.3:
        del s["blocks"]
        return True
    tmpl = _templates(spec).get(s["block"]) if isinstance(s["block"], str) else None
    params = tmpl.get("params") if isinstance(tmpl, dict) else None
    keys = [k for k in (params or {}) if k in NUMBER_CHOICES or k in ("kernel", "out")]
    entries = []
    for _ in range(rng.randint(1, 3)):
        e = {}
        for k in rng.sample(keys, min(len(keys), rng.randint(0, 2))):
            e[k] = rng.choice((3, 5)) if k == "kernel" else \
                s.get("out", 16) if k == "out" else rng.choice(NUMBER_CHOICES[k])
        entries.append(e)
    s["blocks"] = entries
    return True


def _stage_copy(spec, rng):
    stages = spec.get("stages")
    if not isinstance(stages, list) or not stages:
        return False
    i = rng.randrange(len(stages))
    if rng.random() < 0.3 and len(stages) > 1:
        del stages[i]
        return True
    new = copy.deepcopy(stages[i])
    if isinstance(new, dict):
        new.pop("name", None)
        if "stride" in new:
            new["stride"] = 1
    stages.insert(i + 1, new)
    return True


def _activation(spec, rng):
    sites = [(p, k) for p, k, v, _ in _entries(spec)
             if k in ("act", "gate") and isinstance(v, str) and v in ACTS + ("none",)]
    if not sites:
        return False
    p, k = rng.choice(sites)
    p[k] = rng.choice(ACTS)
    return True


MUTATIONS = {
    "channels": _channels, "repeat": _repeat, "stride": _stride, "kernel": _kernel,
    "number": _number, "input": _input, "expression": _expression, "when": _when,
    "skip": _skip, "drop_path": _drop_path, "attention_layer": _attention_layer,
    "se_add": _se_add, "se_change": _se_change, "params": _net_params,
    "stage_blocks": _stage_blocks, "stage_copy": _stage_copy, "activation": _activation,
}


def mutate_v2(spec: dict, rng, n: int = 1) -> tuple[dict, list[str]]:
    """`n` structured mutations of a copy of `spec`, drawn by `rng`; -> (the copy, their names).
    A mutation with nothing to change in this spec is redrawn (at most 20 tries)."""
    out = copy.deepcopy(spec)
    done = []
    for _ in range(20):
        if len(done) == n:
            break
        name = rng.choice(sorted(MUTATIONS))
        if MUTATIONS[name](out, rng):
            done.append(name)
    return out, done
