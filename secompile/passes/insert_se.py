"""insert_se: splice Squeeze-and-Excitation blocks into the IR by rule, at any depth.

An SE block on tensor U (C x H x W) is, as in the paper (eqs. 2-4) and the reference
Caffe models:  pool (avg|max, keepdim) -> fc1 (1x1 conv C -> C/r, bias) -> relu
-> fc2 (1x1 conv C/r -> C, bias) -> gate (sigmoid|hard_sigmoid) -> scale (U * s).

Rules are resolved to insertion points first (a later rule overrides an earlier one
at the same point, `position: none` removes one), then spliced. Points that already
hold an SE block are left alone, so applying a rule twice equals applying it once.

Attention modules as data: a rule's `module:` names a block template (default `se`, the
block above, shipped in specs/blocks/attention.yaml). This pass does not read templates
(passes never import the front end): the caller hands it `modules`, an `AttentionModules`
(api.build_ir passes `frontend.attention_modules(spec)`), which builds a module's nodes on
the graph. Without `modules` the paper's SE block is built here, with the same nodes.
"""
from __future__ import annotations

import bisect
import dataclasses
import fnmatch
from dataclasses import dataclass
from typing import Protocol

from ..ir import ops
from ..ir.graph import Composite, Graph
from ..ir.verify import verified
from ..lang.errors import Problem, SpecError, did_you_mean
from ..lang.loader import SourceMap

POSITIONS = ("standard", "pre", "post", "identity")
SCOPE_NAME = {"standard": "se", "pre": "se_pre", "post": "se_post", "identity": "se_identity"}


@dataclass(frozen=True)
class SEOptions:
    reduction: int = 16
    channels: int | None = None
    squeeze: str = "avg"
    gate: str = "sigmoid"
    bias: bool = True

    def reduced(self, c: int) -> int:
        return self.channels if self.channels is not None else c // self.reduction


RULE_KEYS = ("where", "exclude", "position", "module")   # the rest of a rule: module parameters


class AttentionModules(Protocol):
    """What the front end offers this pass: attention templates it can instantiate."""

    def __contains__(self, name: str) -> bool: ...

    def names(self) -> list[str]: ...

    def build(self, g: Graph, name: str, u: str, scope: str, params: dict, rule_path: tuple,
              block: Composite | None) -> tuple[str, list[str], dict]:
        """Add module `name` on tensor `u` under `scope`, each node placed after the one before
        (right after `u`) -> (output node, added node paths, the module's bound names).
        Raises SpecError (located at the rule for a bad parameter)."""


@dataclass(frozen=True)
class Point:
    position: str      # standard | pre | post | identity | after
    target: str        # block path, or the node/scope path for 'after'


def glob_match(pattern: str, path: str) -> bool:
    """Segment-wise glob: '*' matches within one dotted segment, '**' any number of segments."""
    return _match(pattern.split("."), path.split("."))


def _match(pat, segs) -> bool:
    if not pat:
        return not segs
    if pat[0] == "**":
        return any(_match(pat[1:], segs[i:]) for i in range(len(segs) + 1))
    return bool(segs) and fnmatch.fnmatchcase(segs[0], pat[0]) and _match(pat[1:], segs[1:])


def _indices(sel, n):
    if sel == "all":
        return set(range(n))
    sel = [sel] if isinstance(sel, int) else sel
    return {i % n for i in sel if -n <= i < n}


def _select_blocks(g: Graph, sel: dict) -> list[Composite]:
    stages = _indices(sel.get("stages", "all"), len(g.stages))
    out = []
    for b in g.blocks.values():
        if b.stage not in stages:
            continue
        bsel = sel.get("blocks", "all")
        if isinstance(bsel, str) and bsel != "all":
            if not fnmatch.fnmatchcase(b.template or "", bsel):
                continue
        elif b.index not in _indices(bsel, len(g.stages[b.stage].blocks)):
            continue
        if "name" in sel and not fnmatch.fnmatchcase(b.name or "", sel["name"]):
            continue
        out.append(b)
    return out


def _scopes(g: Graph) -> list[str]:
    """Every node path and every scope prefix, in order, SE blocks excluded."""
    seen, out = set(), []
    se_scopes = tuple(s + "." for s in g.se)
    for p in g.order:
        if p == "input" or p.startswith(se_scopes):
            continue
        parts = p.split(".")
        for i in range(1, len(parts) + 1):
            s = ".".join(parts[:i])
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def _selected_paths(g: Graph, sel: dict, scopes: list[str]) -> list[str]:
    pats = sel["path"] if isinstance(sel["path"], list) else [sel["path"]]
    within = None
    if any(k in sel for k in ("stages", "blocks", "name")):
        within = tuple(b.path + "." for b in _select_blocks(g, sel))
    return [s for s in scopes if any(glob_match(p, s) for p in pats)
            and (within is None or s.startswith(within))]


