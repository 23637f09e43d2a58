"""The planner's fast paths give what the plain definitions give: the schedule is
networkx's topological generations of the plan's graph, the dependencies are its
edges, the observed data behind the fingerprint is what dumping every record and
model whole gives, and the JSON plan is `plan_to_data` through `json.dumps`. Real:
the loader on the examples, the observer on the captured dumps, the diff, the
planner and the renderers; the reference definitions are written out here."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import pytest

from drivers.dump import load_dump
from reconciler.loader import load_or_raise
from reconciler.model import ObservedState
from reconciler.model.host import FirewallEntry, HostPciDevice
from reconciler.model.observed import DeviceHealth
from reconciler.observe import observe_tree, observed_to_data
from reconciler.plan.build import Dependency, Plan, plan_for
from reconciler.plan.changes import Action, FieldChange, ResourceChange
from reconciler.plan.graph import adjacency, digraph, generations, ranks, sorted_edges
from reconciler.plan.render_json import plan_to_data, render_json
from reconciler.plan.render_text import render_text
from reconciler.plan.steps import Step

if TYPE_CHECKING:
    from conftest import Builder

REPO = Path(__file__).resolve().parents[2]
SETS = ["examples/openxt-desktop", "examples/server-host", "manifests"]
DUMPS = sorted(p.name for p in (REPO / "tests/data/xenstore-dumps").glob("*.txt"))


def observed(dump: str | None) -> ObservedState:
    if dump is None:
        return ObservedState()
    loaded = load_dump(str(REPO / "tests/data/xenstore-dumps" / dump))
    return observe_tree(loaded.nodes, truncated=frozenset(loaded.truncated))


def with_host_facts(state: ObservedState) -> ObservedState:
    """The dump's state plus what only a live host shows: PCI inventory, health, firewall."""
    health = {name: DeviceHealth("failed", "hotplug-error: no such bridge") for name in list(state.nics)[:1]}
    return dataclasses.replace(
        state, health={**state.health, **health},
        host_pci=(HostPciDevice("0000:00:02.0", "0x8086", "0x0412", "0x0300", None),
                  HostPciDevice("0000:03:00.0", "0x8086", "0x10d3", "0x0200", "pciback")),
        firewall=(FirewallEntry(3, 0, None, 5000), FirewallEntry(target="REJECT")))


def reference_data(state: ObservedState) -> dict[str, Any]:
    def specs(table: Any) -> dict[str, Any]:
        return {n: m.model_dump(mode="json", by_alias=True, exclude_unset=True).get("spec", {}) for n, m in sorted(table.items())}

    data: dict[str, Any] = {
        "domains": {n: {k: v for k, v in dataclasses.asdict(i).items()
                        if (k not in ("unfinished", "xenstore_gone") or v) and (k != "passthrough" or v is not None)}
                    for n, i in sorted(state.domains.items())},
        "vms": specs(state.vms), "disks": specs(state.disks), "nics": specs(state.nics), "pci": specs(state.pci),
        "health": {n: dataclasses.asdict(h) for n, h in sorted(state.health.items())},
        "pciAssignable": list(state.pci_assignable), "problems": list(state.problems),
    }
    if state.host_pci is not None:
        data["hostPci"] = [dataclasses.asdict(d) for d in state.host_pci]
    if state.firewall is not None:
        data["firewall"] = [str(e) for e in state.firewall]
    return data


@pytest.mark.parametrize("dump", DUMPS)
def test_observed_data_is_every_record_and_model_dumped_whole(dump: str) -> None:
    for state in (observed(dump), with_host_facts(observed(dump))):
        # json.dumps without sort_keys: the key order must match too (observe prints it).
        assert json.dumps(observed_to_data(state)) == json.dumps(reference_data(state))
    assert observed_to_data(with_host_facts(observed(dump)))["hostPci"][1]["driver"] == "pciback"


@pytest.mark.parametrize("dump", [None, *DUMPS])
@pytest.mark.parametrize("manifests", SETS)
def test_schedule_and_dependencies_are_the_graphs(manifests: str, dump: str | None) -> None:
    plan = plan_for(load_or_raise([str(REPO / manifests)]), observed(dump))
    assert plan.generations == tuple(tuple(sorted(g)) for g in nx.topological_generations(plan.graph))
    assert plan.dependencies == tuple(sorted(Dependency(a, b, d["rule"], d["kind"]) for a, b, d in plan.graph.edges(data=True)))
    assert [s.id for s in plan.steps] == sorted(plan.graph)
    if dump is None:
        assert len(plan.generations) > 2 and plan.dependencies


