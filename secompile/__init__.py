"""secompile: Squeeze-and-Excitation networks as data.

    model = secompile.compile("specs/se_resnext50.yaml")   # a torch.nn.Module
    report = secompile.count("specs/se_resnext50.yaml")    # analytic MACs / params
"""
from .api import build_ir, check_limits, compile, count
from .spec import LimitError, Problem, Spec, SpecError, load_spec

__version__ = "0.1.0"
__all__ = ["compile", "count", "build_ir", "check_limits", "load_spec", "Spec", "SpecError",
           "LimitError", "Problem", "__version__"]


def __getattr__(name):  # backends import heavy packages (onnx, graphviz) only when used
    if name == "to_onnx":
        from .backends.onnx import to_onnx
        return to_onnx
    if name == "draw":
        from .backends.graphviz import draw
        return draw
    if name == "optimize_for_inference":   # torch only when asked for, like load_weights
        from .backends.torch_inference import optimize_for_inference
        return optimize_for_inference
    if name == "load_weights":
        from .weights import load_weights
        return load_weights
    raise AttributeError(f"module 'secompile' has no attribute {name!r}")
