"""secompile: Squeeze-and-Excitation networks as data.

    model = secompile.compile("se_resnext50")                       # a zoo name, or a spec file
    report = secompile.count("specs/se_resnext50.yaml")             # analytic MACs / params
    places = secompile.compile("se_resnet50", num_classes=365, input_size=320)
    backbone = secompile.compile("se_resnet50", features_only=True)  # stage outputs, feature_info
    secompile.list_models("se_*")                                   # the shipped zoo
"""
import functools as _functools

from . import sweep as _sweep_module
from ._version import __version__
from .api import build_ir, check_limits, compile, count, draw, load, prepare, to_onnx
from .lang import LimitError, Problem, Spec, SpecError, load_spec
from .zoo import list_models, model_path


@_functools.wraps(_sweep_module.sweep)
def sweep(spec, *args, **kwargs):   # design-space sweeps (secompile/sweep.py), zoo names too
    from .zoo import resolve_spec
    return _sweep_module.sweep(resolve_spec(spec), *args, **kwargs)


@_functools.wraps(_sweep_module.diff)
def diff(a, b, **kwargs):           # spec diffs (secompile/sweep.py), zoo names too
    from .zoo import resolve_spec
    return _sweep_module.diff(resolve_spec(a), resolve_spec(b), **kwargs)


__all__ = ["compile", "count", "build_ir", "check_limits", "prepare", "to_onnx", "draw", "load",
           "load_spec", "list_models", "model_path", "Spec", "SpecError", "LimitError", "Problem",
           "sweep", "diff", "__version__"]


def __getattr__(name):  # the torch backend is imported only when a module is asked for
    if name == "optimize_for_inference":
        from .backends.torch.inference import optimize_for_inference
        return optimize_for_inference
    if name == "load_weights":
        from .backends.torch.weights import load_weights
        return load_weights
    raise AttributeError(f"module 'secompile' has no attribute {name!r}")
