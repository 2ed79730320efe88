"""Layout of the block and op levels: clusters, their title nodes, and stage columns.

Three choices keep the pictures readable, each explained where it is made:
- every cluster is titled by a node, not a cluster label (`Drawing.titles`);
- consecutive stages are packed into columns chosen for a roughly square picture
  (`choose_columns`), joined by off-page connectors (`Drawing.finish`);
- the column heads share the top rank, in stage order.
"""
from __future__ import annotations

import html
import math
import re

import graphviz

from ...analysis.counts import Counts
from ...ir.graph import Graph
from . import style as st

ASPECT = 1.0        # wanted height / width of a whole picture: fits a screen or a README page
RANKSEP = 0.3       # inches, as set on the graph; the size estimates below use it
STAGE_PAD = 0.8     # inches a stage cluster adds to its column (title rank, margins)


class Scopes:
    """The clusters an IR path sits in (outermost first), and what kind each one is."""

    def __init__(self, g: Graph, se_clusters: bool):
        self.kind: dict[str, str] = {}
        for u in ("stem", "head"):
            if u in g.units:
                self.kind[u] = "scope"
        for path in g.composites:
            self.kind[path] = "scope"
        for s in g.stages:
            self.kind[s.path] = "stage"
        for path in g.blocks:
            if self.kind.get(path) != "stage":     # a layer stage is its own (only) block
                self.kind[path] = "block"
        if se_clusters:
            for s in g.attention:
                self.kind[s] = "se"

    def of(self, path: str) -> list[str]:
        segs = path.split(".")
        return [p for p in (".".join(segs[:i]) for i in range(1, len(segs))) if p in self.kind]

    @staticmethod
    def stage(path: str) -> str | None:
        segs = path.split(".")
        return ".".join(segs[:2]) if segs[0] == "stages" and len(segs) > 1 else None


def new_digraph(name: str, level: str) -> graphviz.Digraph:
    dot = graphviz.Digraph(name=f"{name}_{level}")
    dot.attr(rankdir="TB", fontname=st.FONT, fontsize="11", nodesep="0.25", ranksep=str(RANKSEP),
             newrank="true", labelloc="t", labeljust="l", label=st.title_and_legend(name, level))
    dot.attr("node", fontname=st.FONT, fontsize="11", margin="0.1,0.04", penwidth="1.2")
    dot.attr("edge", fontname=st.FONT, color="#555555", arrowsize="0.7")
    return dot


def emit(dot: graphviz.Digraph, entries: list, cluster_attrs) -> None:
    """Add nodes nested in their clusters. entries: (cluster chain, node id, attrs) in order;
    clusters appear where their first node does, so the output order is the input order."""
    root: list = []
    index: dict[str, list] = {}
    for chain, nid, attrs in entries:
        items = root
        for c in chain:
            if c not in index:
                index[c] = []
                items.append(("cluster", c, index[c]))
            items = index[c]
        items.append(("node", nid, attrs))

    def walk(graph, items):
        for kind, key, val in items:
            if kind == "node":
                graph.node(key, **val)
            else:
                with graph.subgraph(name=f"cluster_{key}") as sub:
                    sub.attr(**cluster_attrs(key))
                    walk(sub, val)
    walk(dot, root)


def label_size(label: str) -> tuple[float, float]:
    """Rough (width, height) in inches of an HTML-like label, to compare column layouts."""
    text = re.sub(r"<(br|tr)\b", "\n<", label)
    lines = [html.unescape(re.sub(r"<[^>]*>", "", ln)).strip() for ln in text.split("\n")]
    lines = [ln for ln in lines if ln]
    return 0.3 + 0.08 * max((len(ln) for ln in lines), default=4), 0.15 + 0.19 * max(1, len(lines))


class Columns:
    """Which column each block is drawn in, and which stage cluster (segment) holds it."""

    def __init__(self, column: dict, segment: dict):
        self.column, self.segment = column, segment    # block -> column index / stage cluster id