def test_graph_is_the_one_networkx_would_build_node_by_node() -> None:
    ids = ["a", "b", "c", "d"]
    edges = {("a", "b"): "one", ("c", "b"): "two", ("b", "d"): "one", ("x", "a"): "three", ("d", "y"): "two",
             ("c", "a"): "four"}
    public: nx.DiGraph[str] = nx.DiGraph()
    public.add_nodes_from(ids)
    public.add_edges_from((a, b, {"rule": r}) for (a, b), r in edges.items())
    succ, pred = adjacency(ids, edges)
    graph = digraph(succ, pred)
    assert list(graph.nodes(data=True)) == list(public.nodes(data=True)) == [(n, {}) for n in [*ids, "x", "y"]]
    assert list(graph.edges(data=True)) == list(public.edges(data=True))
    assert [(n, list(graph.predecessors(n))) for n in graph] == [(n, list(public.predecessors(n))) for n in public]
    assert dict(graph.in_degree) == dict(public.in_degree) and nx.descendants(graph, "x") == {"a", "b", "d", "y"}
    rank = ranks(ids, succ)  # x and y have no step: ranked among the ids all the same
    assert sorted(rank, key=rank.__getitem__) == sorted(graph)
    assert generations(succ, pred, rank) == tuple(tuple(sorted(g)) for g in nx.topological_generations(public))
    assert [(a, b, d["rule"]) for a, b, d in sorted_edges(succ, rank)] == sorted((a, b, r) for (a, b), r in edges.items())
    plain_ranks = ranks(ids, adjacency(ids, {("a", "d"): "one"})[0])  # every node a step: ranks are the id order
    assert plain_ranks == {"a": 0, "b": 1, "c": 2, "d": 3}
    with pytest.raises(nx.NetworkXError, match="Frozen"):
        graph.add_edge("y", "c")
    with pytest.raises(TypeError):  # the data too: a plan is a frozen value
        graph.edges["a", "b"]["rule"] = "other"
    with pytest.raises(TypeError):
        graph.nodes["a"]["color"] = "red"
    assert graph.copy().edges["a", "b"] == {"rule": "one"} and public.edges["a", "b"]["rule"] == "one"
    succ, pred = adjacency(ids, {**edges, ("y", "x"): "loop"})
    assert generations(succ, pred, ranks(ids, succ)) is None


def reference_json(plan: Plan) -> str:
    """The JSON plan as the format defines it: plan_to_data, each element json.dumps'd."""
    data = plan_to_data(plan)

    def dumps(value: object) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "), default=str)

    lines = ["{"]
    for number, key in enumerate(sorted(data)):
        comma = "," if number < len(data) - 1 else ""
        value = data[key]
        if isinstance(value, list) and value:
            lines += [f'  "{key}": [', *(f"    {dumps(v)}{',' if i < len(value) - 1 else ''}" for i, v in enumerate(value)),
                      f"  ]{comma}"]
        else:
            lines.append(f'  "{key}": {dumps(value)}{comma}')
    return "\n".join(lines) + "\n}\n"


@pytest.mark.parametrize("dump", [None, *DUMPS])
@pytest.mark.parametrize("manifests", SETS)
def test_json_plan_is_plan_to_data_dumped(manifests: str, dump: str | None) -> None:
    plan = plan_for(load_or_raise([str(REPO / manifests)]), observed(dump))
    assert render_json(plan) == reference_json(plan)


# Values that are equal in Python but print apart, next to each other under one path.
ODD = [(1, True), (True, 1), (0, False), (0.0, -0.0), (1, 1.0), ("é\n\"", None), ([1], [True]),
       ({"b": 1, "a": [2]}, None), (None, "(sensitive)"), ("x", "x")]


def test_equal_values_of_other_types_print_apart(build: Builder) -> None:
    for n, (before, after) in enumerate(ODD):
        build.vm(f"v{n}")
        build.running(f"v{n}", n + 1)
        fields = [FieldChange("spec.x", before, after, "live"), FieldChange("spec.display.vncPassword", before, after, "restart"),
                  FieldChange("spec.y", after, before, "live", sensitive=n % 2 == 1)]
        build.change("VM", f"v{n}", f"v{n}", Action.UPDATE, *fields)
        build.change("NIC", f"n{n}", f"v{n}", Action.DELETE, *fields, pending=True)
    plan = build.plan()
    assert render_json(plan) == reference_json(plan)
    text = render_text(plan)
    assert "~ spec.x: 1 -> true\n" in text and "~ spec.x: true -> 1\n" in text and "~ spec.x: 0.0 -> -0.0\n" in text
    assert '~ spec.x: 1 -> 1.0\n' in text and "~ spec.x: [1] -> [true]\n" in text
    assert "- spec.x = 1\n" in text and "- spec.x = true\n" in text and "- spec.x = 0\n" in text


@pytest.mark.parametrize("cls", [FieldChange, ResourceChange, Step])
def test_plan_values_have_slots_and_stay_frozen_values(cls: type) -> None:
    fields = dataclasses.fields(cls)
    values = [f"v{i}" for i in range(len(fields))]
    made = cls(*values)
    assert not hasattr(made, "__dict__") and [getattr(made, f.name) for f in fields] == values
    assert made == cls(*values) and hash(made) == hash(cls(*values)) and pickle.loads(pickle.dumps(made)) == made
    assert dataclasses.replace(made, **{fields[0].name: "other"}) != made
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0].name, "changed")
