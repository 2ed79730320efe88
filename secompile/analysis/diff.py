"""Structural diff of two IR graphs: what changed per stage and per block, and what it costs.

Nodes are matched by their stable hierarchical paths (`stages.1.blocks.0.branch.conv2.conv`),
so a diff reads in the spec's own terms: a node is added, removed, or changed (op, attributes,
inputs, shape). Each node belongs to a unit (input, stem, a stage-level block, a layer stage,
head); units are grouped by stage. Costs come from `Counts`, so the deltas are the analytic ones.

    diff_graphs(a, b) -> {"a", "b", "totals", "input", "output", "se", "units", "stages"}

Everything returned is plain JSON-able data (`secompile diff --json`).
"""
from __future__ import annotations

from ..ir.ops import CONV_LINEAR_OPS
from .counts import Counts

_FIELDS = ("op", "attrs", "inputs", "shape")


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in sorted(v.items())}
    return v


def _triple(a: int, b: int) -> dict:
    return {"a": a, "b": b, "delta": b - a}


def _unit(g, path: str) -> str:
    """The unit a node belongs to: a stage-level block, a layer stage, stem, head or input."""
    u = g.unit_of(path)
    return u if u is not None else path.split(".")[0]


def _stage_of(unit: str) -> str | None:
    segs = unit.split(".")
    return ".".join(segs[:2]) if segs[0] == "stages" and len(segs) > 1 else None


def _node_changes(da: dict, db: dict) -> dict:
    out = {}
    for f in _FIELDS:
        va, vb = _plain(da[f]), _plain(db[f])
        if va == vb:
            continue
        if f == "attrs":
            keys = sorted(set(va) | set(vb))
            out[f] = {k: [va.get(k), vb.get(k)] for k in keys if va.get(k) != vb.get(k)}
        else:
            out[f] = [va, vb]
    return out


