"""fuse_scale_add: an SE scale feeding a residual add becomes one `scale_add` node.

    m = u * s;  y = other + m      ->      y = scale_add(other, u, s)   (= torch.addcmul)

This is the reference Caffe models' Axpy layer: one pass over memory instead of two. The
fused node keeps the add's path, place and consumers; the multiply disappears. Counting
gives the same totals (scale_add counts the multiply of the `mul` it replaces), but the
report's per-node figures would move from the scale to the add, so analyses and the ONNX
backend (whose file names one node per IR node) read the unfused graph: only the torch
backend lowers the fused one. Records that named the multiply (an attention module's output, a
branch's last node) name the scale_add, which now gives that value (`Graph.remove`).
"""
from __future__ import annotations

from ..ir.graph import Graph
from ..ir.verify import verified


def _fusable_scale(g: Graph, add: str) -> str | None:
    """The SE scale this add can absorb, or None."""
    d = g.node(add)
    ins = d["inputs"]
    scales = d["attrs"].get("scales") or (1.0,) * len(ins)
    if d["op"] != "add" or len(ins) != 2 or any(s != 1.0 for s in scales):
        return None
    for m in (ins[1], ins[0]):   # the branch input first: it is where residual blocks put SE
        if g.op(m) == "mul" and g.consumers(m) == [add] and ins.count(m) == 1 \
                and g.unit_of(m) == g.unit_of(add):   # one unit's forward holds both
            return m
    return None


@verified
def fuse_scale_add(g: Graph) -> Graph:
    """A copy of `g` with every fusable (SE scale, add) pair as one scale_add node."""
    out = g.copy()
    for p in g.order:
        m = _fusable_scale(out, p)
        if m is None:
            continue
        other = next(i for i in out.inputs(p) if i != m)
        u, s = out.inputs(m)
        out.replace(p, "scale_add", {}, [other, u, s])
        out.remove(m, successor=p)   # records naming the multiply name the scale_add now
    return out
