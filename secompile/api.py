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
import json

from .analysis.counts import Counts, report
from .frontend import attention_modules, se_rules
from .frontend.expand import expand_partial
from .ir.graph import Graph
from .lang.document import LATER_CHECKS, Spec, load_spec
from .lang.errors import LimitError, Mark, Problem, SpecError
from .lang.overrides import as_overrides, make_override
from .passes import insert_se
from .passes.insert_se import check as check_se
from .passes.truncate import feature_info, normalise_indices, stage_outputs, truncate

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


def load(spec, *, overrides=None, params=None, num_classes: int | None = None,
         input_size=None,
         base_dir: str | None = None) -> Spec:
    """Spec source (path, zoo name, YAML text, dict or Spec) -> Spec with the overrides applied.

    `overrides`: {KEY: value} or 'KEY=VALUE' strings (secompile/lang/overrides.py), applied in
    order; `params` ({NAME: value}) sets network parameters (= overrides of params.NAME); then
    `input_size` (int or (H, W)) sets input.size and `num_classes` the `out` of the head's last
    linear layer. Problems they cause are reported at them (SpecError).
    """
    from .zoo import resolve_spec
    spec = load_spec(resolve_spec(spec), base_dir)
    extra = list(as_overrides(overrides))
    # network parameters ({NAME: value}): overrides of params.NAME, recorded as such
    extra += [make_override(f"params.{k}", v, file="<params>") for k, v in (params or {}).items()]
    if input_size is not None:
        size = list(input_size) if isinstance(input_size, (tuple, list)) else input_size
        key = "input.size" if isinstance(spec.data.get("input"), dict) else "input"
        value = size if key == "input.size" else {"channels": 3, "size": size}
        extra.append(make_override(key, value, file="<input_size>"))
    if extra:
        spec = load_spec(spec, overrides=extra)
    if num_classes is not None:
        spec = load_spec(spec, overrides=[make_override(_classifier_key(spec), num_classes,
                                                        file="<num_classes>")])
    return spec


def _classifier_key(spec: Spec) -> str:
    """The override key of the head's last linear layer's `out` (for num_classes)."""
    head = spec.data.get("head") or []
    for i in range(len(head) - 1, -1, -1):
        item = head[i]
        if isinstance(item, dict) and isinstance(item.get("linear"), dict):
            return f"head.{i}.linear.out"
    where = ("head",) if "head" in spec.data else ("name",)
    raise SpecError([Problem(spec.smap.mark(where), "head",
                             "num_classes: the head has no linear layer to resize; change the head "
                             "with overrides instead")])


def _features(g: Graph, features_only: bool, out_indices) -> tuple[Graph, tuple]:
    """-> (the graph, truncated after the last selected stage when features_only; the indices)."""
    if not features_only:
        if out_indices is not None:
            raise ValueError("out_indices is for features_only=True")
        return g, ()
    try:
        idx = normalise_indices(g, out_indices)
    except ValueError as e:
        raise SpecError([Problem(Mark("<out_indices>", 1, 1), "out_indices",
                                 str(e).partition(": ")[2])]) from None
    return truncate(g, idx[-1]), idx


def build_ir(spec, *, se: bool = True, base_dir: str | None = None, overrides=None,
             params=None,
             num_classes: int | None = None, input_size=None, features_only: bool = False,
             out_indices=None) -> Graph:
    """Spec (path, zoo name, YAML text, dict or Spec) -> typed IR graph with SE blocks inserted
    (a secompile.ir.graph.Graph); with features_only, without the head and the stages after the
    last of out_indices (passes/truncate.py)."""
    with _gc_paused():
        spec = load(spec, overrides=overrides, params=params, num_classes=num_classes,
                    input_size=input_size,
                    base_dir=base_dir)
        g, unknown, problems = expand_partial(spec)
        if problems:   # the SE rules are checked too, where the graph was built
            raise SpecError(problems + (_se_problems(spec, g, unknown) if se else []))
        if se and spec.data.get("se"):
            g = insert_se(g, se_rules(spec), spec.smap, modules=attention_modules(spec))
        return _features(g, features_only, out_indices)[0]


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
    try:   # a rule whose `when:` is false is left out
        rules = se_rules(spec, [None if refused(i, r) else r for i, r in enumerate(rules)])
    except SpecError as e:
        return list(e.problems)
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
        problems.append(Problem(mark, "<network>",
                                f"{total.params:,} parameters exceed the limit of "
                                f"{int(max_params):,} (raise it with --max-params)"))
    if max_macs is not None and total.macs > max_macs:
        problems.append(Problem(mark, "<network>",
                                f"{total.macs:,} multiply-adds exceed the limit of "
                                f"{int(max_macs):,} (raise it with --max-macs)"))
    if problems:
        raise LimitError(problems)
    return c


