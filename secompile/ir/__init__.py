"""The IR: a directed graph of typed ops with stable hierarchical paths."""
from .graph import Composite, Graph, Stage

__all__ = ["Graph", "Composite", "Stage"]
