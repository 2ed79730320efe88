"""The IR: a networkx DiGraph of typed ops, keyed by stable hierarchical paths.

Node paths name the hierarchy (`stages.2.blocks.0.branch.conv2.conv`); the torch
backend turns it into nested modules, so paths double as `state_dict` prefixes.
`Graph.order` is the deterministic topological order (construction order, with
inserted nodes placed right after the node they hang off).

About 400 lines on purpose: the graph and every method that rewires it while keeping its
records true (scopes, composites, attention modules, the scope index) live in one class.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json

from . import digraph as nx  # networkx's DiGraph, without importing networkx
from . import ops, verify
from .records import (
    RESULT_FIELD,
    AttentionModule,
    Composite,
    Scope,
    ScopeChains,
    Stage,
    inside,
    named_nodes,
)
from .records import prefixes as _prefixes


class PathTaken(ops.OpError):
    """A node path that names a node already, or a scope of nodes, or lies inside a node (the
    torch backend nests modules by path): a user's layer names clash."""


class Graph:
    def __init__(self, name: str, input_shape: tuple):
        self.name = name
        self.input_shape = tuple(input_shape)
        self.g = nx.DiGraph()
        self._rank: dict[str, tuple] = {}   # sort key giving the deterministic order
        self._order: list[str] | None = []
        self._inserted = 0
        self.blocks: dict[str, Composite] = {}      # stage-level blocks, in order
        self.composites: dict[str, Composite] = {}  # every residual/parallel scope, any depth
        self.stages: list[Stage] = []
        # top-level scopes: stem, blocks, layer stages, head
        self.units: list[str] = []
        self.scopes: dict[str, Scope] = {}          # every template instance, any depth
        self.attention: dict[str, AttentionModule] = {}   # scope -> module, outermost only
        self._unit_set: set = set()
        self.output: str | None = None
        self._scopes: dict[str, int] = {}   # every proper prefix of a node path -> its nodes
        self._chains = ScopeChains()         # path -> its proper prefixes (shared by copies)

    # -- construction ----------------------------------------------------------------
    def add(self, path: str, op: str, attrs: dict, inputs: list[str],
            after: str | None = None) -> str:
        """Add a node, inferring its shape (raises ops.OpError). Returns its path."""
        prefixes = self._claim(path)
        ops.check_attrs(op, attrs)
        nodes = self.g._node
        shape = ops.infer(op, attrs, [nodes[i]["shape"] for i in inputs])
        self.g.add_node_reading(path, {"op": op, "attrs": attrs, "inputs": list(inputs),
                                       "shape": shape}, inputs)
        scopes = self._scopes
        for prefix in prefixes:
            scopes[prefix] = scopes.get(prefix, 0) + 1
        if after is None:
            self._rank[path] = (len(self._rank),)
            if self._order is not None:
                self._order.append(path)
        else:  # placed after `after` (and after whatever was inserted there before)
            self._inserted += 1
            self._rank[path] = self._rank[after] + (self._inserted,)
            self._order = None
        return path

    def _claim(self, path: str) -> tuple:
        """Refuse a path that is taken (PathTaken) -> its proper prefixes, outermost first."""
        prefixes = self._chains(path)
        why = self._refusal(path, prefixes)
        if why is not None:
            raise PathTaken(why)
        return prefixes

    def taken(self, path: str) -> str | None:
        """Why `add` would refuse a node at `path`, or None where it is free."""
        return self._refusal(path, self._chains(path))

    def _refusal(self, path: str, prefixes: tuple) -> str | None:
        nodes = self.g._node
        if path in nodes:
            return "two layers get this name"
        if path in self._scopes:
            return "a layer gets the name of a scope holding other layers"
        for q in prefixes:
            if q in nodes:
                return f"a layer would be inside the layer {q}"
        return None

    @property
    def order(self) -> list[str]:
        if self._order is None:
            # Rank order, kept topological: a node inserted after an anchor may feed nodes
            # inserted there before it (two SE blocks on one tensor). Where the rank order is
            # topological already, this is exactly the rank order.
            self._order = list(nx.lexicographical_topological_sort(self.g,
                                                                   key=self._rank.__getitem__))
        return self._order

    def rewire(self, old: str, new: str, consumers: list[str]) -> None:
        """Make `consumers` read `new` wherever they read `old`."""
        for c in consumers:
            data = self.g.nodes[c]
            data["inputs"] = [new if i == old else i for i in data["inputs"]]
            self.g.remove_edge(old, c)
            for idx, src in enumerate(data["inputs"]):
                if src == new:
                    self.g.add_edge(new, c, index=idx)
        if self.output == old:
            self.output = new

    def insert_between(self, u: str, out: str, consumers: list[str], scope: str,
                       owner: str | None = None) -> None:
        """Put the nodes of `scope` (added already, reading `u`, giving `out`) between `u` and
        `consumers`, keeping the records true: a scope a consumer sits in that began at `u` now
        begins at `out` (a shortcut or branch ending at `u` ends at `out`), and a scope around
        `scope` that ended at `u` now ends at `out`. `owner`, the block the pass put `scope`
        into, keeps its own input, branch and shortcut."""
        self.rewire(u, out, consumers)
        for consumer in consumers:
            for prefix in _prefixes(consumer, proper=False):
                for other in (self.blocks.get(prefix), self.composites.get(prefix)):
                    if other is None or other.path == owner:
                        continue
                    if other.input == u:
                        other.input = out
                    if other.merge == consumer:
                        if other.shortcut_out == u:
                            other.shortcut_out = out
                        if other.branch_out == u:
                            other.branch_out = out
                rec = self.scopes.get(prefix)
                if rec is not None and prefix != owner and rec.entry == u:
                    self.scopes[prefix] = dataclasses.replace(rec, entry=out)
                module = self.attention.get(prefix)   # a module that read u reads `out` now
                if module is not None and module.input == u:
                    self.attention[prefix] = dataclasses.replace(module, input=out)
        for prefix in _prefixes(scope):
            for other in (self.blocks.get(prefix), self.composites.get(prefix)):
                if other is not None and other.output == u:
                    other.output = out
            rec = self.scopes.get(prefix)
            if rec is not None and rec.exit == u:
                self.scopes[prefix] = dataclasses.replace(rec, exit=out)

    def replace(self, path: str, op: str, attrs: dict, inputs: list[str]) -> None:
        """Make node `path` another op over other inputs (a fusion); its value, consumers and
        place in the order stay, so its output shape must too."""
        ops.check_attrs(op, attrs)
        shape = ops.infer(op, attrs, [self.shape(i) for i in inputs])
        if shape != self.shape(path):
            raise ValueError(f"replacing {path} would change its shape {self.shape(path)} "
                             f"to {shape}")
        for src in list(self.g.predecessors(path)):
            self.g.remove_edge(src, path)
        self.g.nodes[path].update(op=op, attrs=attrs, inputs=list(inputs))
        for i, src in enumerate(inputs):
            self.g.add_edge(src, path, index=i)
        self._order = None

    def remove(self, path: str, successor: str | None = None) -> None:
        """Drop a node nothing reads any more. `successor`: the node that now gives its value (a
        fusion absorbed it): every record naming `path` names it instead. Without one, a node a
        record names stays (ValueError): records never name a node that is gone."""
        if list(self.g.successors(path)) or (path == self.output and successor is None):
            raise ValueError(f"cannot remove {path}: it is still read")
        if successor is not None:
            self._rename(path, successor)
        elif self._naming(path):
            raise ValueError(f"cannot remove {path}: {', '.join(self._naming(path))} name it")
        self._drop(path)

    def prune(self, keep, output: str | None = None) -> None:
        """Keep only the nodes in `keep` (with everything they read), `output` (default: the
        current one) becoming the graph's output. Records stay true: a scope with no node left
        goes (its stage, block, unit, composite, template instance, attention module); a live one
        whose result node went ends at its last node kept; one naming another node that went (a
        cut block's merge) goes, as it no longer describes the nodes left."""
        keep = set(keep)
        output = self.output if output is None else output
        if output not in keep:
            raise ValueError(f"cannot prune: the output {output} is not kept")
        late = next(((p, i) for p in keep for i in self.inputs(p) if i not in keep), None)
        if late is not None:
            raise ValueError(f"cannot keep {late[0]} without its input {late[1]}")
        last_kept: dict[str, str] = {}   # scope -> its last node kept, in order
        for p in self.order:
            if p in keep:
                last_kept.update((q, p) for q in _prefixes(p, proper=False))
        gone = [p for p in self.order if p not in keep]
        for p in reversed(gone):
            self._drop(p)
        self.output = output
        gone_set = set(gone)

        def cut(path, rec) -> dict | None:
            """The fields to change, or None: the record goes."""
            if path not in last_kept:
                return None
            changes = {}
            result = RESULT_FIELD[type(rec)]
            if getattr(rec, result) in gone_set:
                changes[result] = last_kept[path]
            named = {**named_nodes(rec), **changes}
            return None if any(n in gone_set for n in named.values()) else changes

        for records in (self.blocks, self.composites):   # mutable: blocks share composites'
            for path, rec in list(records.items()):
                changes = cut(path, rec)
                if changes is None:
                    del records[path]
                else:
                    for f, node in changes.items():
                        setattr(rec, f, node)
        for records in (self.scopes, self.attention):     # frozen: replaced
            for path, rec in list(records.items()):
                changes = cut(path, rec)
                if changes is None:
                    del records[path]
                elif changes:
                    records[path] = dataclasses.replace(rec, **changes)
        self.stages = [st for st in self.stages if st.path in last_kept]
        for st in self.stages:
            st.blocks = [b for b in st.blocks if b in self.blocks]
        self.units = [u for u in self.units if u in last_kept]
        self._index_units()

    def _drop(self, path: str) -> None:
        self.g.remove_node(path)
        del self._rank[path]
        self._order = None
        for prefix in _prefixes(path):   # a scope with no node left is free to be named again
            self._scopes[prefix] -= 1
            if not self._scopes[prefix]:
                del self._scopes[prefix]

    def _composite_records(self) -> list[Composite]:   # a block is also in composites
        return list({id(c): c for c in (*self.blocks.values(), *self.composites.values())}.values())

    def _naming(self, node: str) -> list[str]:
        """'record.field' for each record field naming `node`."""
        found = [f"{c.path}.{f}" for c in self._composite_records()
                 for f, n in named_nodes(c).items() if n == node]
        for records in (self.scopes, self.attention):
            found += [f"{k}.{f}" for k, rec in records.items()
                      for f, n in named_nodes(rec).items() if n == node]
        return found

    def _rename(self, old: str, new: str) -> None:
        """Every record naming node `old` names `new`, which now gives its value."""
        for c in self._composite_records():
            for f, n in named_nodes(c).items():
                if n == old:
                    setattr(c, f, new)
        for records in (self.scopes, self.attention):
            for k, rec in records.items():
                changes = {f: new for f, n in named_nodes(rec).items() if n == old}
                if changes:
                    records[k] = dataclasses.replace(rec, **changes)
        if self.output == old:
            self.output = new

    # -- records ---------------------------------------------------------------------
    def node_count(self) -> int:
        """A mark for `nodes_since`: how many nodes the graph holds now."""
        return self.g.number_of_nodes()

    def nodes_since(self, mark: int) -> list[str]:
        """The nodes added after `node_count()` gave `mark`, in order; read from the end, so
        that a template instance costs its own nodes, not the whole graph's."""
        return list(itertools.islice(reversed(self.g.nodes), self.node_count() - mark))[::-1]

    def add_scope(self, scope: Scope) -> None:
        self.scopes[scope.path] = scope

    def add_attention(self, module: AttentionModule) -> None:
        """Record an attention module; modules recorded inside its scope were its parts (CBAM's
        two gates) and are dropped: a module is counted once, at its outermost scope."""
        inner = module.scope + "."   # its parts were recorded as it was built: the newest ones
        for k in list(itertools.takewhile(lambda k: k.startswith(inner), reversed(self.attention))):
            del self.attention[k]
        self.attention[module.scope] = module
        rec = self.scopes.get(module.scope)
        if rec is not None and rec.kind != "attention":
            self.scopes[module.scope] = dataclasses.replace(rec, kind="attention")

    def param_count(self, paths) -> int:
        nodes = self.g._node
        return sum(ops.params(nodes[p]["op"], nodes[p]["attrs"],
                              [nodes[i]["shape"] for i in nodes[p]["inputs"]]) for p in paths)

    @property
    def se(self) -> dict[str, dict]:
        """Attention scope -> its facts as a flat dict (position, input, channels, reduced,
        module, kind, ...), in record order: the view `graph.se` has always been."""
        return {s: a.facts(self.scopes[s].params if s in self.scopes else {})
                for s, a in self.attention.items()}

    def attention_of(self, path: str) -> str | None:
        """The attention scope a node or scope lies in, or None."""
        for prefix in _prefixes(path, proper=False):
            if prefix in self.attention:
                return prefix
        return None

    def scope_output_shape(self, prefix: str) -> list:
        """The shape of the last node (in order) under `prefix`, [] when there is none."""
        for p in reversed(self.order):
            if inside(p, prefix):
                return list(self.shape(p))
        return []

    # -- queries ---------------------------------------------------------------------
    def __contains__(self, path) -> bool:
        return path in self.g

    def __len__(self) -> int:
        return len(self.order)

    # the node dicts read directly (not through the `nodes` view): these run for every node
    def node(self, path: str) -> dict:
        return self.g._node[path]

    def shape(self, path: str) -> tuple:
        return self.g._node[path]["shape"]

    def op(self, path: str) -> str:
        return self.g._node[path]["op"]

    def inputs(self, path: str) -> list[str]:
        return self.g._node[path]["inputs"]

    def consumers(self, path: str) -> list[str]:
        return sorted(self.g.successors(path), key=self._rank.__getitem__)

    def nodes(self):
        """(path, data) in deterministic topological order."""
        for p in self.order:
            yield p, self.g.nodes[p]

    def add_unit(self, scope: str) -> None:
        self.units.append(scope)
        self._unit_set.add(scope)

    def scope_prefixes(self):
        """Every proper prefix of a node path ('a', 'a.b' of 'a.b.c'): the scopes holding nodes."""
        return self._scopes.keys()

    def unit_of(self, path: str) -> str | None:
        units = self._unit_set if len(self._unit_set) == len(self.units) else self._index_units()
        prefix = ""
        for seg in path.split("."):
            prefix = f"{prefix}.{seg}" if prefix else seg
            if prefix in units:
                return prefix
        return None

    def _index_units(self) -> set:
        self._unit_set = set(self.units)
        return self._unit_set

    def copy(self) -> "Graph":
        """A copy that passes may rewrite: node data and scopes are copied, attrs are shared."""
        new = copy.copy(self)
        new.g = self.g.copy(lambda d: {**d, "inputs": list(d["inputs"])})
        new._rank = dict(self._rank)
        new._scopes = dict(self._scopes)
        new._order = list(self._order) if self._order is not None else None
        new.blocks = {k: copy.copy(v) for k, v in self.blocks.items()}
        new.composites = {k: new.blocks.get(k) or copy.copy(v)
                          for k, v in self.composites.items()}
        new.stages = [Stage(s.path, s.name, list(s.blocks)) for s in self.stages]
        new.units = list(self.units)
        new._unit_set = set(self.units)
        new.scopes = dict(self.scopes)          # records are frozen: shared until replaced
        new.attention = dict(self.attention)
        return new

    def check(self) -> None:
        """Re-derive every shape, weight and scope from the ops (ir/verify.py); raises IRError."""
        verify.check(self)

    def to_dict(self) -> dict:
        """A plain, JSON-able description (also what the structural hash covers)."""
        return {
            "name": self.name,
            "input": list(self.input_shape),
            "output": self.output,
            "nodes": [{"path": p, "op": d["op"], "attrs": _jsonable(d["attrs"]),
                       "inputs": d["inputs"],
                       "shape": list(d["shape"])} for p, d in self.nodes()],
        }

    def structural_hash(self) -> str:
        d = self.to_dict()
        d.pop("name")
        blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


def _jsonable(attrs: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(attrs.items())}
