"""Load pretrained state_dicts laid out like timm's SE-ResNet/SE-ResNeXt/SENet onto compiled specs.

    model = secompile.compile("specs/se_resnext50_tv.yaml")
    report = secompile.load_weights(model, "seresnext50_32x4d.pth")   # timm layout, detected
    print(report)

The layouts understood (the reference ones are listed in shared/reference/state_dicts/):

- timm ResNet (`seresnet18`, `seresnet50`, `seresnext50_32x4d`, `seresnext26d_32x4d`, any depth,
  basic or bottleneck blocks, 7x7 or deep "D" stem): `conv1` (or `conv1.{0,1,3,4,6}`), `bn1`,
  `layer{1-4}.{b}.{conv,bn}{k}`, `.se.fc{1,2}`, `.downsample.{0,1}` (`.{1,2}` after an average
  pool), `fc`;
- the ports of the reference Caffe weights (`legacy_seresnet50`, `legacy_seresnext50_32x4d`,
  `legacy_senet154`): `layer0.{conv,bn}{k}`, the same blocks with `.se_module.`, `last_linear`;
- layouts without such units (timm `efficientnet`, `mobilenetv3`, `regnet`, and the ResNets with
  ECA or Selective Kernel blocks, `ecaresnet50d`, `skresnet18`): paired module by module in graph
  order (weights_in_order.py), the first module that differs named on both sides.

Keys are not renamed by a table of names: both sides are cut into *slots* — (unit, role,
kind, index), e.g. (block 1.0, branch, conv, 2) — and paired slot by slot, so a spec may
name its layers as it likes. The source's unit comes from the key (`layer2.0` is block 0 of
stage 1), its role from the module name (`downsample` -> shortcut, `se`/`se_module` -> se),
its kind from what the module holds (running stats -> BN, 4-d weight -> conv, 2-d -> linear),
the index from the order of the names (`conv1` < `conv2`). On the compiled side the unit is the
`Unit` module, the role the first segment inside it, the index the order of the graph.

Weight shapes cannot tell the stride placements apart (a Caffe-layout checkpoint loads into a
torchvision-layout spec without a single shape error and then computes something else), so
the structure that each layout implies — which conv of a down-sampling block carries the
stride, how the stem's max pool pads and rounds, the kernel of strided shortcuts — is checked
against the model as well and reported like missing keys.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..checkpoint import read_checkpoint
from .codegen import Unit
from .weights_in_order import (
    SORTED_HINT,
    checkpoint_modules,
    model_modules,
    pair_in_order,
    sorted_by_name,
)

__all__ = ["load_weights", "map_state_dict", "detect_layout", "WeightsReport", "WeightsError",
           "LAYOUTS"]

# The published layouts: which spec of ours reproduces each one.
LAYOUTS = {
    "seresnet50": "specs/se_resnet50_tv.yaml",
    "seresnext50_32x4d": "specs/se_resnext50_tv.yaml",
    "legacy_seresnet50": "specs/se_resnet50.yaml",
    "legacy_seresnext50_32x4d": "specs/se_resnext50.yaml",
    "legacy_senet154": "specs/senet154.yaml",
    "seresnet18": "specs/seresnet18.yaml",
    "seresnet34": "specs/seresnet34.yaml",
    "seresnext26d_32x4d": "specs/seresnext26d_32x4d.yaml",
    "ecaresnet50d": "specs/ecaresnet50d.yaml",
    "skresnet18": "specs/skresnet18.yaml",
}
_BLOCK = re.compile(r"^layer([1-9]\d*)\.(\d+)\.(.+)$")
_BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class WeightsError(ValueError):
    """A checkpoint does not fit the model (strict mode); the message is the whole report."""

    def __init__(self, report: "WeightsReport"):
        super().__init__(str(report))
        self.report = report


@dataclass
class Facts:
    """What a layout's network computes beyond its weight shapes."""
    stride_conv: int | None       # index of the branch conv carrying a block's stride
    pool_padding: int             # stem max pool
    pool_ceil: bool
    shortcut_kernel: int          # kernel of a strided projection shortcut
    avg_down: bool = False        # strided shortcuts average-pool before a 1x1/1 conv (ResNet-D)


@dataclass
class WeightsReport:
    layout: str
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
        if self.structure and self.layout in LAYOUTS:
            lines.append(f"  the {self.layout} network is {LAYOUTS[self.layout]}")
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


