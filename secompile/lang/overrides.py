"""Overrides: change a loaded spec by dotted path before it is validated.

    stages.2.repeat=8          input.size=320          se.0.reduction=8
    head.1.linear.out=365      stages[0].repeat=2      se.0.where.stages=[0, 1, 2]

KEY is a path into the spec's data: mapping keys and list indices (numbers; negative ones count
from the end; the index one past the end appends), written `a.0.b` or `a[0].b` (the form error
messages print). VALUE is YAML, parsed with the spec loader (safe, bounded, located).

Every override carries the marks of what it wrote: the file is where it came from (`--set`,
`--vary`, ...), the line is its index (1-based, in the order given), the column is the column
in its `KEY=VALUE` text. `apply_overrides` writes the values into a copy of the data and of the
source map, so every later problem caused by an override — schema, templates, shapes, SE rules —
is reported at the override: `--set:1:17: stages[0].repeat: expected integer, got string 'x'`.

    parse_override("stages.0.repeat=x", index=1, file="--set") -> Override
    parse_vary("se.0.reduction=[4, 8]", index=1)               -> (key, [Override, Override])
    make_override("stages.0.repeat", 8)                        -> Override   (API values)
    as_overrides(spec_overrides)                               -> list[Override]
    apply_overrides(data, smap, overrides)                     -> (data, smap)   (copies)

`secompile.lang.document.load_spec(source, overrides=...)` is the usual entry point; the applied
overrides are kept on `Spec.overrides` (and `Spec.override_dict()`) for reports and metadata.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import yaml

from .errors import Mark, Problem, SpecError, did_you_mean, format_path
from .loader import SourceMap, load_yaml_text

MAX_OVERRIDE_TEXT = 4096   # one KEY=VALUE (the value goes through the loader's own limits too)

# Top-level keys the schema accepts (spec.schema.SCHEMA), for "did you mean" on a key that is
# absent; kept here so that applying overrides does not need the schema module.
TOP_LEVEL = ("name", "description", "version", "include", "input", "blocks", "stem",
             "stages", "head", "se", "params", "variants")


@dataclass(frozen=True)
class Override:
    """One applied change: `path` (keys and int indices) gets `value`."""

    key: str                      # canonical dotted key: 'stages.0.repeat'
    path: tuple                   # ('stages', 0, 'repeat')
    value: object
    text: str                     # 'KEY=VALUE' as given (or as made for API values)
    file: str = "--set"
    index: int = 1                # 1-based: the line of every mark
    key_cols: tuple = ()          # 1-based column of each path segment in `text`
    value_col: int = 1            # 1-based column of the value in `text`
    marks: tuple = ()             # ((relative path, Mark), ...) of the value and everything in it
    key_marks: tuple = ()         # ((relative path, Mark), ...) of mapping keys inside the value

    def mark(self, col: int) -> Mark:
        return Mark(self.file, self.index, col)

    @property
    def value_text(self) -> str:
        return self.text[self.value_col - 1:]

    def as_pair(self) -> tuple:
        return self.key, self.value


def format_value(value) -> str:
    """A value as one line of YAML flow text: 8, all, [0, 1, 2], {stages: all}."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()
    return text[:-3].strip() if text.endswith("\n...") else text


# -- parsing -------------------------------------------------------------------------------
_SEG = re.compile(r"[^.\[\]=\s]+")


def _problem(file, index, col, path, message) -> SpecError:
    return SpecError([Problem(Mark(file, index, col), path, message)])


def parse_key(key: str, *, file: str = "--set", index: int = 1,
              col0: int = 1) -> tuple[tuple, tuple]:
    """'stages[0].repeat' / 'stages.0.repeat' -> (('stages', 0, 'repeat'), (col, col, col))."""
    path, cols, i = [], [], 0
    if not key:
        raise _problem(file, index, col0, "<override>",
                       "missing KEY before '=' (KEY is a dotted path into the spec, e.g. "
                       "stages.2.repeat)")
    while i < len(key):
        if key[i] == "[":
            m = re.match(r"\[(-?\d+)\]", key[i:])
            if not m:
                raise _problem(file, index, col0 + i, "<override>",
                               f"bad index in key {key!r}: write [N]")
            path.append(int(m.group(1)))
            cols.append(col0 + i + 1)
            i += m.end()
        else:
            if path and not (key[i] == "." and i + 1 < len(key)):
                raise _problem(file, index, col0 + i, "<override>",
                               f"bad key {key!r}: segments are separated by '.'")
            if path:
                i += 1
            m = _SEG.match(key, i)
            if not m:
                raise _problem(file, index, col0 + i, "<override>",
                               f"bad key {key!r}: empty or invalid segment at column {col0 + i}")
            seg = m.group()
            path.append(int(seg) if re.fullmatch(r"-?\d+", seg) else seg)
            cols.append(col0 + i)
            i = m.end()
    return tuple(path), tuple(cols)


