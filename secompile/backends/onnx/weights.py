"""Weights for the ONNX backend: where they come from, whether they fit the IR, BN folding.

The IR alone says which tensors a network has and their shapes (`expected_state`), so a
checkpoint is checked against the spec, not against a second model built to compare with.
Keys are the torch backend's `state_dict` keys: node path + `.weight` / `.bias` /
`.running_mean` / `.running_var`. Tensors arrive as float32 numpy arrays, which is all
the lowering needs; torch is imported only to read a checkpoint or initialise weights.
Checkpoint files are read by `checkpoint.read_checkpoint`, shared with `torch/weights.py`.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from ...ir.graph import Graph
from ...ir.ops import BN_WEIGHTS, OPS
from ...lang.errors import Mark, Problem, SpecError
from ...passes.fold_bn import fold as fold_arrays
from ...passes.fold_bn import foldable_bn as foldable  # noqa: F401 (the rule lives in passes/)
from ..checkpoint import read_checkpoint, strip_prefixes

BN_STATS = tuple(w.name for w in BN_WEIGHTS if w.inference)   # weight, bias, running mean/var
# num_batches_tracked, a BN training counter: accepted in a checkpoint, never exported
OPTIONAL = tuple(w.name for w in BN_WEIGHTS if not w.inference)


def expected_state(g: Graph) -> dict[str, tuple]:
    """key -> shape of every tensor the network needs at inference, in IR order (the registry's
    weight declarations: ops.OPS[op].weights)."""
    out: dict[str, tuple] = {}
    for p, d in g.nodes():
        ins = [g.shape(i) for i in d["inputs"]]
        for name, shape in OPS[d["op"]].tensors(d["attrs"], ins, inference=True).items():
            out[f"{p}.{name}"] = shape
    return out


def _fmt(shape) -> str:
    return "x".join(map(str, shape)) if len(shape) else "scalar"


def _raw_state(weights, g: Graph, seed: int | None):
    """-> (mapping key -> tensor-like, the file name problems point at)."""
    if weights is None:
        from ..torch.codegen import lower
        return lower(g, seed=seed).state_dict(), "<init>"
    if hasattr(weights, "state_dict") and callable(weights.state_dict):   # an nn.Module
        return strip_prefixes(weights.state_dict()), "<module>"
    if isinstance(weights, (str, os.PathLike, Mapping)):
        return read_checkpoint(weights)
    raise TypeError(f"weights are an nn.Module, a state_dict or a checkpoint path, not "
                    f"{type(weights).__name__}")


def _array(v) -> np.ndarray | None:
    if hasattr(v, "detach"):                    # a torch tensor
        v = v.detach().cpu()
        return None if v.is_complex() or str(v.dtype) == "torch.bool" else v.float().numpy()
    if isinstance(v, np.ndarray) and v.dtype.kind in "fiu":  # numpy state_dicts work too
        return v
    return None


def load_state(weights, g: Graph, seed: int | None = 0) -> dict[str, np.ndarray]:
    """Resolve `weights` (None, module, state_dict, checkpoint path) to key -> float32 array.

    Raises SpecError naming the first key that is missing, unexpected or of the wrong shape
    (in IR order, then the checkpoint's order), with both shapes.
    """
    state, where = _raw_state(weights, g, seed)
    want = expected_state(g)
    bad: list[tuple[str, str]] = []   # (key, what is wrong with it)
    out: dict[str, np.ndarray] = {}
    for key, shape in want.items():
        if key not in state:
            bad.append((key, f"missing from the checkpoint (the model expects {_fmt(shape)})"))
            continue
        arr = _array(state[key])
        if arr is None:
            bad.append((key, f"{type(state[key]).__name__} in the checkpoint, a {_fmt(shape)} "
                             "float tensor in the model"))
        elif tuple(arr.shape) != shape:
            bad.append((key, f"shape {_fmt(arr.shape)} in the checkpoint, "
                             f"{_fmt(shape)} in the model"))
        else:
            out[key] = np.ascontiguousarray(arr, dtype=np.float32)
    for key, v in state.items():
        if key not in want and not (isinstance(key, str) and key.rsplit(".", 1)[-1] in OPTIONAL
                                    and key.rsplit(".", 1)[0] + ".running_mean" in want):
            shape = getattr(v, "shape", None)
            what = f"shape {_fmt(tuple(shape))}" if shape is not None else type(v).__name__
            bad.append((key, f"in the checkpoint ({what}) but not in the model"))
    if bad:
        more = (f" (and {len(bad) - 1} more mismatching key{'s' if len(bad) > 2 else ''})"
                if len(bad) > 1 else "")
        key, msg = bad[0]
        raise SpecError([Problem(Mark(where, 1, 1), key, msg + more)])
    return out


def fold(state: dict[str, np.ndarray], g: Graph, bn: str,
         conv: str) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias of `conv` with `bn` applied (passes.fold_bn.fold, in float64), float32."""
    gamma, beta, mean, var = (state[f"{bn}.{k}"].astype(np.float64) for k in BN_STATS)
    b = state.get(f"{conv}.bias")
    w, b = fold_arrays(state[f"{conv}.weight"].astype(np.float64),
                       np.zeros_like(mean) if b is None else b.astype(np.float64),
                       gamma, beta, mean, var, g.node(bn)["attrs"]["eps"])
    return w.astype(np.float32), b.astype(np.float32)
