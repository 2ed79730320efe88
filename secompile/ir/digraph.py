"""The directed graph under `ir.graph.Graph`: the part of networkx's DiGraph the IR uses.

`import networkx` costs more than the rest of `secompile count` together (it imports every
algorithm and scans the installed backends' entry points), and the IR uses a dozen methods of
one class and one sort. This module has networkx's names and behaviour for those, so
`graph.py` reads `nx.DiGraph()` as before (issue 23 item 5: quick to start). Node and
successor order is insertion order, as in networkx; the topological sort is networkx's
`lexicographical_topological_sort` (Kahn's algorithm, the smallest key first).
"""

from __future__ import annotations

import heapq
from typing import Callable, Iterable, Iterator


class NetworkXUnfeasible(Exception):
    """The graph has a cycle: no topological order (networkx's name)."""


class _NodeView:
    """g.nodes: node -> its attribute dict; g.nodes(data=True) -> (node, dict) pairs."""

    __slots__ = ("_nodes",)

    def __init__(self, nodes: dict):
        self._nodes = nodes

    def __getitem__(self, n) -> dict:
        return self._nodes[n]

    def __call__(self, data: bool = False):
        return iter(self._nodes.items()) if data else iter(self._nodes)

    def get(self, n, default=None):
        return self._nodes.get(n, default)

    def __iter__(self) -> Iterator:
        return iter(self._nodes)

    def __reversed__(self) -> Iterator:
        return reversed(self._nodes)

    def __contains__(self, n) -> bool:
        return n in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)


class DiGraph:
    """Nodes with attribute dicts, edges with attribute dicts, in insertion order."""

    def __init__(self):
        self._node: dict = {}
        self._succ: dict = {}
        self._pred: dict = {}
        self.nodes = _NodeView(self._node)

    def add_node(self, n, **attr) -> None:
        if n not in self._node:
            self._node[n] = {}
            self._succ[n] = {}
            self._pred[n] = {}
        self._node[n].update(attr)

    def add_node_reading(self, n, attr: dict, sources: list) -> None:
        """A new node `n` (not in the graph) with an edge from each source, indexed by its position
        (`index`; a source listed twice keeps its last): `add_node` and `add_edge` in one step, as
        the IR adds every node."""
        self._node[n] = attr
        self._succ[n] = {}
        pred = self._pred[n] = {}
        succ = self._succ
        for i, src in enumerate(sources):
            pred[src] = succ[src][n] = {"index": i}

    def copy(self, node_data: Callable[[dict], dict] = dict) -> "DiGraph":
        """A copy with the same nodes, edges and orders (as add_nodes_from + add_edges_from
        would give it, without a call per node and edge): node attribute dicts are
        `node_data(d)`, edge attribute dicts shallow copies."""
        new = DiGraph()
        new._node = {n: node_data(d) for n, d in self._node.items()}
        new.nodes = _NodeView(new._node)
        succ = new._succ = {n: {} for n in self._node}
        pred = new._pred = {n: {} for n in self._node}
        for u, nbrs in self._succ.items():
            out = succ[u]
            for v, d in nbrs.items():
                pred[v][u] = out[v] = dict(d)
        return new

    def add_nodes_from(self, nodes: Iterable) -> None:
        for item in nodes:
            n, attr = item if isinstance(item, tuple) else (item, {})
            self.add_node(n, **attr)

    def add_edge(self, u, v, **attr) -> None:
        for n in (u, v):
            if n not in self._node:
                self.add_node(n)
        data = self._succ[u].get(v, {})
        data.update(attr)
        self._succ[u][v] = data
        self._pred[v][u] = data

    def add_edges_from(self, edges: Iterable) -> None:
        for u, v, *rest in edges:
            self.add_edge(u, v, **(rest[0] if rest else {}))

    def remove_edge(self, u, v) -> None:
        del self._succ[u][v]
        del self._pred[v][u]

    def remove_node(self, n) -> None:
        for v in self._succ.pop(n):
            del self._pred[v][n]
        for u in self._pred.pop(n):
            del self._succ[u][n]
        del self._node[n]

    def successors(self, n) -> Iterator:
        return iter(self._succ[n])

    def predecessors(self, n) -> Iterator:
        return iter(self._pred[n])

    def edges(self, data: bool = False) -> list:
        if data:
            return [(u, v, d) for u, nbrs in self._succ.items() for v, d in nbrs.items()]
        return [(u, v) for u, nbrs in self._succ.items() for v in nbrs]

    def number_of_nodes(self) -> int:
        return len(self._node)

    def __contains__(self, n) -> bool:
        return n in self._node

    def __len__(self) -> int:
        return len(self._node)

    def __iter__(self) -> Iterator:
        return iter(self._node)


def _topological(g: DiGraph, order: list) -> bool:
    """Whether every edge of `g` runs forward in `order`."""
    position = {n: i for i, n in enumerate(order)}
    pred = g._pred
    for i, v in enumerate(order):
        for u in pred[v]:
            if position[u] >= i:
                return False
    return True


def lexicographical_topological_sort(g: DiGraph, key: Callable | None = None) -> Iterator:
    """networkx's: a topological order that takes the smallest `key` among the ready nodes."""
    key = key or (lambda n: n)
    # Where the key order is topological already (the IR's rank order almost always is), it is
    # the answer: Kahn's algorithm would take each node in it, ready as its inputs come first.
    ranked = sorted(g._node, key=key)   # stable: ties in insertion order, as below
    if _topological(g, ranked):
        yield from ranked
        return
    index = {n: i for i, n in enumerate(g._node)}     # ties: insertion order, as networkx
    indegree = {n: len(p) for n, p in g._pred.items()}
    ready = [(key(n), index[n], n) for n, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    count = len(indegree)
    while ready:
        _, _, n = heapq.heappop(ready)
        count -= 1
        for v in g._succ[n]:
            indegree[v] -= 1
            if indegree[v] == 0:
                heapq.heappush(ready, (key(v), index[v], v))
        yield n
    if count:
        raise NetworkXUnfeasible("Graph contains a cycle or graph changed during iteration")


__all__ = ["DiGraph", "NetworkXUnfeasible", "lexicographical_topological_sort"]
