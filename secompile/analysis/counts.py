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
        sums: dict[str, list] = {}   # every path prefix -> [macs, params], summed in one pass
        nodes = g.g.nodes
        for path, d in g.nodes():
            ins = [nodes[i]["shape"] for i in d["inputs"]]
            m, p = (ops.macs(d["op"], d["attrs"], ins, d["shape"]),
                    ops.params(d["op"], d["attrs"], ins))
            self.nodes[path] = Cost(m, p)
            prefix = ""
            for seg in path.split("."):
                prefix = f"{prefix}.{seg}" if prefix else seg
                acc = sums.get(prefix)
                if acc is None:
                    sums[prefix] = [m, p]
                else:
                    acc[0] += m
                    acc[1] += p
        self._scopes = sums

    def scope(self, prefix: str) -> Cost:
        return Cost(*self._scopes.get(prefix, (0, 0)))

    @property
    def total(self) -> Cost:
        return sum(self.nodes.values(), Cost())

    def by_op(self, *op_names: str) -> Cost:
        return sum((c for p, c in self.nodes.items() if self.graph.op(p) in op_names), Cost())

    def se(self) -> Cost:
        """What the attention modules (SE blocks and their kin) cost, all together."""
        return sum((self.scope(s) for s in self.graph.attention), Cost())


def report(g: Graph, counts: Counts | None = None) -> dict:
    """The report object (`report.json`, `secompile count --json`)."""
    c = counts or Counts(g)
    total = c.total
    conv_linear = c.by_op(*ops.CONV_LINEAR_OPS)

    def part(prefix, name):
        cost = c.scope(prefix)
        return {"name": name, "path": prefix, "macs": cost.macs, "params": cost.params,
                "output_shape": g.scope_output_shape(prefix)}

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
        "stem": part("stem", "stem") if any(p.startswith("stem.") for p in g.order) else None,
        "stages": stages,
        "head": part("head", "head") if any(p.startswith("head.") for p in g.order) else None,
        "se": {"blocks": len(g.attention), "macs": se.macs, "params": se.params},
    }
