"""secompile: Squeeze-and-Excitation networks as data.

    model = secompile.compile("specs/se_resnext50.yaml")   # a torch.nn.Module
    report = secompile.count("specs/se_resnext50.yaml")    # analytic MACs / params
"""
from ._version import __version__
from .api import build_ir, check_limits, compile, count, draw, prepare, to_onnx
from .spec import LimitError, Problem, Spec, SpecError, load_spec
from .sweep import diff, sweep  # design-space sweeps and spec diffs (secompile/sweep.py)

__all__ = ["compile", "count", "build_ir", "check_limits", "prepare", "to_onnx", "draw", "load_spec", "Spec",
           "SpecError", "LimitError", "Problem", "sweep", "diff", "__version__"]


def __getattr__(name):  # the torch backend is imported only when a module is asked for
    if name == "optimize_for_inference":
        from .backends.torch_inference import optimize_for_inference
        return optimize_for_inference
    if name == "load_weights":
        from .backends.torch_weights import load_weights
        return load_weights
    raise AttributeError(f"module 'secompile' has no attribute {name!r}")
