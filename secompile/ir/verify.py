"""The IR verifier (torch.fx's `lint()`): re-derive every fact a pass could have left stale.

`check(g)` recomputes each node's output shape and weight tensors from its op's registry entry
and its inputs' recorded shapes, compares the node's inputs with the graph's edges, checks
that `Graph.order` is a topological order of every node, that no node path is also the scope
of another node (the torch backend nests modules by path), and that the recorded scopes
(stages, blocks, composites, units, template instances, attention modules) name nodes that
exist and hang together: an attention module's output has the shape of the tensor it
recalibrates and is the node that gives its result; the index of scope names matches the nodes.

Node shapes are inferred once, when a node is added; a later rewire (a pass splicing a module
in) never re-infers its consumers, so a module that changes the shape would leave every node
after it with a stale shape — exactly what this finds. A disagreement is a compiler bug (or a
spec the front end should have refused): `IRError`, an internal error listing every finding.
"""
from __future__ import annotations

import functools
import os

from . import ops
from .records import prefixes as _prefixes

MAX_LISTED = 20   # findings printed in full; the rest are counted
# Verify after the front end and after every pass (`verified`), not only the final graph that
# api.build_ir always checks: the test suite turns it on (tests/conftest.py), as may a user
# chasing a bug (SECOMPILE_VERIFY=1).
EVERY_PASS = os.environ.get("SECOMPILE_VERIFY", "") not in ("", "0")


class IRError(AssertionError):
    """The graph disagrees with what its ops compute (an internal error, never a user's)."""

    def __init__(self, name: str, findings: list[str]):
        self.findings = findings
        shown = findings[:MAX_LISTED]
        more = len(findings) - len(shown)
        lines = [f"IR verification of {name!r} failed ({len(findings)} findings):"]
        lines += [f"  - {f}" for f in shown] + ([f"  ... and {more} more"] if more else [])
        super().__init__("\n".join(lines))


def check(g) -> None:
    """Raise IRError listing every way `g` disagrees with its ops and scopes."""
    findings = (_nodes(g) + _order(g) + _paths(g) + _scopes(g) + _attention(g)
                + _scope_index(g))
    if findings:
        raise IRError(g.name, findings)


def verified(graph_pass):
    """Decorate a Graph -> Graph function: with EVERY_PASS on, its result is checked."""
    @functools.wraps(graph_pass)
    def run(*args, **kwargs):
        g = graph_pass(*args, **kwargs)
        if EVERY_PASS:
            check(g)
        return g
    return run


def _nodes(g) -> list[str]:
    out = []
    nodes, pred = g.g._node, g.g._pred   # networkx's own dicts: the views cost 3x the checks
    for path, d in nodes.items():
        op, attrs, inputs = d.get("op"), d.get("attrs"), d.get("inputs")
        if op not in ops.OPS or not isinstance(attrs, dict) or not isinstance(inputs, list):
            out.append(f"{path}: op {op!r} with attrs {type(attrs).__name__} and inputs "
                       f"{type(inputs).__name__}")
            continue
        try:
            ops.check_attrs(op, attrs)
        except ValueError as e:
            out.append(f"{path}: {e}")
            continue
        try:
            in_shapes = [nodes[i]["shape"] for i in inputs]
        except KeyError:
            missing = [i for i in inputs if i not in nodes]
            if not missing:   # an input node without a shape: not this finding
                raise
            out.append(f"{path}: reads {missing}, not in the graph")
            continue
        edges = pred[path]
        if edges.keys() != set(inputs) or not _edges_indexed(edges, inputs):
            edges = {src: e.get("index") for src, e in edges.items()}
            out.append(f"{path}: inputs {inputs} but edges from {sorted(edges.items())}")
        try:
            shape = ops.infer(op, attrs, in_shapes)
            tensors = ops.OPS[op].tensors(attrs, in_shapes)
        except (ops.OpError, ArithmeticError, TypeError, KeyError, IndexError) as e:
            out.append(f"{path}: {op} over input shapes {[tuple(s) for s in in_shapes]} "
                       f"fails: {e}")
            continue
        if shape != tuple(d.get("shape", ())):
            out.append(f"{path}: recorded shape {tuple(d.get('shape', ()))}, but {op} over "
                       f"{[tuple(s) for s in in_shapes]} gives {shape}")
        if not _sizes_ok(tensors):
            bad = {n: s for n, s in tensors.items()
                   if not all(type(x) is int and x >= 1 for x in s)}
            out.append(f"{path}: weight tensors with empty or odd shapes {bad}")
    return out


def _sizes_ok(tensors: dict) -> bool:
    """Every size of every tensor an int >= 1 (one loop, no generator per tensor)."""
    for shape in tensors.values():
        for x in shape:
            if type(x) is not int or x < 1:
                return False
    return True


def _edges_indexed(edges: dict, inputs: list) -> bool:
    """Each in-edge's `index` (where it is an int within the inputs) names its source."""
    n = len(inputs)
    for src, e in edges.items():
        i = e.get("index")
        if isinstance(i, int) and i < n and inputs[i] != src:
            return False
    return True