def choose_columns(blocks: list[str], stage_of: dict, nodes: list, edges: list) -> Columns:
    """Pack the blocks into columns so the picture comes out about ASPECT high per wide.

    A stage stays in one column unless it alone is taller than the column; a split stage
    continues in a cluster `<stage>~1`, `<stage>~2`, ... nodes: (cluster chain, id, attrs) in
    topological order, each chain naming at most one block; edges: (tail, head). Sizes are
    estimated from the labels on a longest-path layering (where dot's ranking starts)."""
    unit = {nid: next((c for c in ch if c in stage_of), None) for ch, nid, _ in nodes}
    size = {nid: label_size(a.get("label", "")) for _, nid, a in nodes}
    preds: dict[str, list] = {nid: [] for nid in size}
    for a, b in edges:
        preds[b].append(a)
    layer: dict[str, int] = {}
    for _, nid, _ in nodes:
        layer[nid] = 1 + max((layer.get(a, 0) for a in preds[nid]), default=0)
    rows: dict[tuple, list] = {}
    for nid, u in unit.items():
        rows.setdefault((u, layer[nid]), []).append(size[nid])
    height = {u: 0.7 for u in blocks}       # the block's title rank
    width = {u: 0.0 for u in blocks}
    first = min((layer[n] for n, u in unit.items() if u is not None), default=0)
    pre = post = 0.0                         # stem above the first column, head below the last
    for (u, ly), sizes in rows.items():
        h = max(hh for _, hh in sizes) + RANKSEP
        if u is None:
            pre, post = (pre + h, post) if ly < first else (pre, post + h)
            continue
        height[u] += h
        width[u] = max(width[u], sum(w for w, _ in sizes) + 0.25 * (len(sizes) - 1) + 0.6)
    if len(blocks) < 2:
        return Columns({u: 0 for u in blocks}, {u: stage_of[u] for u in blocks})
    sums = [0.0]
    for u in blocks:
        sums.append(sums[-1] + height[u])
    targets = sorted({round(sums[j] - sums[i], 6) for i in range(len(blocks))
                      for j in range(i + 1, len(blocks) + 1)})
    best = None
    for cap in targets:
        if cap < max(height.values()):
            continue
        cols, splits = _pack(blocks, stage_of, height, cap)
        tall = max(sum(height[u] for u in c)
                   + STAGE_PAD * len({stage_of[u] for u in c}) for c in cols)
        wide = sum(max(width[u] for u in c) + 0.5 for c in cols)
        score = abs(math.log((tall + pre + post) / wide / ASPECT)) + 0.15 * splits
        if best is None or score < best[0] - 1e-9:
            best = (score, cols)
    column, segment, part = {}, {}, {}
    for k, col in enumerate(best[1]):
        for u in col:
            column[u] = k
            s = stage_of[u]
            part.setdefault(s, {}).setdefault(k, len(part[s]))
            segment[u] = s if part[s][k] == 0 else f"{s}~{part[s][k]}"
    return Columns(column, segment)


def _pack(blocks: list[str], stage_of: dict, height: dict, cap: float) -> tuple[list, int]:
    """Greedy columns of at most `cap` inches: a stage that fits a column is not split.
    -> (columns of blocks, number of stages split)."""
    groups: list[list[str]] = []
    for u in blocks:
        if groups and stage_of[groups[-1][-1]] == stage_of[u]:
            groups[-1].append(u)
        else:
            groups.append([u])
    cols: list[list[str]] = [[]]
    used, splits = 0.0, 0
    for grp in groups:
        whole = sum(height[u] for u in grp) + STAGE_PAD
        if cols[-1] and used + whole > cap:
            cols.append([])
            used = 0.0
        used += STAGE_PAD
        start = len(cols)
        for u in grp:
            if cols[-1] and used + height[u] > cap and any(stage_of[v] == stage_of[u]
                                                           for v in cols[-1]):
                cols.append([])
                used = STAGE_PAD
            cols[-1].append(u)
            used += height[u]
        splits += len(cols) - start
    return cols, splits


