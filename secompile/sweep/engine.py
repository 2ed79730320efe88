"""The sweep engine: variants of one spec, counted analytically, streamed as rows.

A grid sweep is the product of the `vary` lists (first key slowest); a sample draws variants
from distributions (secompile/sweep/sampling.py). The spec is loaded once through the API
(`api.load`: zoo names, files, YAML text, dicts); each variant is the base plus its overrides
(`api.load(base, overrides=...)`), expanded, given its SE blocks and counted — no torch.

What is safe to share is shared: variants whose data differ only in `se` reuse one expanded
graph (SE insertion copies it), which is also the variant "without SE" that the SE cost is
measured against. Only the last few expansions are kept (`_Expansions`), so memory stays flat
however many variants run. An invalid variant is a row with its located errors, never an
exception. A sweep over more than MAX_VARIANTS variants is refused unless asked for.
"""
from __future__ import annotations

import gc
import itertools
import json
import math
from collections import OrderedDict

from ..analysis.counts import Counts
from ..analysis.memory import sweep_metrics
from ..api import load
from ..frontend import attention_modules, expand, se_rules
from ..ir.ops import CONV_LINEAR_OPS
from ..lang.document import Spec
from ..lang.errors import Mark, Problem, SpecError
from ..lang.overrides import Override, apply_overrides, exists, format_value, make_override
from ..passes import insert_se
from ..zoo.loader import load_spec  # zoo names, and every phase's problems
from .options import MAX_VARIANTS  # a larger sweep needs max_variants= / --max-variants
from .sampling import parse_axis

KEPT_EXPANSIONS = 16         # expanded graphs kept for variants that differ only in `se`

# None in an invalid variant's row
COST_FIELDS = ("macs", "conv_linear_macs", "params", "nodes", "se_blocks", "base_macs",
               "base_params", "se_macs", "se_params", "se_macs_rel", "se_params_rel")
# bytes, for a batch size (analysis/memory.py); only in sweeps given one (--batch, or a --where
# that reads them): the estimate costs ~10 ms a variant, several counts' worth
MEMORY_FIELDS = ("train_mem", "infer_mem", "act_mem")


# -- the variants --------------------------------------------------------------------------
def axes_of(vary) -> list:
    """vary: {KEY: [values]} (Python values) or ['KEY=[YAML list]' / 'KEY=range(...)', ...]
    (CLI text) -> one axis per key: a list of Overrides, or a sampling.Distribution."""
    if isinstance(vary, dict):
        axes = []
        for i, (key, values) in enumerate(vary.items(), 1):
            if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
                raise TypeError(f"vary[{key!r}] must be a list of alternatives, not "
                                f"{type(values).__name__}")
            values = list(values)
            if not values:
                raise SpecError([Problem(Mark("<vary>", i, 1), str(key), "no alternatives given")])
            axes.append([make_override(key, v, index=i, file="<vary>") for v in values])
        return axes
    if isinstance(vary, str):
        vary = [vary]
    problems, axes = [], []
    for i, text in enumerate(vary, 1):
        try:
            axes.append(parse_axis(text, index=i))
        except SpecError as e:
            problems.extend(e.problems)
    if problems:
        raise SpecError(problems)
    return axes


def grid_size(axes) -> int:
    return math.prod(len(a) for a in axes)


def check_size(n: int, limit: int | None, what: str, detail: str = "") -> None:
    """Refuse `n` variants over `limit` (None: no limit) before anything runs."""
    if limit is not None and n > limit:
        raise SpecError([Problem(Mark("--vary", 1, 1), "<sweep>",
                                 f"{n:,} {what}{detail} exceed the limit of {limit:,}; pass "
                                 f"--max-variants {n} to run them all")])


def variant_name(base: str, index: int, overrides) -> str:
    """Deterministic name of a variant (also its --emit file name and train.py's run folder):
    one safe file-name component (the base is made safe by the caller)."""
    import re

    def clean(text):
        return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_").replace("..", "_")
    slug = "+".join(f"{clean(o.key)}-{clean(format_value(o.value))}" for o in overrides)
    return f"{base}-{index:02d}-{slug[:80]}" if slug else f"{base}-{index:02d}"


class _Expansions:
    """The last KEPT_EXPANSIONS expanded graphs (and counts), keyed by everything but `se`."""

    def __init__(self):
        self.kept: OrderedDict = OrderedDict()

    def base(self, spec: Spec, overrides):
        key = json.dumps([{k: v for k, v in spec.data.items() if k != "se"},
                          [o.text for o in overrides if o.path[0] != "se"]],
                         sort_keys=True, default=str)
        hit = self.kept.get(key)
        if hit is None:
            g = expand(spec)
            hit = self.kept[key] = (g, Counts(g))
            if len(self.kept) > KEPT_EXPANSIONS:
                self.kept.popitem(last=False)
        else:
            self.kept.move_to_end(key)
        return hit