def prepare(spec, *, se: bool = True, max_params=MAX_PARAMS, max_macs=MAX_MACS,
            base_dir: str | None = None, overrides=None, params=None,
            num_classes: int | None = None,
            input_size=None, features_only: bool = False,
            out_indices=None) -> tuple[Spec, Graph, Counts]:
    """The front door: spec -> (Spec, IR with SE blocks, its Counts), limits checked.

    Pass max_params=None, max_macs=None where nothing is allocated (drawing, tables).
    Raises SpecError (LimitError) with every problem found.
    """
    spec = load(spec, overrides=overrides, params=params, num_classes=num_classes,
                input_size=input_size,
                base_dir=base_dir)
    g = build_ir(spec, se=se, features_only=features_only, out_indices=out_indices)
    return spec, g, check_limits(spec, g, max_params, max_macs)


def count(spec, *, se: bool = True, overrides=None, params=None,
          num_classes: int | None = None, input_size=None,
          features_only: bool = False, out_indices=None) -> dict:
    """The analytic report: multiply-adds and parameters per stage and in total (with
    features_only, of the backbone: no head, no stage after the last selected one). The report
    lists the overrides applied (`overrides`) and the features (`features`) where there are any."""
    spec = load(spec, overrides=overrides, params=params, num_classes=num_classes,
                input_size=input_size)
    g = build_ir(spec, se=se)
    g, idx = _features(g, features_only, out_indices)
    with _gc_paused():
        rep = report(g)
    return _annotate(rep, spec, g, idx)


def _annotate(rep: dict, spec: Spec, g: Graph, idx: tuple) -> dict:
    if spec.overrides:
        rep["overrides"] = spec.override_dict()
    if idx:
        rep["features"] = feature_info(g, idx)
    return rep


def compile(spec, *, seed: int | None = None, zero_init_last_bn: bool = False,
            max_params=MAX_PARAMS, max_macs=MAX_MACS, base_dir: str | None = None, overrides=None,
            params=None, num_classes: int | None = None, input_size=None,
            features_only: bool = False, out_indices=None, inference: bool = False,
            example_input=None):
    """Spec -> torch.nn.Module (He-initialised, deterministic for a given seed).

    With features_only, a backbone (backends/features.py FeatureNet) whose forward returns the
    outputs of the stages in out_indices (default: every stage) as a list, and whose
    `feature_info` follows timm (channels(), reduction(), module_name()).
    inference=True: the eval-mode module through `optimize_for_inference(model, example_input)`.
    """
    _, g, _ = prepare(spec, max_params=max_params, max_macs=max_macs, base_dir=base_dir,
                      overrides=overrides, params=params, num_classes=num_classes,
                      input_size=input_size)
    g, idx = _features(g, features_only, out_indices)
    from .backends.torch import lower  # torch only when a module is asked for
    model = lower(g, seed=seed, zero_init_last_bn=zero_init_last_bn)
    if features_only:
        from .backends.torch.features import feature_net
        model = feature_net(model, g, idx)
    if inference:
        from .backends.torch.inference import optimize_for_inference
        return optimize_for_inference(model.eval(), example_input)
    return model


