"""`invalid_specs()`: valid generated specs broken in one known way, with the error each must raise.

Each example is an `InvalidSpec`: the broken spec (a dict, or YAML text for broken YAML), the
spec path and message (a regular expression) of the problem the compiler must report, and a
token that must appear on the reported line when the spec is written out with `.text()`.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import yaml
from hypothesis import strategies as st

from .families import V3_BREAKERS
from .generator import Constraints, networks


@dataclass(frozen=True, eq=False)
class InvalidSpec:
    kind: str               # what was broken (one of KINDS)
    source: object          # the spec: a dict, or YAML text ('bad_yaml')
    # spec path of the expected problem, as printed ('stem[0].conv.out', '<yaml>')
    path: str
    message: str            # regular expression the problem's message must match (re.search)
    # text on the problem's line in .text(), where the location is that precise
    token: str | None = None

    def text(self) -> str:
        """The spec as YAML, one key per line (what the locations refer to)."""
        if isinstance(self.source, str):
            return self.source
        return yaml.safe_dump(self.source, sort_keys=False, default_flow_style=False,
                              allow_unicode=True, width=10_000)

    def matches(self, problem) -> bool:
        return problem.path == self.path and re.search(self.message, problem.message) is not None

    def __repr__(self) -> str:
        return f"InvalidSpec({self.kind}: {self.path}: /{self.message}/)\n{self.text()}"


KINDS = ("wrong_type", "missing_key", "unknown_key", "group_mismatch", "shape_underflow",
         "dangling_selector", "bad_yaml", "unknown_template", "se_reduction", "se_position",
         "se_name_clash", "bad_branch")
# language v2 (issue 12): a template with vars, `when` and drop_path appended as a last stage,
# or an SE rule naming an attention module, broken in one way each
V2_KINDS = ("v2_when", "v2_var", "v2_make_divisible", "v2_module", "v2_module_param",
            "v2_drop_path")
# the family constructs (issue 21), broken in one way each: families.py
V3_KINDS = tuple(V3_BREAKERS)
KINDS = KINDS + V2_KINDS + V3_KINDS


def fmt(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "<root>"


def _walk(node, path=()):
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, path + (i,))


def _get(spec, path):
    for p in path:
        spec = spec[p]
    return spec


def _convs(spec):
    """Paths of every conv layer's attribute mapping (templates included)."""
    return [p for p, n in _walk(spec)
            if p and p[-1] == "conv" and isinstance(n, dict) and "out" in n
            and isinstance(_get(spec, p[:-1]), dict)]


def _block_stages(spec):
    return [i for i, s in enumerate(spec["stages"]) if "block" in s]


def _insert_stem(spec, item):
    spec.setdefault("stem", [])
    spec["stem"].insert(0, item)
    order = ["name", "description", "version", "include", "input", "blocks", "stem", "stages",
             "head", "se"]
    return {k: spec[k] for k in order if k in spec}


def _add_rule(spec, rule):
    spec.setdefault("se", []).append(rule)
    return len(spec["se"]) - 1


def wrong_type(draw, spec, net):
    convs = _convs(spec)
    form = draw(st.sampled_from(["conv_out", "act", "channels", "repeat", "layer"]))
    if form in ("conv_out", "act") and convs:
        p = draw(st.sampled_from(convs))
        if form == "act":
            _get(spec, p)["act"] = "relu7"
            return (spec, fmt(p + ("act",)),
                    r"expected an activation \(.*\) or a \$-expression, got string 'relu7'",
                    "relu7")
        bad, shown = draw(st.sampled_from([("sixteen", "string 'sixteen'"), (True, "boolean true"),
                                           (3.5, "number 3.5"), ([1, 2], "a list")]))
        _get(spec, p)["out"] = bad
        token = None if isinstance(bad, list) else ("true" if bad is True else str(bad))
        return (spec, fmt(p + ("out",)),
                re.escape(f"expected an integer or a $-expression, got {shown}"), token)
    if form == "repeat" and _block_stages(spec):
        i = draw(st.sampled_from(_block_stages(spec)))
        spec["stages"][i]["repeat"] = 0
        return spec, f"stages[{i}].repeat", r"must be >= 1, got 0", "repeat: 0"
    if form == "layer" and spec.get("stem"):
        i = draw(st.integers(0, len(spec["stem"]) - 1))
        spec["stem"][i] = 5
        return spec, f"stem[{i}]", re.escape("expected a layer: a mapping {kind: attributes} "
                                             "or a bare kind name, got number 5"), "5"
    spec["input"]["channels"] = "three"
    return spec, "input.channels", r"expected integer, got string 'three'", "three"


