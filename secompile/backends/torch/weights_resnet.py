"""ResNet layouts (timm's `layer{s}.{b}` units, the Caffe SENet ports) cut into slots.

Keys are not renamed by a table of names: both sides are cut into *slots* — (unit, role,
kind, index), e.g. (block 1.0, branch, conv, 2) — and paired slot by slot, so a spec may
name its layers as it likes and a checkpoint of another depth still loads what fits. The
source's unit comes from the key (`layer2.0` is block 0 of stage 1), its role from the module
name (`downsample` -> shortcut, `se`/`se_module` -> se), its kind from what the module holds
(running stats -> BN, 4-d weight -> conv, 2-d -> linear), the index from the order of the names
(`conv1` < `conv2`). On the compiled side the unit is the `Unit` module, the role the first
segment inside it (or "se" inside an attention module the graph recorded), the index the order
of the graph.

Weight shapes cannot tell the stride placements apart (a Caffe-layout checkpoint loads into a
torchvision-layout spec without a single shape error and then computes something else), so
the structure that each layout implies (`layouts.Facts`) is checked against the model as well
and reported like missing keys.
"""
from __future__ import annotations

import re

from torch import nn

from .codegen import Unit
from .layouts import BLOCK_KEY, Facts, Layout
from .weights_in_order import group_modules

BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_UNIT = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)$")


def natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def source_slots(sd: dict, layout: Layout) -> tuple[dict, list]:
    """Cut a timm/legacy state_dict into slots -> (slot -> module prefix, unparsed keys)."""
    legacy = layout.family == "legacy_senet"
    slots, unparsed, by_group = {}, [], {}
    for mod in group_modules((k, v.shape) for k, v in sd.items()):
        prefix, kind = mod.name, mod.kind if mod.kind in ("conv", "bn", "linear") else None
        m = BLOCK_KEY.match(prefix)
        unit = role = None
        if m and kind:
            unit = f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}"
            head = m.group(3).split(".", 1)[0]
            role = {"downsample": "shortcut", "se": "se", "se_module": "se"}.get(head, "branch")
        elif kind and legacy and prefix.startswith("layer0."):
            unit, role = "stem", "stem"
        elif kind and not legacy and prefix.split(".", 1)[0] in ("conv1", "bn1"):
            unit, role = "stem", "stem"     # 7x7: conv1, bn1; deep: conv1.{0,1,3,4,6}, bn1
        elif kind == "linear" and prefix == ("last_linear" if legacy else "fc"):
            unit, role = "head", "head"
        if unit is None:
            unparsed.extend(f"{prefix}.{e}" for e in mod.shapes)
            continue
        by_group.setdefault((unit, role, kind), []).append(prefix)
    for (unit, role, kind), prefixes in by_group.items():
        for i, p in enumerate(sorted(prefixes, key=_stem_last_bn if unit == "stem" else natural)):
            slots[(unit, role, kind, i)] = p
    return slots, unparsed


def _stem_last_bn(prefix: str):
    """A deep stem's last BN (`bn1`) follows the BNs inside `conv1` (`conv1.1`, `conv1.4`)."""
    return (prefix == "bn1", natural(prefix))


def attention_scopes(model: nn.Module) -> set[str]:
    """The scopes of the attention modules the model's graph recorded (SE rules and attention
    templates alike); module paths are node paths."""
    g = getattr(model, "graph", None)
    records = getattr(g, "attention", None)
    if records is not None:
        return {getattr(r, "scope", r) for r in records}
    return set(getattr(g, "se", {}) or {})


def in_scopes(path: str, scopes: set[str]) -> bool:
    parts = path.split(".")
    return any(".".join(parts[:i]) in scopes for i in range(1, len(parts)))


_KINDS = ((nn.Conv2d, "conv"), (nn.modules.batchnorm._BatchNorm, "bn"), (nn.Linear, "linear"))


def model_slots(model: nn.Module, skip: frozenset = frozenset()) -> dict:
    """Cut a compiled model into slots -> module name (the graph's order gives the index)."""
    slots, counters = {}, {}
    scopes = attention_scopes(model)
    for uname, unit in model.named_modules():
        if not isinstance(unit, Unit):
            continue
        upath = unit.path
        for name, mod in unit.named_modules():
            kind = next((k for cls, k in _KINDS if isinstance(mod, cls)), None)
            if kind is None or not name or f"{uname}.{name}.weight" in skip:
                continue
            if in_scopes(f"{uname}.{name}", scopes):
                role = "se"
            elif upath in ("stem", "head"):
                role = upath
            else:
                role = name.split(".", 1)[0]
            key = (upath, role, kind)
            i = counters[key] = counters.get(key, -1) + 1
            slots[key + (i,)] = f"{uname}.{name}"
    return slots


