"""The public API: thin functions over the pipeline spec -> front end -> IR -> passes -> analysis
-> backends.

Every entry point that turns a spec into something goes through `prepare` (load, expand,
insert SE blocks, count and check the limits), so the checks are the same everywhere.
Backends are imported inside the functions that need them: `import secompile` stays free of
torch, onnx and graphviz until one of them is asked for.
"""
from __future__ import annotations

import contextlib
import gc

from .analysis.counts import Counts, report
from .frontend import attention_modules
from .frontend.expand import expand_partial
from .ir.graph import Graph
from .passes import insert_se
from .passes.insert_se import check as check_se
from .spec.document import LATER_CHECKS, Spec, load_spec
from .spec.errors import LimitError, Problem, SpecError

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
        g, unknown, problems = expand_partial(spec)
        if problems:   # the SE rules are checked too, where the graph was built
            raise SpecError(problems + (_se_problems(spec, g, unknown) if se else []))
        if se and spec.data.get("se"):
            g = insert_se(g, spec.data["se"], spec.smap, modules=attention_modules(spec))
        return g


def _se_problems(spec: Spec, g: Graph, unknown) -> list[Problem]:
    rules = spec.data.get("se")
    if not isinstance(rules, list) or (spec.partial and spec.partial.skips("se")):
        return []
    partial, modules = spec.partial, attention_modules(spec)

    def refused(i, rule) -> bool:   # the rule, or the template its module names, was refused
        if partial is None:
            return False
        name = rule.get("module", "se") if isinstance(rule, dict) else None
        return partial.skips("se", i) or (name not in modules and partial.may_define(name))
    rules = [None if refused(i, r) else r for i, r in enumerate(rules)]
    return check_se(g, rules, spec.smap, unknown, modules=modules)


def _problems_after_schema(spec: Spec) -> list[Problem]:
    """Every problem of the parts of `spec` that the schema accepted (see spec.document.Partial)."""
    g, unknown, problems = expand_partial(spec)
    return problems + _se_problems(spec, g, unknown)


LATER_CHECKS.append(_problems_after_schema)


def check_limits(spec: Spec, g: Graph, max_params=MAX_PARAMS, max_macs=MAX_MACS) -> Counts:
    """Refuse a network over the limits before any tensor is allocated (None: no limit)."""
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


def prepare(spec, *, se: bool = True, max_params=MAX_PARAMS, max_macs=MAX_MACS,
            base_dir: str | None = None) -> tuple[Spec, Graph, Counts]:
    """The front door: spec -> (Spec, IR with SE blocks, its Counts), limits checked.

    Pass max_params=None, max_macs=None where nothing is allocated (drawing, tables).
    Raises SpecError (LimitError) with every problem found.
    """
    spec = load_spec(spec, base_dir)
    g = build_ir(spec, se=se)
    return spec, g, check_limits(spec, g, max_params, max_macs)


def count(spec, *, se: bool = True) -> dict:
    """The analytic report: multiply-adds and parameters per stage and in total."""
    g = build_ir(spec, se=se)
    with _gc_paused():
        return report(g)


def compile(spec, *, seed: int | None = None, zero_init_last_bn: bool = False,
            max_params=MAX_PARAMS, max_macs=MAX_MACS, base_dir: str | None = None,
            inference: bool = False, example_input=None):
    """Spec -> torch.nn.Module (He-initialised, deterministic for a given seed).

    inference=True: the eval-mode module through `optimize_for_inference(model, example_input)`.
    """
    _, g, _ = prepare(spec, max_params=max_params, max_macs=max_macs, base_dir=base_dir)
    from .backends.torch import lower  # torch only when a module is asked for
    model = lower(g, seed=seed, zero_init_last_bn=zero_init_last_bn)
    if inference:
        from .backends.torch_inference import optimize_for_inference
        return optimize_for_inference(model.eval(), example_input)
    return model


def to_onnx(spec, weights=None, path=None, *, seed: int = 0, fold_bn: bool = False, opset: int | None = None,
            max_params=MAX_PARAMS, max_macs=MAX_MACS):
    """Spec -> ONNX model, with `weights` (module, state_dict or checkpoint path) or the torch
    backend's initialisation for `seed`. Writes `path` atomically when given (opset: default 17).

    Raises SpecError for spec problems and for weights that do not fit the spec.
    """
    from .backends import onnx
    from .backends.onnx_weights import load_state
    opset = onnx.DEFAULT_OPSET if opset is None else opset
    onnx.check_opset(opset)
    _, g, _ = prepare(spec, max_params=max_params, max_macs=max_macs)
    model = onnx.lower(g, load_state(weights, g, seed), fold_bn=fold_bn, opset=opset)
    if path is not None:
        onnx.save(model, path)
    return model


def _drawable(spec):
    """-> (Graph, Spec or None). A Graph is drawn as is; anything else goes through the front door."""
    if isinstance(spec, Graph):
        return spec, None
    s, g, _ = prepare(spec, max_params=None, max_macs=None)
    return g, s


def to_dot(spec, level: str = "block", *, scope: str | None = None) -> str:
    """The DOT source of a diagram. `scope` (a block, stage or unit path such as
    'stages.1.blocks.0') draws only that part, with stubs for what feeds it and reads it."""
    from .backends.graphviz import dot_source
    return dot_source(*_drawable(spec), level, scope)


def draw(spec, level: str = "block", format: str = "svg", path: str | None = None, *,
         scope: str | None = None) -> str:
    """Draw `spec` (a path, YAML text, dict, Spec or IR Graph); returns the file written.
    Raises DotNotFound (after writing `<path>.dot`) where `dot` is missing and format != 'dot'."""
    from .backends.graphviz import FORMATS, draw_graph
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    return draw_graph(*_drawable(spec), level, format, path, scope=scope)
