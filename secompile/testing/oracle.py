"""The generator's own model of the spec language: shape arithmetic and SE selection.

Written from the documented semantics (PyTorch's size formulas, docs/design.md for
selectors), independently of secompile's passes, so that a disagreement between a
generated spec and the compiler points at a bug in one of them.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def conv_size(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    """Output size of a convolution along one axis (PyTorch's formula)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def pool_size(n: int, k: int, s: int, p: int, ceil: bool) -> int:
    """Output size of max/avg pooling along one axis (PyTorch's pooling_output_shape)."""
    span = n + 2 * p - k
    if not ceil:
        return span // s + 1
    out = ceil_div(span, s) + 1
    if (out - 1) * s >= n + p:   # the last window must start inside the input or left padding
        out -= 1
    return out


def same_pad(k: int, d: int = 1) -> int:
    """The language's 'same' padding (docs: kernel // 2 on each side, times the dilation)."""
    return d * (k - 1) // 2


def glob(pattern: str, path: str) -> bool:
    """Segment-wise glob of SE path selectors: '*' within one segment, '**' any number."""
    def match(pat, segs):
        if not pat:
            return not segs
        if pat[0] == "**":
            return any(match(pat[1:], segs[i:]) for i in range(len(segs) + 1))
        return bool(segs) and fnmatch.fnmatchcase(segs[0], pat[0]) and match(pat[1:], segs[1:])
    return match(pattern.split("."), path.split("."))


@dataclass
class BlockInfo:
    """A stage-level block as the SE selectors see it."""

    path: str                     # stages.i.blocks.j, or stages.i for a layer stage
    stage: int
    index: int
    template: str | None          # None for a layer stage
    stage_name: str
    kind: str                     # residual | parallel | layers
    in_c: int                     # channels at each SE position
    out_c: int
    branch_c: int | None = None   # residual only
    short_c: int | None = None
    rel: dict = field(default_factory=dict)   # named scope inside, relative path -> channels (None: no SE)


def indices(sel, n: int) -> set:
    if sel == "all":
        return set(range(n))
    sel = [sel] if isinstance(sel, int) else sel
    return {i % n for i in sel if -n <= i < n}


def select_blocks(blocks: list[BlockInfo], sel: dict, stage_sizes: list[int]) -> list[BlockInfo]:
    """The blocks a {stages, blocks, name} selector picks (design.md, 'SE insertion')."""
    stages = indices(sel.get("stages", "all"), len(stage_sizes))
    out = []
    for b in blocks:
        if b.stage not in stages:
            continue
        bsel = sel.get("blocks", "all")
        if isinstance(bsel, str) and bsel != "all":
            if not fnmatch.fnmatchcase(b.template or "", bsel):
                continue
        elif b.index not in indices(bsel, stage_sizes[b.stage]):
            continue
        if "name" in sel and not fnmatch.fnmatchcase(b.stage_name, sel["name"]):
            continue
        out.append(b)
    return out
