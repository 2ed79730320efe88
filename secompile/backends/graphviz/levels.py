"""The IR drawn at three levels of detail, as `graphviz.Digraph`s.

- op:    every IR node (id = its path), clusters for stages, blocks, nested scopes and each
         SE scope; the edges are exactly the IR's edges.
- block: every block a cluster; inside it, runs of layers collapse into one table node
         (the residual branch reads like a row of the paper's Table 1), each SE insertion
         is one orange node, the projection shortcut a node, an identity shortcut a dashed edge.
- stage: input -> stem -> one box per stage (template x repeat, its parameters, output
         shape, SE count, cost) -> head.

Everything is emitted in `Graph.order`, with ids taken from node paths, so the DOT text
is a function of the IR alone and diffs well. Clusters, titles and stage columns are
`layout`'s business.
"""
from __future__ import annotations

import re
from html import escape

import graphviz

from ...analysis.counts import Cost, Counts
from ...ir.graph import Graph
from . import style as st
from .layout import Drawing, new_digraph, on_spine

LEVELS = ("stage", "block", "op")


def se_facts(g: Graph, s: str) -> dict:
    """An attention module's channels C -> width -> C, squeeze and gate, read from its record
    (graph.attention: where it sits, its width) and its template's bound names."""
    m = g.attention[s]
    params = g.scopes[s].params if s in g.scopes else {}
    c = g.shape(m.input)[0]
    r, red = m.width or c, params.get("reduction")
    pool = next((g.node(p) for p in g.order if p.startswith(s + ".")
                 and g.op(p) in ("global_pool", "dual_pool", "channel_pool")), None)
    gate = params.get("gate") or m.module
    return {"channels": c, "reduced": r,
            "reduction": red if m.width and red and r == max(1, c // red) else None,
            "squeeze": pool["attrs"].get("mode", pool["op"]) if pool else "",
            "position": m.position or "", "gate": st.ACT_NAMES.get(gate, gate)}


# -- op level ----------------------------------------------------------------------------
def op_level(g: Graph, counts: Counts, scope: str | None = None) -> graphviz.Digraph:
    d = Drawing(g, counts, "op", scope)
    dot = new_digraph(g.name, "op")
    se_of = {}
    for s in g.attention:
        for role in st.SE_NODES:
            se_of[f"{s}.{role}"] = (s, role)
    facts = {s: se_facts(g, s) for s in g.attention if d.inside(s)}
    entries = []
    for p, data in g.nodes():
        if not d.inside(p):
            continue
        ins = [g.shape(i) for i in data["inputs"]]
        if p in se_of:
            s, role = se_of[p]
            title, family = st.se_describe(role, data["op"], data["attrs"], facts[s]), "se"
        else:
            title, family = (st.describe(data["op"], data["attrs"], ins),
                             st.family(data["op"]))
        shape = st.shape_text(data["shape"])
        # name the layer: which conv is conv2, the shortcut
        if family in ("conv", "pool", "linear"):
            shape = f"{_layer_name(g, p)} · {shape}"
        attrs = {"label": st.html_lines(title, shape, st.cost_text(counts.nodes[p])),
                 "tooltip": p, **st.node_style(family)}
        if data["op"] == "mul":
            attrs["shape"] = "ellipse"
        if on_spine(g, p):
            attrs["group"] = "spine"
        entries.append((d.scopes.of(p), p, attrs))
    edges = [(src, p, src, p) for p, data in g.nodes() for src in dict.fromkeys(data["inputs"])
             if d.inside(p) or d.inside(src)]
    d.finish(dot, entries, edges)
    return dot


def _layer_name(g: Graph, p: str) -> str:
    """'stages.1.blocks.0.branch.conv2.conv' -> 'branch.conv2' (relative to its unit)."""
    unit = g.unit_of(p)
    rel = p[len(unit) + 1:] if unit and p != unit else p
    return rel[:-5] if rel.endswith(".conv") else rel


# -- block level -------------------------------------------------------------------------
def layer_keys(g: Graph) -> dict[str, str]:
    """IR path -> the layer it belongs to: a conv layer's conv/bn/act fold into `<layer>`,
    an SE scope into the scope, anything else is its own layer."""
    key: dict[str, str] = {}
    for p in g.order:
        parent, _, last = p.rpartition(".")
        # the attention scope holding p, if any (template layers too: `branch.attn`, GC)
        se, up = None, parent
        while up and se is None:
            se = up if up in g.attention else None
            up = up.rpartition(".")[0]
        if se is not None:
            key[p] = se
        elif last == "conv" and parent and g.op(p) == "conv2d":
            key[p] = parent
        elif last in ("bn", "act") and parent and len(g.inputs(p)) == 1:
            src = g.inputs(p)[0]
            joins = (key.get(src) == parent and src.rpartition(".")[0] == parent
                     and len(g.consumers(src)) == 1)
            key[p] = parent if joins else p
        else:
            key[p] = p
    return key


def _chain_scope(layer: str) -> str:
    parent = layer.rpartition(".")[0]
    return parent.rpartition(".")[0] if parent.endswith(".post") or parent == "post" else parent


def chains(g: Graph) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Group layers into runs drawn as one node: consecutive layers of the same scope joined
    by a single edge. -> (IR path -> chain id, chain id -> its layers in order)."""
    key = layer_keys(g)
    layers = list(dict.fromkeys(key[p] for p in g.order))
    preds = {L: [] for L in layers}
    succs = {L: [] for L in layers}
    for p in g.order:
        for src in g.inputs(p):
            a, b = key[src], key[p]
            if a != b:
                if a not in preds[b]:
                    preds[b].append(a)
                if b not in succs[a]:
                    succs[a].append(b)
    chain_of: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for L in layers:
        ps = preds[L]
        if (len(ps) == 1 and len(succs[ps[0]]) == 1 and L not in g.attention
                and ps[0] not in g.attention and ps[0] != "input"
                and _chain_scope(L) == _chain_scope(ps[0])):
            cid = chain_of[ps[0]]
        else:
            cid = L
            members[cid] = []
        chain_of[L] = cid
        members[cid].append(L)
    return {p: chain_of[key[p]] for p in g.order}, members


def _layer_row(g: Graph, layer: str, nodes: list[str]) -> tuple[str, str]:
    """One table row: the main op with its attributes, then the folded BN/act names."""
    main, *rest = nodes
    data = g.node(main)
    desc = st.describe(data["op"], data["attrs"], [g.shape(i) for i in data["inputs"]])
    extra = [st.describe(g.op(n), g.node(n)["attrs"], []) for n in rest]
    return " · ".join([desc] + extra), st.shape_text(g.shape(nodes[-1]))


def block_level(g: Graph, counts: Counts, scope: str | None = None, *,
                highlight: dict | None = None) -> graphviz.Digraph:
    """`highlight`: IR path -> extra node attributes (e.g. `secompile diff --draw` colouring
    what changed); a drawn node takes those of its first highlighted IR node."""
    d = Drawing(g, counts, "block", scope)
    dot = new_digraph(g.name, "block")
    chain_of, members = chains(g)
    by_layer: dict[str, list[str]] = {}
    keys = layer_keys(g)
    for p in g.order:
        by_layer.setdefault(keys[p], []).append(p)
    entries = []
    for unit in ("stem", "head"):     # a one-node stem or head needs no box around it
        if sum(1 for c, ls in members.items() if ls[0].startswith(unit + ".")) == 1:
            d.scopes.kind.pop(unit, None)
    for cid, layers in members.items():
        first = by_layer[layers[0]][0]
        if not d.inside(first):
            continue
        ir = [p for L in layers for p in by_layer[L]]
        cost = sum((counts.nodes[p] for p in ir), Cost())
        attrs = {"tooltip": cid, **_chain_node(g, counts, cid, layers, by_layer, cost)}
        if highlight:
            attrs.update(next((highlight[p] for p in ir if p in highlight), {}))
        if on_spine(g, cid):
            attrs["group"] = "spine"
        entries.append((d.scopes.of(first), cid, attrs))
    edges = [(chain_of[src], chain_of[p], src, p) for p in g.order for src in g.inputs(p)
             if chain_of[src] != chain_of[p] and (d.inside(p) or d.inside(src))]
    d.finish(dot, entries, edges)
    return dot


def _chain_node(g: Graph, counts: Counts, cid: str, layers: list[str], by_layer: dict,
                cost: Cost) -> dict:
    if cid == "input":
        return {"label": st.html_lines("input", st.shape_text(g.shape("input"))),
                **st.node_style("io")}
    if cid in g.attention:
        f = se_facts(g, cid)
        c, r = f["channels"], f["reduced"]
        title = f"SE, reduction {f['reduction']}" if f["reduction"] else f"SE, {r} channels"
        if f["position"] not in ("standard", "after"):
            title += f" ({f['position']})"
        lines = [f"{c}→{r}→{c} · {f['squeeze']} pool · {f['gate']}", st.cost_text(cost)]
        return {"label": st.html_lines(title, *lines), **st.node_style("se"), "penwidth": "2"}
    rows = [_layer_row(g, L, by_layer[L]) for L in layers]
    ir = [p for L in layers for p in by_layer[L]]
    family = st.family(g.op(max(ir, key=lambda p: (counts.nodes[p].macs, -ir.index(p)))))
    if g.op(ir[0]) in ("add", "concat"):
        family = "merge"
    scope = _chain_scope(layers[0])
    title = {"stem": "stem", "head": "head"}.get(scope)
    if scope.endswith(".shortcut"):
        title = "projection shortcut" if any(g.op(p) == "conv2d" for p in ir) else "shortcut"
    if family == "merge":     # the merge and the layers after it: 'add · ReLU'
        return {"label": st.html_lines(" · ".join(r[0] for r in rows), rows[-1][1],
                                       st.cost_text(cost)),
                **st.node_style(family)}
    if len(rows) == 1 and title is None:
        return {"label": st.html_lines(rows[0][0], rows[0][1], st.cost_text(cost)),
                **st.node_style(family)}
    return {"label": st.html_table(rows, title, st.cost_text(cost)), **st.node_style(family)}


# -- stage level -------------------------------------------------------------------------
def stage_params(spec, i: int) -> dict:
    """A stage's template parameters as the spec gives them, template defaults filled in."""
    if spec is None:
        return {}
    given = {k: v for k, v in spec.data["stages"][i].items()
             if k not in ("block", "repeat", "name", "layers")}
    tmpl = spec.templates.get(spec.data["stages"][i].get("block"))
    defaults = {k: v for k, v in (tmpl.params.items() if tmpl else ()) if k not in tmpl.required()}
    # as written, then defaults
    return {**given, **{k: v for k, v in defaults.items() if k not in given}}


def _ir_params(g: Graph, path: str) -> dict:
    """Without the spec: what the IR shows of a stage (largest conv groups)."""
    se = tuple(s + "." for s in g.attention)
    groups = [g.node(p)["attrs"]["groups"] for p in g.order
              if p.startswith(path + ".") and g.op(p) == "conv2d" and not p.startswith(se)]
    return {"groups": max(groups)} if groups and max(groups) > 1 else {}


def _scope_rows(g: Graph, prefix: str) -> list[tuple[str, str]]:
    keys = layer_keys(g)
    by_layer: dict[str, list[str]] = {}
    for p in g.order:
        if p.startswith(prefix + "."):
            by_layer.setdefault(keys[p], []).append(p)
    # SE has its own row
    return [_layer_row(g, L, ns) for L, ns in by_layer.items() if L not in g.attention]


def stage_level(g: Graph, counts: Counts, spec=None) -> graphviz.Digraph:
    dot = new_digraph(g.name, "stage")
    dot.node("input", label=st.html_lines("input", st.shape_text(g.shape("input"))),
             **st.node_style("io"))
    chain = ["input"]
    if "stem" in g.units:
        dot.node("stem", label=st.html_table(_scope_rows(g, "stem"), "stem",
                                             st.cost_text(counts.scope("stem"))),
                 tooltip="stem", **st.node_style("conv"))
        chain.append("stem")
    for i, s in enumerate(g.stages):
        dot.node(s.path, label=_stage_label(g, counts, spec, i), tooltip=s.path,
                 **st.node_style("conv"))
        chain.append(s.path)
    if "head" in g.units:
        dot.node("head", label=st.html_table(_scope_rows(g, "head"), "head",
                                             st.cost_text(counts.scope("head"))),
                 tooltip="head", **st.node_style("linear"))
        chain.append("head")
    for a, b in zip(chain, chain[1:]):
        dot.edge(a, b)
    return dot


def _written_at(block) -> int | None:
    """The index in the spec's `stages:` of the stage holding `block` (a stage left out by
    `when:` shifts the ones after it), None for a stage generated by `foreach:`."""
    m = re.match(r"stages\[(\d+)\](\[entry)?", getattr(block, "spec_path", None) or "")
    return int(m.group(1)) if m and not m.group(2) else None


def _stage_label(g: Graph, counts: Counts, spec, i: int) -> str:
    s = g.stages[i]
    first = g.blocks.get(s.blocks[0]) if s.blocks else None
    tmpl = first.template if first is not None and first.kind != "layers" else None
    name = f" ({s.name})" if s.name != f"stage{i}" else ""
    title = f"stage {i}{name} · " + (f"{tmpl} × {len(s.blocks)}" if tmpl else "layers")
    at = _written_at(first)
    params = stage_params(spec, at) if spec is not None and at is not None else \
        _ir_params(g, s.path)
    items = [f"{k} {v}" for k, v in params.items()]
    lines = [", ".join(items[j:j + 3]) for j in range(0, len(items), 3)]
    if tmpl is None:
        lines += [desc for desc, _ in _scope_rows(g, s.path)]
    small = f'<font point-size="{st.SMALL}" color="{st.GREY}">'
    rows = [f'<tr><td align="left"><b>{escape(title)}</b></td></tr>']
    rows += [f'<tr><td align="left">{escape(ln)}</td></tr>' for ln in lines]
    se = [k for k in g.attention if k.startswith(s.path + ".")]
    if se:
        facts = [se_facts(g, k) for k in se]
        rs = sorted({f"reduction {f['reduction']}" if f["reduction"] else f"{f['reduced']} channels"
                     for f in facts})
        n_blocks = len({b for b in s.blocks if any(k.startswith(b + ".") for k in se)})
        fill, _ = st.COLORS["se"]
        where = (f"{n_blocks} of {len(s.blocks)} blocks" if n_blocks < len(s.blocks) else
                 f"all {n_blocks} blocks" if n_blocks > 1 else "the block")
        rows.append(f'<tr><td align="left" bgcolor="{fill}">SE in {where}, '
                    f'{escape(", ".join(rs))}</td></tr>')
    out = g.shape(g.blocks[s.blocks[-1]].output) if s.blocks else ()
    rows.append(f'<tr><td align="left">{small}output {st.shape_text(out)}</font></td></tr>')
    rows.append(f'<tr><td align="left">{small}{escape(st.cost_text(counts.scope(s.path)))}'
                f'</font></td></tr>')
    return (f'<<table border="0" cellborder="0" cellspacing="0" cellpadding="2">'
            f'{"".join(rows)}</table>>')
