"""Features: timm's feature levels of a network, and the backbone that computes them.

    feats = feature_levels(g)          # one per reduction: [{num_chs, reduction, module, node..}]
    t = truncate(g, feats[-1]["node"]) # no head, nothing after the last feature kept

timm's rule: one feature per reduction (2, 4, 8, ...), each the output of the last module that
runs at that reduction; the stem's output or a layer inside it (ResNet's stem activation before
the max-pool) counts where it is the last at its reduction. A "module" here is a stage-level
block, or a top-level layer of the stem or of a layer stage; a point inside a block never is.
The reduction of a node is the product of the strides on its way from the input (facts of the
graph, not shapes: Inception's valid-padded 35 x 35 at 299 is /8, not /9).

`module` names the FeatureNet child that ends at the feature (backends.torch.features): the
path with dots as underscores ('stem', 'stages_0'; a layer's path where a feature cuts a unit:
'stem_conv2d_4a'), so torchvision's IntermediateLayerGetter accepts it.
"""

from __future__ import annotations

from ..ir.graph import Graph
from ..ir.verify import verified
from ..lang.errors import Mark, Problem, SpecError

_STRIDED = ("conv2d", "maxpool2d", "avgpool2d")


def reductions(g: Graph) -> dict[str, int]:
    """node -> the product of the strides between the input and it (its largest over inputs)."""
    red: dict[str, int] = {}
    for p, d in g.nodes():
        r = max((red[i] for i in d["inputs"]), default=1)
        if d["op"] in _STRIDED:
            s = d["attrs"]["stride"]
            r *= s[0] if isinstance(s, (tuple, list)) else s
        red[p] = r
    return red


def _cut_points(g: Graph) -> set[str]:
    """Nodes whose output is the only tensor alive after them (the network is a chain there)."""
    order = g.order
    pos = {p: i for i, p in enumerate(order)}
    starts = [0] * (len(order) + 1)
    last_use = {}
    for i, p in enumerate(order):
        last = max((pos[c] for c in g.consumers(p)), default=i)
        last_use[p] = last
        if last > i:               # alive on (i, last]: count it at positions i .. last - 1
            starts[i] += 1
            starts[last] -= 1
    cuts, alive = set(), 0
    for i, p in enumerate(order):
        alive += starts[i]
        if alive == 1 and last_use[p] > i:
            cuts.add(p)
    return cuts


def _candidates(g: Graph) -> list[tuple[str, str]]:
    """(node, module) where a feature may be taken, in order: each stage-level block's output,
    and in the stem and layer stages each top-level layer's output where the network is a
    chain. module: the unit (or stage) path, or the layer's path inside a unit."""
    cuts = _cut_points(g)
    stage_of = {b: st for st in g.stages for b in st.blocks}
    stage_of.update({st.path: st for st in g.stages})
    nodes_of: dict[str, list[str]] = {}
    for p in g.order:
        u = g.unit_of(p)
        if u is not None and u != "head" and not u.startswith("head."):
            nodes_of.setdefault(u, []).append(p)
    out = []
    for u in g.units:
        nodes = nodes_of.get(u)
        if not nodes:
            continue
        last = nodes[-1]
        if u in g.blocks:          # a block: only its output
            st = stage_of.get(u)
            whole = st is not None and st.blocks and st.blocks[-1] == u
            out.append((last, st.path if whole else u))
            continue
        st = stage_of.get(u)
        for i, p in enumerate(nodes):
            layer = p[: len(u) + 1 + len(p[len(u) + 1:].split(".")[0])]
            nxt = nodes[i + 1] if i + 1 < len(nodes) else None
            if p == last:
                out.append((p, st.path if st is not None else u))
            elif p in cuts and not (nxt or "").startswith(layer + "."):
                out.append((p, layer))
    return out


def feature_levels(g: Graph) -> list[dict]:
    """timm's default features of `g`: one per reduction, the last candidate at each (dicts:
    num_chs, reduction, module, index, stage (0: stem, i + 1: stages.i), node)."""
    red = reductions(g)
    last_at: dict[int, tuple[str, str]] = {}
    for node, module in _candidates(g):
        if len(g.shape(node)) == 3:
            last_at[red[node]] = (node, module)
    picked = sorted(last_at.values(), key=lambda nm: g.order.index(nm[0]))
    stage_index = {st.path: i for i, st in enumerate(g.stages)}
    levels = []
    for i, (node, module) in enumerate(picked):
        parts = module.split(".")
        stage = stage_index.get(".".join(parts[:2]), -1) + 1 if parts[0] == "stages" else 0
        levels.append({"num_chs": g.shape(node)[0], "reduction": red[node],
                       "module": module.replace(".", "_"), "index": i, "stage": stage,
                       "node": node})
    return levels


def normalise_indices(n: int, out_indices, name: str = "the network") -> tuple:
    """timm's out_indices over n features -> sorted, distinct indices. None: every feature; an
    int k: the last k; a sequence: indices (negative ones count from the end). Refused with a
    SpecError at `<out_indices>`."""
    def refuse(message):
        raise SpecError([Problem(Mark("<out_indices>", 1, 1), "out_indices", message)])
    if out_indices is None:
        return tuple(range(n))
    if isinstance(out_indices, int) and not isinstance(out_indices, bool):
        if not 1 <= out_indices <= n:
            refuse(f"{out_indices} (the last n features) is not in 1..{n}: {name} has "
                   f"{n} feature{'s' if n != 1 else ''}")
        return tuple(range(n - out_indices, n))
    idx = []
    for i in out_indices:
        if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
            refuse(f"{i!r} is not a feature index of {name} "
                   f"(it has {n} feature{'s' if n != 1 else ''}: 0..{n - 1})")
        idx.append(i + n if i < 0 else i)
    if not idx:
        refuse("select at least one feature")
    return tuple(sorted(set(idx)))


def feature_info(levels: list[dict], out_indices) -> list[dict]:
    """The feature_info dicts of the selected levels (timm's keys, and `index`, `stage`)."""
    return [{k: v for k, v in levels[i].items() if k != "node"} for i in out_indices]


@verified
def truncate(g: Graph, last: str) -> Graph:
    """A copy of `g` keeping only `last` and what it reads: no head, nothing after it."""
    keep = {last}
    stack = [last]
    while stack:
        for i in g.inputs(stack.pop()):
            if i not in keep:
                keep.add(i)
                stack.append(i)
    t = g.copy()
    t.prune(keep, output=last)
    return t


__all__ = ["reductions", "feature_levels", "normalise_indices", "feature_info", "truncate"]