class _Resolver:
    def __init__(self, g: Graph, smap: SourceMap, unknown=frozenset()):
        self.g, self.smap, self.problems = g, smap, []
        self.scopes = _scopes(g)
        self.unknown = unknown   # stages not built (the spec has problems): may match there

    def points(self, rule: dict, rpath: tuple) -> list[Point]:
        g, where = self.g, rule["where"]
        pos = rule.get("position", "after" if "path" in where else "standard")
        if isinstance(pos, dict):
            blocks = _select_blocks(g, where)
            if not blocks:
                self._nothing(rpath + ("where",), where)
            targets = []
            for b in blocks:
                t = f"{b.path}.{pos['after']}"
                if t not in set(self.scopes):
                    within = b.path + "."
                    inside = [s[len(within):] for s in self.scopes if s.startswith(within)]
                    self.problems.append(self.smap.problem(rpath + ("position", "after"),
                                         f"'{pos['after']}' is not inside block {b.path}"
                                         f"{did_you_mean(pos['after'], inside)}"))
                    return []
                targets.append(Point("after", t))
            return targets
        if "path" in where:
            paths = _selected_paths(g, where, self.scopes)
            if not paths:
                self._nothing(rpath + ("where", "path"), where)
            if pos not in ("after", "none"):
                self.problems.append(self.smap.problem(rpath + ("position",),
                                     "a path selector inserts after the matched node: use position "
                                     f"'after', not '{pos}'"))
                return []
            return [Point("after", p) for p in paths]
        blocks = _select_blocks(g, where)
        if not blocks:
            self._nothing(rpath + ("where",), where)
        if pos == "after":
            self.problems.append(self.smap.problem(rpath + ("position",),
                                 "position 'after' needs where.path or {after: PATH}"))
            return []
        return [Point(pos, b.path) for b in blocks]

    def exclude(self, rule: dict, points: list[Point]) -> list[Point]:
        ex = rule.get("exclude")
        if not ex:
            return points
        if "path" in ex:
            gone = set(_selected_paths(self.g, ex, self.scopes))
            return [p for p in points if p.target not in gone
                    and not any(p.target.startswith(x + ".") for x in gone)]
        gone = tuple(b.path for b in _select_blocks(self.g, ex))
        return [p for p in points
                if not any(p.target == x or p.target.startswith(x + ".") for x in gone)]

    def _nothing(self, path, sel):
        g, n = self.g, len(self.g.stages)
        stages = sorted(_indices(sel.get("stages", "all"), n))
        if self.unknown.intersection(stages):
            return   # those stages were not built (the spec has other problems): it may match there
        hint = ""
        if "path" in sel:
            pats = sel["path"] if isinstance(sel["path"], list) else [sel["path"]]
            cands = self.scopes
            if "*" in pats[0]:  # suggest a pattern: concrete indices generalised to '*'
                cands = {".".join("*" if seg.isdigit() else seg for seg in p.split("."))
                         for p in self.scopes}
            hint = did_you_mean(pats[0], cands)
        blocks = sel.get("blocks", "all")
        if not hint and isinstance(blocks, str) and blocks != "all":   # a template-name glob
            hint = did_you_mean(blocks, {b.template for b in g.blocks.values() if b.template})
        if not hint and isinstance(sel.get("name"), str):
            hint = did_you_mean(sel["name"], {st.name for st in g.stages if st.name})
        where = tuple(path[:3])   # ('se', i, 'where')
        if not hint and not stages:   # the stage indices are the problem
            hint = f" (the network has {n} stages)"
        elif not hint and not isinstance(blocks, str) and not any(   # the block indices are
                _indices(blocks, len(g.stages[s].blocks)) for s in stages):
            counts = ", ".join(str(len(g.stages[s].blocks)) for s in stages)
            hint = (f" (stage {stages[0]} has {counts} blocks)" if len(stages) == 1 else
                    f" (stages {', '.join(map(str, stages))} have {counts} blocks)")
            path = where + ("blocks",)
        self.problems.append(self.smap.problem(path,
                                               f"selector {_show(sel)} matches nothing{hint}"))


def _show(sel: dict) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sel.items()) + "}"


