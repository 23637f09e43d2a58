"""The planner: a Diff -> a frozen Plan (steps, a networkx DAG of them, the parallel schedule).

Pure. `build_plan(diff, desired, observed, fingerprint=...)` expands every change into
steps (`reconciler.plan.steps`), links them with the edge rules (`reconciler.plan.rules`),
refuses a cycle with a ManifestError naming the resources and their file:line, and takes
the topological generations as the schedule (`reconciler.plan.graph`). Called by
`reconciler plan` (and later by apply/watch); execute reads only the Plan and the host.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from reconciler.diff import diff as diff_states
from reconciler.errors import Diagnostic, Location, ManifestError
from reconciler.model.common import Kind
from reconciler.model.observed import ObservedState
from reconciler.model.state import DesiredState
from reconciler.observe import observed_to_data
from reconciler.plan.changes import Action, Diff
from reconciler.plan.deps import Index
from reconciler.plan.graph import Adjacency, Edges, digraph, generations, ranks, sorted_edges
from reconciler.plan.rules import RULES, STEP_ORDER, EdgeKind, Scene, edge_kind, priority_gates
from reconciler.plan.steps import HOOK_TIMEOUT_S, Inputs, Step, steps_for

if TYPE_CHECKING:
    import networkx as nx

    from reconciler.plan.reachability import Reachability


class Dependency(NamedTuple):
    """`after` waits for `before`; `rule` names the edge rule that says why; `kind` is
    `requires` (a failed `before` skips `after`) or `orders` (`after` still runs). A
    named tuple: dependencies sort as tuples, and a plan's 11k are cheap to make."""

    before: str
    after: str
    rule: str
    kind: EdgeKind


@dataclass(frozen=True)
class Plan:
    """What `plan` prints and `apply` does: the changes, the steps (sorted by id), their
    dependencies (sorted), the generations (steps that may run in parallel, each sorted)
    and the fingerprint of the observed state it was made against. `graph` is the same
    DAG as a frozen networkx DiGraph (nodes: step ids, edge attributes `rule` and `kind`),
    made from `adjacency` when first asked for: `plan` never needs it, and importing
    networkx is a tenth of a 1,000-VM plan command."""

    diff: Diff
    steps: tuple[Step, ...]
    dependencies: tuple[Dependency, ...]
    generations: tuple[tuple[str, ...], ...]
    fingerprint: str
    desired: DesiredState = field(repr=False, compare=False)
    adjacency: tuple[Adjacency, Adjacency] = field(repr=False, compare=False)
    observed: ObservedState | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def graph(self) -> nx.DiGraph[str]:
        return digraph(*self.adjacency)

    @functools.cached_property
    def reachability(self) -> Reachability:
        """Who can reach whom that could not before, and back (`reconciler.plan.reachability`),
        made when a renderer first asks. Nothing without steps: a plan that runs none leaves
        the policy in force as it is."""
        from reconciler.plan.reachability import Reachability, reachability

        if not self.steps or self.observed is None:
            return Reachability()
        return reachability(self.desired, self.observed, self.diff)

    @property
    def has_changes(self) -> bool:
        return bool(self.diff.changes)

    @property
    def differs(self) -> bool:
        """Does the host differ from the manifests? Changes to make, or crashed domains
        left for inspection (`Diff.preserved`), which no step changes: what
        `plan --detailed-exitcode` exits 2 for."""
        return self.has_changes or bool(self.diff.preserved)


def fingerprint(observed: ObservedState) -> str:
    """sha256 hex of the observed state as canonical JSON: `apply --plan` compares it to
    refuse a plan made against a host that has changed since."""
    # check_circular=False: the data is a fresh tree, and the check costs a lookup per container.
    data = json.dumps(observed_to_data(observed), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      check_circular=False)
    return hashlib.sha256(data.encode()).hexdigest()


def _vms(diff: Diff, actions: tuple[Action, ...]) -> frozenset[str]:
    return frozenset(c.name for c in diff.changes if c.kind == "VM" and c.action in actions)


def _resolved_pci(diff: Diff, starting: frozenset[str]) -> dict[str, dict[str, list[str]]]:
    """The host addresses the diff resolved each PCI rule of a VM this plan builds to
    (its CREATE change's `devices`): the create step builds the domain with them."""
    found: dict[str, dict[str, list[str]]] = {}
    for change in diff.changes:
        if change.kind == "PCIPassthrough" and change.action is Action.CREATE and change.vm in starting:
            listed = next((f.after for f in change.fields if f.path == "devices"), None)
            if isinstance(listed, list):
                found.setdefault(change.vm, {})[change.name] = [str(b) for b in listed]
    return found


