"""Passes: plain functions over the IR (Spec -> Graph, Graph -> Graph)."""
from .expand import expand
from .fuse import fuse_scale_add
from .insert_se import insert_se

__all__ = ["expand", "insert_se", "fuse_scale_add"]
