"""The Graphviz backend: stage, block and op levels (`levels`), their placement (`layout`) and
look (`style`), DOT source and rendering (`diagram`)."""
from .diagram import (
                      FORMATS,
                      DotNotFound,
                      dot_missing_message,
                      dot_source,
                      draw_graph,
                      render,
                      write_diagram,
)

__all__ = ["FORMATS", "DotNotFound", "dot_missing_message", "dot_source", "draw_graph", "render",
           "write_diagram"]