def depth_differences(sd: dict, model: nn.Module, layout: Layout) -> list[str]:
    """Stages whose block count differs between the checkpoint (`layer{s}.{b}`) and the model
    (e.g. seresnet18's 2-2-2-2 into seresnet34's 3-4-6-3), named before the keys they leave over."""
    ours, theirs = {}, {}
    for unit in model.modules():
        m = _UNIT.match(getattr(unit, "path", "")) if isinstance(unit, Unit) else None
        if m:
            ours.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    for k in sd:
        m = BLOCK_KEY.match(k)
        if m:
            theirs.setdefault(int(m.group(1)) - 1, set()).add(int(m.group(2)))
    count = {side: [len(blocks.get(s, ())) for s in range(max(ours) + 1 if ours else 0)]
             for side, blocks in (("ours", ours), ("theirs", theirs))}
    if max(theirs, default=-1) >= len(count["ours"]):
        count["theirs"] = [len(theirs.get(s, ())) for s in range(max(theirs) + 1)]
    if count["ours"] == count["theirs"]:
        return []
    return [f"blocks per stage: the model has {'-'.join(map(str, count['ours']))}, the {layout} "
            f"checkpoint {'-'.join(map(str, count['theirs']))} (layer1.*, layer2.*, ...)"]


def check_structure(model: nn.Module, layout: Layout) -> list[str]:
    """How the model's network differs from the one the layout's facts describe."""
    facts: Facts | None = layout.facts
    if facts is None or layout.attention == "sk":
        return []
    scopes = attention_scopes(model)
    out = []
    for uname, unit in model.named_modules():
        if not isinstance(unit, Unit):
            continue
        if unit.path == "stem":
            for p in (m for m in unit.modules() if isinstance(m, nn.MaxPool2d)):
                pad = p.padding if isinstance(p.padding, int) else p.padding[0]
                if pad != facts.pool_padding or bool(p.ceil_mode) != facts.pool_ceil:
                    out.append(f"stem max pool: padding {pad}, "
                               f"rounding {'up' if p.ceil_mode else 'down'}; "
                               f"{layout} pads by {facts.pool_padding} and rounds "
                               f"{'up' if facts.pool_ceil else 'down'}")
        branch = getattr(unit, "branch", None)
        if branch is None:
            continue
        convs = [m for n, m in branch.named_modules()
                 if isinstance(m, nn.Conv2d) and not in_scopes(f"{uname}.branch.{n}", scopes)]
        strided = [i for i, c in enumerate(convs) if max(c.stride) > 1]
        out.extend(f"{unit.path}: branch conv {i + 1} ({c.kernel_size[0]}x{c.kernel_size[1]}) is "
                   f"dilated {max(c.dilation)}; {layout} has no dilated convs"
                   for i, c in enumerate(convs) if max(c.dilation) > 1)
        if facts.stride_conv is not None and strided and strided != [facts.stride_conv]:
            at = ", ".join(f"conv {i + 1} ({convs[i].kernel_size[0]}x{convs[i].kernel_size[1]})"
                           for i in strided)
            want = convs[facts.stride_conv] if facts.stride_conv < len(convs) else None
            out.append(f"{unit.path}: the stride sits on branch {at}; {layout} puts it on conv "
                       f"{facts.stride_conv + 1}"
                       + (f" ({want.kernel_size[0]}x{want.kernel_size[1]})" if want else ""))
        shortcut = getattr(unit, "shortcut", None)
        if strided and shortcut is not None:
            out.extend(_shortcut_differences(unit.path, shortcut, facts, layout))
    return out


def _shortcut_differences(path: str, shortcut: nn.Module, facts: Facts, layout) -> list[str]:
    out = []
    for c in (m for m in shortcut.modules() if isinstance(m, nn.Conv2d)):
        if max(c.stride) > 1 and c.kernel_size[0] != facts.shortcut_kernel:
            out.append(f"{path}: strided shortcut conv is {c.kernel_size[0]}x{c.kernel_size[1]}; "
                       f"{layout} uses {facts.shortcut_kernel}x{facts.shortcut_kernel}")
    mods = list(shortcut.modules())
    pooled = any(isinstance(m, nn.AvgPool2d) and _stride_of(m) > 1 for m in mods)
    if any(isinstance(m, nn.Conv2d) for m in mods) and pooled != facts.avg_down:
        how = (f"average-pools before its conv; {layout} strides the 1x1 conv" if pooled else
               f"strides its conv; {layout} average-pools (2x2, ceil) before a 1x1/1 conv")
        out.append(f"{path}: the strided shortcut {how}")
    return out


def _stride_of(m: nn.Module) -> int:
    s = m.stride
    return max(s) if isinstance(s, (tuple, list)) else int(s)
