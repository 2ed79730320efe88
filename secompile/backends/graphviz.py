"""Architecture diagrams: the IR lowered to Graphviz DOT, rendered by the real `dot` program.

    secompile.draw("specs/se_resnet50.yaml", level="block", format="svg")  # -> 'se_resnet50-block.svg'
    secompile draw specs/se_resnext50.yaml --level op -o net.svg

`to_dot` builds the DOT text (deterministic: ids are IR paths, order is `Graph.order`);
`draw` renders it. Where `dot` is not installed the DOT text is still written, next to
the requested file, with the command that renders it (`DotNotFound`; the CLI exits 2).
The levels themselves live in `graphviz_levels`, the look in `graphviz_style`.
"""
from __future__ import annotations

import os
import shutil
import sys

import graphviz

from ..analysis.counts import Counts
from ..ir.graph import Graph
from ..outputs import atomic_write
from .graphviz_levels import LEVELS, block_level, op_level, stage_level

FORMATS = ("svg", "png", "pdf", "dot")


class DotNotFound(RuntimeError):
    """`dot` is not on PATH; the DOT source was written to `dot_path` instead."""

    def __init__(self, message: str, dot_path: str | None = None):
        super().__init__(message)
        self.dot_path = dot_path


def _load(spec):
    """-> (Graph, Spec or None). A Graph is drawn as is; anything else goes through build_ir."""
    if isinstance(spec, Graph):
        return spec, None
    from ..api import build_ir
    from ..spec.document import load_spec
    s = load_spec(spec)
    return build_ir(s), s


def to_dot(spec, level: str = "block", *, scope: str | None = None) -> str:
    """The DOT source of a diagram. `scope` (a block, stage or unit path such as
    'stages.1.blocks.0') draws only that part, with stubs for what feeds it and reads it."""
    return _source(*_load(spec), level, scope)


def _source(g: Graph, spec_obj, level: str, scope: str | None) -> str:
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
    return (f"secompile: the Graphviz 'dot' program is not installed, so {target} was not rendered;\n"
            f"  wrote the diagram source to {written or dot_path}. Render it with:\n"
            f"    dot -T{fmt} {dot_path} -o {target}\n"
            f"  Install Graphviz with 'apt-get install graphviz' (Debian/Ubuntu), 'brew install graphviz' "
            f"(macOS) or from https://graphviz.org/download/")


def render(source: str, fmt: str) -> bytes:
    """DOT text -> rendered bytes via the `dot` program. Raises DotNotFound without it."""
    if shutil.which("dot") is None:
        raise DotNotFound("the Graphviz 'dot' program is not on PATH")
    try:
        return graphviz.pipe("dot", fmt, source.encode())
    except graphviz.ExecutableNotFound as e:
        raise DotNotFound(str(e)) from None


def default_path(name: str, level: str, fmt: str, scope: str | None = None) -> str:
    return f"{name}{'-' + scope if scope else ''}-{level}.{fmt}"


def draw(spec, level: str = "block", format: str = "svg", path: str | None = None, *,
         scope: str | None = None) -> str:
    """Draw `spec` (a path, YAML text, dict, Spec or IR Graph); returns the file written.
    Raises DotNotFound (after writing `<path>.dot`) where `dot` is missing and format != 'dot'."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    g, spec_obj = _load(spec)
    source = _source(g, spec_obj, level, scope)
    path = os.fspath(path) if path is not None else default_path(g.name, level, format, scope)
    if format == "dot":
        return atomic_write(path, source)
    try:
        data = render(source, format)
    except DotNotFound:
        dot_path = os.path.splitext(path)[0] + ".dot"
        atomic_write(dot_path, source)
        raise DotNotFound(dot_missing_message(dot_path, format, path), dot_path) from None
    return atomic_write(path, data)


def draw_cli(args) -> int:
    """`secompile draw SPEC [--level] [--format] [-o FILE]`: 0 drawn, 2 `dot` missing (DOT written)."""
    try:
        out = draw(args.spec, args.level, args.format, args.output, scope=getattr(args, "scope", None))
    except DotNotFound as e:
        print(e, file=sys.stderr)
        return 2
    except ValueError as e:          # a scope that names nothing: the user's mistake, not a crash
        print(f"secompile: {e}", file=sys.stderr)
        return 2
    if not getattr(args, "quiet", False):
        print(f"wrote {out}")
    return 0


def build_output(spec, g: Graph, model, stage_dir: str) -> list[str]:
    """`secompile build`: the block-level diagram `<name>.svg` (or `<name>.dot` without `dot`)."""
    source = _source(g, spec, "block", None)
    svg = os.path.join(stage_dir, f"{spec.name}.svg")
    try:
        atomic_write(svg, render(source, "svg"))
        return [os.path.basename(svg)]
    except DotNotFound:
        dot_path = os.path.join(stage_dir, f"{spec.name}.dot")
        atomic_write(dot_path, source)
        print(dot_missing_message(f"{spec.name}.dot", "svg", f"{spec.name}.svg",
                                  written=f"{spec.name}.dot in the output directory (run dot there)"),
              file=sys.stderr)
        return [os.path.basename(dot_path)]


__all__ = ["draw", "to_dot", "render", "draw_cli", "build_output", "DotNotFound", "LEVELS", "FORMATS"]
