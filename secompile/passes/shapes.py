"""infer_shapes: recompute every node's shape in order (a check after graph rewrites)."""
from __future__ import annotations

from ..ir import ops
from ..ir.graph import Graph


def infer_shapes(g: Graph) -> Graph:
    """Recompute shapes from the input down; raises ops.OpError on an inconsistency."""
    for path, data in g.nodes():
        data["shape"] = ops.infer(data["op"], data["attrs"], [g.shape(i) for i in data["inputs"]])
    return g