def to_onnx(spec, weights=None, path=None, *, seed: int = 0, fold_bn: bool = False,
            opset: int | None = None,
            max_params=MAX_PARAMS, max_macs=MAX_MACS, overrides=None, params=None,
            num_classes: int | None = None, input_size=None, features_only: bool = False,
            out_indices=None):
    """Spec -> ONNX model, with `weights` (module, state_dict or checkpoint path) or the torch
    backend's initialisation for `seed`. Writes `path` atomically when given (opset: default 17).
    With features_only, one output per selected stage (`feature_<i>`); `weights` are those of
    the whole network. The overrides applied are recorded in the metadata (secompile.overrides).

    Raises SpecError for spec problems and for weights that do not fit the spec.
    """
    from .backends import onnx
    from .backends.onnx.weights import expected_state, load_state
    opset = onnx.DEFAULT_OPSET if opset is None else opset
    onnx.check_opset(opset)
    s, g, _ = prepare(spec, max_params=max_params, max_macs=max_macs, overrides=overrides,
                      params=params,
                      num_classes=num_classes, input_size=input_size)
    state = load_state(weights, g, seed)
    outputs = None
    if features_only:
        t, idx = _features(g, True, out_indices)
        keep = expected_state(t)
        state = {k: v for k, v in state.items() if k in keep}
        outs = stage_outputs(t)
        g, outputs = t, {f"feature_{i}": outs[i] for i in idx}
    model = onnx.lower(g, state, fold_bn=fold_bn, opset=opset, outputs=outputs)
    record_overrides(model, s)
    if path is not None:
        onnx.save(model, path)
    return model


def record_overrides(model, spec: Spec) -> None:
    """ONNX metadata_props `secompile.overrides`: the overrides applied, as JSON (none: nothing)."""
    if spec.overrides:
        entry = model.metadata_props.add()
        entry.key, entry.value = "secompile.overrides", json.dumps(spec.override_dict())


def _drawable(spec, overrides=None):
    """-> (Graph, Spec or None). A Graph is drawn as is; anything else goes through the front
    door."""
    if isinstance(spec, Graph):
        return spec, None
    s, g, _ = prepare(spec, max_params=None, max_macs=None, overrides=overrides)
    return g, s


def note_overrides(source: str, spec) -> str:
    """DOT source with the overrides applied recorded as the graph's `comment` (SVG keeps it)."""
    if spec is None or not getattr(spec, "overrides", None):
        return source
    text = "secompile overrides: " + "; ".join(o.text for o in spec.overrides)
    first, _, rest = source.partition("\n")
    return f"{first}\n\tcomment={json.dumps(text)}\n{rest}"


def to_dot(spec, level: str = "block", *, scope: str | None = None, overrides=None) -> str:
    """The DOT source of a diagram. `scope` (a block, stage or unit path such as
    'stages.1.blocks.0') draws only that part, with stubs for what feeds it and reads it."""
    from .backends.graphviz import dot_source
    g, s = _drawable(spec, overrides)
    return note_overrides(dot_source(g, s, level, scope), s)


def draw(spec, level: str = "block", format: str = "svg", path: str | None = None, *,
         scope: str | None = None, overrides=None) -> str:
    """Draw `spec` (a path, zoo name, YAML text, dict, Spec or IR Graph); returns the file written.
    Raises DotNotFound (after writing `<path>.dot`) where `dot` is missing and format != 'dot'."""
    from .backends.graphviz import FORMATS, draw_graph
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    g, s = _drawable(spec, overrides)
    if s is None or not s.overrides:
        return draw_graph(g, s, level, format, path, scope=scope)
    return _draw_source(to_dot(s, level, scope=scope), g.name, level, format, path, scope)


def _draw_source(source: str, name: str, level: str, format: str, path, scope) -> str:
    """backends.graphviz.draw_graph for DOT source made here (with the overrides noted)."""
    from .backends.graphviz import write_diagram
    return write_diagram(source, name, level, format, path, scope)
