"""Reading checkpoints: the one reader behind ONNX export (`onnx.weights.load_state`) and
`secompile.load_weights` (`torch/weights.py`).

    state, where = read_checkpoint("run/last.pth")   # {key: tensor}, the name problems point at

A checkpoint is a `torch.save` file (loaded with weights_only), a `.safetensors` file or an
in-memory mapping. Training checkpoints wrap the weights ({"state_dict": ...} from timm and
Lightning, {"model": ...} ours, {"state_dict_ema": ...} timm's EMA weights); DataParallel and
torch.compile prefix every key (`module.`, `_orig_mod.`). Both are undone here. A file that is
missing or cannot be read is the user's input, not our bug: a SpecError located at the file.
Entries are returned as they are (tensors, arrays or anything else): each caller judges them.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from ..lang.errors import Mark, Problem, SpecError

WRAPPER_KEYS = ("state_dict", "model", "state_dict_ema")   # tried in this order
KEY_PREFIXES = ("module.", "_orig_mod.")                   # DataParallel / torch.compile


def _problem(where: str, message: str) -> SpecError:
    return SpecError([Problem(Mark(where, 1, 1), "<weights>", message)])


def _load_file(path: str):
    import torch
    try:
        if path.endswith(".safetensors"):
            return _load_safetensors(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise _problem(path, "no such checkpoint file") from None
    except SpecError:
        raise
    except Exception as e:  # unpickling refused or a corrupt file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _problem(path, f"cannot read the checkpoint: {msg}") from None


def _load_safetensors(path: str) -> dict:
    """A .safetensors file: its keys come sorted by name (the weight loaders pair by structure,
    not by the file's order). The package is optional: only these files need it."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise _problem(path, "reading .safetensors files needs the safetensors package "
                             "(pip install safetensors)") from None
    return load_file(path)


def _unwrap(obj, where: str) -> Mapping:
    """A bare state_dict, or a training checkpoint holding one (or a module) under WRAPPER_KEYS."""
    if not isinstance(obj, Mapping):
        raise _problem(where, f"a checkpoint is a state_dict (a mapping of tensors), not "
                              f"{type(obj).__name__}")
    for k in WRAPPER_KEYS:
        inner = obj.get(k)
        if hasattr(inner, "state_dict") and callable(inner.state_dict):   # a whole module was saved
            return inner.state_dict()
        if isinstance(inner, Mapping):
            return inner
    return obj


def strip_prefixes(state: Mapping) -> dict:
    keys = [k for k in state if isinstance(k, str)]
    for pre in KEY_PREFIXES:
        if keys and all(k.startswith(pre) for k in keys):
            state = {k[len(pre):]: v for k, v in state.items()}
            keys = list(state)
    return dict(state)


class WeightsError(SpecError, ValueError):
    """A checkpoint secompile cannot use, or (load_weights, strict) one that does not fit the
    model: a SpecError located at the checkpoint (`FILE:1:1: KEY: message`, exit 2 from the
    CLI), a ValueError for code that catches those. `report` is load_weights' report when the
    pairing was made, else None. Problems keep the message's line order (not sorted)."""

    def __init__(self, message: str, where: str = "<state_dict>", key: str = "<weights>",
                 report=None):
        self.report = report
        self.problems = [Problem(Mark(where, 1, 1), key, line.strip())
                         for line in str(message).splitlines() if line.strip()]
        Exception.__init__(self, str(message) if report is not None else str(self.problems[0]))


def unusable_tensor(t) -> str | None:
    """Why a tensor cannot be a network's weight (None when it can)."""
    if str(t.layout) != "torch.strided":
        return f"a sparse tensor ({t.layout})"
    if t.is_meta:
        return "a meta tensor (shape only, no values)"
    if t.is_quantized:
        return f"a quantised tensor ({t.dtype})"
    if t.is_complex() or str(t.dtype) == "torch.bool":
        return f"a {t.dtype} tensor"
    return None


def _check_entries(state: dict, where: str) -> None:
    """String keys and usable tensors: a state_dict's own rules, whoever reads it."""
    bad_key = next((k for k in state if not isinstance(k, str)), None)
    if bad_key is not None:
        raise WeightsError(f"checkpoint keys are strings (state_dict keys); found "
                           f"{type(bad_key).__name__} key {bad_key!r}", where)
    for key, value in state.items():
        why = unusable_tensor(value) if hasattr(value, "is_meta") else None
        if why:
            raise WeightsError(f"{why}: a state_dict holds dense tensors with values", where, key)


def read_checkpoint(source) -> tuple[dict, str]:
    """A checkpoint path or a mapping -> ({key: entry}, the file name problems point at).

    Raises SpecError (located at the file) for a missing, unreadable or non-mapping checkpoint,
    WeightsError (a SpecError) for non-string keys and tensors no network can hold (sparse,
    meta, quantised, complex, bool), TypeError for a source that is neither a path nor a
    mapping.
    """
    if isinstance(source, (str, os.PathLike)):
        where = os.fspath(source)
        obj = _load_file(where)
    elif isinstance(source, Mapping):
        where, obj = "<state_dict>", source
    else:
        raise TypeError(f"a checkpoint is a path or a mapping, not {type(source).__name__}")
    state = strip_prefixes(_unwrap(obj, where))
    _check_entries(state, where)
    return state, where
