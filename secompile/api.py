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
from .ir import verify
from .ir.graph import Graph
from .lang.document import Spec
from .lang.errors import LimitError, Problem, SpecError
from .lang.overrides import as_overrides, make_override
from .passes import insert_se
from .passes.truncate import feature_info, feature_levels, normalise_indices, truncate
from .zoo.loader import load_spec, se_problems

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


def load(spec, *, overrides=None, params=None, num_classes: int | None = None, input_size=None,
         drop_path_rate: float | None = None, base_dir: str | None = None) -> Spec:
    """Spec source (path, zoo name, YAML text, dict or Spec) -> Spec with the overrides applied.

    `overrides`: {KEY: value} or 'KEY=VALUE' strings (secompile/lang/overrides.py), applied in
    order; `params` ({NAME: value}) sets network parameters (= overrides of params.NAME); then
    `input_size` (int or (H, W)) sets input.size, `drop_path_rate` the parameter of
    that name of every block template the spec defines (timm's stochastic depth), and
    `num_classes` the `out` of the head's last linear layer. Problems they cause are reported at
    them (SpecError).
    """
    spec = load_spec(spec, base_dir)
    extra = list(as_overrides(overrides))
    # network parameters ({NAME: value}): overrides of params.NAME, recorded as such
    extra += [make_override(f"params.{k}", v, file="<params>") for k, v in (params or {}).items()]
    if drop_path_rate is not None:
        extra += [make_override(key, drop_path_rate, file="<drop_path_rate>")
                  for key in _drop_path_keys(spec)]
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


def _drop_path_keys(spec: Spec) -> list[str]:
    """The override keys of the `drop_path_rate` parameters of the spec's own block templates
    (and of the network's `params`, where it declares one)."""
    keys = [f"blocks.{name}.params.drop_path_rate" for name, t in spec.templates.items()
            if t.smap is spec.smap and "drop_path_rate" in t.params]
    if isinstance(spec.data.get("params"), dict) and "drop_path_rate" in spec.data["params"]:
        keys.append("params.drop_path_rate")
    if not keys:
        raise SpecError([Problem(spec.smap.mark(("name",)), "drop_path_rate",
                                 f"{spec.name} has no drop_path_rate parameter: none of its block "
                                 "templates declares one")])
    return keys


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


def _features(g: Graph, features_only: bool, out_indices,
              num_classes=None) -> tuple[Graph, list[dict], tuple]:
    """-> (the graph, truncated after the last selected feature when features_only; timm's
    feature levels up to it (passes/truncate.py); the selected indices)."""
    if not features_only:
        if out_indices is not None:
            raise ValueError("out_indices is for features_only=True")
        return g, [], ()
    if num_classes is not None:
        raise ValueError("num_classes is for a classifier: a features_only backbone has no head")
    levels = feature_levels(g)
    idx = normalise_indices(len(levels), out_indices, g.name)
    return truncate(g, levels[idx[-1]]["node"]), levels[: idx[-1] + 1], idx


def build_ir(spec, *, se: bool = True, base_dir: str | None = None, overrides=None, params=None,
             num_classes: int | None = None, input_size=None, drop_path_rate=None,
             features_only: bool = False, out_indices=None) -> Graph:
    """Spec (path, zoo name, YAML text, dict or Spec) -> typed IR graph with SE blocks inserted
    (a secompile.ir.graph.Graph); with features_only, without the head and what follows the
    last feature of out_indices (passes/truncate.py)."""
    with _gc_paused():
        spec = load(spec, overrides=overrides, params=params, num_classes=num_classes,
                    input_size=input_size,
                    drop_path_rate=drop_path_rate, base_dir=base_dir)
        g, unknown, problems = expand_partial(spec)
        if problems:   # the SE rules are checked too, where the graph was built
            raise SpecError(problems + (se_problems(spec, g, unknown) if se else []))
        if verify.EVERY_PASS:
            g.check()
        if se and spec.data.get("se"):
            g = insert_se(g, se_rules(spec), spec.smap, modules=attention_modules(spec),
                          copy=False)   # g is this call's own: no copy to rewrite
        g = _features(g, features_only, out_indices, num_classes)[0]
        if not verify.EVERY_PASS:   # else each pass checked its own result
            g.check()   # every validate, count and build: ~1 ms per 20 nodes
        return g


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
            input_size=None, drop_path_rate=None, features_only: bool = False,
            out_indices=None) -> tuple[Spec, Graph, Counts]:
    """The front door: spec -> (Spec, IR with SE blocks, its Counts), limits checked.

    Pass max_params=None, max_macs=None where nothing is allocated (drawing, tables).
    Raises SpecError (LimitError) with every problem found.
    """
    spec = load(spec, overrides=overrides, params=params, num_classes=num_classes,
                input_size=input_size,
                drop_path_rate=drop_path_rate, base_dir=base_dir)
    g = build_ir(spec, se=se)
    g = _features(g, features_only, out_indices, num_classes)[0]
    return spec, g, check_limits(spec, g, max_params, max_macs)


