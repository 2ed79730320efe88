"""The generator's oracle of the spec language: output sizes and SE selection.

`specs()` relies on it to make only valid choices, and the properties compare what it
predicts with what the compiler builds, so it must not share code -- or code written the
same way -- with the compiler: a bug copied into both is a bug no property can see. It is
written from the documented semantics (docs/spec-language.md, PyTorch's size rules), and
each helper takes another route than secompile's own:

- sizes: `ir/ops.py` uses PyTorch's closed formulas; here the window is slid along the
  axis and its start positions are counted (`same_pad` searches for the padding);
- path globs: `passes/insert_se.py` matches segment lists recursively with `fnmatch`;
  here the whole glob becomes one regular expression, translated here, over the dotted path;
- index selectors: the compiler reduces each index modulo the size; here every index
  0..n-1 is tried against every selector entry.

tests/properties/test_oracle.py checks that the two agree on random inputs.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# -- sizes ------------------------------------------------------------------------------

def _starts(padded: int, stride: int) -> range:
    """Where a window may start along a padded axis of `padded` elements."""
    return range(0, padded, stride)


def conv_size(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    """Output size of a convolution along one axis: windows (k taps, d apart) that lie
    wholly on the padded axis, starting every s elements. 0 when none fits."""
    padded, span = n + 2 * p, d * (k - 1) + 1
    return sum(1 for t in _starts(padded, s) if t + span <= padded)


def pool_size(n: int, k: int, s: int, p: int, ceil: bool) -> int:
    """Output size of max/avg pooling along one axis (padding at most k // 2).

    Round down: windows wholly on the padded axis. Round up (Caffe; PyTorch's ceil_mode):
    also a last window that runs off the end, kept while the window before it left part
    of the padded axis unread -- but never one starting in the right padding."""
    if not ceil:
        return conv_size(n, k, s, p)
    padded = n + 2 * p
    return sum(1 for t in _starts(padded, s) if (t - s) + k < padded and t < n + p)


def same_pad(k: int, d: int = 1) -> int:
    """The language's `padding: same`: the most padding per side with which a stride-1
    convolution does not make its input larger (docs: dilation * (k - 1) / 2, rounded down)."""
    span = d * (k - 1) + 1
    return max(p for p in range(span) if conv_size(span, k, 1, p, d) <= span)


# -- globs ------------------------------------------------------------------------------

def _class_end(pat: str, i: int) -> int | None:
    """Index of the ']' closing the character class that opens at pat[i] == '[', or None
    when it is not closed ('[' is then a literal). The first member (after an optional
    '!') is always a member, even ']', so '[]]' is the class of ']'."""
    first = i + 2 if pat.startswith("!", i + 1) else i + 1
    end = pat.find("]", first + 1)
    return end if end >= 0 else None


def _class_members(body: str) -> list[tuple[str, str]]:
    """'a-cx' -> [('a', 'c'), ('x', 'x')]: read left to right, `lo-hi` is a range (empty when
    lo > hi), any other character (a '-' first or last too) stands for itself."""
    out, p = [], 0
    while p < len(body):
        if p + 2 < len(body) and body[p + 1] == "-":
            out.append((body[p], body[p + 2]))
            p += 3
        else:
            out.append((body[p], body[p]))
            p += 1
    return out


def _class_regex(body: str, one: str, never: str) -> str:
    negated = body.startswith("!")
    ranges = [(lo, hi) for lo, hi in _class_members(body[1:] if negated else body) if lo <= hi]
    if not ranges:
        return one if negated else "(?!)"
    inside = "".join(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}"
                     for lo, hi in ranges)
    return f"{never}[{'^' if negated else ''}{inside}]"


def _wildcards(pat: str, one: str, never: str = "") -> str:
    """A shell glob ('*', '?', '[seq]', '[!seq]'; no escapes) -> regular expression.
    `one` is the expression for one character a wildcard may stand for; `never` a
    lookahead that keeps character classes off characters they must not match."""
    out, i = [], 0
    while i < len(pat):
        c = pat[i]
        end = _class_end(pat, i) if c == "[" else None
        if c == "*":
            out.append(f"{one}*")
        elif c == "?":
            out.append(one)
        elif end is not None:
            out.append(_class_regex(pat[i + 1:end], one, never))
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@lru_cache(maxsize=4096)
def _path_regex(pattern: str) -> re.Pattern:
    """A path glob as one regular expression over '.' + path: each segment of the glob
    matches '.' and one path segment, `**` any number of them (none included)."""
    parts = []
    for seg in pattern.split("."):
        if seg == "**":
            parts.append(r"(?:\.[^.]*)*")
        else:
            parts.append(r"\." + _wildcards(seg, one="[^.]", never=r"(?!\.)"))
    return re.compile("".join(parts))


def glob(pattern: str, path: str) -> bool:
    """SE path selectors: '*' (and '?', '[..]') within one dotted segment, a '**' segment
    any number of segments."""
    return _path_regex(pattern).fullmatch("." + path) is not None


@lru_cache(maxsize=1024)
def _name_regex(pattern: str) -> re.Pattern:
    return re.compile(_wildcards(pattern, one="."), re.DOTALL)


def name_glob(pattern: str, name: str) -> bool:
    """Template- and stage-name selectors: a plain glob over the whole name."""
    return _name_regex(pattern).fullmatch(name) is not None


# -- block selectors --------------------------------------------------------------------

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
    rel: dict = field(default_factory=dict)   # named scopes inside: relative path -> channels
    #                                           (None: SE cannot go there)


def indices(sel, n: int) -> set:
    """The positions 0..n-1 an index selector picks: 'all', an index or a list of them;
    index -1 is position n - 1, and an index outside -n..n-1 picks nothing."""
    if sel == "all":
        return set(range(n))
    wanted = [sel] if isinstance(sel, int) else list(sel)
    return {i for i in range(n) if any(i == s or i == s + n for s in wanted)}


def select_blocks(blocks: list[BlockInfo], sel: dict, stage_sizes: list[int]) -> list[BlockInfo]:
    """The blocks a {stages, blocks, name} selector picks (docs/spec-language.md, 'SE').

    `blocks` is 'all', indices within each stage, or a glob over template names (a layer
    stage has none: a glob sees the empty name); `name` a glob over stage names."""
    stages = indices(sel.get("stages", "all"), len(stage_sizes))
    bsel = sel.get("blocks", "all")
    by_template = isinstance(bsel, str) and bsel != "all"

    def picked(b: BlockInfo) -> bool:
        if by_template:
            return name_glob(bsel, b.template or "")
        return b.index in indices(bsel, stage_sizes[b.stage])

    return [b for b in blocks if b.stage in stages and picked(b)
            and ("name" not in sel or name_glob(sel["name"], b.stage_name))]


# -- language v2: builtins and attention modules (docs/spec-language.md, "Language v2") --------

def make_divisible(v, divisor: int = 8, min_value=None, round_limit: float = 0.9) -> int:
    """timm's rule as the docs state it: the multiple of `divisor` nearest to v (halves up), at
    least `min_value` (default divisor), one divisor more where that lost more than
    1 - round_limit of v. Here by scanning the multiples rather than by integer division."""
    floor_at = divisor if not min_value else min_value
    m = 0
    while (m + 1) * divisor <= v + divisor / 2:
        m += 1
    new = max(floor_at, m * divisor)
    return new + divisor if new < round_limit * v else new


def eca_kernel(c: int, gamma: int = 2, beta: int = 1) -> int:
    """ECA's adaptive kernel: t = int(|log2 C + beta| / gamma), made odd upwards, at least 3."""
    t = int(abs(math.log2(c) + beta) / gamma)
    return max(3, t | 1)


def module_params(module: str, c: int, opts: dict, block_in: int | None = None) -> int:
    """Parameters an attention module adds on a tensor of `c` channels (the docs' table).
    `opts` are the rule's keys; `channels` may be the one expression the generator writes."""
    if module == "se":
        w = _width(opts, c, block_in)
        if not w:
            r = opts.get("reduction", 16)
            d = opts.get("divisor", 1)
            limit = opts.get("round_limit", 0.0)
            w = c // r if d == 1 else make_divisible(c / r, d, round_limit=limit)
        return 2 * c * w + ((w + c) if opts.get("bias", True) else 0)
    if module == "effective_se":
        return c * c + c
    if module == "eca":
        return opts.get("kernel") or eca_kernel(c)
    if module == "cbam":
        r = opts.get("reduction", 16)
        w = _width(opts, c, block_in) or make_divisible(c / r, 1, round_limit=0)
        k = opts.get("kernel", 7)
        return 2 * c * w + 2 * k * k + 2
    raise KeyError(module)


def _width(opts, c, block_in):
    ch = opts.get("channels", 0)
    if isinstance(ch, str):            # "max(1, $block_in // 4)" or "max(1, $in_channels // 4)"
        base = block_in if "block_in" in ch else c
        return max(1, base // 4)
    return ch
