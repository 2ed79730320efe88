"""Whether a document is valid against the spec schema, answered without jsonschema.

Importing jsonschema takes ~70 ms, a third of `secompile count` (benchmarks/bench_startup.py),
and almost every spec a command reads is valid. So schema.py first asks `accepts(doc, schema)`,
and only a yes is trusted: on any problem, or any keyword this module does not know, the
document goes to jsonschema, whose errors are the ones reported. No message comes from here.

It knows the keywords the spec schema uses, with their Draft 2020-12 meaning and schema.py's
integer rule (2.0 and booleans are not integers). Where in doubt it says no (containers in
`enum`/`const`, a `$ref` that is not `#/...`, a nested `$id`): a no only costs the import.
"""
from __future__ import annotations

import numbers
import re


class _Unknown(Exception):
    """A keyword (or form of one) this module does not check: leave it to jsonschema."""


_IGNORED = frozenset({"description", "title", "x-expect", "$schema", "$defs", "$comment",
                      "default", "examples"})
_TYPES = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: isinstance(x, str),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
    "integer": lambda x: isinstance(x, int) and not isinstance(x, bool),
    "number": lambda x: isinstance(x, numbers.Number) and not isinstance(x, bool),
}
_PATTERNS: dict[str, re.Pattern] = {}


def accepts(instance, schema: dict) -> bool:
    """True only where jsonschema (schema.py's validator) finds no error in `instance`."""
    try:
        return _valid(instance, schema, schema)
    except _Unknown:
        return False


def _same(a, b) -> bool:
    """JSON equality of scalars (True is not 1); two containers are left to jsonschema."""
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        if isinstance(a, (dict, list)) and isinstance(b, (dict, list)):
            raise _Unknown
        return False
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _valid(x, schema, root) -> bool:
    if schema is True:
        return True
    if not isinstance(schema, dict):
        raise _Unknown
    for key, value in schema.items():
        if key in _IGNORED or (key == "$id" and schema is root):
            continue
        if not _keyword(key, value, x, schema, root):
            return False
    return True


def _keyword(key, value, x, schema, root) -> bool:   # noqa: C901 (one branch per keyword)
    if key == "$ref":
        if not isinstance(value, str) or not value.startswith("#/"):
            raise _Unknown
        target = root
        for part in value[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return _valid(x, target, root)
    if key == "type":
        kinds = value if isinstance(value, list) else [value]
        if any(k not in _TYPES for k in kinds):
            raise _Unknown
        return any(_TYPES[k](x) for k in kinds)
    if key == "anyOf":
        return any(_valid(x, s, root) for s in value)
    if key == "allOf":
        return all(_valid(x, s, root) for s in value)
    if key == "if":
        branch = schema.get("then", True) if _valid(x, value, root) else schema.get("else", True)
        return _valid(x, branch, root)
    if key in ("then", "else"):
        return True                                   # checked with their `if`
    if key == "enum":
        return any(_same(x, v) for v in value)
    if key == "const":
        return _same(x, value)
    if isinstance(x, dict):
        return _object_keyword(key, value, x, schema, root)
    if isinstance(x, list):
        if key == "items":
            if "prefixItems" in schema:
                raise _Unknown
            return all(_valid(item, value, root) for item in x)
        if key in ("minItems", "maxItems"):
            return len(x) >= value if key == "minItems" else len(x) <= value
    elif isinstance(x, str):
        if key == "pattern":
            if value not in _PATTERNS:
                _PATTERNS[value] = re.compile(value)
            return _PATTERNS[value].search(x) is not None
        if key == "minLength":
            return len(x) >= value
    elif _TYPES["number"](x) and key == "minimum":
        return x >= value
    if key in _OTHER_TYPES_ONLY:
        return True                                   # the keyword does not apply to x's type
    raise _Unknown


def _object_keyword(key, value, x: dict, schema, root) -> bool:
    if key == "properties":
        return all(_valid(x[k], s, root) for k, s in value.items() if k in x)
    if key == "additionalProperties":
        if "patternProperties" in schema:
            raise _Unknown
        known = schema.get("properties", {})
        return all(_valid(x[k], value, root) for k in x if k not in known)
    if key == "required":
        return all(k in x for k in value)
    if key == "propertyNames":
        return all(_valid(k, value, root) for k in x)
    if key == "minProperties":
        return len(x) >= value
    if key in _OTHER_TYPES_ONLY:
        return True
    raise _Unknown


# keywords that constrain one JSON type and pass every other (the ones checked above)
_OTHER_TYPES_ONLY = frozenset({"properties", "additionalProperties", "required", "propertyNames",
                               "minProperties", "items", "minItems", "maxItems", "pattern",
                               "minLength", "minimum"})

__all__ = ["accepts"]
