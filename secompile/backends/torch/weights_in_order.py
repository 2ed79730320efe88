"""Pair a checkpoint's modules with a compiled model's by structure (layouts without slots).

timm's EfficientNet, MobileNetV3, RegNet, ReXNet, ResNeSt, ByobNet, ECA-/SK-ResNet and any
network we were never taught have no ResNet-style `layer{s}.{b}` units to cut into slots. Both
sides are cut into *weighted modules* — conv (4-d weight), conv1d (3-d), linear (2-d), BN
(running statistics), or anything else by its entries and shapes — and paired so that every
pair has the same kind and shapes:

1. In the checkpoint's own order (`torch.save` keeps the order the network registered its
   modules, which is the order they run, which is our graph's order): the i-th with the i-th.
2. Where that fails (a `.safetensors` file stores its keys sorted by name; a network that
   registers a module before the one that runs first), by the checkpoint's module *tree*:
   children whose names are numbers (`blocks.3`, `layer1.0`) keep their numeric order,
   named children (`conv_dw`, `bn1`, `se`) may come in any order, and a subtree always covers
   consecutive modules of the model. The search tries the children in the file's order, so of
   two arrangements that both fit (`conv3` and `downsample` have equal shapes in a ResNet's
   first block) the one the names imply wins.

When neither fits, the first module that disagrees is named on both sides (in the file's
order; for a sorted file, where the tree search got furthest), and the rest is counted as
missing / unexpected: everything after it would be paired by luck.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from torch import nn

_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
SEARCH_BUDGET = 200_000     # subtree placements tried before the tree search gives up


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

    def signature(self) -> tuple:
        """What must agree for a pair: kind and shapes (a BN's step counter may be absent)."""
        if self.kind == "bn":
            return ("bn", self.shapes.get("weight"), self.shapes.get("running_mean"))
        return (self.kind, tuple(sorted(self.shapes.items())))


def kind_of_entries(shapes: dict) -> str | None:
    """A module's kind from what it holds (the same rule on both sides)."""
    if "running_mean" in shapes or "running_var" in shapes:
        return "bn"
    w = shapes.get("weight")
    return None if w is None else {4: "conv", 3: "conv1d", 2: "linear"}.get(len(w))


def group_modules(keys_and_shapes) -> list[Module]:
    """(key, shape) pairs -> modules (key prefix -> {entry: shape}), in the order of their
    first entry. The one module grouping of both weight loaders' sides."""
    mods: dict[str, dict] = {}
    for key, shape in keys_and_shapes:
        prefix, _, entry = key.rpartition(".")
        mods.setdefault(prefix, {})[entry] = tuple(shape)
    return [Module(p, kind_of_entries(s), s) for p, s in mods.items()]


def checkpoint_modules(sd: dict) -> list[Module]:
    """The checkpoint's modules, in the order of their first entry."""
    return group_modules((k, v.shape) for k, v in sd.items())


def model_modules(model: nn.Module, skip: frozenset = frozenset()) -> list[Module]:
    """The compiled model's weighted modules, in state_dict (= graph) order; `skip`: keys
    filled otherwise (a remap)."""
    return group_modules((k, v.shape) for k, v in model.state_dict().items() if k not in skip)


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


# -- the tree search ----------------------------------------------------------------------------
class _Node:
    """A prefix of the checkpoint's module names: its own module (if any) and its children."""
    __slots__ = ("module", "children", "leaves", "sigs")

    def __init__(self):
        self.module: Module | None = None
        self.children: dict[str, _Node] = {}


def _tree(src: list[Module]) -> _Node:
    root = _Node()
    for m in src:
        node = root
        for part in m.name.split(".") if m.name else []:
            node = node.children.setdefault(part, _Node())
        node.module = m
    _finish(root)
    return root


def _finish(node: _Node) -> None:
    node.leaves = 1 if node.module else 0
    node.sigs = Counter([node.module.signature()] if node.module else [])
    for child in node.children.values():
        _finish(child)
        node.leaves += child.leaves
        node.sigs += child.sigs


_SHORTCUT_NAMES = {"shortcut", "downsample", "skip"}


def _role(name: str) -> str:
    """'shortcut' for a module on a residual's shortcut path (timm: `downsample`, `shortcut`;
    ours: the `shortcut` scope of the path grammar), else ''. Only a preference between two
    arrangements that both fit, never a condition."""
    return "shortcut" if _SHORTCUT_NAMES & set(name.split(".")) else ""


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


class _Search:
    def __init__(self, dst: list[Module], by_name: bool):
        self.dst = dst
        self.sigs = [d.signature() for d in dst]
        self.roles = [_role(d.name) for d in dst]
        self.by_name = by_name     # a sorted file: named children in natural order (b2 < b10)
        self.budget = SEARCH_BUDGET
        self.furthest = 0          # the model position no arrangement got past
        self.memo: dict = {}

    def fits(self, node: _Node, pos: int) -> list | None:
        """The pairs covering `node` from model position `pos`, or None if it cannot fit."""
        key = (id(node), pos)
        if key not in self.memo:
            self.memo[key] = self._fits(node, pos)
        return self.memo[key]

    def _fits(self, node: _Node, pos: int) -> list | None:
        end = pos + node.leaves
        if end > len(self.dst) or Counter(self.sigs[pos:end]) != node.sigs:
            self.furthest = max(self.furthest, pos)
            return None
        self.budget -= 1
        if self.budget < 0:
            raise _OutOfBudget
        items = [("", None)] if node.module else []
        named = [(k, c) for k, c in node.children.items() if not k.isdigit()]
        if self.by_name:
            named.sort(key=lambda kc: _natural(kc[0]))
        numbered = sorted(((k, c) for k, c in node.children.items() if k.isdigit()),
                          key=lambda kc: int(kc[0]))
        return self._arrange(node, items + named, numbered, pos, pos, frozenset())

    def _arrange(self, node, named, numbered, start, pos, used) -> list | None:
        """Place the children not in `used` from `pos`: any named one, or the next number."""
        eligible = [kc for kc in named if kc[0] not in used]
        nxt = next((kc for kc in numbered if kc[0] not in used), None)
        if nxt is not None:
            eligible.append(nxt)
        if pos < len(self.roles):
            eligible.sort(key=lambda kc: _role(self._first(node, kc[1]).name) != self.roles[pos])
        if not eligible:
            return []
        failed = self.memo.setdefault(("failed", id(node), start), set())
        if used in failed:
            return None
        for name, child in eligible:
            if child is None:                         # the node's own module
                m = node.module
                head = [(m, self.dst[pos])] if m.signature() == self.sigs[pos] else None
                width = 1
            else:
                head, width = self.fits(child, pos), child.leaves
            if head is None:
                continue
            rest = self._arrange(node, named, numbered, start, pos + width, used | {name})
            if rest is not None:
                return head + rest
        self.furthest = max(self.furthest, pos)
        failed.add(used)
        return None


    @staticmethod
    def _first(node: _Node, child: _Node | None) -> Module:
        """The first module of a child in the checkpoint's order (for its role)."""
        if child is None:
            return node.module
        while child.module is None:
            child = next(iter(child.children.values()))
        return child.module


class _OutOfBudget(Exception):
    pass


def pair_by_structure(src: list[Module], dst: list[Module]) -> tuple[list, str | None, int]:
    """Like pair_in_order, but where the file's order does not fit, the checkpoint's module
    tree is searched for an arrangement that does (module docstring)."""
    pairs, difference, n = pair_in_order(src, dst)
    if difference is None or len(src) != len(dst):
        return pairs, difference, n
    search = _Search(dst, sorted_by_name(src))
    try:
        found = search.fits(_tree(src), 0)
    except _OutOfBudget:
        found = None
    if found is not None:
        return found, None, len(found)
    if not sorted_by_name(src):
        return pairs, difference, n
    return [], _first_unmatched(src, dst, search.furthest), 0


def _first_unmatched(src: list[Module], dst: list[Module], furthest: int) -> str:
    """Name the first model module (graph order) that no checkpoint module can take, with the
    checkpoint module of its kind left over (when the kinds and shapes match as multisets, the
    position the tree search could not get past)."""
    left = Counter(s.signature() for s in src)
    at = None
    for i, d in enumerate(dst):
        if left[d.signature()] > 0:
            left[d.signature()] -= 1
        elif at is None:
            at = i
    if at is None:
        at = min(furthest, len(dst) - 1)
        return (f"model module #{at} {dst[at].describe()}: no arrangement of the checkpoint's "
                "module tree fits from here (its keys are in alphabetical order, so modules are "
                "paired by the tree)")
    spare = [s for s in sorted(src, key=lambda m: _natural(m.name))
             if left[s.signature()] > 0 and s.kind == dst[at].kind]
    return (f"model module #{at} {dst[at].describe()} has no checkpoint module of its kind and "
            "shapes (its keys are in alphabetical order, so modules are paired by the "
            "checkpoint's module tree)"
            + (f"; left over in the checkpoint: {spare[0].describe()}" if spare else ""))
