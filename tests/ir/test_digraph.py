"""ir/digraph.py stands in for networkx's DiGraph under the IR: same node, edge and successor
order, same lexicographical topological order, a cycle refused."""
import random

import pytest

from secompile.ir import digraph

nx = pytest.importorskip("networkx")


def _random_dag(seed: int, n: int = 60):
    rng = random.Random(seed)
    names = [f"n{rng.randrange(10**6)}_{i}" for i in range(n)]
    order = names[:]
    rng.shuffle(order)                          # insertion order differs from the DAG's order
    edges = [(names[i], names[j], {"index": k}) for k, (i, j) in enumerate(
        (i, j) for i in range(n) for j in range(i + 1, n) if rng.random() < 0.08)]
    rng.shuffle(edges)
    return order, edges, {p: rng.random() for p in names}


@pytest.mark.parametrize("seed", range(8))
def test_same_as_networkx(seed):
    order, edges, rank = _random_dag(seed)
    ours, theirs = digraph.DiGraph(), nx.DiGraph()
    for g in (ours, theirs):
        g.add_nodes_from((p, {"op": "x"}) for p in order)
        g.add_edges_from(edges)
    for g in (ours, theirs):          # what Graph.replace / rewire / remove do
        u, v, _ = edges[0]
        g.remove_edge(u, v)
        g.add_edge(u, v, index=99)
        g.remove_node(order[-1])
    assert list(ours.nodes) == list(theirs.nodes) and len(ours) == len(theirs)
    assert ours.edges(data=True) == list(theirs.edges(data=True))
    assert all(list(ours.successors(p)) == list(theirs.successors(p))
               and list(ours.predecessors(p)) == list(theirs.predecessors(p)) for p in ours)
    for key in (rank.__getitem__, None):
        assert list(digraph.lexicographical_topological_sort(ours, key=key)) == list(
            nx.lexicographical_topological_sort(theirs, key=key))
    assert ours.nodes[order[0]] == {"op": "x"} and ours.nodes.get("missing") is None


@pytest.mark.parametrize("seed", range(4))
def test_same_as_networkx_where_the_key_order_is_topological(seed):
    """The shortcut taken where the key order is topological already (the IR's rank order):
    with distinct keys, with ties (insertion order decides), and a key order that is not."""
    order, edges, _ = _random_dag(seed)
    dag_order = {p: i for i, p in enumerate(sorted(order, key=lambda p: int(p.split("_")[1])))}
    ours, theirs = digraph.DiGraph(), nx.DiGraph()
    for g in (ours, theirs):
        g.add_nodes_from(order)
        g.add_edges_from(edges)
    for key in (dag_order.__getitem__, lambda p: dag_order[p] // 7, lambda p: 0,
                lambda p: -dag_order[p]):
        assert list(digraph.lexicographical_topological_sort(ours, key=key)) == list(
            nx.lexicographical_topological_sort(theirs, key=key))


def test_a_cycle_has_no_order():
    g = digraph.DiGraph()
    g.add_edges_from([("a", "b"), ("b", "c"), ("c", "a"), ("x", "a")])
    with pytest.raises(digraph.NetworkXUnfeasible):
        list(digraph.lexicographical_topological_sort(g))
