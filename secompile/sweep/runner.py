"""A sweep's driver: `run` (secompile.sweep.run, `secompile.sweep(...)`) walks the grid or draws
the sample, evaluates each variant with the engine, and joins, filters and marks the rows.
"""
from __future__ import annotations

import random

from .emit import write_variant
from .engine import MAX_VARIANTS, Sweep, axes_of, check_size, gc_paused, grid_size, iter_grid
from .metrics import as_dataframe, compile_where, join_metrics, mark_pareto, reads_memory
from .sampling import as_grid, as_sampled

DRAWS_PER_MODEL = 50     # a sample draws at most this many candidates per model asked for


class Rows(list):
    """A sweep's rows (plain dicts), with `summary`: how many were drawn, kept, rejected."""

    summary: dict


def run(spec, vary, *, sample: int | None = None, seed: int = 0, where: str | None = None,
        metrics=None, emit: str | None = None, base_dir: str | None = None,
        max_variants: int | None = MAX_VARIANTS, max_draws: int | None = None,
        dataframe: bool = False, batch: int | None = None, dtype: str = "fp32",
        optimizer: str = "sgd"):
    """Evaluate variants of `spec` analytically -> Rows (a list of row dicts).

    vary: {KEY: [values]} or ['KEY=[a, b]', 'KEY=range(a, b, step)', 'KEY=choice(...)',
    'KEY=uniform(a, b)', 'KEY=loguniform(a, b)', ...] (secompile/sweep/sampling.py).
    Without `sample`: every combination (first key slowest); more than `max_variants` is
    refused (SpecError). With `sample=N`: N distinct variants drawn with `random.Random(seed)`,
    kept where valid and `where` holds (rejection sampling, at most `max_draws` draws, default
    DRAWS_PER_MODEL * N); `rows.summary` says how many were drawn and why some were not kept.
    where: a filter in the spec expression language over WHERE_NAMES (a grid keeps invalid
    rows). metrics: glob(s) of train.py metrics.json files joined by variant name or by (spec
    name, overrides). emit: a folder to write one spec file per valid variant (new, empty or
    written by secompile: secompile/outputs.py). dataframe=True returns a pandas DataFrame.
    batch (dtype, optimizer): rows also get the memory estimates train_mem, infer_mem and
    act_mem in bytes for that batch (analysis/memory.py); a `where` that reads one of them
    gets them at batch 1 without it (`where="train_mem < 24GiB"`: sizes with units)."""
    axes = axes_of(vary)
    pred = compile_where(where)
    if sample is not None:
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
            raise ValueError(f"sample must be a positive integer, got {sample!r}")
        check_size(sample, max_variants, "sampled variants")
    else:
        for a in axes:
            if not isinstance(a, list) and a.kind not in ("range", "choice"):
                a.grid()     # refused: a continuous distribution needs --sample
        sizes = [len(a) for a in axes]
        check_size(grid_size(axes), max_variants, "variants",
                   f" ({' x '.join(map(str, sizes))})" if len(sizes) > 1 else "")
        axes = [as_grid(a) for a in axes]
    memory = None
    if batch is not None or reads_memory(where):
        bad = isinstance(batch, bool) or not isinstance(batch, int) or batch < 1
        if batch is not None and bad:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        memory = {"batch": 1 if batch is None else batch, "dtype": dtype, "optimizer": optimizer}
    with gc_paused():
        sweep = Sweep(spec, axes, base_dir, memory=memory)
        if emit:
            rows = _with_emit(sweep, axes, emit, sample, seed, pred, max_draws)
        else:
            rows = _rows(sweep, axes, None, sample, seed, pred, max_draws)
    if metrics:
        join_metrics(rows, metrics)
    mark_pareto(rows)
    if pred is not None and sample is None:
        kept = Rows(r for r in rows if not r["ok"] or pred(r))
        kept.summary = rows.summary
        rows = kept
    return as_dataframe(rows) if dataframe else rows


def _with_emit(sweep, axes, folder, sample, seed, pred, max_draws):
    from ..outputs import staged_dir

    with staged_dir(folder, option="--emit") as stage:
        def emit(v, name):
            write_variant(v, name, stage, final=folder)
            return f"{folder.rstrip('/')}/{name}.yaml"
        return _rows(sweep, axes, emit, sample, seed, pred, max_draws)


def _rows(sweep, axes, emit, sample, seed, pred, max_draws) -> Rows:
    if sample is None:
        rows = Rows(iter_grid(sweep, axes, emit))
        rows.summary = {"variants": len(rows), "valid": sum(r["ok"] for r in rows)}
        return rows
    return _sample(sweep, axes, emit, sample, seed, pred,
                   DRAWS_PER_MODEL * sample if max_draws is None else max_draws)


def _sample(sweep, axes, emit, n, seed, pred, max_draws) -> Rows:
    """Rejection sampling: draw, skip repeats, evaluate, keep valid rows inside the band."""
    rng = random.Random(seed)
    dists = [as_sampled(a) for a in axes]
    seen, rows = set(), Rows()
    finite = all(isinstance(a, list) or a.kind in ("range", "choice") for a in axes)
    space = grid_size(axes) if finite else None     # a small space is exhausted, not redrawn
    s = {"sample": n, "seed": seed, "drawn": 0, "kept": 0, "repeats": 0, "invalid": 0,
         "outside": 0, "max_draws": max_draws, "first_errors": []}
    while s["drawn"] < max_draws and len(rows) < n and len(seen) != space:
        combo = tuple(d.draw(rng) for d in dists)
        s["drawn"] += 1
        key = repr([o.value for o in combo])
        if key in seen:
            s["repeats"] += 1
            continue
        seen.add(key)
        row = sweep.row(len(rows), combo, emit, keep=pred)    # only what is kept is written
        if not row["ok"]:
            s["invalid"] += 1
            s["first_errors"] = s["first_errors"] or row["errors"]
        elif row.pop("outside", False):
            s["outside"] += 1
        else:
            rows.append(row)
    s["kept"] = len(rows)
    rows.summary = s
    return rows


__all__ = ["run", "Rows", "DRAWS_PER_MODEL"]
