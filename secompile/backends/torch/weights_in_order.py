"""Pair a checkpoint's modules with a compiled model's in graph order (layouts without slots).

timm's EfficientNet, MobileNetV3, RegNet, ECA-ResNet and SK-ResNet state_dicts have no
ResNet-style `layer{s}.{b}` units that could be cut into slots, but their modules are
registered in the order they run, which is the order of our graph (SE and attention modules
inside a block, the shortcut after the branch). So both sides are cut into *weighted
modules* — conv (4-d weight), conv1d (3-d), linear (2-d), BN (running statistics) — kept in
their order, and the i-th is paired with the i-th after checking that kind, entries and
shapes agree. The first module that disagrees ends the pairing: everything after it would be
paired by luck, so the report names that module on both sides and counts the rest as
missing / unexpected.

The rule needs the order in which the network saved its tensors (`torch.save` of a
state_dict keeps it). `.safetensors` files store their keys sorted by name, which loses it:
such a checkpoint is refused with a hint (load it into the timm model and pass its
`state_dict()`), never paired by guesswork.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_KINDS = ((nn.Conv2d, "conv"), (nn.Conv1d, "conv1d"), (nn.modules.batchnorm._BatchNorm, "bn"),
          (nn.Linear, "linear"))


@dataclass
class Module:
    name: str
    kind: str | None
    shapes: dict          # entry -> shape (tuple)

    def describe(self) -> str:
        w = self.shapes.get("weight")
        shape = "x".join(map(str, w)) if w is not None else "-"
        bias = "" if self.kind == "bn" else (" + bias" if "bias" in self.shapes else ", no bias")
        return f"{self.name} ({self.kind or 'unknown'} {shape}{bias})"


def _kind_of_entries(shapes: dict) -> str | None:
    if "running_mean" in shapes or "running_var" in shapes:
        return "bn"
    w = shapes.get("weight")
    return None if w is None else {4: "conv", 3: "conv1d", 2: "linear"}.get(len(w))


def checkpoint_modules(sd: dict) -> list[Module]:
    """The checkpoint's modules, in the order of their first entry."""
    mods: dict[str, dict] = {}
    for key, value in sd.items():
        prefix, _, entry = key.rpartition(".")
        mods.setdefault(prefix, {})[entry] = tuple(value.shape)
    return [Module(p, _kind_of_entries(s), s) for p, s in mods.items()]


def model_modules(model: nn.Module) -> list[Module]:
    """The compiled model's weighted modules, in state_dict (= graph) order."""
    target = model.state_dict()
    by_name = dict(model.named_modules())
    out, seen = [], set()
    for key in target:
        prefix, _, _ = key.rpartition(".")
        if prefix in seen:
            continue
        seen.add(prefix)
        kind = next((k for cls, k in _KINDS if isinstance(by_name.get(prefix), cls)), None)
        shapes = {e: tuple(target[f"{prefix}.{e}"].shape)
                  for e in _ENTRIES if f"{prefix}.{e}" in target}
        out.append(Module(prefix, kind, shapes))
    return out


def _difference(src: Module, dst: Module) -> str | None:
    if src.kind != dst.kind:
        return "a different kind of module"
    if src.kind == "bn":
        same = all(src.shapes.get(e) == dst.shapes.get(e) for e in ("weight", "running_mean"))
        return None if same else "a different width"
    if ("bias" in src.shapes) != ("bias" in dst.shapes):
        return "bias on one side only"
    return None if src.shapes == dst.shapes else "different weight shapes"


def sorted_by_name(src: list[Module]) -> bool:
    """Whether the modules come in alphabetical order (a .safetensors file), not in run order."""
    names = [m.name for m in src]
    return len(names) > 2 and names == sorted(names)


SORTED_HINT = ("the checkpoint's keys are in alphabetical order (as .safetensors files store "
               "them), not in the order the network runs its modules, which pairing in graph "
               "order needs: load the file into the timm model and pass its state_dict()")


def pair_in_order(src: list[Module], dst: list[Module]) -> tuple[list, str | None, int]:
    """-> ([(source module, model module)], the first structure difference or None, where it is).

    `where` is the number of modules paired before the difference (len(pairs))."""
    pairs = []
    for i, (s, d) in enumerate(zip(src, dst)):
        why = _difference(s, d)
        if why is not None:
            return pairs, (f"module #{i} differs ({why}): checkpoint {s.describe()} vs model "
                           f"{d.describe()}"), i
        pairs.append((s, d))
    n = len(pairs)
    if len(src) > n:
        return pairs, (f"the checkpoint has {len(src) - n} more modules than the model "
                       f"({len(src)} vs {len(dst)}), from {src[n].describe()}"), n
    if len(dst) > n:
        return pairs, (f"the model has {len(dst) - n} more modules than the checkpoint "
                       f"({len(dst)} vs {len(src)}), from {dst[n].describe()}"), n
    return pairs, None, n