def _order(g) -> list[str]:
    try:
        order = g.order
    except Exception as e:   # networkx: a cycle, or a rank missing for a node
        return [f"no topological order: {type(e).__name__}: {e}"]
    if len(order) != len(set(order)) or set(order) != set(g.g.nodes):
        return [f"Graph.order lists {len(order)} paths ({len(set(order))} distinct) for "
                f"{g.g.number_of_nodes()} nodes"]
    seen, out = set(), []
    for p in order:
        late = [i for i in g.g.nodes[p]["inputs"] if i not in seen]
        if late:
            out.append(f"{p}: comes before its inputs {late} in Graph.order")
        seen.add(p)
    if order and g.g.nodes[order[0]]["op"] != "input":
        out.append(f"Graph.order starts at {order[0]}, not at the input")
    if g.output not in g.g:
        out.append(f"the graph's output {g.output!r} is not a node")
    return out


def _paths(g) -> list[str]:
    """A node path must not also be a scope holding other nodes (torch nests modules by path)."""
    paths = sorted(g.g.nodes)
    return [f"node {a} is also the scope of {b}" for a, b in zip(paths, paths[1:])
            if b.startswith(a + ".")]


def _scopes(g) -> list[str]:
    out = []
    nodes = g.g
    for where, comps in (("blocks", g.blocks), ("composites", g.composites)):
        for key, c in comps.items():
            if key != c.path:
                out.append(f"{where}[{key}] is the scope {c.path}")
            if c.kind not in ("residual", "parallel", "layers"):
                out.append(f"{c.path}: unknown scope kind {c.kind!r}")
            for field in ("input", "output", "merge", "branch_out", "shortcut_out"):
                node = getattr(c, field)
                if node is not None and node not in nodes:
                    out.append(f"{c.path}: {field} {node} is not a node")
            if c.input in nodes and c.input.startswith(c.path + "."):
                out.append(f"{c.path}: its input {c.input} lies inside it")
            for field in ("merge", "branch_out"):   # the scope's own nodes
                node = getattr(c, field)
                if node is not None and not node.startswith(c.path + "."):
                    out.append(f"{c.path}: its {field} {node} lies outside it")
    for i, st in enumerate(g.stages):
        if st.path != f"stages.{i}":
            out.append(f"stage {i} has the path {st.path}")
        for j, b in enumerate(st.blocks):
            c = g.blocks.get(b)
            if c is None:
                out.append(f"{st.path}: block {b} is not in Graph.blocks")
            elif (c.stage, c.index) != (i, j) or not b.startswith(st.path + "."):
                if not (c.kind == "layers" and b == st.path):
                    out.append(f"{b}: recorded as block {c.index} of stage {c.stage}, "
                               f"listed as block {j} of stage {i}")
    listed = {b for st in g.stages for b in st.blocks}
    out += [f"block {b} is in no stage" for b in g.blocks if b not in listed]
    units = set(g.units)
    if len(units) != len(g.units):
        out.append(f"units listed twice: {sorted(u for u in units if g.units.count(u) > 1)}")
    out += [f"unit {u} is inside unit {v}" for u in units for v in _prefixes(u) if v in units]
    return out


def _attention(g) -> list[str]:
    """Each attention module and template instance record names nodes of the graph, and a
    module's output (the tensor its consumers read) has the shape of the tensor it recalibrates
    and is its own last node, the select merge of an SK block, or the node a fusion folded its
    last node into (passes/fuse.py: a scale_add reading the module's gate)."""
    out = []
    nodes = g.g
    for s, rec in getattr(g, "scopes", {}).items():
        for field in ("entry", "exit"):
            node = getattr(rec, field)
            if node not in nodes:
                out.append(f"template instance {s}: its {field} {node!r} is not a node")
    for s, a in getattr(g, "attention", {}).items():
        if a.input not in nodes or a.output not in nodes:
            out.append(f"attention module {s}: input {a.input!r} or output {a.output!r} is "
                       "not a node")
            continue
        fused = nodes.nodes[a.output]["op"] == "scale_add" and any(
            i.startswith(s + ".") for i in g.inputs(a.output))
        if a.fusion != "select" and not a.output.startswith(s + ".") and not fused:
            out.append(f"attention module {s}: its output {a.output} lies outside it")
        if g.shape(a.output) != g.shape(a.input):
            out.append(f"attention module {s}: output {a.output} has shape "
                       f"{g.shape(a.output)}, its input {a.input} {g.shape(a.input)}")
    return out


def _scope_index(g) -> list[str]:
    """Graph._scopes (what `Graph.add` refuses as a layer name) is exactly the proper prefixes
    of the node paths, each with its node count: a scope whose nodes all went is free again."""
    # counted here from the paths, not with the graph's own prefix chains: each node counts in
    # its parent scope, then each scope in its parent, deepest first
    want: dict = {}
    by_depth: dict[int, list] = {}
    for p in g.g:
        cut = p.rfind(".")
        if cut != -1:
            parent = p[:cut]
            if parent in want:
                want[parent] += 1
            else:
                want[parent] = 1
                by_depth.setdefault(parent.count("."), []).append(parent)
    for depth in range(max(by_depth, default=0), 0, -1):
        for scope in by_depth.get(depth, ()):
            parent = scope[:scope.rfind(".")]
            if parent in want:
                want[parent] += want[scope]
            else:
                want[parent] = want[scope]
                by_depth.setdefault(depth - 1, []).append(parent)
    have = getattr(g, "_scopes", want)
    if have == want:
        return []
    stale = sorted(set(have) - set(want))[:5]
    missing = sorted(set(want) - set(have))[:5]
    wrong = sorted(k for k in set(have) & set(want) if have[k] != want[k])[:5]
    return [f"the scope index disagrees with the node paths: stale {stale}, missing {missing}, "
            f"miscounted {wrong}"]


__all__ = ["check", "verified", "IRError", "EVERY_PASS"]
