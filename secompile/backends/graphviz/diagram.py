"""Architecture diagrams: the IR lowered to Graphviz DOT, rendered by the real `dot` program.

    # -> 'se_resnet50-block.svg'
    secompile.draw("specs/se_resnet50.yaml", level="block", format="svg")
    secompile draw specs/se_resnext50.yaml --level op -o net.svg

This backend takes an IR Graph (and the Spec, for stage labels, where there is one); the
spec-level `secompile.draw` / `to_dot` live in the API. `dot_source` builds the DOT text
(deterministic: ids are IR paths, order is `Graph.order`); `draw_graph` renders it. Where `dot`
is not installed the DOT text is still written, next to
the requested file, with the command that renders it (`DotNotFound`; the CLI exits 2).
The levels themselves live in `levels`, the look in `style`.
"""
from __future__ import annotations

import os
import shutil

import graphviz

from ...analysis.counts import Counts
from ...ir.graph import Graph
from ...outputs import atomic_write, safe_name
from .levels import LEVELS, block_level, op_level, stage_level

FORMATS = ("svg", "png", "pdf", "dot")


class DotNotFound(RuntimeError):
    """`dot` is not on PATH; the DOT source was written to `dot_path` instead."""

    def __init__(self, message: str, dot_path: str | None = None):
        super().__init__(message)
        self.dot_path = dot_path


def dot_source(g: Graph, spec_obj, level: str, scope: str | None = None) -> str:
    """The DOT text of `g` at `level` (stage, block, op); `scope` draws only that part, with stubs
    for what feeds it and reads it. `spec_obj` (a Spec or None) names the stages."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if scope is not None and not any(p == scope or p.startswith(scope + ".") for p in g.order):
        raise ValueError(f"scope {scope!r} names no node of {g.name}")
    counts = Counts(g)
    if level == "stage":
        if scope is not None:
            raise ValueError("scope applies to the block and op levels")
        dot = stage_level(g, counts, spec_obj)
    else:
        dot = (block_level if level == "block" else op_level)(g, counts, scope)
    return dot.source


def dot_missing_message(dot_path: str, fmt: str, target: str, written: str | None = None) -> str:
    return (f"secompile: the Graphviz 'dot' program is not installed, so {target} was not "
            f"rendered;\n"
            f"  wrote the diagram source to {written or dot_path}. Render it with:\n"
            f"    dot -T{fmt} {dot_path} -o {target}\n"
            f"  Install Graphviz with 'apt-get install graphviz' (Debian/Ubuntu), "
            f"'brew install graphviz' (macOS) or from https://graphviz.org/download/")


def render(source: str, fmt: str) -> bytes:
    """DOT text -> rendered bytes via the `dot` program. Raises DotNotFound without it."""
    if shutil.which("dot") is None:
        raise DotNotFound("the Graphviz 'dot' program is not on PATH")
    try:
        return graphviz.pipe("dot", fmt, source.encode())
    except graphviz.ExecutableNotFound as e:
        raise DotNotFound(str(e)) from None


def default_path(name: str, level: str, fmt: str, scope: str | None = None) -> str:
    # a spec's name never chooses the folder: one safe file-name component
    return safe_name(f"{name}{'-' + scope if scope else ''}-{level}") + f".{fmt}"


def draw_graph(g: Graph, spec_obj, level: str = "block", format: str = "svg",
               path: str | None = None, *,
               scope: str | None = None) -> str:
    """Render `g` to `path` (default `<name>-<level>.<format>`); returns the file written.
    Raises DotNotFound (after writing `<path>.dot`) where `dot` is missing and format != 'dot'."""
    return write_diagram(dot_source(g, spec_obj, level, scope), g.name, level, format, path, scope)


def write_diagram(source: str, name: str, level: str, format: str, path: str | None = None,
                  scope: str | None = None) -> str:
    """Write DOT `source` rendered as `format` to `path` (default `<name>-<level>.<format>`).
    Raises DotNotFound (after writing `<path>.dot`) where `dot` is missing and format != 'dot'."""
    path = os.fspath(path) if path is not None else default_path(name, level, format, scope)
    if format == "dot":
        return atomic_write(path, source)
    try:
        data = render(source, format)
    except DotNotFound:
        dot_path = os.path.splitext(path)[0] + ".dot"
        atomic_write(dot_path, source)
        raise DotNotFound(dot_missing_message(dot_path, format, path), dot_path) from None
    return atomic_write(path, data)


__all__ = ["dot_source", "draw_graph", "write_diagram", "render", "default_path",
           "dot_missing_message",
           "DotNotFound", "LEVELS",
           "FORMATS"]