def _expand(diff: Diff, inputs: Inputs) -> tuple[dict[str, Step], list[tuple[str, str]]]:
    """Every change's steps (the first step with an id wins) and the in-resource order:
    consecutive steps of one resource, as the step table lists them."""
    steps: dict[str, Step] = {}
    chain: list[tuple[str, str]] = []
    for change in diff.changes:
        last: Step | None = None
        for step in steps_for(change, inputs):
            steps.setdefault(step.id, step)
            if last is not None and last.kind == step.kind and last.name == step.name:
                chain.append((last.id, step.id))
            last = step
    return steps, chain


def build_plan(diff: Diff, desired: DesiredState, observed: ObservedState, *, fingerprint: str,
               hook_timeout_s: float = HOOK_TIMEOUT_S) -> Plan:
    index = Index(desired, observed)
    starting = _vms(diff, (Action.CREATE, Action.RESTART))
    stopping = _vms(diff, (Action.DELETE, Action.RESTART))
    steps, chain = _expand(diff, Inputs(desired, observed, starting, index.fw_touched, hook_timeout_s,
                                        _resolved_pci(diff, starting)))
    for gate in priority_gates(index, starting, stopping):
        steps[gate.id] = gate
    ids = sorted(steps)
    ordered = tuple(map(steps.__getitem__, ids))
    # Edges in the order they are found; the first rule to link a pair names it.
    edges = Edges(ids, edge_kind)
    add = edges.add
    for before, after in chain:
        add(before, after, STEP_ORDER)
    scene = Scene(steps, index, starting, stopping, ordered)
    for rule in RULES:
        name = rule.__name__
        for before, after in rule(scene):
            add(before, after, name)
    succ, pred = edges.succ, edges.pred
    rank = ranks(ids, succ)
    schedule = generations(succ, pred, rank)
    if schedule is None:
        raise _cycle(digraph(succ, pred), steps, desired)
    # tuple.__new__ is what the named tuple's own constructor calls, without a Python frame per edge.
    quads = [(before, after, data["rule"], data["kind"]) for before, after, data in sorted_edges(succ, rank)]
    dependencies = tuple(map(functools.partial(tuple.__new__, Dependency), quads))
    return Plan(diff, ordered, dependencies, schedule, fingerprint, desired, (succ, pred), observed)


def plan_for(desired: DesiredState, observed: ObservedState, *, hook_timeout_s: float = HOOK_TIMEOUT_S) -> Plan:
    """The whole pure pipeline after observing: diff, plan, stamped with the host's fingerprint;
    `hook_timeout_s` (the execute setting) is what the plan's hook steps say and get."""
    return build_plan(diff_states(desired, observed), desired, observed, fingerprint=fingerprint(observed),
                      hook_timeout_s=hook_timeout_s)


def _cycle(graph: nx.DiGraph[str], steps: dict[str, Step], desired: DesiredState) -> ManifestError:
    """The same cycle in the same words every run: the strongly connected component with
    the smallest step id, walked from that id along the smallest successors."""
    import networkx as nx

    loops = sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1)
    start, inside = loops[0][0], graph.subgraph(loops[0])
    back = [nx.shortest_path(inside, succ, start) for succ in sorted(inside.successors(start))]
    shortest = min(back, key=len)  # min keeps the first (smallest successor) among equals
    return _cycle_error(graph, [start, *shortest[:-1]], steps, desired)


def _cycle_error(graph: nx.DiGraph[str], path: list[str], steps: dict[str, Step], desired: DesiredState) -> ManifestError:
    loop = path + [path[0]]
    hops = ", ".join(f"{a} -> {b} ({graph.edges[a, b]['rule']})" for a, b in zip(loop, loop[1:]))
    resources: dict[tuple[Kind, str], Location | None] = {}
    for sid in path:
        key = (steps[sid].kind, steps[sid].name)
        resources.setdefault(key, desired.origins.get(key))
    named = ", ".join(f"{kind} {name} at {_where(loc)}" for (kind, name), loc in resources.items())
    first = next((loc for loc in resources.values() if loc), Location("<plan>"))
    message = f"dependency cycle in the plan: {hops}; resources: {named}; break one of these dependencies"
    return ManifestError([Diagnostic(first, "error", message)])


def _where(location: Location | None) -> str:
    return f"{location.file}:{location.line}" if location else "(not in the manifests)"
