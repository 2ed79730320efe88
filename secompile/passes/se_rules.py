"""SE rules -> insertion points: which blocks, scopes and nodes each rule of `se:` selects.

A rule resolves to insertion *points* (position, target); later rules override earlier ones at
the same point and `position: none` removes one. Block selectors pick stage-level blocks by
stage index, block index or template-name glob and stage-name glob; a path selector picks any
scope or node by a segment-wise glob (`*` one segment, `**` any number). Nothing here changes
the graph: passes/insert_se.py splices a module in at each point.
"""
from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass

from ..ir.graph import Composite, Graph
from ..lang.errors import Problem, did_you_mean
from ..lang.loader import SourceMap

POSITIONS = ("standard", "pre", "post", "identity")
SCOPE_NAME = {"standard": "se", "pre": "se_pre", "post": "se_post", "identity": "se_identity"}
RULE_KEYS = ("where", "exclude", "position", "module")   # the rest of a rule: module parameters


@dataclass(frozen=True)
class SEOptions:
    """The paper's SE options a rule gives as plain values (what is checked before building)."""
    reduction: int = 16
    channels: int | None = None
    squeeze: str = "avg"
    gate: str = "sigmoid"
    bias: bool = True


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


def names_in_use(g: Graph) -> set[str]:
    """The set of `scopes(g)`, from the graph's own index of scope prefixes (no walk of the
    order): every node path and scope, modules SE rules inserted excluded."""
    inserted = [s for s, a in g.attention.items() if a.rule is not None]
    under = tuple(s + "." for s in inserted)
    own = set(inserted)
    return {p for seq in (g.g, g.scope_prefixes()) for p in seq
            if p != "input" and p not in own and not p.startswith(under)}


def scopes(g: Graph) -> list[str]:
    """Every node path and every scope prefix, in order, modules SE rules inserted excluded."""
    seen, out = set(), []
    inserted = tuple(s + "." for s, a in g.attention.items() if a.rule is not None)
    for p in g.order:
        if p == "input" or p.startswith(inserted):
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
        self.unknown = unknown   # stages not built (the spec has problems): may match there

    @functools.cached_property
    def scopes(self) -> list[str]:    # only path selectors and `position: {after: ...}` read it
        return scopes(self.g)

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


__all__ = ["resolve", "scopes", "glob_match", "Point", "SEOptions", "POSITIONS", "SCOPE_NAME",
           "RULE_KEYS"]
