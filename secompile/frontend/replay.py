"""Template bodies built once, added again: instances that cannot differ share one expansion.

An instance's body (its `layers:`, or an attention body's lists) depends on nothing but the
values of the names its expressions read and the shape of its input: two instances that agree
on both build the same nodes under different scopes. SE-ResNeXt-50's 16 SE modules are 4 such
bodies (one per stage width), and resolving their values and building their layers was most of
what inserting them cost (issue 23: one count in ~10 ms).

`Replays` lives for one expansion or one SE pass (never longer: it is no cache of results). It
keeps the nodes of each body built, keyed by its template, those values and the input shape; an
instance that finds its key gets the same nodes under its own scope (`Expander.replay`).

Only bodies that build nodes and nothing else are kept: none holding a `block:`, `residual:` or
`parallel:` (they record scopes, composites and attention modules as they build), none with a
`$`-string that does not parse, none whose names have a value that cannot be compared (a list).
A replay runs only where it cannot fail (every path free, the node limit not reached); else the
instance is built as usual, so each problem is found, and located, where it always was.
"""
from __future__ import annotations

from ..ir.records import Composite
from ..lang import expr
from ..lang.document import Template

RECORDING_KINDS = ("block", "residual", "parallel")   # layers that record more than nodes
NOT_BODY = ("description", "params", "vars")            # bound before the body is built
FIELDS = ("output", "merge", "branch_out", "shortcut_out")   # the composite's nodes
INPUT = ()   # in a kept body: the instance's input (other nodes are paths below its scope)


class Replays:
    def __init__(self):
        # id(template) -> (template, the names its body reads or None: never replayed); the
        # template is held, so its id is not reused while the key is here
        self._reads: dict[int, tuple] = {}
        self._bodies: dict[tuple, tuple] = {}   # key -> (node records, kind, composite fields)

    def key(self, tmpl: Template, env: dict, shape: tuple) -> tuple | None:
        """What a body's nodes depend on (None: this template's bodies are never kept)."""
        found = self._reads.get(id(tmpl))
        if found is None:
            found = self._reads[id(tmpl)] = (tmpl, _names_read(tmpl.body))
        names = found[1]
        if names is None:
            return None
        values = tuple((n, None) if n not in env else (n, type(env[n].value), env[n].value)
                       for n in names)   # typed: 1, 1.0 and True are equal keys otherwise
        key = (id(tmpl), tuple(shape), values)
        try:
            hash(key)
        except TypeError:   # a list value (a foreach entry, regnet_stages): not compared
            return None
        return key

    def get(self, key: tuple) -> tuple | None:
        """The body kept under `key` (`Expander.replay` adds it), or None."""
        return self._bodies.get(key)

    def keep(self, key: tuple, graph, comp: Composite, built: list[str]) -> None:
        """Keep the body just built: nodes `built` (in order) under the scope of `comp`, reading
        its input. A body that reads or names anything else is not kept."""
        prefix, x = comp.path + ".", comp.input
        inside = set(built)

        def relative(node):   # INPUT, or the path below the scope
            return INPUT if node == x else node[len(prefix):] if node in inside else None
        records = []
        for path in built:
            d = graph.node(path)
            inputs = tuple(relative(i) for i in d["inputs"])
            if not path.startswith(prefix) or None in inputs:
                return
            records.append((path[len(prefix):], d["op"], dict(d["attrs"]), inputs))
        fields = {f: relative(getattr(comp, f)) for f in FIELDS if getattr(comp, f) is not None}
        if comp.output not in inside or None in fields.values():
            return
        self._bodies[key] = (tuple(records), comp.kind, fields)


def _names_read(body: dict) -> frozenset | None:
    """The names a body's `$`-strings read; None where it may record more than nodes: a
    `parallel` body (a select merge instantiates a template), anything nested in a body that
    records (a `block:`, a residual or parallel layer). A top-level `residual` records only the
    instance's own composite, which a replay rebuilds."""
    if "parallel" in body:
        return None
    names: set = set()
    stack: list = [v for k, v in body.items() if k not in NOT_BODY]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if any(k in RECORDING_KINDS for k in value):
                return None
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif value in RECORDING_KINDS:   # a layer written as its kind alone
            return None
        elif expr.is_expr(value):
            try:
                names.update(expr.reads(value))
            except expr.ExprError:
                return None
    return frozenset(names)


__all__ = ["Replays"]
