"""The constants the `sweep` subcommand's arguments show (help texts, defaults), apart from the
engine so that the CLI registers its arguments without importing it (a quick `secompile count`).
"""
from __future__ import annotations

MAX_VARIANTS = 10_000        # a sweep larger than this needs max_variants= / --max-variants
KINDS = ("range", "choice", "uniform", "loguniform")     # the --vary distributions

__all__ = ["MAX_VARIANTS", "KINDS"]
