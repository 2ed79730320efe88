"""Design-space sweeps and spec diffs, analytically (counting only: no torch), in one process.

    import secompile.sweep as sw
    rows = sw.run("se_resnet50", vary={"se.0.reduction": [4, 8, 16, 32]})        # a grid
    rows = sw.run(spec, vary=["stages.0.out=range(16, 256, 8)", "se.0.reduction=[8, 16]"],
                  sample=100, seed=0, where="macs >= 400e6 and macs <= 800e6")   # a sample
    d = sw.diff("resnet50", "se_resnet50")

`secompile.sweep(...)` is `secompile.sweep.run(...)`: the package is callable, so the name is
both the module (`import secompile.sweep as sw`) and the function earlier releases had.

The package: `runner` (`run`: grid or sample, then --where, metrics, Pareto front), `engine`
(variants, evaluation, limits), `sampling` (range/choice/uniform/
loguniform axes), `metrics` (--where, Pareto front, measured accuracy), `emit` (--emit spec
files, --csv), `plotting` (--plot), `diffing` (diff, diff --draw), `cli` (the two
subcommands; their text tables are in secompile/reports.py), `options` (the constants the
subcommands' arguments show).

Importing the package imports none of them: each public name loads its module when first used
(module `__getattr__`), so the CLI registers `sweep` and `diff` without the engine and
`secompile count` starts quickly (benchmarks/bench_startup.py).
"""
from __future__ import annotations

import importlib
import sys
import types

# public name -> the module that defines it
_HOME = {
    "run": "runner", "Rows": "runner", "DRAWS_PER_MODEL": "runner",
    "diff": "diffing", "draw_diff": "diffing",
    "write_csv": "emit", "write_variant": "emit",
    "COST_FIELDS": "engine", "MAX_VARIANTS": "engine", "Sweep": "engine", "axes_of": "engine",
    "check_size": "engine", "gc_paused": "engine", "grid_size": "engine", "iter_grid": "engine",
    "variant_name": "engine",
    "WHERE_NAMES": "metrics", "as_dataframe": "metrics", "compile_where": "metrics",
    "join_metrics": "metrics", "mark_pareto": "metrics", "read_metrics": "metrics",
    "reads_memory": "metrics",
    "plot": "plotting", "as_grid": "sampling", "as_sampled": "sampling",
}
_MODULES = ("runner", "engine", "sampling", "metrics", "emit", "plotting", "diffing", "cli",
            "options")


def __getattr__(name):
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    elif name in _MODULES:      # `sw.engine` before anything imported it
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_HOME) | set(_MODULES))


class _CallableModule(types.ModuleType):
    """`secompile.sweep(...)` runs a sweep; `secompile.sweep.*` is this package."""

    def __call__(self, spec, vary, **kwargs):
        return self.run(spec, vary, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["run", "diff", "draw_diff", "plot", "as_dataframe", "mark_pareto", "join_metrics",
           "read_metrics", "write_variant", "write_csv", "variant_name", "compile_where",
           "WHERE_NAMES", "COST_FIELDS", "MAX_VARIANTS", "DRAWS_PER_MODEL", "Rows"]
