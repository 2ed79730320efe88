"""Load pretrained state_dicts of any layout onto compiled specs, all or nothing.

    model = secompile.compile("seresnext26d_32x4d")
    report = secompile.load_weights(model, "seresnext26d_32x4d.safetensors")   # timm's keys
    print(report)

The checkpoint's layout is detected (`layouts.Layout`): a compiled model's own keys are paired
by name, timm's ResNets and the Caffe SENet ports by slots (weights_resnet.py), and every other
layout by structure — modules paired by kind and shape in the checkpoint's order or by its
module tree (weights_in_order.py), so timm's EfficientNet, MobileNetV3, RegNet, ReXNet,
ResNeSt, ByobNet... load without a table per model. `remap=` (a dict or a callable: checkpoint
key -> model key) pairs what a user knows better; the rest is paired as above.

Every tensor is checked before any is copied: string keys, dense CPU/CUDA tensors (not sparse,
quantised or meta), a dtype that converts to the model's (floating weights need floating
tensors), equal shapes. Anything wrong raises `WeightsError` (a SpecError located at the
checkpoint: exit 2 from the CLI) and the model is left as it was. With `strict=False` the
tensors that fit are loaded and the report lists the rest; unusable tensors still refuse.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn

from ..checkpoint import WeightsError, read_checkpoint
from .layouts import LAYOUTS, Facts, Layout, detect_layout
from .weights_in_order import checkpoint_modules, model_modules, pair_by_structure
from .weights_resnet import (
    BN_ENTRIES,
    check_structure,
    depth_differences,
    model_slots,
    natural,
    source_slots,
)

__all__ = ["load_weights", "map_state_dict", "detect_layout", "WeightsReport", "WeightsError",
           "Layout", "Facts", "LAYOUTS"]


@dataclass
class WeightsReport:
    layout: Layout
    loaded: list = field(default_factory=list)        # (source key, model key)
    missing: list = field(default_factory=list)       # model keys no source key filled
    unexpected: list = field(default_factory=list)    # source keys that map to nothing
    # (source key, model key, source shape, model shape)
    mismatched: list = field(default_factory=list)
    # how the model differs from the layout's network
    structure: list = field(default_factory=list)
    # model BN counters absent from old checkpoints
    defaulted: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.structure)

    def __str__(self) -> str:
        lines = [f"weights ({self.layout} layout): {len(self.loaded)} tensors loaded, "
                 f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                 f"{len(self.mismatched)} shape mismatches"
                 + (f", {len(self.structure)} structure differences" if self.structure else "")]

        def section(title, items, fmt, limit=12):
            if items:
                lines.append(f"  {title}:")
                lines.extend(f"    {fmt(i)}" for i in items[:limit])
                if len(items) > limit:
                    lines.append(f"    ... and {len(items) - limit} more")
        section("structure (the model would compute something else)", self.structure, str)
        if self.structure and self.layout.spec:
            lines.append(f"  the {self.layout} network is {self.layout.spec}")
        section("shape mismatches", self.mismatched,
                lambda m: f"{m[0]} {_fmt_shape(m[2])} -> {m[1]} {_fmt_shape(m[3])}")
        section("missing (in the model, not in the checkpoint)", self.missing, str)
        section("unexpected (in the checkpoint, not in the model)", self.unexpected, str)
        if self.defaulted:
            lines.append(f"  {len(self.defaulted)} BN num_batches_tracked counters kept "
                         "(not in the checkpoint)")
        return "\n".join(lines)


def _fmt_shape(s) -> str:
    return "x".join(map(str, s)) if len(s) else "scalar"


# -- reading and checking checkpoints --------------------------------------------------------
def _tensors(checkpoint) -> tuple[dict, str]:
    """A path or a mapping -> ({key: tensor}, where): entries that are not tensors (an epoch
    counter, an optimizer's name) are left out; non-string keys and tensors no model can hold
    were refused by read_checkpoint, before anything is paired."""
    raw, where = read_checkpoint(checkpoint)
    sd = {k: v for k, v in raw.items() if torch.is_tensor(v)}
    if not sd:
        what = ", ".join(sorted({type(v).__name__ for v in raw.values()})) or "nothing"
        raise WeightsError(f"the checkpoint holds no tensors ({len(raw)} entries: {what})", where)
    return sd, where


def _converted(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor | None:
    """`src` as the model's tensor needs it (dtype, device), or None if it does not convert:
    a floating weight from an integer tensor would be a silent truncation of someone's
    mistake, an integer counter from a float one likewise."""
    if dst.is_floating_point() != src.is_floating_point():
        return None
    if dst.is_meta:             # a model built on the meta device: shapes only
        return src
    return src.detach().to(device=dst.device, dtype=dst.dtype, copy=True)


def _unwrap(model: nn.Module) -> nn.Module:
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


def _remapped(sd: dict, target: dict, remap, where: str) -> dict:
    """checkpoint key -> model key for the keys `remap` names (a dict, or a callable returning
    the model key or None to leave the key to the pairing)."""
    if remap is None:
        return {}
    if not (callable(remap) or hasattr(remap, "get")):
        raise TypeError(f"remap is a dict or a callable, not {type(remap).__name__}")
    get = remap if callable(remap) else remap.get
    out = {}
    for key in sd:
        dst = get(key)
        if dst is None:
            continue
        if dst not in target:
            raise WeightsError(f"remap sends it to {dst!r}, which is not a key of the model",
                               where, key)
        out[key] = dst
    if not callable(remap):
        stray = [k for k in remap if k not in sd]
        if stray:
            raise WeightsError("remap names it, but the checkpoint has no such key", where,
                               str(stray[0]))
    return out


# -- pairing -----------------------------------------------------------------------------------
def map_state_dict(model: nn.Module, checkpoint, source: str = "timm",
                   remap=None) -> tuple[dict, WeightsReport]:
    """-> (state_dict keyed like `model`, converted to its dtypes, report); nothing is loaded.

    Raises WeightsError for a checkpoint no model can use (see the module docstring)."""
    model = _unwrap(model)
    sd, where = _tensors(checkpoint)
    target = model.state_dict()
    explicit = _remapped(sd, target, remap, where)
    rest = {k: v for k, v in sd.items() if k not in explicit}
    filled_otherwise = frozenset(explicit.values())
    layout = detect_layout(rest, set(target)) if rest else Layout("remap", "names")
    if source == "secompile":
        layout = Layout("secompile", "names")
    elif source not in ("timm", "auto", layout.name):
        raise WeightsError(f"the checkpoint is laid out like {layout.name!r}, not {source!r}",
                           where)
    report = WeightsReport(layout)
    pairs = list(explicit.items())
    if layout.pairing == "names":
        pairs += [(k, k) for k in rest if k in target and k not in filled_otherwise]
        report.unexpected = [k for k in rest if k not in target or k in filled_otherwise]
    elif layout.pairing == "structure":
        src_mods = checkpoint_modules(rest)
        module_pairs, difference, n = pair_by_structure(
            src_mods, model_modules(model, filled_otherwise))
        pairs += [(f"{s.name}.{e}", f"{d.name}.{e}") for s, d in module_pairs for e in s.shapes]
        paired = {s.name for s, _ in module_pairs}
        report.unexpected = [f"{s.name}.{e}" for s in src_mods if s.name not in paired
                             for e in s.shapes]
        report.structure = [difference] if difference else []
        report.structure += check_structure(model, layout)
    else:
        src_slots, report.unexpected = source_slots(rest, layout)
        dst_slots = model_slots(model, filled_otherwise)
        for slot, src in src_slots.items():
            dst = dst_slots.get(slot)
            entries = [e for e in BN_ENTRIES if f"{src}.{e}" in rest]
            if dst is None:
                report.unexpected.extend(f"{src}.{e}" for e in entries)
                continue
            pairs.extend((f"{src}.{e}", f"{dst}.{e}") for e in entries)
        report.structure = depth_differences(rest, model, layout) + check_structure(model, layout)
    mapped = _check_pairs(pairs, sd, target, report, where)
    report.unexpected.sort(key=natural)
    return mapped, report


def _check_pairs(pairs, sd, target, report, where) -> dict:
    """Verify every pair (the model key exists, shapes equal, the dtype converts) and convert;
    a tensor that cannot convert refuses the whole checkpoint."""
    mapped, filled = {}, set()
    for s, d in pairs:
        if d not in target:
            report.unexpected.append(s)
            continue
        filled.add(d)
        if tuple(sd[s].shape) != tuple(target[d].shape):
            report.mismatched.append((s, d, tuple(sd[s].shape), tuple(target[d].shape)))
            continue
        value = _converted(sd[s], target[d])
        if value is None:
            raise WeightsError(f"a {sd[s].dtype} tensor for model tensor {d} "
                               f"({target[d].dtype}): it does not convert without loss of "
                               "meaning", where, s)
        mapped[d] = value
        report.loaded.append((s, d))
    for d in target:
        if d not in filled:
            (report.defaulted if d.endswith(".num_batches_tracked") else report.missing).append(d)
    return mapped


def load_weights(model: nn.Module, checkpoint, source: str = "timm", strict: bool = True,
                 remap=None) -> WeightsReport:
    """Load a checkpoint of any layout into a compiled model; -> the report.

    `checkpoint` is a path (torch.save file or .safetensors) or a mapping. `source` is "timm"
    (the layout is detected from the keys), the layout name expected ("legacy_seresnet50",
    "efficientnet", ...) or "secompile" (pair by our own key names). `remap` (dict or callable,
    checkpoint key -> model key) pairs keys by hand; the rest is paired by the layout. With
    `strict`, any missing or unexpected key, shape mismatch or structure difference raises
    WeightsError carrying the report; otherwise every tensor that fits is loaded. Either way
    every tensor is checked and converted before the first is copied: on any error the model
    is unchanged.
    """
    mapped, report = map_state_dict(model, checkpoint, source, remap)
    if strict and not report.ok:
        raise WeightsError(str(report), _where(checkpoint), report=report)
    with torch.no_grad():
        _unwrap(model).load_state_dict(mapped, strict=False)
    return report


def _where(checkpoint) -> str:
    return os.fspath(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "<state_dict>"
