"""Families: network parameters (`params:`) and named sizes (`variants:`) of one spec file.

    params: {width: 1.0, depth: 1.0}            # name -> default; the default's type is the type
    variants:
      efficientnet_b4: {params: {width: 1.4, depth: 1.8}, input: {size: 320}}

`apply_variant` writes a variant's parameters and input size into (a copy of) the data, marked
at the variant's lines, and names the spec after the variant; `param_problems` checks the
parameter values (after variants and overrides) against the declared defaults: an unknown name
or a value of another type is a located problem at the value (the override, the variant line).
"""
from __future__ import annotations

import copy

from .errors import Problem, SpecError, did_you_mean
from .loader import SourceMap

_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _type_name(value) -> str:
    return _TYPES.get(type(value), type(value).__name__)


def accepts(default, value) -> bool:
    """Whether `value` fits a parameter declared with `default` (an int fits a float)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return type(value) is type(default)


def param_problems(data, smap: SourceMap, declared: dict | None) -> list[tuple]:
    """[(path, Problem, is an unknown name)] for the network parameters of `data`."""
    params = data.get("params") if isinstance(data, dict) else None
    if not isinstance(params, dict):
        return []
    declared = declared or {}
    out = []
    for name, value in params.items():
        path = ("params", name)
        if name not in declared:
            what = did_you_mean(name, declared) if declared else " (this spec declares none)"
            out.append((path, smap.problem(path, f"unknown network parameter '{name}'{what}",
                                           key=True), True))
        elif not accepts(declared[name], value) and isinstance(
                value, (bool, int, float, str)):   # other kinds: the schema's problem
            out.append((path, smap.problem(path, f"network parameter '{name}' is "
                                                 f"{_type_name(declared[name])} (default "
                                                 f"{declared[name]!r}), got {value!r}"), False))
    return out


def variant_names(data) -> list[str]:
    variants = data.get("variants") if isinstance(data, dict) else None
    return list(variants) if isinstance(variants, dict) else []


def apply_variant(data, smap: SourceMap, name: str) -> tuple[dict, SourceMap]:
    """A copy of (data, smap) with variant `name` applied. Raises SpecError if there is none."""
    variants = data.get("variants") if isinstance(data, dict) else None
    if not isinstance(variants, dict) or not isinstance(variants.get(name), dict):
        known = variant_names(data)
        where = ("variants",) if known else ("name",)
        hint = did_you_mean(name, known) if known else ""
        raise SpecError([smap.problem(where, f"no variant '{name}' in this family{hint}"
                                             + ("" if known else " (it has no variants)"))])
    entry = variants[name]
    data = copy.deepcopy(data)
    values, keys = dict(smap.values), dict(smap.keys)
    base = ("variants", name)
    given = entry.get("params")
    if isinstance(given, dict):
        if not isinstance(data.get("params"), dict):
            data["params"] = {}
        for k, v in given.items():
            data["params"][k] = copy.deepcopy(v)
            values[("params", k)] = smap.mark(base + ("params", k))
            keys[("params", k)] = smap.mark(base + ("params", k), key=True)
    inp = entry.get("input")
    if isinstance(inp, dict) and "size" in inp:
        if not isinstance(data.get("input"), dict):
            data["input"] = {"channels": 3}
        data["input"]["size"] = copy.deepcopy(inp["size"])
        for p in [p for p in values if p[:2] == ("input", "size")]:
            del values[p]
        values[("input", "size")] = smap.mark(base + ("input", "size"))
        for i in range(len(inp["size"]) if isinstance(inp["size"], list) else 0):
            values[("input", "size", i)] = smap.mark(base + ("input", "size", i))
    data["name"] = name
    values[("name",)] = smap.mark(base, key=True)
    return data, SourceMap(smap.file, values, keys)


__all__ = ["apply_variant", "param_problems", "variant_names", "accepts", "Problem"]