def resolve(g: Graph, rules: list, smap: SourceMap,
            unknown=frozenset()) -> tuple[dict, list[Problem]]:
    """Rules -> {Point: (SEOptions, rule spec path)}; later rules override earlier ones.
    A rule that is None (refused by the schema) is left out; `unknown`: see `check`."""
    r = _Resolver(g, smap, unknown)
    chosen: dict = {}
    for i, rule in enumerate(rules):
        if rule is None:
            continue
        rpath = ("se", i)
        # an index past the end is a typo, not "nothing"
        stages = rule["where"].get("stages", "all")
        n = len(g.stages)
        # all out: "matches nothing (N stages)"
        if isinstance(stages, list) and any(-n <= s < n for s in stages):
            for j, s in enumerate(stages):
                if not -n <= s < n:
                    r.problems.append(smap.problem(rpath + ("where", "stages", j),
                                                   f"stage index {s} is out of range "
                                                   f"(the network has {n} stages)"))
        opts = _options(rule)
        for pt in r.exclude(rule, r.points(rule, rpath)):
            if rule.get("position") == "none":
                chosen.pop(Point("standard", pt.target), None)
                for pos in POSITIONS + ("after",):
                    chosen.pop(Point(pos, pt.target), None)
            else:
                chosen[pt] = (opts, rpath)
    return chosen, r.problems


def _options(rule: dict) -> SEOptions:
    """The paper's SE options of a rule (an expression is left to the `se` template)."""
    given = {k: rule[k] for k in ("reduction", "channels", "squeeze", "gate", "bias") if k in rule}
    return SEOptions(**{k: v for k, v in given.items()
                        if k in ("squeeze", "gate") or not isinstance(v, str)})


@verified
def insert_se(g: Graph, rules: list, smap: SourceMap,
              modules: AttentionModules | None = None) -> Graph:
    """Return a copy of `g` with SE blocks (attention modules) spliced in. Raises SpecError."""
    g = g.copy()
    problems = _module_problems(rules, smap, modules)
    if problems:
        raise SpecError(problems)
    chosen, problems = resolve(g, rules, smap)
    problems += _splice_all(g, chosen, rules, smap, modules)
    if problems:
        raise SpecError(problems)
    return g


def check(g: Graph, rules: list, smap: SourceMap, unknown=frozenset(),
          modules: AttentionModules | None = None) -> list[Problem]:
    """The problems of SE rules on a graph that is built only in part (its spec has other
    problems): rules that are None (refused by the schema) are left out, a selector over a stage
    in `unknown` (not fully built) is not said to match nothing, and only blocks of built stages
    are spliced (a rule naming an unknown module is reported, not spliced)."""
    g = g.copy()
    problems = _module_problems(rules, smap, modules)
    bad = {("se", i) for i, r in enumerate(rules) if r is not None and _unknown_module(r, modules)}
    chosen, found = resolve(g, rules, smap, frozenset(unknown))
    built = tuple(f"stages.{i}." for i in range(len(g.stages)) if i not in unknown)
    chosen = {pt: v for pt, v in chosen.items()
              if built and (pt.target + ".").startswith(built) and v[1] not in bad}
    return problems + found + _splice_all(g, chosen, rules, smap, modules)


def _unknown_module(rule: dict, modules: AttentionModules | None) -> bool:
    return "module" in rule if modules is None else rule.get("module", "se") not in modules


def _module_problems(rules: list, smap: SourceMap,
                     modules: AttentionModules | None) -> list[Problem]:
    """A rule's `module:` must name a template the front end offers (rules None: left out)."""
    problems = []
    for i, rule in enumerate(rules):
        if rule is None or not _unknown_module(rule, modules):
            continue
        if modules is None:
            problems.append(smap.problem(("se", i, "module"),
                                         "attention modules need the front end: insert_se(..., "
                                         "modules=frontend.attention_modules(spec))"))
        else:
            name = rule.get("module", "se")
            hint = did_you_mean(name, modules.names())
            problems.append(smap.problem(("se", i, "module") if "module" in rule else ("se", i),
                                         f"unknown attention module '{name}'{hint}"))
    return problems


