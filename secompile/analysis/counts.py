"""Analytic multiply-adds and parameters from the IR alone (no torch, no forward pass).

The per-op rules live next to each op's shape rule in `secompile.ir.ops`; this module
sums them per node, block, stage and network, and builds the report.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import ops
from ..ir.graph import Graph


@dataclass(frozen=True)
class Cost:
    macs: int = 0
    params: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.macs + other.macs, self.params + other.params)


class Counts:
    """Per-node costs of a graph, with sums over any scope."""

    def __init__(self, g: Graph):
        self.graph = g
        self.nodes: dict[str, Cost] = {}
        # every path prefix (a node's own path too) -> [macs, params, nodes, index in order of
        # its last node]: each node's own entry, then each scope's from its members', deepest
        # first (a walk up every node's prefixes cost more than the counting)
        sums: dict[str, list] = {}
        nodes = g.g._node
        paths = []
        for path, d in g.nodes():
            ins = [nodes[i]["shape"] for i in d["inputs"]]
            opdef, attrs = ops.OPS[d["op"]], d["attrs"]   # ops.macs and ops.params, looked up once
            m, p = opdef.macs(attrs, ins, d["shape"]), opdef.params(attrs, ins)
            self.nodes[path] = Cost(m, p)
            sums[path] = [m, p, 1, len(paths)]
            paths.append(path)
        by_depth: dict[int, list] = {}
        for path in sums:
            by_depth.setdefault(path.count("."), []).append(path)
        for depth in range(max(by_depth, default=0), 0, -1):
            for key in by_depth.get(depth, ()):
                member, scope = sums[key], key[:key.rfind(".")]
                acc = sums.get(scope)
                if acc is None:
                    sums[scope] = list(member)
                    by_depth.setdefault(depth - 1, []).append(scope)
                else:
                    acc[0] += member[0]
                    acc[1] += member[1]
                    acc[2] += member[2]
                    acc[3] = max(acc[3], member[3])
        self._scopes = sums
        self._paths = paths

    def scope(self, prefix: str) -> Cost:
        return Cost(*self._scopes.get(prefix, (0, 0))[:2])

    def holds(self, scope: str) -> bool:
        """Whether a node lies inside `scope` (a node of that path itself does not count)."""
        return self._scopes.get(scope, (0, 0, 0))[2] > (scope in self.nodes)

    def output_shape(self, scope: str) -> list:
        """Graph.scope_output_shape as counted: the shape of the last node (in order) under
        `scope`, [] when there is none."""
        acc = self._scopes.get(scope)
        return [] if acc is None else list(self.graph.shape(self._paths[acc[3]]))

    @property
    def total(self) -> Cost:
        costs = self.nodes.values()   # summed as ints: a Cost per addition cost more than the rest
        return Cost(sum(c.macs for c in costs), sum(c.params for c in costs))

    def by_op(self, *op_names: str) -> Cost:
        op = self.graph.op
        costs = [c for p, c in self.nodes.items() if op(p) in op_names]
        return Cost(sum(c.macs for c in costs), sum(c.params for c in costs))

    def se(self) -> Cost:
        """What the attention modules (SE blocks and their kin) cost, all together."""
        return sum((self.scope(s) for s in self.graph.attention), Cost())


def report(g: Graph, counts: Counts | None = None) -> dict:
    """The report object (`report.json`, `secompile count --json`)."""
    c = counts or Counts(g)
    total = c.total
    conv_linear = c.by_op(*ops.CONV_LINEAR_OPS)
    counted = c.graph is g   # else the counts of another graph: read this one's shapes

    def part(prefix, name):
        cost = c.scope(prefix)
        return {"name": name, "path": prefix, "macs": cost.macs, "params": cost.params,
                "output_shape": c.output_shape(prefix) if counted
                else g.scope_output_shape(prefix)}

    def holds(scope: str) -> bool:
        return c.holds(scope) if counted else any(p.startswith(scope + ".") for p in g.order)

    stages = []
    for st in g.stages:
        d = part(st.path, st.name)
        d["blocks"] = len(st.blocks)
        d["se_blocks"] = sum(1 for s in g.attention if s.startswith(st.path + "."))
        stages.append(d)
    se = c.se()
    return {
        "name": g.name,
        "input": list(g.input_shape),
        "output": list(g.shape(g.output)),
        "total": {"macs": total.macs, "params": total.params,
                  "conv_linear_macs": conv_linear.macs, "nodes": len(g)},
        "stem": part("stem", "stem") if holds("stem") else None,
        "stages": stages,
        "head": part("head", "head") if holds("head") else None,
        "se": {"blocks": len(g.attention), "macs": se.macs, "params": se.params},
    }