def canonical_key(path) -> str:
    return ".".join(str(p) for p in path)


def _value_marks(value_text: str, file: str, index: int, col0: int, prefix=()):
    """Parse VALUE with the spec loader; its marks moved to (file, index, col0 + col - 1)."""
    try:
        value, smap = load_yaml_text(value_text, file)
    except SpecError as e:
        raise SpecError([_shift(p, file, index, col0) for p in e.problems]) from None
    marks = _shifted(smap.values, file, index, col0, prefix)
    keys = _shifted(smap.keys, file, index, col0, prefix)
    return value, marks, keys


def _shift_mark(m: Mark, file, index, col0) -> Mark:
    return Mark(file, index, col0 + m.col - 1 if m.line == 1 else m.col)


def _shift(p: Problem, file, index, col0) -> Problem:
    return Problem(_shift_mark(p.mark, file, index, col0), "<value>", p.message)


def _shifted(table: dict, file, index, col0, prefix) -> dict:
    n = len(prefix)
    return {path[n:]: _shift_mark(m, file, index, col0) for path, m in table.items()
            if path[:n] == tuple(prefix)}


def _split(text: str, file: str, index: int, what: str) -> tuple[str, str, int]:
    if not isinstance(text, str):
        raise TypeError(f"an override is a 'KEY=VALUE' string, not {type(text).__name__}")
    if len(text) > MAX_OVERRIDE_TEXT:
        raise _problem(file, index, 1, "<override>", f"longer than {MAX_OVERRIDE_TEXT} characters")
    if "=" not in text:
        raise _problem(file, index, 1, "<override>", f"expected {what}, got {text!r}")
    key, _, value = text.partition("=")
    if not value.strip():
        raise _problem(file, index, len(key) + 2, key or "<override>",
                       "missing VALUE after '=' (YAML; write null for an empty value)")
    return key, value, len(key) + 2


def parse_override(text: str, *, index: int = 1, file: str = "--set") -> Override:
    """'KEY=VALUE' -> Override. Raises SpecError located at (file, index, column)."""
    key, value_text, vcol = _split(text, file, index, "KEY=VALUE")
    path, cols = parse_key(key, file=file, index=index)
    lead = len(value_text) - len(value_text.lstrip())
    value, marks, keys = _value_marks(value_text.strip(), file, index, vcol + lead)
    return Override(canonical_key(path), path, value, text, file, index, cols, vcol + lead,
                    tuple(marks.items()), tuple(keys.items()))


def parse_vary(text: str, *, index: int = 1, file: str = "--vary") -> tuple[str, list[Override]]:
    """'KEY=[a, b, c]' -> (canonical key, one Override per alternative, each located at its
    item)."""
    key, value_text, vcol = _split(text, file, index, "KEY=[ALTERNATIVES, ...]")
    path, cols = parse_key(key, file=file, index=index)
    lead = len(value_text) - len(value_text.lstrip())
    col0 = vcol + lead
    try:
        values, smap = load_yaml_text(value_text.strip(), file)
    except SpecError as e:
        raise SpecError([_shift(p, file, index, col0) for p in e.problems]) from None
    if not isinstance(values, list) or not values:
        raise _problem(file, index, col0, canonical_key(path),
                       f"expected a non-empty YAML list of alternatives ({key}=[A, B, ...]), "
                       f"got {value_text.strip()!r}")
    out = []
    for i, v in enumerate(values):
        marks = _shifted(smap.values, file, index, col0, (i,))
        keys = _shifted(smap.keys, file, index, col0, (i,))
        item_col = marks[()].col
        out.append(Override(canonical_key(path), path, v,
                            f"{canonical_key(path)}={format_value(v)}",
                            file, index, cols, item_col, tuple(marks.items()), tuple(keys.items())))
    return canonical_key(path), out


def make_override(key: str, value, *, index: int = 1, file: str = "<overrides>") -> Override:
    """An API override (a Python value, not YAML text); its marks point at the key."""
    path, cols = parse_key(str(key), file=file, index=index)
    text = f"{canonical_key(path)}={format_value(value)}"
    vcol = len(canonical_key(path)) + 2
    return Override(canonical_key(path), path, value, text, file, index, cols, vcol,
                    (((), Mark(file, index, vcol)),), ())


