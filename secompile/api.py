"""The public API: thin functions over the pipeline spec -> IR -> passes -> analysis -> backends."""
from __future__ import annotations

import contextlib
import gc

from .analysis.counts import Counts, report
from .ir.graph import Graph
from .passes import expand, insert_se
from .spec.errors import LimitError, Problem
from .spec.model import Spec, load_spec

MAX_PARAMS = 2_000_000_000      # ~8 GB of fp32 weights: more than this machine should allocate
MAX_MACS = 2_000_000_000_000


@contextlib.contextmanager
def _gc_paused():
    """Building a graph allocates many small acyclic objects: the cyclic GC only slows it down."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build_ir(spec, *, se: bool = True, base_dir: str | None = None) -> Graph:
    """Spec (path, YAML text, dict or Spec) -> typed IR with SE blocks inserted."""
    with _gc_paused():
        spec = load_spec(spec, base_dir)
        g = expand(spec)
        if se and spec.data.get("se"):
            g = insert_se(g, spec.data["se"], spec.smap)
        return g


def count(spec, *, se: bool = True) -> dict:
    """The analytic report: multiply-adds and parameters per stage and in total."""
    g = build_ir(spec, se=se)
    with _gc_paused():
        return report(g)


def check_limits(spec: Spec, g: Graph, max_params=MAX_PARAMS, max_macs=MAX_MACS) -> Counts:
    """Refuse a network over the limits before any tensor is allocated."""
    c = Counts(g)
    total = c.total
    problems = []
    mark = spec.smap.mark(("name",))
    if max_params is not None and total.params > max_params:
        problems.append(Problem(mark, "<network>", f"{total.params:,} parameters exceed the limit of "
                                                   f"{int(max_params):,} (raise it with --max-params)"))
    if max_macs is not None and total.macs > max_macs:
        problems.append(Problem(mark, "<network>", f"{total.macs:,} multiply-adds exceed the limit of "
                                                   f"{int(max_macs):,} (raise it with --max-macs)"))
    if problems:
        raise LimitError(problems)
    return c


def compile(spec, *, seed: int | None = None, zero_init_last_bn: bool = False,
            max_params=MAX_PARAMS, max_macs=MAX_MACS, base_dir: str | None = None,
            inference: bool = False, example_input=None):
    """Spec -> torch.nn.Module (He-initialised, deterministic for a given seed).

    inference=True: the eval-mode module through `optimize_for_inference(model, example_input)`.
    """
    spec = load_spec(spec, base_dir)
    g = build_ir(spec)
    check_limits(spec, g, max_params, max_macs)
    from .backends.torch import lower  # torch only when a module is asked for
    model = lower(g, seed=seed, zero_init_last_bn=zero_init_last_bn)
    if inference:   # -- inference compilation (issue 16) --
        from .backends.torch_inference import optimize_for_inference
        return optimize_for_inference(model.eval(), example_input)
    return model
