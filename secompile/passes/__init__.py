"""Passes: plain functions Graph -> Graph (they never take a Spec)."""
from .insert_se import insert_se
from .shapes import infer_shapes

__all__ = ["insert_se", "infer_shapes"]
