"""secompile: Squeeze-and-Excitation networks as data.

    model = secompile.compile("se_resnext50")                       # a zoo name, or a spec file
    report = secompile.count("specs/se_resnext50.yaml")             # analytic MACs / params
    places = secompile.compile("se_resnet50", num_classes=365, input_size=320)
    backbone = secompile.compile("se_resnet50", features_only=True)  # timm-style feature maps
    secompile.list_models("se_*")                                   # the shipped zoo
    secompile.register_op("coord_attn", ...)                        # a plug-in op (extending.md)

`import secompile` imports neither torch, onnx, graphviz nor the sweep engine: the names below
that need one (`load_weights`, `optimize_for_inference`, `sweep`, `diff`, and `WeightsError`,
load_weights' refusals) import it when first used (module `__getattr__`), so `secompile count`
starts quickly.
"""
from ._version import __version__
from .api import build_ir, check_limits, compile, count, draw, load, prepare, to_dot, to_onnx
from .ir.ops import OpError
from .ir.plugins import Attr, Buffer, PluginError, register_op, unregister_op
from .lang import LimitError, Problem, Spec, SpecError
from .zoo import list_models, load_spec, model_path

__all__ = ["compile", "count", "build_ir", "check_limits", "prepare", "to_onnx", "to_dot", "draw",
           "load", "load_spec", "list_models", "model_path", "Spec", "SpecError", "LimitError",
           "Problem", "WeightsError", "register_op", "unregister_op", "Attr", "Buffer",
           "PluginError", "OpError", "sweep", "diff", "load_weights", "optimize_for_inference",
           "__version__"]


def _lazy(name):
    """The object a lazy public name stands for (its module imported now)."""
    if name == "optimize_for_inference":
        from .backends.torch.inference import optimize_for_inference
        return optimize_for_inference
    if name == "load_weights":
        from .backends.torch.weights import load_weights
        return load_weights
    if name == "WeightsError":      # torch-free, but the count does not need it
        from .backends.checkpoint import WeightsError
        return WeightsError
    import importlib

    # the package itself, callable: secompile.sweep(...) is secompile.sweep.run(...), and
    # `import secompile.sweep as sw` gives the module (secompile/sweep/__init__.py)
    package = importlib.import_module(".sweep", __name__)
    return package if name == "sweep" else package.diff


_LAZY = ("optimize_for_inference", "load_weights", "sweep", "diff", "WeightsError")


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'secompile' has no attribute {name!r}")
    value = globals()[name] = _lazy(name)
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
