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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import networkx as nx

Adjacency = dict[str, dict[str, Mapping[str, str]]]  # node -> neighbour -> edge data {"rule": name, "kind": ...}
_NO_DATA: Mapping[str, str] = MappingProxyType({})


class Edges:
    """The adjacency, built as the edge rules find the edges: `succ` and `pred` of every
    node, `ids` first, then any node only an edge names, in the order the edges name
    them; the first rule to link a pair names the edge, a self-loop is no edge. Both
    sides share each edge's data (`{"rule": name}`, plus `kind` when `kind_of` is given).
    Building it straight away keeps no dict of (before, after) pairs besides it: a
    5,000-VM plan has 250k edges."""

    __slots__ = ("succ", "pred", "_shared", "_kind_of")

    def __init__(self, ids: Sequence[str], kind_of: Callable[[str], str] | None = None) -> None:
        self.succ: Adjacency = {sid: {} for sid in ids}
        self.pred: Adjacency = {sid: {} for sid in self.succ}
        self._shared: dict[str, Mapping[str, str]] = {}
        self._kind_of = kind_of

    def add(self, before: str, after: str, rule: str) -> None:
        if before == after:
            return
        row = self.succ.get(before)
        if row is None:  # an edge that names a node with no step
            row = self.succ[before] = {}
            self.pred[before] = {}
        elif after in row:
            return
        column = self.pred.get(after)
        if column is None:
            self.succ[after] = {}
            column = self.pred[after] = {}
        data = self._shared.get(rule)
        if data is None:
            kind_of = self._kind_of
            data = self._shared[rule] = MappingProxyType({"rule": rule} if kind_of is None else {"rule": rule, "kind": kind_of(rule)})
        row[after] = data
        column[before] = data


def adjacency(ids: Sequence[str], edges: Mapping[tuple[str, str], str],
              kind_of: Callable[[str], str] | None = None) -> tuple[Adjacency, Adjacency]:
    """(successors, predecessors) of every node of `edges` (see `Edges`)."""
    built = Edges(ids, kind_of)
    for (before, after), rule in edges.items():
        built.add(before, after, rule)
    return built.succ, built.pred


def ranks(ids: Sequence[str], succ: Adjacency) -> dict[str, int]:
    """Each node's place in id order, from the sorted `ids` the adjacency was built
    from: sorting by rank is sorting by id, with int comparisons instead of comparing
    ids that share long prefixes (`disk/vm00042-disk-0/...`)."""
    if len(succ) == len(ids):
        return {node: number for number, node in enumerate(ids)}
    return {node: number for number, node in enumerate(sorted(succ))}  # an edge named a node with no step


def sorted_edges(succ: Adjacency, rank: Mapping[str, int]) -> list[tuple[str, str, Mapping[str, str]]]:
    """(before, after, data) of every edge, sorted by (before, after): the nodes in rank
    order, each one's successors sorted by rank. No sort of the whole edge list (a
    5,000-VM plan has 250k edges; its nodes have a few successors each)."""
    by_rank = rank.__getitem__
    nodes = succ if _in_rank_order(succ, rank) else sorted(succ, key=by_rank)
    out: list[tuple[str, str, Mapping[str, str]]] = []
    for before in nodes:
        after = succ[before]
        if len(after) == 1:
            for node, data in after.items():
                out.append((before, node, data))
        elif after:
            out.extend((before, node, after[node]) for node in sorted(after, key=by_rank))
    return out


def _in_rank_order(succ: Adjacency, rank: Mapping[str, int]) -> bool:
    """Are the adjacency's nodes already in rank order (every node has a step: the ids)?"""
    return len(succ) == len(rank) and all(number == rank[node] for number, node in enumerate(succ))


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
    as these dicts and resets its cached views when `_adj`/`_pred` are assigned.
    networkx is imported here, when a graph is first made (apply, a cycle), not by `plan`."""
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph()
    graph._node = dict.fromkeys(succ, _NO_DATA)  # type: ignore[attr-defined]
    graph._adj = succ  # type: ignore[attr-defined]  # also sets _succ
    graph._pred = pred  # type: ignore[attr-defined]
    nx.freeze(graph)
    return graph
