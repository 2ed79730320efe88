"""secompile: Squeeze-and-Excitation networks as data.

    model = secompile.compile("se_resnext50")                       # a zoo name, or a spec file
    report = secompile.count("specs/se_resnext50.yaml")             # analytic MACs / params
    places = secompile.compile("se_resnet50", num_classes=365, input_size=320)
    backbone = secompile.compile("se_resnet50", features_only=True)  # stage outputs, feature_info
    secompile.list_models("se_*")                                   # the shipped zoo
"""
from . import sweep  # the package, callable: secompile.sweep(...) = secompile.sweep.run(...)
from ._version import __version__
from .api import build_ir, check_limits, compile, count, draw, load, prepare, to_onnx
from .lang import LimitError, Problem, Spec, SpecError, load_spec
from .sweep import diff  # spec diffs (secompile/sweep/diffing.py)
from .zoo import list_models, model_path

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