# -- reading checkpoints -------------------------------------------------------------------
def _tensors(checkpoint) -> dict:
    """A path or a mapping -> a flat {key: tensor} state_dict (see checkpoint.read_checkpoint);
    entries that are not tensors (an epoch counter, an optimizer's name) are left out."""
    raw, _ = read_checkpoint(checkpoint)
    sd = {k: v for k, v in raw.items() if torch.is_tensor(v)}
    if not sd:
        raise ValueError("the checkpoint holds no tensors")
    return sd


def _unwrap(model: nn.Module) -> nn.Module:
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            return model


# -- layouts -------------------------------------------------------------------------------
def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _modules_of(sd: dict) -> dict:
    """Module prefix -> {entry: tensor}.

    E.g. 'layer1.0.bn1' -> {'weight': ..., 'running_mean': ...}.
    """
    mods: dict = {}
    for k, v in sd.items():
        prefix, _, entry = k.rpartition(".")
        mods.setdefault(prefix, {})[entry] = v
    return mods


def _kind(entries: dict) -> str | None:
    if "running_mean" in entries or "running_var" in entries:
        return "bn"
    w = entries.get("weight")
    if w is None:
        return None
    return {4: "conv", 2: "linear"}.get(w.dim())


def detect_layout(sd: dict) -> str:
    """Name the layout of a state_dict: 'seresnet50', 'seresnet18', 'seresnext26d_32x4d',
    'legacy_senet154', 'efficientnet', 'mobilenetv3', 'regnet', ..., or 'secompile'."""
    keys = set(sd)
    if any(k.startswith("stages.") for k in keys):
        return "secompile"
    if "conv_stem.weight" in keys and any(k.startswith("blocks.") for k in keys):
        # MobileNetV3's "efficient head" is a biased 1x1 conv on the pooled map, without BN
        return "mobilenetv3" if "conv_head.bias" in keys else "efficientnet"
    if "stem.conv.weight" in keys and any(k.startswith("s1.b1.") for k in keys):
        return "regnet"
    if "layer0.conv1.weight" in keys:
        family = "legacy"
    elif "conv1.weight" in keys or "conv1.0.weight" in keys:
        family = "timm"
    else:
        raise ValueError(
            "unknown checkpoint layout: expected timm ResNet keys (conv1.*, layer1.0.*, fc.*), "
            "legacy SENet keys (layer0.*, layer1.0.*, last_linear.*), timm EfficientNet/"
            "MobileNetV3 (conv_stem.*, blocks.*) or RegNet (stem.conv.*, s1.b1.*) keys, got e.g. "
            + ", ".join(sorted(keys)[:3]))
    blocks = {}
    for k in keys:
        m = _BLOCK.match(k)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    counts = [len(blocks[s]) for s in sorted(blocks)]
    if any(k.startswith("layer1.0.conv1.paths.") for k in keys):
        return f"skresnet{2 * sum(counts) + 2}"      # SelectiveKernelBasic: two weighted layers
    w1, w2 = sd.get("layer1.0.conv1.weight"), sd.get("layer1.0.conv2.weight")
    if w1 is None or w2 is None:
        raise ValueError(f"{family} layout without layer1.0.conv1/conv2 weights")
    basic = "layer1.0.conv3.weight" not in keys     # BasicBlock: two 3x3 convs, no conv3
    grouped = w1 if basic else w2
    groups = grouped.shape[0] // grouped.shape[1] if grouped.dim() == 4 and grouped.shape[1] else 1
    if any(k.endswith(".se.conv.weight") and sd[k].dim() == 3 for k in keys):
        attn = "eca"
    else:
        attn = "se" if any(".se." in k or ".se_module." in k for k in keys) else ""
    depth = (2 if basic else 3) * sum(counts) + 2
    deep = "d" if "conv1.0.weight" in keys else ""  # timm's "D" variants: deep stem + avg_down
    if family == "legacy" and "layer0.conv3.weight" in keys:
        return f"legacy_senet{depth + 2}"   # the three-conv stem counts two more layers
    if groups > 1:
        arch = f"{attn}resnext{depth}{deep}_{groups}x{w2.shape[0] // groups}d"
    else:
        arch = f"{attn}resnet{depth}{deep}"
    return f"legacy_{arch}" if family == "legacy" else arch


_IN_ORDER = ("efficientnet", "mobilenetv3", "regnet")


def _in_order(layout: str) -> bool:
    """Layouts paired module by module in graph order rather than by slots."""
    return layout in _IN_ORDER or layout.startswith(("eca", "sk"))