def diff_graphs(a, b, counts_a: Counts | None = None, counts_b: Counts | None = None) -> dict:
    """Graph A -> Graph B. Units and stages list only what changed; totals cover everything."""
    ca, cb = counts_a or Counts(a), counts_b or Counts(b)
    pa, pb = set(a.order), set(b.order)
    units: dict[str, dict] = {}

    def unit(path):
        u = _unit(b, path) if path in pb else _unit(a, path)
        if u not in units:
            units[u] = {"path": u, "status": "changed", "added": [], "removed": [], "changed": [],
                        "se_added": [], "se_removed": [], "se_changed": []}
        return units[u]

    for p in b.order:
        if p not in pa:
            unit(p)["added"].append(p)
    for p in a.order:
        if p not in pb:
            unit(p)["removed"].append(p)
        else:
            ch = _node_changes(a.node(p), b.node(p))
            if ch:
                unit(p)["changed"].append({"path": p, **ch})
    se_added = [s for s in b.attention if s not in a.attention]
    se_removed = [s for s in a.attention if s not in b.attention]
    se_changed = [s for s in b.attention if s in a.attention
                  and a.attention[s].module != b.attention[s].module]
    for s in se_added:
        unit(s)["se_added"].append(s)
    for s in se_removed:
        unit(s)["se_removed"].append(s)
    for s in se_changed:
        unit(s)["se_changed"].append(f"{s}: {_module_text(a, s)} -> {_module_text(b, s)}")
    units_a, units_b = set(a.units) | {"input"}, set(b.units) | {"input"}
    order = list(dict.fromkeys(["input"] + list(b.units) + list(a.units)))
    rank = {u: i for i, u in enumerate(order)}
    out_units = []
    for u in sorted(units, key=lambda u: rank.get(u, len(rank))):
        d = units[u]
        d["status"] = ("added" if u not in units_a and u in units_b else
                       "removed" if u in units_a and u not in units_b else "changed")
        d["macs"] = _triple(ca.scope(u).macs, cb.scope(u).macs)
        d["params"] = _triple(ca.scope(u).params, cb.scope(u).params)
        d["output_shape"] = [a.scope_output_shape(u), b.scope_output_shape(u)]
        d["se"] = [_se_text(b, s) for s in d["se_added"]]
        d["se_removed_text"] = [_se_text(a, s) for s in d["se_removed"]]
        # nodes changed only because they now read an added SE scale (the rewired merge)
        d["rewired"] = [c["path"] for c in d["changed"] if set(c) == {"path", "inputs"}]
        out_units.append(d)

    stages = []
    names_a = {s.path: s for s in a.stages}
    names_b = {s.path: s for s in b.stages}
    for sp in dict.fromkeys([s.path for s in b.stages] + [s.path for s in a.stages]):
        sa, sb = names_a.get(sp), names_b.get(sp)
        mine = [d for d in out_units if _stage_of(d["path"]) == sp]
        se_a = sum(1 for s in a.attention if s.startswith(sp + "."))
        se_b = sum(1 for s in b.attention if s.startswith(sp + "."))
        entry = {"path": sp, "name": (sb or sa).name,
                 "status": "added" if sa is None else "removed" if sb is None else
                 ("changed" if mine else "same"),
                 "blocks": _triple(len(sa.blocks) if sa else 0, len(sb.blocks) if sb else 0),
                 "se_blocks": _triple(se_a, se_b),
                 "macs": _triple(ca.scope(sp).macs, cb.scope(sp).macs),
                 "params": _triple(ca.scope(sp).params, cb.scope(sp).params),
                 "output_shape": [a.scope_output_shape(sp), b.scope_output_shape(sp)],
                 "units": [d["path"] for d in mine]}
        stages.append(entry)

    ta, tb = ca.total, cb.total
    cla, clb = ca.by_op(*CONV_LINEAR_OPS), cb.by_op(*CONV_LINEAR_OPS)
    n_changed = sum(len(d["changed"]) for d in out_units)
    return {
        "a": a.name, "b": b.name,
        "same": not out_units and a.input_shape == b.input_shape,
        "totals": {"macs": _triple(ta.macs, tb.macs), "params": _triple(ta.params, tb.params),
                   "conv_linear_macs": _triple(cla.macs, clb.macs),
                   "nodes": _triple(len(a), len(b)),
                   "se_blocks": _triple(len(a.attention), len(b.attention)),
                   "se_params": _triple(ca.se().params, cb.se().params),
                   "se_macs": _triple(ca.se().macs, cb.se().macs),
                   "nodes_added": sum(len(d["added"]) for d in out_units),
                   "nodes_removed": sum(len(d["removed"]) for d in out_units),
                   "nodes_changed": n_changed},
        "input": [list(a.input_shape), list(b.input_shape)],
        "output": [list(a.shape(a.output)), list(b.shape(b.output))],
        "se": {"added": se_added, "removed": se_removed, "changed": se_changed,
               "kinds": [sorted({m.kind for m in a.attention.values()}),
                         sorted({m.kind for m in b.attention.values()})],
               "params_added": sum(cb.scope(s).params for s in se_added),
               "params_removed": sum(ca.scope(s).params for s in se_removed),
               "macs_added": sum(cb.scope(s).macs for s in se_added),
               "macs_removed": sum(ca.scope(s).macs for s in se_removed)},
        "units": out_units,
        "stages": stages,
    }


def _module_text(g, s: str) -> str:
    """'eca', 'effective_se (se)': the module and, where its name does not say it, its kind."""
    m = g.attention[s]
    return m.module if m.module == m.kind else f"{m.module} ({m.kind})"


def _se_text(g, s: str) -> str:
    """'stages.0.blocks.0.se: 256->16->256' for the paper's SE (as always); any other module
    is named: '...se: eca, 256 channels', '...se: cbam 256->16->256'."""
    m = g.attention[s]
    c = g.shape(m.input)[0]
    width = f"{c}->{m.width}->{c}" if m.width else f"{c} channels"
    return f"{s}: {width}" if m.module == "se" else f"{s}: {_module_text(g, s)}, {width}"


def changed_paths(d: dict) -> dict[str, str]:
    """IR path (of graph B) -> 'added' | 'changed', for highlighting a drawing of B."""
    out = {}
    for u in d["units"]:
        for p in u["added"]:
            out[p] = "added"
        for c in u["changed"]:
            out.setdefault(c["path"], "changed")
    return out


__all__ = ["diff_graphs", "changed_paths"]
