"""Spec loading and validation: YAML with locations, JSON Schema, templates."""
from .document import Spec, Template, load_spec
from .errors import LimitError, Problem, SpecError
from .schema import SCHEMA

__all__ = ["Spec", "Template", "load_spec", "SpecError", "LimitError", "Problem", "SCHEMA"]