def _facts(layout: str, sd: dict) -> Facts | None:
    if layout.startswith("legacy_"):
        grouped = "resnext" in layout or "senet" in layout
        return Facts(stride_conv=1 if grouped else 0, pool_padding=0, pool_ceil=True,
                     shortcut_kernel=3 if "senet" in layout else 1)
    if layout == "secompile" or layout in _IN_ORDER or layout.startswith("sk"):
        return None
    # timm: always the first 3x3 (BasicBlock conv1, Bottleneck conv2)
    basic = "layer1.0.conv3.weight" not in sd
    return Facts(stride_conv=0 if basic else 1, pool_padding=1, pool_ceil=False, shortcut_kernel=1,
                 avg_down="conv1.0.weight" in sd)


def _source_slots(sd: dict, layout: str) -> tuple[dict, list]:
    """Cut a timm/legacy state_dict into slots -> (slot -> module prefix, unparsed keys)."""
    legacy = layout.startswith("legacy_")
    slots, unparsed, by_group = {}, [], {}
    for prefix, entries in _modules_of(sd).items():
        kind = _kind(entries)
        m = _BLOCK.match(prefix)
        unit = role = None
        if m and kind:
            unit = f"stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}"
            inner = m.group(3)
            head = inner.split(".", 1)[0]
            role = {"downsample": "shortcut", "se": "se", "se_module": "se"}.get(head, "branch")
        elif kind and legacy and prefix.startswith("layer0."):
            unit, role = "stem", "stem"
        elif kind and not legacy and prefix.split(".", 1)[0] in ("conv1", "bn1"):
            unit, role = "stem", "stem"     # 7x7: conv1, bn1; deep: conv1.{0,1,3,4,6}, bn1
        elif kind == "linear" and prefix == ("last_linear" if legacy else "fc"):
            unit, role = "head", "head"
        if unit is None:
            unparsed.extend(f"{prefix}.{e}" for e in entries)
            continue
        by_group.setdefault((unit, role, kind), []).append(prefix)
    for (unit, role, kind), prefixes in by_group.items():
        for i, p in enumerate(sorted(prefixes, key=_stem_last_bn if unit == "stem" else _natural)):
            slots[(unit, role, kind, i)] = p
    return slots, unparsed


def _stem_last_bn(prefix: str):
    """A deep stem's last BN (`bn1`) follows the BNs inside `conv1` (`conv1.1`, `conv1.4`)."""
    return (prefix == "bn1", _natural(prefix))


def _in_se(name: str) -> bool:
    """Whether a module path lies inside an SE scope.

    SE scopes: se, se_pre, se_post, se_identity, <node>_se.
    """
    return any(s == "se" or s.startswith("se_") or s.endswith("_se") for s in name.split(".")[:-1])


_KINDS = ((nn.Conv2d, "conv"), (nn.modules.batchnorm._BatchNorm, "bn"), (nn.Linear, "linear"))


def _model_slots(model: nn.Module) -> dict:
    """Cut a compiled model into slots -> module name (the graph's order gives the index)."""
    slots, counters = {}, {}
    for uname, unit in model.named_modules():
        if not isinstance(unit, Unit):
            continue
        upath = unit.path
        for name, mod in unit.named_modules():
            kind = next((k for cls, k in _KINDS if isinstance(mod, cls)), None)
            if kind is None or not name:
                continue
            first = name.split(".", 1)[0]
            if _in_se(name):
                role = "se"
            elif upath in ("stem", "head"):
                role = upath
            else:
                role = first
            key = (upath, role, kind)
            i = counters[key] = counters.get(key, -1) + 1
            slots[key + (i,)] = f"{uname}.{name}"
    return slots