def as_overrides(overrides, *, file: str | None = None) -> list[Override]:
    """Normalise what users pass: a mapping {KEY: value} (Python values), an iterable of
    'KEY=VALUE' strings (YAML values, as on the command line) or of Override objects."""
    if overrides is None:
        return []
    if isinstance(overrides, Override):
        return [overrides]
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, Mapping):
        return [make_override(k, v, index=i, file=file or "<overrides>")
                for i, (k, v) in enumerate(overrides.items(), 1)]
    out = []
    for i, o in enumerate(overrides, 1):
        out.append(o if isinstance(o, Override)
                   else parse_override(o, index=i, file=file or "--set"))
    return out


# -- applying ------------------------------------------------------------------------------
def _copy(obj):
    if isinstance(obj, dict):
        return {k: _copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copy(v) for v in obj]
    return obj


def _kind(v) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    return "null" if v is None else type(v).__name__


def _resolve(data, o: Override) -> tuple:
    """Walk o.path in data -> (container, last key, normalised path). Raises SpecError."""
    node, done = data, ()
    for depth, seg in enumerate(o.path):
        last = depth == len(o.path) - 1
        col = o.key_cols[depth] if depth < len(o.key_cols) else 1
        here = format_path(done) if done else "the spec"
        if isinstance(node, list):
            if not isinstance(seg, int):
                raise _problem(o.file, o.index, col, format_path(done + (seg,)),
                               f"{here} is a list: index it with a number (0..{len(node) - 1})")
            i = seg + len(node) if seg < 0 else seg
            if not (0 <= i < len(node) or (last and i == len(node))):
                raise _problem(o.file, o.index, col, format_path(done + (seg,)),
                               f"index {seg} out of range ({here} has {len(node)} item"
                               f"{'s' if len(node) != 1 else ''})")
            seg = i
        elif isinstance(node, dict):
            if seg not in node and str(seg) in node:
                seg = str(seg)
            if seg not in node and not last:
                known = list(node) + (list(TOP_LEVEL) if not done else [])
                hint = did_you_mean(seg, known)
                if not done and seg in TOP_LEVEL:
                    msg = f"the spec has no '{seg}' to change; set it whole ({seg}=...)"
                else:
                    msg = f"unknown key '{seg}' in {here}{hint}"
                raise _problem(o.file, o.index, col, format_path(done + (seg,)), msg)
        else:
            raise _problem(o.file, o.index, col, format_path(done + (seg,)),
                           f"{format_path(done)} is {_kind(node)}, not a mapping or a list")
        if last:
            return node, seg, done + (seg,)
        node = node[seg]
        done = done + (seg,)
    raise _problem(o.file, o.index, 1, "<override>", "empty key")


def exists(data, path) -> bool:
    """Does `path` (keys and indices, negative ones from the end) name a value in `data`?"""
    node = data
    for seg in path:
        if isinstance(node, list) and isinstance(seg, int) and -len(node) <= seg < len(node):
            node = node[seg]
        elif isinstance(node, dict) and (seg in node or str(seg) in node):
            node = node[seg if seg in node else str(seg)]
        else:
            return False
    return True


def apply_overrides(data, smap: SourceMap, overrides) -> tuple[dict, SourceMap]:
    """Apply overrides in order to a copy of `data` (and of `smap`, re-marked at each override).
    The inputs are left untouched. Raises SpecError (all path problems at once)."""
    overrides = as_overrides(overrides)
    data = _copy(data)
    values, keys = dict(smap.values), dict(smap.keys)
    problems = []
    for o in overrides:
        try:
            container, last, path = _resolve(data, o)
        except SpecError as e:
            problems.extend(e.problems)
            continue
        if isinstance(container, list) and last == len(container):
            container.append(_copy(o.value))
        else:
            container[last] = _copy(o.value)
        n = len(path)
        for table in (values, keys):          # what the file said under this path is gone
            for p in [p for p in table if p[:n] == path and len(p) >= n]:
                del table[p]
        for rel, m in o.marks:
            values[path + tuple(rel)] = m
        values.setdefault(path, o.mark(o.value_col))
        for rel, m in o.key_marks:
            keys[path + tuple(rel)] = m
        keys[path] = o.mark(o.key_cols[-1] if o.key_cols else 1)
    if problems:
        raise SpecError(problems)
    return data, SourceMap(smap.file, values, keys)


__all__ = ["Override", "parse_override", "parse_vary", "parse_key", "make_override", "as_overrides",
           "apply_overrides", "exists", "format_value", "canonical_key"]