def missing_key(draw, spec, net):
    convs = _convs(spec)
    form = draw(st.sampled_from(["conv_out", "stages", "where", "param"]))
    if form == "conv_out" and convs:
        p = draw(st.sampled_from(convs))
        attrs = _get(spec, p)
        del attrs["out"]
        token = next(iter(attrs), None) if attrs else "conv"
        return spec, fmt(p), r"missing required key 'out'", token
    if form == "where":
        i = _add_rule(spec, {"reduction": 2})
        return spec, f"se[{i}]", r"missing required key 'where'", "reduction"
    stages = [i for i in _block_stages(spec) if "out" in spec["stages"][i]]
    if form == "param" and stages:
        i = draw(st.sampled_from(stages))
        del spec["stages"][i]["out"]
        name = spec["stages"][i]["block"]
        return (spec, f"stages[{i}]", re.escape(f"block template '{name}' needs parameter 'out'"),
                "block")
    del spec["stages"]
    return spec, "<root>", r"missing required key 'stages'", None


def unknown_key(draw, spec, net):
    convs = _convs(spec)
    form = draw(st.sampled_from(["conv", "top", "se", "param"]))
    if form == "conv" and convs:
        p = draw(st.sampled_from(convs))
        _get(spec, p)["kernal"] = 3
        return (spec, fmt(p + ("kernal",)),
                re.escape("unknown key 'kernal' (did you mean 'kernel'?)"), "kernal")
    if form == "se":
        i = _add_rule(spec, {"where": {"stages": "all"}, "reductoin": 4})
        return (spec, f"se[{i}].reductoin",
                re.escape("unknown key 'reductoin' (did you mean 'reduction'?)"), "reductoin")
    if form == "param" and _block_stages(spec):
        i = draw(st.sampled_from(_block_stages(spec)))
        spec["stages"][i]["widht"] = 4
        return (spec, f"stages[{i}].widht", r"unknown parameter 'widht' of block template '\w+'",
                "widht")
    spec["stagse"] = []
    return spec, "stagse", re.escape("unknown key 'stagse' (did you mean 'stages'?)"), "stagse"


def group_mismatch(draw, spec, net):
    cin = spec["input"]["channels"]
    g = cin + 1
    bottlenecks = [i for i in _block_stages(spec) if spec["stages"][i]["block"] == "bottleneck"
                   and spec["blocks"].get("bottleneck", {}).get("params", {}).get("cardinality")
                   is not None]
    form = draw(st.sampled_from(["conv", "shuffle", "cardinality"]))
    if form == "cardinality" and bottlenecks:
        i = draw(st.sampled_from(bottlenecks))
        w = spec["stages"][i]["width"]
        spec["stages"][i]["cardinality"] = w + 1
        return spec, f"stages[{i}].cardinality", \
            re.escape(f"{w + 1} does not divide the {w} input channels of branch.conv2"), \
            "cardinality"
    if form == "shuffle":
        spec = _insert_stem(spec, {"channel_shuffle": {"groups": g}})
        return spec, "stem[0].channel_shuffle.groups", \
            re.escape(f"channel_shuffle groups={g} must divide channels {cin}"), "groups"
    spec = _insert_stem(spec, {"conv": {"out": 2 * g, "groups": g}})
    return (spec, "stem[0].conv.groups", re.escape(f"{g} does not divide the {cin} input channels"),
            "groups")


def shape_underflow(draw, spec, net):
    size = spec["input"]["size"]
    k = (size if isinstance(size, int) else max(size)) + draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["conv", "maxpool", "avgpool"]))
    attrs = {"out": 4, "kernel": k, "padding": "valid"} if kind == "conv" else {"kernel": k}
    spec = _insert_stem(spec, {kind: attrs})
    return spec, f"stem[0].{kind}", r"output shape \(.*\) has a size below 1", None


def dangling_selector(draw, spec, net):
    n = len(spec["stages"])
    form = draw(st.sampled_from(["stages", "path", "blocks", "name", "after"]))
    if form == "stages":
        k = n + draw(st.integers(0, 3))
        i = _add_rule(spec, {"where": {"stages": [k]}})
        return (spec, f"se[{i}].where", re.escape(f"selector {{stages: [{k}]}} matches nothing"),
                None)
    if form == "path":
        i = _add_rule(spec, {"where": {"path": "**.nosuch"}})
        return (spec, f"se[{i}].where.path",
                re.escape("selector {path: **.nosuch} matches nothing"), "nosuch")
    if form == "blocks":
        i = _add_rule(spec, {"where": {"blocks": "nosuch*"}})
        return spec, f"se[{i}].where", re.escape("selector {blocks: nosuch*} matches nothing"), None
    if form == "name":
        i = _add_rule(spec, {"where": {"name": "nosuch"}})
        return spec, f"se[{i}].where", re.escape("selector {name: nosuch} matches nothing"), None
    i = _add_rule(spec, {"where": {"stages": [0]}, "position": {"after": "nosuch"}})
    return spec, f"se[{i}].position.after", r"'nosuch' is not inside block stages\.0", "nosuch"


