"""insert_se: splice attention modules (SE blocks and their kin) into the IR by rule, at any depth.

An SE block on tensor U (C x H x W) is, as in the paper (eqs. 2-4) and the reference Caffe
models:  pool (avg|max, keepdim) -> fc1 (1x1 conv C -> C/r, bias) -> relu -> fc2 (1x1 conv
C/r -> C, bias) -> gate (sigmoid|hard_sigmoid) -> scale (U * s): the `se` template of
specs/blocks/attention.yaml, its one definition.

Two steps: `se_rules.resolve` turns the rules into insertion points (a later rule overrides an
earlier one at the same point, `position: none` removes one); `_splice` builds the module at
each point and puts it between the tensor and its readers (`Graph.insert_between`, which keeps
the scopes true), recording it as an `AttentionModule` (`graph.attention`). Points that already
hold a module are left alone, so applying a rule twice equals applying it once.

A rule's `module:` names a block template (default `se`). This pass does not read templates
(passes never import the front end): the caller hands it `modules`, an `AttentionModules`
(api.build_ir passes `frontend.attention_modules(spec)`), which builds a module's nodes.
"""
from __future__ import annotations

import bisect
import dataclasses
from typing import Protocol

from ..ir.graph import Composite, Graph
from ..ir.records import AttentionModule, attention_kind
from ..ir.verify import verified
from ..lang.errors import Problem, SpecError, did_you_mean
from ..lang.loader import SourceMap
from .se_rules import (  # noqa: F401 (glob_match, SEOptions: this module's public names)
    RULE_KEYS,
    SCOPE_NAME,
    Point,
    SEOptions,
    _indices,
    _select_blocks,
    glob_match,
    names_in_use,
    resolve,
)


class AttentionModules(Protocol):
    """What the front end offers this pass: attention templates it can instantiate."""

    def __contains__(self, name: str) -> bool: ...

    def names(self) -> list[str]: ...

    def build(self, g: Graph, name: str, u: str, scope: str, params: dict, rule_path: tuple,
              block: Composite | None) -> tuple[str, list[str], dict]:
        """Add module `name` on tensor `u` under `scope`, each node placed after the one before
        (right after `u`) -> (output node, added node paths, the module's bound names).
        Raises SpecError (located at the rule for a bad parameter)."""



@verified
def insert_se(g: Graph, rules: list, smap: SourceMap, modules: AttentionModules, *,
              copy: bool = True) -> Graph:
    """Return a copy of `g` with SE blocks (attention modules) spliced in. Raises SpecError.
    copy=False: splice them into `g` itself, for a caller that drops `g` (after a SpecError,
    `g` is half rewritten)."""
    _need(modules)
    if copy:
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
    _need(modules)
    g = g.copy()
    problems = _module_problems(rules, smap, modules)
    bad = {("se", i) for i, r in enumerate(rules) if r is not None and _unknown_module(r, modules)}
    chosen, found = resolve(g, rules, smap, frozenset(unknown))
    built = tuple(f"stages.{i}." for i in range(len(g.stages)) if i not in unknown)
    chosen = {pt: v for pt, v in chosen.items()
              if built and (pt.target + ".").startswith(built) and v[1] not in bad}
    return problems + found + _splice_all(g, chosen, rules, smap, modules)


def _unknown_module(rule: dict, modules: AttentionModules) -> bool:
    return rule.get("module", "se") not in modules


def _need(modules) -> None:
    if modules is None:   # the modules are templates: only the front end can build them
        raise TypeError("insert_se needs modules=frontend.attention_modules(spec)")


def _module_problems(rules: list, smap: SourceMap,
                     modules: AttentionModules) -> list[Problem]:
    """A rule's `module:` must name a template the front end offers (rules None: left out)."""
    problems = []
    for i, rule in enumerate(rules):
        if rule is None or not _unknown_module(rule, modules):
            continue
        name = rule.get("module", "se")
        hint = did_you_mean(name, modules.names())
        problems.append(smap.problem(("se", i, "module") if "module" in rule else ("se", i),
                                     f"unknown attention module '{name}'{hint}"))
    return problems


def _splice_all(g: Graph, chosen: dict, rules: list, smap: SourceMap,
                modules: AttentionModules) -> list[Problem]:
    problems = []
    rank = {p: i for i, p in enumerate(g.order)}
    taken = names_in_use(g)   # node paths and scopes of the network's own layers
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


def _splice(g: Graph, pt: Point, o: SEOptions, taken: set, index: _PathIndex,
            modules: AttentionModules, rule: dict, rpath: tuple) -> None:
    u, consumers, s, comp = _anchor(g, pt, index)
    if s in g.attention and g.attention[s].rule is not None:
        return  # already there: idempotent
    if s in taken:
        raise _Problem(f"the SE block would be named '{s}', which is a layer of the network; "
                       f"rename that layer")
    shape = g.shape(u)
    if len(shape) != 3:
        raise _Problem(f"SE needs a feature map (C, H, W); {u} has shape {shape}")
    c = shape[0]
    name = rule.get("module", "se")
    # the paper's floor width (divisor 1); make_divisible widths are at least the divisor (props-7)
    if name == "se" and "channels" not in rule and rule.get("divisor", 1) == 1 \
            and isinstance(o.reduction, int) and c // o.reduction < 1:
        raise _Problem(f"reduction {o.reduction} leaves no channel for {c} channels ({c} // "
                       f"{o.reduction} = 0)",
                       about="reduction")
    params = {k: v for k, v in rule.items() if k not in RULE_KEYS}
    a, added, names = modules.build(g, name, u, s, params, rpath, _enclosing_block(g, s))
    if a == u:   # nothing to splice in, and no node to record as the module's output
        raise _Problem(f"attention module '{name}' adds no layer at {s} (every layer is switched "
                       "off by `when:`); a module an SE rule inserts needs one", about="module")
    if g.shape(a) != shape:   # its consumers were shaped for u: it must give u's shape back
        raise _Problem(f"attention module '{name}' turns {u} {shape} into {g.shape(a)} at {s}; "
                       "a module an SE rule inserts must keep the shape it is inserted on",
                       about="module")
    for path in added:
        index.add(path)
    g.insert_between(u, a, consumers, s, owner=comp.path if comp is not None else None)
    width = names.get("width")
    built = g.attention.get(s)   # as its template recorded it, over the same nodes: counted
    params = built.param_count if built is not None and built.output == a else \
        g.param_count(added)
    g.add_attention(AttentionModule(
        s, name, attention_kind(name), g.op(a), u, a, params, rpath, pt.position,
        pt.target, width if isinstance(width, int) and not isinstance(width, bool) else None))


def _enclosing_block(g: Graph, scope: str) -> Composite | None:
    """The stage-level block a module's scope sits in (its per-block names), or None."""
    parts, found = scope.split("."), None
    for i in range(1, len(parts) + 1):
        found = g.blocks.get(".".join(parts[:i]), found)
    return found


__all__ = ["insert_se", "check", "resolve", "glob_match", "SEOptions", "Point", "AttentionModules"]
