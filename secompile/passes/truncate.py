"""truncate: the network as a backbone — drop the head and every stage after the last one kept.

    outs = stage_outputs(g)            # ['stages.0.blocks.2.relu', ...]: each stage's result
    t = truncate(g, last_stage=2)      # stem + stages 0..2, output = stage 2's result

Detection and segmentation heads read several stages; the backends take the stage outputs to
return (torch: `backends.torch.features.FeatureNet`, ONNX: `lower(..., outputs=...)`). Counting the
truncated graph gives the backbone's cost.
"""

from __future__ import annotations

from ..ir.graph import Graph
from ..ir.verify import verified


def stage_outputs(g: Graph) -> list[str]:
    """The node giving each stage's result: the one node of the stage read outside it (or the
    network's output)."""
    outs = []
    for st in g.stages:
        prefix = st.path + "."
        inside = [p for p in g.order if p.startswith(prefix)]
        found = [
            p
            for p in inside
            if p == g.output or any(not c.startswith(prefix) for c in g.consumers(p))
        ]
        if len(found) != 1:
            raise ValueError(
                f"stage {st.path} has {len(found)} outputs {found}; a feature is one tensor"
            )
        outs.append(found[0])
    return outs


def normalise_indices(g: Graph, out_indices) -> tuple:
    """out_indices (None: every stage; negative ones count from the end) -> sorted, distinct."""
    n = len(g.stages)
    if out_indices is None:
        return tuple(range(n))
    if isinstance(out_indices, int):
        out_indices = (out_indices,)
    idx = []
    for i in out_indices:
        if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
            raise ValueError(
                f"out_indices: {i!r} is not a stage index of {g.name} "
                f"(it has {n} stage{'s' if n != 1 else ''}: 0..{n - 1})"
            )
        idx.append(i + n if i < 0 else i)
    if not idx:
        raise ValueError("out_indices: select at least one stage")
    return tuple(sorted(set(idx)))


def feature_info(g: Graph, out_indices) -> list[dict]:
    """timm's feature_info dicts of the selected stages: num_chs, reduction (input height over
    the feature's), module (the stage's path, as in the state_dict), index, stage (its name)."""
    outs = stage_outputs(g)
    h_in = g.input_shape[1]
    info = []
    for i in out_indices:
        c, h = g.shape(outs[i])[:2]
        info.append(
            {
                "num_chs": c,
                "reduction": round(h_in / h),
                "module": g.stages[i].path,
                "index": i,
                "stage": g.stages[i].name,
            }
        )
    return info


@verified
def truncate(g: Graph, last_stage: int) -> Graph:
    """A copy of `g` without its head and without the stages after `last_stage`."""
    keep_out = stage_outputs(g)[last_stage]
    dropped = ["head"] + [st.path for st in g.stages[last_stage + 1 :]]
    gone = lambda p: any(p == d or p.startswith(d + ".") for d in dropped)  # noqa: E731
    t = g.copy()
    t.output = keep_out
    for p in reversed(t.order):
        if gone(p):
            t.remove(p)
    t.stages = t.stages[: last_stage + 1]
    t.units = [u for u in t.units if not gone(u)]
    t._index_units()
    t.blocks = {k: v for k, v in t.blocks.items() if not gone(k)}
    t.composites = {k: v for k, v in t.composites.items() if not gone(k)}
    t.se = {k: v for k, v in t.se.items() if not gone(k)}
    return t


__all__ = ["stage_outputs", "normalise_indices", "feature_info", "truncate"]