BAD_YAML = [  # (text to append, spec path, message, token)
    ("name: other\n", "name", r"duplicate key 'name' \(first defined at line 1\)", "name: other"),
    ("broken: [1, 2\n", "<yaml>", r"expected ',' or '\]', but got '<stream end>'", None),
    ("\tfoo: 1\n", "<yaml>", r"found character '\\t' that cannot start any token", "foo"),
    ("foo: a: b\n", "<yaml>", r"mapping values are not allowed here", "foo: a: b"),
    ("foo: !!python/object:os.system 1\n", "foo", r"tag !!python/object:os.system is not allowed",
     "python"),
    ("foo: 'abc\n", "<yaml>", r"found unexpected end of stream", None),
]


def bad_yaml(draw, spec, net):
    extra, path, message, token = draw(st.sampled_from(BAD_YAML))
    text = InvalidSpec("", spec, "", "").text() + extra
    return text, path, message, token


def unknown_template(draw, spec, net):
    stages = _block_stages(spec)
    if stages:
        i = draw(st.sampled_from(stages))
        name = spec["stages"][i]["block"]
        wrong = name[:-1] + name[-1] * 2 + "x"
        spec["stages"][i]["block"] = wrong
        return spec, f"stages[{i}].block", re.escape(f"unknown block template '{wrong}'"), wrong
    spec["stages"][0] = {"block": "nosuch"}
    return spec, "stages[0].block", re.escape("unknown block template 'nosuch'"), "nosuch"


def se_reduction(draw, spec, net):
    r = 10 ** draw(st.integers(4, 6))
    i = _add_rule(spec, {"where": {"stages": "all"}, "position": "post", "reduction": r})
    return (spec, f"se[{i}].reduction", re.escape(f"reduction {r} leaves no channel for "),
            "reduction")


def se_position(draw, spec, net):
    others = sorted({b.stage for b in net.blocks if b.kind != "residual"})
    if not others:
        spec["stages"].append({"layers": ["identity"]})
        others = [len(spec["stages"]) - 1]
    k = draw(st.sampled_from(others))
    pos = draw(st.sampled_from(["standard", "identity"]))
    i = _add_rule(spec, {"where": {"stages": [k]}, "position": pos})
    return (spec, f"se[{i}]",
            rf"position '{pos}' needs a residual block; stages\.{k}\S* is (layers|parallel)", None)


def se_name_clash(draw, spec, net):
    """A stem layer named like the SE scope a rule creates: `se_post` (post on the stem), `q_se`
    (after the stem's layer q)."""
    if draw(st.booleans()):
        layers = [{"name": "se_post", "identity": {}}]
        rule, scope = {"where": {"path": "stem"}}, "stem.se_post"
    else:
        layers = [{"name": "q", "bn": None}, {"name": "q_se", "identity": {}}]
        rule, scope = {"where": {"path": "stem.q"}, "position": "after"}, "stem.q_se"
    spec.setdefault("stem", []).extend(layers)
    order = ["name", "description", "version", "include", "input", "blocks", "stem", "stages",
             "head", "se"]
    spec = {k: spec[k] for k in order if k in spec}
    i = _add_rule(spec, {**rule, "reduction": 1})
    return (spec, f"se[{i}]",
            re.escape(f"the SE block would be named '{scope}', which is a layer of the network"),
            None)


def bad_branch(draw, spec, net):
    """An empty residual branch, or a parallel branch name that is not a path segment."""
    form = draw(st.sampled_from(["empty_residual", "", "a.b"]))
    if form == "empty_residual":
        spec = _insert_stem(spec, {"residual": {"branch": []}})
        return spec, "stem[0].residual.branch", r"needs at least 1 item\(s\)", "branch"
    spec = _insert_stem(spec, {"parallel": {"branches": {form: ["identity"], "e": ["relu"]}}})
    return spec, f"stem[0].parallel.branches.{form}", \
        re.escape(f"branch name {form!r}: names are non-empty and have no '.'"), form or "''"


