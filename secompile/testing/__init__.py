"""Hypothesis strategies for secompile specs: test your own specs the way the compiler is tested.

    specs(**constraints)  valid specs (dicts ready for yaml.safe_dump and secompile.compile)
    invalid_specs()       specs broken in one known way, each with the error it must raise
    mutations(spec)       variations of your own spec
    check_shapes(spec)    the IR verified, and its shapes equal torch's at every node (train, eval)

Needs `hypothesis` (the `test` extra). See docs/testing.md.
"""
from .shapes import ShapeMismatch, check_shapes
from .strategies import InvalidSpec, invalid_specs, mutations, specs

__all__ = ["specs", "invalid_specs", "mutations", "InvalidSpec", "check_shapes", "ShapeMismatch"]