def _splice_all(g: Graph, chosen: dict, rules: list, smap: SourceMap,
                modules: AttentionModules | None = None) -> list[Problem]:
    problems = []
    rank = {p: i for i, p in enumerate(g.order)}
    taken = set(_scopes(g))   # node paths and scopes of the network's own layers
    index = _PathIndex(g)
    reshaping: dict = {}   # rule -> [its first problem's index, points] (a module that reshapes)
    for pt, (opts, rpath) in sorted(chosen.items(),
                                    key=lambda kv: (rank.get(kv[0].target, 0), kv[0].position)):
        try:
            _splice(g, pt, opts, taken, index, modules, rules[rpath[1]], rpath)
        except _Problem as e:
            if e.about == "module" and rpath in reshaping:   # said once per rule
                reshaping[rpath][1] += 1
                continue
            key = e.about if e.about and e.about in rules[rpath[1]] else None
            problems.append(smap.problem(rpath + ((key,) if key else ()), str(e)))
            if e.about == "module":
                reshaping[rpath] = [len(problems) - 1, 1]
        except SpecError as e:
            problems.extend(e.problems)
    for i, n in reshaping.values():
        if n > 1:
            problems[i] = dataclasses.replace(problems[i], message=f"{problems[i].message} "
                                              f"(and at {n - 1} more places this rule selects)")
    return problems


class _Problem(Exception):
    def __init__(self, message, about=None):
        super().__init__(message)
        self.about = about


class _PathIndex:
    """Node paths in sorted order: a scope's nodes are one contiguous run, found by bisection.
    (Scanning g.order for every scope target made a broad path glob quadratic: minutes.)"""

    def __init__(self, g: Graph):
        self.paths = sorted(g.order)

    def add(self, path: str) -> None:
        bisect.insort(self.paths, path)

    def inside(self, scope: str) -> list[str]:
        lo = bisect.bisect_left(self.paths, scope + ".")
        # '/' sorts right after '.'
        return self.paths[lo:bisect.bisect_left(self.paths, scope + "/", lo)]


def _anchor(g: Graph, pt: Point, index: _PathIndex | None = None):
    """-> (tensor to recalibrate, consumers to rewire, SE scope path, composite to update)."""
    index = index or _PathIndex(g)
    if pt.position == "after":
        comp = g.blocks.get(pt.target) or g.composites.get(pt.target)
        if comp is not None or pt.target in g.units:
            return _anchor(g, Point("post", pt.target), index)
        u = pt.target if pt.target in g else _scope_output(g, pt.target, index)
        if g.unit_of(pt.target) in (None, pt.target):
            raise _Problem(f"'{pt.target}' is not inside a block, the stem or the head; "
                           f"use position post")
        return u, [c for c in g.consumers(u)], f"{pt.target}_se", None
    comp = g.blocks.get(pt.target) or g.composites.get(pt.target)
    if pt.position == "post":
        if comp is None:   # a unit without a composite (stem, head)
            u = _scope_output(g, pt.target, index)
            return u, g.consumers(u), f"{pt.target}.se_post", None
        return comp.output, g.consumers(comp.output), f"{comp.path}.se_post", comp
    if comp.kind != "residual" and pt.position in ("standard", "identity"):
        raise _Problem(f"position '{pt.position}' needs a residual block; {comp.path} is "
                       f"{comp.kind} (use post or pre)")
    if comp.merge is None and pt.position in ("standard", "identity"):
        raise _Problem(f"position '{pt.position}' needs a merge; {comp.path} has no skip here "
                       "(skip: auto, the branch changes the shape): use post")
    scope = f"{comp.path}.{SCOPE_NAME[pt.position]}"
    # The merge's inputs as wired now: an SE block spliced in before (after the branch's last
    # layer, or post on the block that feeds an identity shortcut) sits on that edge already.
    if pt.position == "standard":
        return g.inputs(comp.merge)[1], [comp.merge], scope, comp
    if pt.position == "identity":
        return g.inputs(comp.merge)[0], [comp.merge], scope, comp
    inside = f"{comp.path}.branch." if comp.kind == "residual" else f"{comp.path}."
    return comp.input, [c for c in g.consumers(comp.input) if c.startswith(inside)], scope, comp


def _scope_output(g: Graph, scope: str, index: _PathIndex) -> str:
    inside = index.inside(scope)
    outs = [p for p in inside
            if any(not c.startswith(scope + ".") for c in g.consumers(p)) or p == g.output]
    if len(outs) != 1:
        raise _Problem(f"'{scope}' has {len(outs)} outputs; select one node inside it")
    return outs[0]