def count(spec, *, se: bool = True, overrides=None, params=None,
          num_classes: int | None = None, input_size=None,
          features_only: bool = False, out_indices=None, batch: int | None = None,
          dtype: str = "fp32", optimizer: str = "sgd") -> dict:
    """The analytic report: multiply-adds and parameters per stage and in total (with
    features_only, of the backbone: no head, nothing after the last selected feature). The
    report lists the overrides applied (`overrides`) and the features (`features`) where there
    are any. With `batch`, also `memory`: activation bytes per node and in total, the inference
    peak and the training peak (`dtype` fp32/bf16/fp16 autocast, `optimizer` sgd/adamw/none)."""
    spec = load(spec, overrides=overrides, params=params, num_classes=num_classes,
                input_size=input_size)
    g = build_ir(spec, se=se)
    g, levels, idx = _features(g, features_only, out_indices, num_classes)
    with _gc_paused():
        rep = report(g)
    if spec.overrides:
        rep["overrides"] = spec.override_dict()
    if idx:
        rep["features"] = feature_info(levels, idx)
    if batch is not None:   # activation memory and peaks (analysis/memory.py)
        from .analysis.memory import memory, report_section
        rep["memory"] = report_section(memory(g, batch, dtype, optimizer))
    return rep


def compile(spec, *, seed: int | None = 0, zero_init_last_bn: bool = False,
            max_params=MAX_PARAMS, max_macs=MAX_MACS, base_dir: str | None = None,
            overrides=None, params=None,
            num_classes: int | None = None, input_size=None, drop_path_rate: float | None = None,
            features_only: bool = False, out_indices=None, inference: bool = False,
            example_input=None):
    """Spec -> torch.nn.Module, He-initialised from `seed` (default 0, as `to_onnx` and
    `secompile export`: the same spec gives the same weights; None draws from torch's global
    generator).

    With features_only, a backbone (backends/torch/features.py FeatureNet) whose forward returns
    timm's features as a list (one per reduction, out_indices as in timm: indices into that
    list, an int n the last n), with timm's `feature_info` (channels(), reduction(),
    module_name(): names of its children, which torchvision's IntermediateLayerGetter takes).
    drop_path_rate: timm's stochastic-depth rate (the block templates' parameter of that name).
    inference=True: an inference-only module with BN folded (`optimize_for_inference(model,
    example_input)`; with features_only, the backbone's own).
    """
    _, g, _ = prepare(spec, max_params=max_params, max_macs=max_macs, base_dir=base_dir,
                      overrides=overrides, params=params, num_classes=num_classes,
                      input_size=input_size,
                      drop_path_rate=drop_path_rate)
    g, levels, idx = _features(g, features_only, out_indices, num_classes)
    if features_only:
        from .backends.torch.features import feature_net
        model = feature_net(g, levels, idx, seed=seed, zero_init_last_bn=zero_init_last_bn)
        return model.optimized(example_input) if inference else model
    from .backends.torch import lower  # torch only when a module is asked for
    model = lower(g, seed=seed, zero_init_last_bn=zero_init_last_bn)
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
    With features_only, one output per selected feature (`feature_<i>`); `weights` are those of
    the whole network. The overrides applied are recorded in the metadata (secompile.overrides).

    Raises SpecError for spec problems and for weights that do not fit the spec.
    """
    from .backends import onnx
    from .backends.onnx.weights import expected_state, load_state
    opset = onnx.DEFAULT_OPSET if opset is None else opset
    onnx.check_opset(opset)
    s, g, _ = prepare(spec, max_params=max_params, max_macs=max_macs, overrides=overrides,
                      params=params,
                      num_classes=num_classes if not features_only else None,
                      input_size=input_size)
    onnx.missing_emitters(g)   # a plug-in op without an ONNX emitter: refused before any work
    state = load_state(weights, g, seed)
    outputs = None
    if features_only:
        t, levels, idx = _features(g, True, out_indices, num_classes)
        keep = expected_state(t)
        state = {k: v for k, v in state.items() if k in keep}
        g, outputs = t, {f"feature_{i}": levels[i]["node"] for i in idx}
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
