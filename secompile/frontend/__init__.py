"""The front end: Spec -> IR (parameter binding, expressions, templates, semantic checks)."""
from .expand import expand

__all__ = ["expand"]