def _splice(g: Graph, pt: Point, o: SEOptions, taken: set = frozenset(),
            index: _PathIndex | None = None, modules: AttentionModules | None = None,
            rule: dict | None = None, rpath: tuple = ()) -> None:
    index = index or _PathIndex(g)
    u, consumers, s, comp = _anchor(g, pt, index)
    if s in g.se:
        return  # already there: idempotent
    if s in taken:
        raise _Problem(f"the SE block would be named '{s}', which is a layer of the network; "
                       f"rename that layer")
    shape = g.shape(u)
    if len(shape) != 3:
        raise _Problem(f"SE needs a feature map (C, H, W); {u} has shape {shape}")
    c = shape[0]
    name = (rule or {}).get("module", "se")
    # the paper's floor width (divisor 1); make_divisible widths are at least the divisor (props-7)
    if name == "se" and "channels" not in (rule or {}) and (rule or {}).get("divisor", 1) == 1 \
            and isinstance(o.reduction, int) and c // o.reduction < 1:
        raise _Problem(f"reduction {o.reduction} leaves no channel for {c} channels ({c} // "
                       f"{o.reduction} = 0)",
                       about="reduction")
    if modules is None:
        a, added = _paper_se(g, u, s, o, c), [f"{s}.{part}" for part in SE_NODES]
        record = {"reduction": o.reduction, "channels": c, "reduced": o.reduced(c),
                  "squeeze": o.squeeze, "gate": o.gate, "bias": o.bias}
    else:
        params = {k: v for k, v in rule.items() if k not in RULE_KEYS}
        a, added, names = modules.build(g, name, u, s, params, rpath, _enclosing_block(g, s))
        record = {"reduction": names.get("reduction"), "channels": c,
                  "squeeze": names.get("squeeze"), "gate": names.get("gate"),
                  "bias": names.get("bias"), "module": name}
        record["reduced"] = g.shape(f"{s}.fc1")[0] if f"{s}.fc1" in g else names.get("width")
    if g.shape(a) != shape:   # its consumers were shaped for u: it must give u's shape back
        raise _Problem(f"attention module '{name}' turns {u} {shape} into {g.shape(a)} at {s}; "
                       "a module an SE rule inserts must keep the shape it is inserted on",
                       about="module")
    for path in added:
        index.add(path)
    g.rewire(u, a, consumers)
    # scopes now reading the recalibrated tensor: next block (post), nested (pre)
    for consumer in consumers:
        prefix = ""
        for seg in consumer.split("."):
            prefix = f"{prefix}.{seg}" if prefix else seg
            for other in (g.blocks.get(prefix), g.composites.get(prefix)):
                if other is None or other is comp:
                    continue
                if other.input == u:
                    other.input = a
                if other.merge == consumer:  # a shortcut or branch that ended at u now ends at a
                    if other.shortcut_out == u:
                        other.shortcut_out = a
                    if other.branch_out == u:
                        other.branch_out = a
    g.se[s] = {"position": pt.position, "target": pt.target, "input": u, **record}
    # scopes whose output the SE block now is: its own block (post), or the blocks
    # around a layer recalibrated in place (`after` their last layer)
    prefix = ""
    for seg in s.split(".")[:-1]:
        prefix = f"{prefix}.{seg}" if prefix else seg
        for other in (g.blocks.get(prefix), g.composites.get(prefix)):
            if other is not None and other.output == u:
                other.output = a


SE_NODES = ("pool", "fc1", "act", "fc2", "gate", "scale")


def _paper_se(g: Graph, u: str, s: str, o: SEOptions, c: int) -> str:
    """The paper's SE block, built here when no front end hands modules in (same nodes as the
    `se` template of specs/blocks/attention.yaml)."""
    fc = {"kernel": (1, 1), "stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1,
          "bias": o.bias}
    try:
        a = g.add(f"{s}.pool", "global_pool", {"mode": o.squeeze, "keepdim": True}, [u], after=u)
        a = g.add(f"{s}.fc1", "conv2d", {**fc, "out": o.reduced(c)}, [a], after=a)
        a = g.add(f"{s}.act", "act", {"kind": "relu"}, [a], after=a)
        a = g.add(f"{s}.fc2", "conv2d", {**fc, "out": c}, [a], after=a)
        a = g.add(f"{s}.gate", "act", {"kind": o.gate}, [a], after=a)
        return g.add(f"{s}.scale", "mul", {}, [u, a], after=a)
    except ops.OpError as e:
        raise _Problem(str(e)) from None


def _enclosing_block(g: Graph, scope: str) -> Composite | None:
    """The stage-level block a module's scope sits in (its per-block names), or None."""
    parts, found = scope.split("."), None
    for i in range(1, len(parts) + 1):
        found = g.blocks.get(".".join(parts[:i]), found)
    return found


__all__ = ["insert_se", "check", "resolve", "glob_match", "SEOptions", "Point", "AttentionModules"]