def evaluate(spec: Spec, expansions: _Expansions, overrides, memory: dict | None = None) -> dict:
    """The cost fields of one valid variant (SpecError where it is invalid); with `memory`
    ({batch, dtype, optimizer}) also MEMORY_FIELDS."""
    g0, c0 = expansions.base(spec, overrides)
    rules = se_rules(spec)   # a rule whose `when:` is false left out (None)
    # with the spec's attention modules, as build_ir: v2 rule options (channels expressions,
    # act, module:) are template parameters the built-in block would not see
    g = insert_se(g0, rules, spec.smap, modules=attention_modules(spec)) if any(rules) else g0
    c = Counts(g) if g is not g0 else c0
    tot, base = c.total, c0.total
    mem = sweep_metrics(g, **memory) if memory is not None else {}
    return {**mem, "macs": tot.macs, "conv_linear_macs": c.by_op(*CONV_LINEAR_OPS).macs,
            "params": tot.params, "nodes": len(g), "se_blocks": len(g.se),
            "base_macs": base.macs, "base_params": base.params,
            "se_macs": tot.macs - base.macs, "se_params": tot.params - base.params,
            "se_macs_rel": (tot.macs - base.macs) / base.macs if base.macs else None,
            "se_params_rel": (tot.params - base.params) / base.params if base.params else None}


def check_keys(spec: Spec | None, axes) -> None:
    """A KEY that names nothing in the spec is a bad --vary (exit 2), not N invalid rows: its
    path must resolve, and a first alternative must raise no problem located at the KEY's
    last segment (an unknown key or template parameter is reported there)."""
    if spec is None:
        return
    problems = []
    for axis in axes:
        first = axis[:1] if isinstance(axis, list) else [axis.example()]
        try:
            apply_overrides(spec.data, spec.smap, first)
        except SpecError as e:
            problems.extend(e.problems)
            continue
        o = first[0]
        if exists(spec.data, o.path):   # a key the spec has: its values are the variants' business
            continue
        at_key = o.mark(o.key_cols[-1]) if o.key_cols else None
        try:
            expand(load_spec(spec, overrides=first))
        except SpecError as e:
            problems.extend(p for p in e.problems if p.mark == at_key)
    if problems:
        raise SpecError(problems)


class Sweep:
    """One sweep's base spec and caches: `row(index, overrides)` evaluates a variant."""

    def __init__(self, spec, axes, base_dir: str | None = None, name: str | None = None,
                 memory: dict | None = None):
        from ..outputs import safe_name
        self.memory = memory   # {batch, dtype, optimizer}: rows get MEMORY_FIELDS
        try:
            self.base = load(spec, base_dir=base_dir)
        except SpecError:
            self.base = None    # perhaps every variant fixes it: each loads from the source
        self.source, self.base_dir = spec, base_dir
        check_keys(self.base, axes)
        self.expansions = _Expansions()
        raw = name or (self.base.name if self.base is not None else _stem(spec))
        self.name = safe_name(raw, quiet=True)

    def row(self, index: int, combo, emit=None, keep=None) -> dict:
        """The row of one variant; `emit(spec, name)` writes it where valid and `keep(row)`
        (if given) holds — else the row says `outside: True`."""
        row = {"index": index, "spec": self.name, "name": variant_name(self.name, index, combo),
               "overrides": {o.key: o.value for o in combo},
               "label": ", ".join(f"{o.key}={format_value(o.value)}" for o in combo),
               "ok": True, "errors": [], **dict.fromkeys(COST_FIELDS),
               **dict.fromkeys(MEMORY_FIELDS if self.memory is not None else ())}
        try:
            v = load(self.base if self.base is not None else self.source,
                     base_dir=self.base_dir, overrides=list(combo))
            row.update(evaluate(v, self.expansions, combo, self.memory))
            if keep is not None and not keep(row):
                row["outside"] = True
            elif emit is not None:
                row["file"] = emit(v, row["name"])
        except SpecError as e:
            row.update({"ok": False, "errors": e.messages})
        return row


def _stem(spec) -> str:
    import os
    if isinstance(spec, (str, os.PathLike)) and "\n" not in os.fspath(spec):
        return os.path.splitext(os.path.basename(os.fspath(spec)))[0]
    return "spec"


def iter_grid(sweep: Sweep, axes, emit=None):
    """Rows of the product of `axes` (lists of Overrides), one at a time: nothing but the
    current row and the last few expansions is kept."""
    for i, combo in enumerate(itertools.product(*axes)):
        yield sweep.row(i, combo, emit)


class gc_paused:
    """Building graphs allocates many small acyclic objects: the cyclic GC only slows it."""

    def __enter__(self):
        self.enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.enabled:
            gc.enable()


__all__ = ["MAX_VARIANTS", "COST_FIELDS", "MEMORY_FIELDS", "Sweep", "axes_of", "grid_size",
           "check_size",
           "check_keys", "evaluate", "iter_grid", "variant_name", "Override"]
