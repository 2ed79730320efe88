"""Design-space axes: a YAML list (a grid axis) or a distribution to sample from.

    KEY=[4, 8, 16]                 alternatives (a grid axis; sampled: one of them, uniformly)
    KEY=range(16, 256, 8)          integers start, start+step, ... below stop (Python's range):
                                   a grid axis too, or sampled uniformly
    KEY=choice(4, 8, [0, 1, 2])    alternatives (YAML values), sampled uniformly
    KEY=uniform(0.5, 2.0)          a float in [a, b]; uniform(a, b, q) rounds to a multiple of q
    KEY=loguniform(16, 256, 8)     log-uniform in [a, b] (pycls's way of drawing widths), q as above

KEY is any overridable spec path (secompile/lang/overrides.py: `stages.0.out`, `input.size`,
`se.0.reduction`, `params.w0`, ...). Every sampled value becomes an Override located at its
`--vary` text, so a value a spec refuses is reported there. Sampling is a `random.Random(seed)`
drawing axis after axis: the same seed gives the same models.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from ..lang.errors import Mark, Problem, SpecError
from ..lang.loader import load_yaml_text
from ..lang.overrides import Override, canonical_key, format_value, parse_key, parse_vary
from .options import KINDS

MAX_RANGE = 1_000_000        # integers a range() axis may hold
_CALL = re.compile(r"\s*([a-z_]+)\s*\((.*)\)\s*$", re.S)


def _problem(index: int, col: int, path: str, message: str) -> SpecError:
    return SpecError([Problem(Mark("--vary", index, col), path, message)])


@dataclass(frozen=True)
class Distribution:
    """One sampled axis: `draw(rng)` -> an Override for KEY, located at the --vary text."""

    key: str
    path: tuple
    kind: str                  # one of KINDS
    args: tuple                # range: (start, stop, step); choice: values; (log)uniform: (a, b, q)
    index: int                 # the --vary's position (the line of every mark)
    key_cols: tuple
    col: int                   # column of the distribution in the --vary text

    def value(self, rng: random.Random):
        if self.kind == "range":
            return rng.randrange(*self.args)
        if self.kind == "choice":
            return rng.choice(self.args)
        a, b, q = self.args
        x = (rng.uniform(a, b) if self.kind == "uniform"
             else math.exp(rng.uniform(math.log(a), math.log(b))))
        if q is None:
            return x
        x = round(x / q) * q
        return int(x) if isinstance(q, int) else x

    def override(self, value) -> Override:
        mark = Mark("--vary", self.index, self.col)
        return Override(self.key, self.path, value, f"{self.key}={format_value(value)}",
                        "--vary", self.index, self.key_cols, self.col, (((), mark),), ())

    def draw(self, rng: random.Random) -> Override:
        return self.override(self.value(rng))

    def example(self) -> Override:
        """A value of the axis (to check that KEY names something)."""
        return self.override(self.args[0] if self.kind in ("range", "choice")
                             else self.args[0])

    def grid(self) -> list[Override]:
        """The axis as a list of alternatives (range and choice only)."""
        if self.kind == "range":
            return [self.override(v) for v in range(*self.args)]
        if self.kind == "choice":
            return [self.override(v) for v in self.args]
        raise _problem(self.index, self.col, self.key,
                       f"{self.kind}(...) is continuous: sample it with --sample N")

    def __len__(self):
        return len(range(*self.args)) if self.kind == "range" else len(self.args)


def _numbers(args: list, kind: str, index: int, col: int, key: str) -> list:
    for a in args:
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
            raise _problem(index, col, key, f"{kind}(...) takes numbers, got {format_value(a)}")
    return args


def parse_axis(text: str, *, index: int = 1):
    """'KEY=[a, b]' -> list of Overrides (a grid axis); 'KEY=range(...)', 'KEY=choice(...)'
    -> Distribution (range and choice also expand to a grid); '(log)uniform(...)' ->
    Distribution (sampling only). Raises SpecError located in the --vary text."""
    if not isinstance(text, str) or "=" not in text:
        return parse_vary(text, index=index)[1]     # its own message for a missing '='
    key, _, value_text = text.partition("=")
    m = _CALL.match(value_text)
    if not m:
        return parse_vary(text, index=index)[1]
    kind = m.group(1)
    col = len(key) + 2 + (len(value_text) - len(value_text.lstrip()))
    path, cols = parse_key(key, file="--vary", index=index)
    ckey = canonical_key(path)
    if kind not in KINDS:
        raise _problem(index, col, ckey, f"unknown distribution {kind!r}: write a YAML list "
                                         f"[a, b, ...] or one of {', '.join(KINDS)}")
    args_col = col + value_text.lstrip().index("(") + 1
    try:
        args, _ = load_yaml_text(f"[{m.group(2)}]", "--vary")
    except SpecError as e:
        raise SpecError([Problem(Mark("--vary", index, args_col + p.mark.col - 2), "<value>",
                                 p.message) for p in e.problems]) from None
    if kind == "choice":
        if not args:
            raise _problem(index, col, ckey, "choice() needs at least one alternative")
        return Distribution(ckey, path, kind, tuple(args), index, cols, col)
    args = _numbers(args, kind, index, col, ckey)
    if kind == "range":
        if not 1 <= len(args) <= 3 or not all(isinstance(a, int) for a in args):
            raise _problem(index, col, ckey, "range(start, stop[, step]) takes 1 to 3 integers")
        full = (0, *args, 1)[:3] if len(args) == 1 else (*args, 1)[:3]
        if full[2] == 0:
            raise _problem(index, col, ckey, "range() step must not be zero")
        n = len(range(*full))
        if n == 0:
            raise _problem(index, col, ckey, f"range{full} holds no value")
        if n > MAX_RANGE:
            raise _problem(index, col, ckey, f"range{full} holds {n:,} values, more than "
                                             f"{MAX_RANGE:,}")
        return Distribution(ckey, path, kind, full, index, cols, col)
    if len(args) not in (2, 3):
        raise _problem(index, col, ckey, f"{kind}(a, b[, q]) takes 2 or 3 numbers")
    a, b, q = (*args, None)[:3]
    if not a <= b:
        raise _problem(index, col, ckey, f"{kind}(a, b): a must not exceed b, got {a} > {b}")
    if kind == "loguniform" and a <= 0:
        raise _problem(index, col, ckey, f"loguniform(a, b): a must be > 0, got {a}")
    if q is not None and q <= 0:
        raise _problem(index, col, ckey, f"{kind}(a, b, q): q must be > 0, got {q}")
    return Distribution(ckey, path, kind, (a, b, q), index, cols, col)


def as_sampled(axis) -> Distribution:
    """A grid axis (list of Overrides) sampled uniformly, or the Distribution itself."""
    if isinstance(axis, Distribution):
        return axis
    first = axis[0]
    return _Alternatives(first.key, first.path, "choice", tuple(axis), first.index,
                         first.key_cols, first.value_col)


class _Alternatives(Distribution):
    """A YAML list sampled: draws one of its Overrides (each located at its own item)."""

    def draw(self, rng: random.Random) -> Override:
        return rng.choice(self.args)

    def example(self) -> Override:
        return self.args[0]


def as_grid(axis) -> list[Override]:
    return axis if isinstance(axis, list) else axis.grid()


__all__ = ["Distribution", "parse_axis", "as_sampled", "as_grid", "KINDS", "MAX_RANGE"]
