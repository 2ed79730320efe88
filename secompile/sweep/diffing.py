"""Spec diffs: what changed from A to B (secompile.analysis.diff), and B's block-level diagram
with the changes highlighted, written by the one diagram writer (backends.graphviz)."""
from __future__ import annotations

import os

from ..analysis.counts import Counts
from ..analysis.diff import changed_paths, diff_graphs
from ..api import build_ir
from ..ir.graph import Graph


def diff(a, b, *, overrides_a=None, overrides_b=None) -> dict:
    """Spec (or Graph) A -> B: per stage and per block what changed, and the totals
    (secompile.analysis.diff.diff_graphs)."""
    return diff_graphs(graph_of(a, overrides_a), graph_of(b, overrides_b))


def graph_of(spec, overrides=None) -> Graph:
    """A Graph as is; anything else through the API (zoo names, files, Specs; overrides)."""
    if isinstance(spec, Graph):
        return spec
    return build_ir(spec, overrides=overrides)


ADDED = {"fillcolor": "#d3f9d8", "color": "#2b8a3e", "penwidth": "3"}
CHANGED = {"fillcolor": "#fff3bf", "color": "#e67700", "penwidth": "3"}


def draw_diff(a, b, path: str, fmt: str | None = None, *, overrides_a=None,
              overrides_b=None) -> str:
    """B's block-level diagram with what the diff from A adds (green) and changes (amber)
    highlighted; the title lists what was removed. Where `dot` is missing, DOT is written."""
    from ..backends.graphviz import FORMATS, write_diagram
    from ..backends.graphviz.levels import block_level
    from ..backends.graphviz.style import html_lines
    from ..outputs import output_error
    fmt = fmt or os.path.splitext(path)[1].lstrip(".").lower() or "svg"
    if fmt not in FORMATS:
        raise output_error(path, f"unknown diagram format {fmt!r}: name the file .svg, .png, "
                                 f".pdf or .dot")
    ga, gb = graph_of(a, overrides_a), graph_of(b, overrides_b)
    d = diff_graphs(ga, gb)
    style = {"added": ADDED, "changed": CHANGED}
    highlight = {}
    for p, what in changed_paths(d).items():
        cls = "diff-" + what
        highlight[p] = {**style[what], "class": ("se " if _in_se(gb, p) else "") + cls}
    dot = block_level(gb, Counts(gb), highlight=highlight)
    t = d["totals"]
    removed = [u["path"] for u in d["units"] if u["status"] == "removed"] + d["se"]["removed"]
    lines = [f"green: added, amber: changed · params {t['params']['delta']:+,} · MACs "
             f"{t['macs']['delta']:+,} · SE blocks {t['se_blocks']['a']} → {t['se_blocks']['b']}"]
    if removed:
        lines.append("removed: " + ", ".join(removed[:12]) + (" …" if len(removed) > 12 else ""))
    dot.attr(label=html_lines(f"{d['a']} → {d['b']}", *lines, left=True))
    return write_diagram(dot.source, gb.name, "block", fmt, path)


def _in_se(g, p: str) -> bool:
    return any(p == s or p.startswith(s + ".") for s in g.se)


__all__ = ["diff", "draw_diff", "graph_of"]
