"""Analytic multiply-adds and parameters from the IR alone (no torch, no forward pass).

The per-op rules live next to each op's shape rule in `secompile.ir.ops`; this module
sums them per node, block, stage and network, and builds the report.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import ops
from ..ir.graph import Graph
from ..ir.records import prefixes


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
        # every path prefix (a node's own path too) -> [macs, params, nodes], summed in one pass
        sums: dict[str, list] = {}
        last: dict[str, str] = {}    # every path prefix -> its last node in order
        nodes = g.g.nodes
        for path, d in g.nodes():
            ins = [nodes[i]["shape"] for i in d["inputs"]]
            m, p = (ops.macs(d["op"], d["attrs"], ins, d["shape"]),
                    ops.params(d["op"], d["attrs"], ins))
            self.nodes[path] = Cost(m, p)
            for prefix in prefixes(path, proper=False):
                acc = sums.get(prefix)
                if acc is None:
                    sums[prefix] = [m, p, 1]
                else:
                    acc[0] += m
                    acc[1] += p
                    acc[2] += 1
                last[prefix] = path
        self._scopes = sums
        self._last = last

    def scope(self, prefix: str) -> Cost:
        return Cost(*self._scopes.get(prefix, (0, 0))[:2])

    def holds(self, scope: str) -> bool:
        """Whether a node lies inside `scope` (a node of that path itself does not count)."""
        return self._scopes.get(scope, (0, 0, 0))[2] > (scope in self.nodes)

    def output_shape(self, scope: str) -> list:
        """Graph.scope_output_shape as counted: the shape of the last node (in order) under
        `scope`, [] when there is none."""
        last = self._last.get(scope)
        return [] if last is None else list(self.graph.shape(last))

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
