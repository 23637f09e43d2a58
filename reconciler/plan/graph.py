"""The plan's action graph from its step ids and edges: adjacency, schedule, DiGraph.

Pure. Called by `reconciler.plan.build` once the edge rules have run. The adjacency is
built once, as plain dicts in insertion order, and serves twice: Kahn's algorithm takes
the topological generations from it, and it becomes the networkx DiGraph's own
successor/predecessor dicts (networkx's add_nodes_from/add_edges_from check every node
and edge one by one: 3x the cost, for a 1,000-VM plan's 7k steps and 11k edges). The
graph is the one those calls would build, in the same node and edge order, except that
its node and edge data are read-only and shared (a plan is a frozen value): one
`{"rule": name, "kind": requires|orders}` per edge rule, one empty mapping for every node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import networkx as nx

Adjacency = dict[str, dict[str, Mapping[str, str]]]  # node -> neighbour -> edge data {"rule": name, "kind": ...}
_NO_DATA: Mapping[str, str] = MappingProxyType({})


def adjacency(ids: Sequence[str], edges: Mapping[tuple[str, str], str],
              kind_of: Callable[[str], str] | None = None) -> tuple[Adjacency, Adjacency]:
    """(successors, predecessors) of every node: `ids` first, then any node only an edge
    names, in the order the edges name them; both sides share each edge's data, which
    holds the edge's `kind` too when `kind_of` (rule name -> kind) is given."""
    succ: Adjacency = {sid: {} for sid in ids}
    pred: Adjacency = {sid: {} for sid in succ}
    shared: dict[str, Mapping[str, str]] = {}
    for (before, after), rule in edges.items():
        if before not in succ or after not in succ:  # an edge that names a node with no step
            for node in (before, after):
                if node not in succ:
                    succ[node], pred[node] = {}, {}
        data = shared.get(rule)
        if data is None:
            data = shared[rule] = MappingProxyType({"rule": rule} if kind_of is None else {"rule": rule, "kind": kind_of(rule)})
        succ[before][after] = data
        pred[after][before] = data
    return succ, pred


def ranks(ids: Sequence[str], succ: Adjacency) -> dict[str, int]:
    """Each node's place in id order, from the sorted `ids` the adjacency was built
    from: sorting by rank is sorting by id, with int comparisons instead of comparing
    ids that share long prefixes (`disk/vm00042-disk-0/...`)."""
    if len(succ) == len(ids):
        return {node: number for number, node in enumerate(ids)}
    return {node: number for number, node in enumerate(sorted(succ))}  # an edge named a node with no step


def sorted_edges(edges: Mapping[tuple[str, str], str], rank: Mapping[str, int]) -> list[tuple[str, str, str]]:
    """(before, after, rule) of every edge, sorted by (before, after)."""
    size = len(rank)
    keyed = sorted([(rank[before] * size + rank[after], before, after, rule) for (before, after), rule in edges.items()])
    return [(before, after, rule) for _, before, after, rule in keyed]


def generations(succ: Adjacency, pred: Adjacency, rank: Mapping[str, int]) -> tuple[tuple[str, ...], ...] | None:
    """The topological generations as networkx defines them (each node in the first
    generation after all its predecessors), each sorted; None when there is a cycle."""
    waiting = {node: len(before) for node, before in pred.items()}
    current = [node for node, count in waiting.items() if count == 0]
    out: list[tuple[str, ...]] = []
    placed = 0
    while current:
        out.append(tuple(sorted(current, key=rank.__getitem__)))
        placed += len(current)
        ready: list[str] = []
        for node in current:
            for after in succ[node]:
                waiting[after] -= 1
                if waiting[after] == 0:
                    ready.append(after)
        current = ready
    return tuple(out) if placed == len(waiting) else None


def digraph(succ: Adjacency, pred: Adjacency) -> nx.DiGraph[str]:
    """A frozen DiGraph over the adjacency (which it then owns). networkx keeps a graph
    as these dicts and resets its cached views when `_adj`/`_pred` are assigned."""
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph._node = dict.fromkeys(succ, _NO_DATA)  # type: ignore[attr-defined]
    graph._adj = succ  # type: ignore[attr-defined]  # also sets _succ
    graph._pred = pred  # type: ignore[attr-defined]
    nx.freeze(graph)
    return graph
