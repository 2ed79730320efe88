"""Passes: plain functions Graph -> Graph (they never take a Spec)."""
from .fuse import fuse_scale_add
from .insert_se import insert_se

__all__ = ["insert_se", "fuse_scale_add"]
