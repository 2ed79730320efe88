"""Passes: plain functions over the IR (Spec -> Graph, Graph -> Graph)."""
from .expand import expand
from .insert_se import insert_se
from .shapes import infer_shapes

__all__ = ["expand", "insert_se", "infer_shapes"]
