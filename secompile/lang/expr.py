"""A tiny, safe expression language for block-template parameters.

A string containing `$` is an expression: `$width`, `"$out // 4"`,
`"$stride if $stride_at == 'conv1' else 1"`. Names (with or without `$`) refer to the
template's parameters. Only arithmetic, comparisons, boolean logic, conditional
expressions and the functions of `_FUNCS` (min/max/int/round/abs/ceil/floor/log2 and timm's
make_divisible) are allowed; the AST is walked here, never handed to Python's eval.
"""
from __future__ import annotations

import ast
import functools
import math
import operator
import re

MAX_LEN = 256
MAX_INT = 10**15  # keeps `2 ** 2 ** 99`-style values from eating memory

_NAME = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.FloorDiv: operator.floordiv, ast.Div: operator.truediv, ast.Mod: operator.mod,
        ast.Pow: operator.pow}
_CMP = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
        ast.Gt: operator.gt, ast.GtE: operator.ge}


def make_divisible(v, divisor=8, min_value=None, round_limit=0.9):
    """timm's rounding of a channel count to a multiple of `divisor` (timm/layers/helpers.py):
    never below `min_value` (default: divisor), never more than 10% below `v`."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


def _log2(v):
    if not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0:
        raise ValueError(f"log2 needs a positive number, got {v!r}")
    return math.log2(v)


def _number(name, v, positive=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or (positive and v <= 0):
        raise ValueError(f"{name} must be a {'positive ' if positive else ''}number, got {v!r}")
    return v


MAX_GENERATED_DEPTH = 1000   # blocks regnet_stages may generate


def regnet_stages(w0, wa, wm, depth, group_w, bottleneck_ratio=1.0, quant=8):
    """The RegNet design space (Radosavovic et al. 2020; pycls `generate_regnet` and
    `adjust_block_compatibility`, as timm's regnet.py computes them) -> one entry per stage:
    {width, depth, group_width, bottleneck_width, index}.

    Block widths u_j = w0 + wa * j (j < depth) are quantised to w0 * wm^round(log_wm(u_j / w0)),
    rounded to a multiple of `quant`; equal consecutive widths form a stage. Then the group width
    is at most the bottleneck width (width * bottleneck_ratio), the bottleneck width is rounded
    to a multiple of the group width, and the width follows it."""
    for name, v in (("w0", w0), ("wm", wm), ("group_w", group_w),
                    ("bottleneck_ratio", bottleneck_ratio), ("quant", quant)):
        _number(name, v, positive=True)
    _number("wa", wa)
    if wa < 0 or wm <= 1 or w0 % quant:
        raise ValueError(f"needs wa >= 0, wm > 1 and w0 a multiple of {quant} (pycls), got "
                         f"wa={wa!r}, wm={wm!r}, w0={w0!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= \
            MAX_GENERATED_DEPTH:
        raise ValueError(f"depth must be an integer in 1..{MAX_GENERATED_DEPTH}, got {depth!r}")
    widths = []
    for j in range(depth):
        exp = round(math.log((j * wa + w0) / w0) / math.log(wm))
        widths.append(int(round(w0 * math.pow(wm, exp) / quant) * quant))
    if len(set(widths)) > 64 or widths[-1] > MAX_INT:
        raise ValueError("too many stages")
    stages = []
    for w in sorted(set(widths)):          # numpy.unique: sorted widths and their counts
        stages.append([w, widths.count(w)])
    out = []
    for k, (w, d) in enumerate(stages):
        bottleneck = int(w * bottleneck_ratio)
        group = min(group_w, bottleneck)
        bottleneck = int(round(bottleneck / group) * group)   # timm quantize_int
        out.append({"width": int(bottleneck / bottleneck_ratio), "depth": d,
                    "group_width": group, "bottleneck_width": bottleneck, "index": k})
    return out


_FUNCS = {"min": min, "max": max, "int": int, "round": round, "abs": abs,
          "ceil": math.ceil, "floor": math.floor, "log2": _log2, "make_divisible": make_divisible,
          "regnet_stages": regnet_stages}
_KEYWORDS = {"make_divisible": ("divisor", "min_value", "round_limit"),   # the only keyword args
             "regnet_stages": ("bottleneck_ratio", "quant")}


class ExprError(ValueError):
    pass


def is_expr(value) -> bool:
    return isinstance(value, str) and "$" in value


@functools.lru_cache(maxsize=4096)
def names(text: str) -> frozenset[str]:
    """The `$names` of an expression (cached: templates resolve the same texts for every block)."""
    return frozenset(_NAME.findall(text))


def evaluate(text: str, env: dict):
    """Evaluate expression `text` with parameter values `env`. Raises ExprError."""
    if len(text) > MAX_LEN:
        raise ExprError(f"expression longer than {MAX_LEN} characters")
    return _Eval(env, text).visit(_parse(text))


@functools.lru_cache(maxsize=4096)
def reads(text: str) -> frozenset[str]:
    """Every name in the expression's tree (parameters, and the functions it calls): what its
    value can depend on. Raises ExprError where it does not parse."""
    return frozenset(n.id for n in ast.walk(_parse(text)) if isinstance(n, ast.Name))


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> ast.expr:
    """The expression's tree, parsed once per process (templates evaluate the same few
    expressions for every block; the walker only reads the tree)."""
    src = _NAME.sub(r"\1", text).strip()
    try:
        return ast.parse(src, mode="eval").body
    except SyntaxError as e:
        raise ExprError(f"invalid expression {text!r}: {e.msg}") from None


_VISITORS: dict[type, object] = {}   # ast node type -> its _Eval.v_<name> method


class _Eval:
    def __init__(self, env, text):
        self.env, self.text = env, text

    def visit(self, node):
        method = _VISITORS.get(type(node))
        if method is None:
            method = getattr(_Eval, "v_" + type(node).__name__, None)
            if method is None:
                raise ExprError(f"{type(node).__name__} is not allowed in expression "
                                f"{self.text!r}")
            _VISITORS[type(node)] = method   # found by name once per node type, then by type
        return self._check(method(self, node))

    def _check(self, value):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            raise ExprError(f"value out of range in expression {self.text!r}")
        if isinstance(value, str) and len(value) > MAX_LEN:
            raise ExprError(f"string longer than {MAX_LEN} characters in expression {self.text!r}")
        return value

    def v_Constant(self, n):
        if isinstance(n.value, (int, float, str, bool)) or n.value is None:
            return n.value
        raise ExprError(f"constant {n.value!r} is not allowed")

    def v_Name(self, n):
        if n.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[n.id]
        if n.id not in self.env:
            from .errors import did_you_mean
            raise ExprError(f"unknown parameter '{n.id}' in expression {self.text!r}"
                            f"{did_you_mean(n.id, self.env)}")
        return self.env[n.id]

    def v_BinOp(self, n):
        op = _BIN.get(type(n.op))
        if op is None:
            raise ExprError(f"operator {type(n.op).__name__} is not allowed")
        a, b = self.visit(n.left), self.visit(n.right)
        if op is operator.pow and (not isinstance(b, (int, float)) or abs(b) > 64):
            raise ExprError(f"exponent too large in expression {self.text!r}")
        if op is not operator.add and (isinstance(a, str) or isinstance(b, str)):
            # 'ab' * 10**9 would allocate gigabytes; '%' would be string formatting
            raise ExprError(f"cannot apply {type(n.op).__name__} to {a!r} and {b!r} in "
                            f"expression {self.text!r}")
        try:
            return op(a, b)
        except ZeroDivisionError:
            raise ExprError(f"division by zero in expression {self.text!r}") from None
        except OverflowError:
            raise ExprError(f"value out of range in expression {self.text!r}") from None
        except TypeError:
            raise ExprError(f"cannot apply {type(n.op).__name__} to {a!r} and {b!r} "
                            f"in expression {self.text!r}") from None

    def v_UnaryOp(self, n):
        v = self.visit(n.operand)
        if isinstance(n.op, ast.Not):
            return not v
        if not isinstance(n.op, (ast.USub, ast.UAdd)):
            raise ExprError("operator not allowed")
        if not isinstance(v, (int, float)):
            raise ExprError(f"cannot apply {type(n.op).__name__} to {v!r} in "
                            f"expression {self.text!r}")
        return -v if isinstance(n.op, ast.USub) else +v

    def v_BoolOp(self, n):
        if isinstance(n.op, ast.And):
            v = True
            for x in n.values:
                v = self.visit(x)
                if not v:
                    return v
            return v
        v = False
        for x in n.values:
            v = self.visit(x)
            if v:
                return v
        return v

    def v_Compare(self, n):
        left = self.visit(n.left)
        for op, right_node in zip(n.ops, n.comparators):
            fn = _CMP.get(type(op))
            if fn is None:
                raise ExprError(f"comparison {type(op).__name__} is not allowed")
            right = self.visit(right_node)
            try:
                if not fn(left, right):
                    return False
            except TypeError:
                raise ExprError(f"cannot compare {left!r} and {right!r}") from None
            left = right
        return True

    def v_Attribute(self, n):
        """`$s.width`: a field of a record (an entry of a list-valued builtin)."""
        record = self.visit(n.value)
        if not isinstance(record, dict):
            raise ExprError(f"{record!r} has no field '{n.attr}' in expression {self.text!r}")
        if n.attr not in record:
            from .errors import did_you_mean
            raise ExprError(f"no field '{n.attr}' in expression {self.text!r} (the entry has "
                            f"{', '.join(record)}){did_you_mean(n.attr, record)}")
        return record[n.attr]

    def v_IfExp(self, n):
        return self.visit(n.body) if self.visit(n.test) else self.visit(n.orelse)

    def v_Call(self, n):
        if not isinstance(n.func, ast.Name) or n.func.id not in _FUNCS:
            raise ExprError(f"only {', '.join(sorted(_FUNCS))} may be called in expressions")
        allowed = _KEYWORDS.get(n.func.id, ())
        for kw in n.keywords:
            if kw.arg not in allowed:
                raise ExprError(f"{n.func.id}() takes no keyword argument {kw.arg!r}"
                                + (f" (it takes {', '.join(allowed)})" if allowed else ""))
        args = [self.visit(a) for a in n.args]
        kwargs = {kw.arg: self.visit(kw.value) for kw in n.keywords}
        if (n.func.id == "round" and len(args) == 2 and isinstance(args[1], int)
                and abs(args[1]) > 64):
            # round(x, -10**9) computes 10**(10**9): hours of CPU
            raise ExprError(f"round(): ndigits {args[1]} out of range in expression {self.text!r}")
        try:
            return _FUNCS[n.func.id](*args, **kwargs)
        except (TypeError, ValueError, OverflowError, ZeroDivisionError) as e:
            raise ExprError(f"{n.func.id}(): {e}") from None