ORDER = ["name", "description", "version", "include", "input", "blocks", "stem", "stages", "head",
         "se"]


def _v2_stage(spec, layer_when="$e != 1", var="$in_channels", p=0.1):
    """Append a stage of a v2 template (vars, when, drop_path) that keeps its input's shape."""
    spec.setdefault("blocks", {})["v2bad"] = {
        "params": {"e": 2}, "vars": {"m": var},
        "layers": [{"name": "c", "conv": {"out": "$m"}, "when": layer_when},
                   {"name": "dp", "drop_path": {"p": p}}]}
    spec = {k: spec[k] for k in ORDER if k in spec}
    spec["stages"].append({"block": "v2bad"})
    return spec, len(spec["stages"]) - 1


def _in(i):
    return re.escape(f" (in stages[{i}].blocks[0])")


def v2_when(draw, spec, net):
    bad = draw(st.sampled_from(["$e", "$e * 2", "$e - 0.5"]))
    spec, i = _v2_stage(spec, layer_when=bad)
    return spec, "blocks.v2bad.layers[0].when", \
        r"when: expected true or false, got .*" + _in(i), "when"


def v2_var(draw, spec, net):
    spec, i = _v2_stage(spec, var="$in_channels * $nosuch")
    return spec, "blocks.v2bad.vars.m", \
        re.escape("unknown parameter 'nosuch' in expression '$in_channels * $nosuch'") + _in(i), \
        "nosuch"


def v2_make_divisible(draw, spec, net):
    var, msg = draw(st.sampled_from([
        ("make_divisible($in_channels, divsor=8)",
         "make_divisible() takes no keyword argument 'divsor'"),
        ("make_divisible($in_channels, 0)",
         "make_divisible(): integer division or modulo by zero")]))
    spec, i = _v2_stage(spec, var=var)
    return spec, "blocks.v2bad.vars.m", re.escape(msg), "make_divisible"


def v2_module(draw, spec, net):
    wrong, right = draw(st.sampled_from([("ecaa", "eca"), ("cbma", "cbam"),
                                         ("effective_sse", "effective_se")]))
    i = _add_rule(spec, {"where": {"stages": "all"}, "position": "post", "module": wrong})
    message = f"unknown attention module '{wrong}' (did you mean '{right}'?)"
    return spec, f"se[{i}].module", re.escape(message), wrong


def v2_module_param(draw, spec, net):
    module, key = draw(st.sampled_from([("eca", "kernal"), ("cbam", "reductoin"),
                                        ("effective_se", "squeze")]))
    i = _add_rule(spec, {"where": {"stages": "all"}, "position": "post", "module": module, key: 3})
    message = f"unknown parameter '{key}' of block template '{module}'"
    return spec, f"se[{i}].{key}", re.escape(message), key


def v2_drop_path(draw, spec, net):
    p = draw(st.sampled_from([1.5, 1, -0.25, 2]))
    spec, i = _v2_stage(spec, p=p)
    return spec, "blocks.v2bad.layers[1].drop_path.p", \
        re.escape(f"drop_path p must be in [0, 1), got {p}") + _in(i), str(p)


BREAKERS = {"wrong_type": wrong_type, "missing_key": missing_key, "unknown_key": unknown_key,
            "group_mismatch": group_mismatch, "shape_underflow": shape_underflow,
            "dangling_selector": dangling_selector, "bad_yaml": bad_yaml,
            "unknown_template": unknown_template,
            "se_reduction": se_reduction, "se_position": se_position,
            "se_name_clash": se_name_clash,
            "bad_branch": bad_branch, "v2_when": v2_when, "v2_var": v2_var,
            "v2_make_divisible": v2_make_divisible, "v2_module": v2_module,
            "v2_module_param": v2_module_param, "v2_drop_path": v2_drop_path,
            **V3_BREAKERS}


@st.composite
def _invalid(draw, kinds):
    net = draw(networks(Constraints(max_stages=2, max_repeat=2, max_nesting=1)))
    kind = draw(st.sampled_from(kinds))
    source, path, message, token = BREAKERS[kind](draw, copy.deepcopy(net.spec), net)
    return InvalidSpec(kind, source, path, message, token)


def invalid_specs(kinds=KINDS) -> st.SearchStrategy:
    """Specs broken in one known way each (see KINDS), as `InvalidSpec` examples."""
    bad = set(kinds) - set(KINDS)
    if bad:
        raise ValueError(f"unknown kinds {sorted(bad)}; choose from {KINDS}")
    return _invalid(tuple(kinds))
