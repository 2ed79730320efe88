"""Parameter binding: how a written value (literal or $-expression) becomes an attribute, and
where a refused value is blamed.

"Why was my parameter refused?" is answered here: type checks, positivity, expression errors,
and the blame rule (a value computed from one stage parameter is reported at that parameter
in the user's spec, not at the template line that used it).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from ..lang import expr
from ..lang.errors import Problem
from ..lang.loader import SourceMap


def _show(value) -> str:
    """A value in a message; a float rounded past binary noise (55.2, not 55.199999999999996)."""
    if isinstance(value, float) and math.isfinite(value):
        return repr(float(f"{value:.15g}"))
    return repr(value)


class Abort(Exception):
    """Stops expanding one item after its problem has been recorded.

    Expansion goes on elsewhere.
    """


class Param(NamedTuple):   # a tuple, not a frozen dataclass: built for every value resolved
    value: object
    smap: SourceMap | None
    path: tuple          # where the value was written (blame location)


class _Values(Mapping):
    """The values of an environment of Params, as an expression reads them (looked up by name,
    not copied: an expression reads one to three of the ~20 names in scope)."""

    __slots__ = ("_env",)

    def __init__(self, env: dict):
        self._env = env

    def __getitem__(self, name):
        return self._env[name].value

    def __contains__(self, name) -> bool:
        return name in self._env

    def __iter__(self):
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


@dataclass(frozen=True)
class Ctx:
    smap: SourceMap      # the file the items being expanded come from
    env: dict            # parameter name -> Param
    where: str           # the instance being expanded, for messages ('stages[2].blocks[0]')
    depth: int = 0
    entry: str = ""      # a generated stage's entry ('stages[0][entry 2]'), named in messages

    def down(self) -> "Ctx":
        """This context one nesting level down (dataclasses.replace, without its field scan)."""
        return Ctx(self.smap, self.env, self.where, self.depth + 1, self.entry)


class Binding:
    """Problem recording and value resolution.

    Mixed into the Expander (needs `spec`, `problems`).
    """

    problems: list[Problem]

    def problem(self, ctx: Ctx, path, message: str, key: bool = False) -> None:
        message += self._instance(ctx, ctx.smap, path)
        self.problems.append(ctx.smap.problem(path, message, key=key))

    def blame(self, ctx: Ctx, blame: Param, message: str) -> None:
        """Report at the blamed value: a stage parameter in the user's spec, or a template line."""
        message += self._instance(ctx, blame.smap, blame.path)
        self.problems.append(blame.smap.problem(blame.path, message))

    def _instance(self, ctx: Ctx, smap: SourceMap, path) -> str:
        """' (in stages[2].blocks[0])' for a template line (any file): many instances share it."""
        in_template = smap is not self.spec.smap or tuple(path)[:1] == ("blocks",)
        if ctx.entry and not in_template:   # a line of a `foreach:` stage: say which entry
            return f" (in {ctx.entry})"
        if "[entry " in ctx.where and not in_template:   # blamed at it from inside a template
            return f" (in {ctx.where})"
        return f" (in {ctx.where})" if ctx.where and in_template else ""

    def value(self, ctx: Ctx, raw, path, want=None):
        """Resolve an attribute (literal or $-expression) -> (value, blame Param)."""
        blame = Param(raw, ctx.smap, tuple(path))
        if expr.is_expr(raw):
            env = ctx.env
            val = self._evaluate(ctx, raw, path)
            used = [n for n in expr.names(raw) if n in env] or [
                n for n in env if n in raw.replace("$", " ").split()]
            if len(used) == 1 and env[used[0]].smap is not None:
                blame = env[used[0]]
        else:
            val = raw
        return self._typed(ctx, val, path, want), blame

    def resolve(self, ctx: Ctx, raw, path, want=None):
        """The value `value` gives, without its blame (most values are never blamed)."""
        val = self._evaluate(ctx, raw, path) if expr.is_expr(raw) else raw
        return self._typed(ctx, val, path, want)

    def _evaluate(self, ctx: Ctx, raw: str, path):
        try:
            return expr.evaluate(raw, _Values(ctx.env))
        except expr.ExprError as e:
            self.problem(ctx, path, str(e))
            raise Abort from None

    def _typed(self, ctx: Ctx, val, path, want):
        if want is int and (isinstance(val, float) and val.is_integer()):
            val = int(val)
        if want is not None and not (isinstance(val, want)
                                     and not (want is int and isinstance(val, bool))):
            self.problem(ctx, path, f"expected {want.__name__}, got {_show(val)}")
            raise Abort
        return val

    def pair(self, ctx, raw, path):
        """An int or a [h, w] list -> (h, w)."""
        if isinstance(raw, list):
            return tuple(self.resolve(ctx, r, path + (i,), int) for i, r in enumerate(raw))
        v = self.resolve(ctx, raw, path, int)
        return (v, v)

    def positive(self, ctx, path, attrs, keys):
        for k in keys:
            val = attrs[k]
            for n in (val if isinstance(val, tuple) else (val,)):
                if not isinstance(n, int) or n < 1:
                    self.problem(ctx, path + (k,), f"{k} must be a positive integer, got {n!r}")
                    raise Abort

    def number(self, ctx, raw, path, what: str, low=None, high=None, open_low=False,
               open_high=False) -> float:
        """A finite real number (literal or expression) within [low, high] (either end open or
        absent) -> float; else a located problem ('bn eps must be > 0, got -1.0')."""
        val, blame = self.value(ctx, raw, path)
        ok = isinstance(val, (int, float)) and not isinstance(val, bool) and math.isfinite(val)
        if ok and low is not None:
            ok = val > low if open_low else val >= low
        if ok and high is not None:
            ok = val < high if open_high else val <= high
        if not ok:
            if low is not None and high is not None:
                want = f"in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
            elif low is not None:
                want = f"{'>' if open_low else '>='} {low}"
            else:
                want = "a finite number"
            self.blame(ctx, blame, f"{what} must be {want}, got {_show(val)}")
            raise Abort
        return float(val)