def on_spine(g: Graph, path: str) -> bool:
    """Is this node on the network's main line (residual branch, SE, merge, plain layers)?

    Spine nodes share a dot `group`, which keeps the edges between them straight and
    vertical; without it each block drifts sideways towards its widest branch. Shortcuts and
    the branches of parallel blocks are drawn beside the spine."""
    if path in g.attention:
        return True
    segs = path.split(".")
    for i in range(1, len(segs)):
        comp = g.composites.get(".".join(segs[:i]))
        if comp is None:
            continue
        rest = segs[i]
        node = ".".join(segs[:i + 1])
        if rest == "post" or node == comp.merge or node.startswith(comp.merge + "."):
            continue
        if comp.kind == "residual" and rest in ("branch",) or rest.startswith("se"):
            continue
        return False
    return True


class Drawing:
    """Shared state of one block- or op-level drawing."""

    def __init__(self, g: Graph, counts: Counts, level: str, scope: str | None):
        self.g, self.c, self.level, self.scope = g, counts, level, scope
        self.scopes = Scopes(g, se_clusters=(level == "op"))
        self.identity = {(c.input, c.merge) for c in g.composites.values()
                         if c.kind == "residual" and c.shortcut_out == c.input}

    def inside(self, path: str) -> bool:
        return self.scope is None or path == self.scope or path.startswith(self.scope + ".")

    def cluster_attrs(self, path: str) -> dict:
        kind = self.scopes.kind[path.split("~")[0]]
        return {**st.cluster_style(kind), "label": "", "tooltip": path}   # no inherited graph label

    def cluster_label(self, path: str, kind: str) -> str:
        g, bold = self.g, True
        if "~" in path:               # a stage continued in another column
            return st.html_lines(f"stage {path.split('.')[1]} (continued)", bold=True, left=True)
        if kind == "se":
            title = f"SE block ({g.attention[path].position or ''})"
        elif kind == "stage":         # a layer stage is its own block: it gets this label
            i = path.split(".")[1]
            s = next(s for s in g.stages if s.path == path)
            b = g.blocks.get(s.blocks[0]) if s.blocks else None
            what = f"{b.template} × {len(s.blocks)}" if b is not None and b.template else "layers"
            title = f"stage {i}" + (f" ({s.name})" if s.name != f"stage{i}" else "") + f" · {what}"
        elif kind == "block":
            b = g.blocks[path]
            title = f"block {b.stage}.{b.index}" + (f" · {b.template}" if b.template else "")
        else:
            title, bold = ((path, True) if path in ("stem", "head")
                           else (path.rsplit(".", 1)[-1], False))
        return st.html_lines(title, st.cost_text(self.c.scope(path)), bold=bold, left=True)

    def stub(self, path: str, direction: str, tensor: str) -> dict:
        """A node outside the drawn scope: where the data (`tensor`'s output) comes from or goes
        to."""
        label = st.html_lines(f"{direction} {path}",
                              st.shape_text(self.g.shape(tensor)), bold=False)
        return {"label": label, "shape": "box", "style": "dashed,rounded", "color": "#999999"}

    def finish(self, dot: graphviz.Digraph, entries: list, edges: list) -> None:
        """Emit nodes and edges. edges: (tail id, head id, IR tail, IR head) in IR order.

        An edge from a stage in one column to a stage in the next is drawn through a pair of
        connector nodes, like a flowchart's off-page connector: the column ends in "to stage 2"
        (id `TAIL~to~stages.2`), the next starts with "from stage 1" (id `stages.2~from~TAIL`).
        A direct edge from the bottom of one column to the top of the next would cross a whole
        column of blocks, and even an invisible one upsets the column order."""
        g, outside, drawn = self.g, {}, {}
        for a, b, src, dst in edges:
            if not self.inside(dst):
                outside[b] = ([], b, self.stub(dst, "to", src))
            elif not self.inside(src):
                outside.setdefault(a, ([], a, self.stub(src, "from", src)))
        nodes = list(outside.values()) + entries
        stage_of = {b: s.path for s in g.stages for b in s.blocks}
        blocks = list(dict.fromkeys(c for ch, _, _ in entries for c in ch if c in stage_of))
        cols = choose_columns(blocks, stage_of, nodes,
                              list(dict.fromkeys((a, b) for a, b, _, _ in edges)))
        block_of = {nid: next((c for c in ch if c in stage_of), None) for ch, nid, _ in nodes}
        # a stage split over columns continues in clusters `<stage>~1`, ...
        nodes = [([cols.segment[block_of[nid]] if c == stage_of.get(block_of[nid]) else c
                   for c in ch], nid, at)
                 for ch, nid, at in nodes]
        connectors = {}
        for a, b, src, dst in edges:
            u1, u2 = block_of.get(a), block_of.get(b)
            if u1 in cols.column and u2 in cols.column and cols.column[u1] != cols.column[u2]:
                out_id, in_id = f"{a}~to~{u2}", f"{u2}~from~{a}"
                b1, b2 = g.blocks[u1], g.blocks[u2]
                where = f"stage {b2.stage}" if not b2.index else f"block {b2.stage}.{b2.index}"
                there = (f"stage {b1.stage}" if b1.stage != b2.stage
                         else f"block {b1.stage}.{b1.index}")
                connectors[out_id] = ([cols.segment[u1]], out_id, _connector(f"to {where}", ""))
                connectors[in_id] = ([cols.segment[u2]], in_id, _connector(f"from {there}",
                                                                            st.shape_text(g.shape(src))))
                drawn.setdefault((a, out_id), {})
                drawn.setdefault((in_id, b), {})
            elif (src, dst) in self.identity:
                drawn.setdefault((a, b), {"style": "dashed", "color": "#888888"})
            else:
                drawn.setdefault((a, b), {})
        nodes, title_edges = self.titles(nodes + list(connectors.values()), list(drawn))
        emit(dot, nodes, self.cluster_attrs)
        for (a, b), attrs in drawn.items():
            dot.edge(a, b, **attrs)
        for a, b in title_edges:
            dot.edge(a, b, style="invis")
        # Columns left to right in stage order: the column heads share the top rank, chained
        # by invisible flat edges (dot keeps a flat edge's tail left of its head).
        heads = (["input"] if self.inside("input") else []) + \
            [f"{cols.segment[k.split('~')[0]]}~title" for k in connectors if "~from~" in k]
        heads = list(dict.fromkeys(heads))
        if len(heads) > 1:
            with dot.subgraph() as top:
                top.attr(rank="same")
                for n in heads:
                    top.node(n)
            for a, b in zip(heads, heads[1:]):
                dot.edge(a, b, style="invis")

    def titles(self, nodes: list, edges: list) -> tuple[list, list]:
        """Give every cluster a title node (`<cluster>~title`) instead of a cluster label.

        Dot routes edges around nodes but straight through cluster labels, and an edge into
        a block enters right where its label is. The title node is tied by invisible edges
        between the cluster's entry nodes (those fed from outside it, or by nothing) and what
        feeds them, so it takes the cluster's top rank and every entering edge passes beside it
        (tied only above the entries, a title may share a rank with the previous block and
        push this block sideways)."""
        chain = {nid: ch for ch, nid, _ in nodes}
        fed: dict[str, list] = {b: [] for b in chain}
        for a, b in edges:
            fed[b].append(a)
        out, seen, ties = [], set(), {}
        for ch, nid, attrs in nodes:
            for i, c in enumerate(ch):
                if c not in seen:
                    seen.add(c)
                    out.append((ch[:i + 1], f"{c}~title", self.title_node(c)))
            out.append((ch, nid, attrs))
            for a in fed[nid] or [None]:
                entered = [c for c in ch if a is None or c not in chain[a]]
                if entered:   # a -> outermost title -> ... -> innermost title -> nid
                    path = ([a] if a is not None else []) + [f"{c}~title" for c in entered] + [nid]
                    for t, h in zip(path, path[1:]):
                        ties[(t, h)] = None
        return out, list(ties)

    def title_node(self, path: str) -> dict:
        return {"label": self.cluster_label(path, self.scopes.kind[path.split("~")[0]]),
                "shape": "plaintext",
                "margin": "0", "tooltip": path}


def _connector(text: str, shape: str) -> dict:
    return {"label": st.html_lines(text, shape, bold=False), "shape": "cds", "style": "filled",
            "fillcolor": "#ffffff", "color": "#777777", "fontsize": "10"}