def map_state_dict(model: nn.Module, checkpoint,
                   source: str = "timm") -> tuple[dict, WeightsReport]:
    """-> (state_dict keyed like `model`, report); nothing is loaded."""
    model = _unwrap(model)
    sd = _tensors(checkpoint)
    layout = detect_layout(sd)
    if source not in ("timm", layout):
        raise ValueError(f"the checkpoint is laid out like {layout!r}, not {source!r}")
    report = WeightsReport(layout)
    target = model.state_dict()
    if layout == "secompile":
        pairs = [(k, k) for k in sd if k in target]
        report.unexpected = [k for k in sd if k not in target]
    elif _in_order(layout):
        src_mods = checkpoint_modules(sd)
        module_pairs, difference, n = pair_in_order(src_mods, model_modules(model))
        pairs = [(f"{s.name}.{e}", f"{d.name}.{e}") for s, d in module_pairs for e in s.shapes]
        report.unexpected = [f"{s.name}.{e}" for s in src_mods[n:] for e in s.shapes]
        report.structure = [difference] if difference else []
        if difference and sorted_by_name(src_mods):
            report.structure.append(SORTED_HINT)
        report.structure += _check_structure(model, _facts(layout, sd), layout)
    else:
        src_slots, report.unexpected = _source_slots(sd, layout)
        dst_slots = _model_slots(model)
        pairs = []
        for slot, src in src_slots.items():
            dst = dst_slots.get(slot)
            entries = [e for e in _BN_ENTRIES if f"{src}.{e}" in sd]
            if dst is None:
                report.unexpected.extend(f"{src}.{e}" for e in entries)
                continue
            pairs.extend((f"{src}.{e}", f"{dst}.{e}") for e in entries)
        report.structure = (_depth_differences(sd, model, layout)
                            + _check_structure(model, _facts(layout, sd), layout))
    mapped, filled = {}, set()
    for s, d in pairs:
        if d not in target:
            report.unexpected.append(s)
        elif tuple(sd[s].shape) != tuple(target[d].shape):
            report.mismatched.append((s, d, tuple(sd[s].shape), tuple(target[d].shape)))
            filled.add(d)
        else:
            mapped[d] = sd[s]
            report.loaded.append((s, d))
            filled.add(d)
    for d in target:
        if d not in filled:
            (report.defaulted if d.endswith(".num_batches_tracked") else report.missing).append(d)
    report.unexpected.sort(key=_natural)
    return mapped, report


_UNIT = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)$")


def _depth_differences(sd: dict, model: nn.Module, layout: str) -> list[str]:
    """Stages whose block count differs between the checkpoint (`layer{s}.{b}`) and the model
    (e.g. seresnet18's 2-2-2-2 into seresnet34's 3-4-6-3), named before the keys they leave over."""
    ours, theirs = {}, {}
    for unit in model.modules():
        m = _UNIT.match(getattr(unit, "path", "")) if isinstance(unit, Unit) else None
        if m:
            ours.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    for k in sd:
        m = _BLOCK.match(k)
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


def _check_structure(model: nn.Module, facts: Facts | None, layout: str) -> list[str]:
    if facts is None:
        return []
    out = []
    for unit in model.modules():
        if not isinstance(unit, Unit):
            continue
        if unit.path == "stem":
            pools = [m for m in unit.modules() if isinstance(m, nn.MaxPool2d)]
            for p in pools:
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
                 if isinstance(m, nn.Conv2d) and not _in_se(n + ".x")]
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
            for c in (m for m in shortcut.modules() if isinstance(m, nn.Conv2d)):
                if max(c.stride) > 1 and c.kernel_size[0] != facts.shortcut_kernel:
                    out.append(f"{unit.path}: strided shortcut conv is "
                               f"{c.kernel_size[0]}x{c.kernel_size[1]}; "
                               f"{layout} uses {facts.shortcut_kernel}x{facts.shortcut_kernel}")
            mods = list(shortcut.modules())
            pooled = any(isinstance(m, nn.AvgPool2d) and _stride_of(m) > 1 for m in mods)
            if any(isinstance(m, nn.Conv2d) for m in mods) and pooled != facts.avg_down:
                how = (f"average-pools before its conv; {layout} strides the 1x1 conv"
                       if pooled else f"strides its conv; {layout} average-pools (2x2, ceil) "
                       "before a 1x1/1 conv")
                out.append(f"{unit.path}: the strided shortcut {how}")
    return out


def _stride_of(m: nn.Module) -> int:
    s = m.stride
    return max(s) if isinstance(s, (tuple, list)) else int(s)


def load_weights(model: nn.Module, checkpoint, source: str = "timm",
                 strict: bool = True) -> WeightsReport:
    """Load a timm/legacy (or secompile) state_dict into a compiled model; -> the report.

    `checkpoint` is a path (torch.save file, or .safetensors) or a dict. `source` is "timm" (the
    layout is detected from the keys) or the exact layout name expected ("legacy_seresnet50",
    ..., or "secompile" for checkpoints of compiled models). With `strict`, any missing or
    unexpected key, shape mismatch or structure difference raises WeightsError carrying the
    report, and nothing is loaded; otherwise every tensor that fits is loaded.
    """
    mapped, report = map_state_dict(model, checkpoint, source)
    if strict and not report.ok:
        raise WeightsError(report)
    with torch.no_grad():
        _unwrap(model).load_state_dict(mapped, strict=False)
    return report
