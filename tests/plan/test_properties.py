"""Property tests on generated desired states and mixed changes (create, restart,
delete, live update): the plan is acyclic, every dependency runs in an earlier
generation than its dependent, priorities hold where no dependency decides, and the
same inputs give byte-identical JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.plan.build import Plan
from reconciler.plan.changes import Action, FieldChange
from reconciler.plan.render_json import render_json

if TYPE_CHECKING:
    from conftest import Builder

ACTIONS = ["create", "restart", "delete", "update", "none"]


@st.composite
def scenarios(draw: st.DrawFn) -> list[dict[str, object]]:
    count = draw(st.integers(2, 7))
    vms = []
    for i in range(count):
        earlier = list(range(i))
        vms.append({
            "name": f"vm{i}",
            "priority": draw(st.sampled_from([-5, 0, 0, 5, 10])),
            "shutdown": draw(st.sampled_from([-15, 0, 5])),
            "provider": draw(st.booleans()),
            "sentinel": draw(st.booleans()),
            "depends": sorted(set(draw(st.lists(st.sampled_from(earlier), max_size=2)))) if earlier else [],
            "backend": draw(st.sampled_from(earlier)) if earlier and draw(st.booleans()) else None,
            "rule_to": draw(st.sampled_from(range(count))),
            "pci": draw(st.sampled_from([None, "0000:00:02.0", "0000:03:00.0"])),
            "action": draw(st.sampled_from(ACTIONS)),
        })
    return vms


def make_plan(build: Builder, vms: list[dict[str, object]]) -> Plan:
    for index, vm in enumerate(vms):
        name = str(vm["name"])
        backend = f"vm{vm['backend']}" if vm["backend"] is not None else None
        build.vm(name, startPriority=vm["priority"], shutdownPriority=vm["shutdown"], providesNetworkBackend=True,
                 dependsOn=[f"vm{d}" for d in vm["depends"]],  # type: ignore[attr-defined]
                 **({"bootSentinel": "booted"} if vm["sentinel"] else {}))
        build.disk(f"{name}-root", name)
        if backend:
            build.nic(f"{name}-eth", name, backendVM=backend)
        build.rule(f"{name}-talk", name, f"myself -> dom-name=vm{vm['rule_to']}:80")
        action = vm["action"]
        if action in ("restart", "delete", "update", "none"):
            build.running(name, index + 1)
            build.disk(f"{name}-disk-51712", name, table=build.observed_disks)
            if vm["pci"]:
                build.pci_rule(f"{name}-pci-0", name, str(vm["pci"]), table=build.observed_pci)
        if action == "create":
            build.change("VM", name, name, Action.CREATE)
            build.change("Disk", f"{name}-root", name, Action.CREATE)
            if backend:
                build.change("NIC", f"{name}-eth", name, Action.CREATE)
            build.change("V4VRule", f"{name}-talk", name, Action.CREATE)
            if vm["pci"] and not any(v["pci"] == vm["pci"] and v["action"] == "create" for v in vms[:index]):
                build.pci_rule(f"{name}-gpu", name, str(vm["pci"]))
                build.change("PCIPassthrough", f"{name}-gpu", name, Action.CREATE)
        elif action == "restart":
            build.change("VM", name, name, Action.RESTART, FieldChange("spec.kernel", "/a", "/k", "restart"))
        elif action == "delete":
            build.change("VM", name, name, Action.DELETE)
            build.change("Disk", f"{name}-disk-51712", name, Action.DELETE)
        elif action == "update":
            build.change("VM", name, name, Action.UPDATE, FieldChange("spec.memory", 128, 256, "live"))
            build.change("V4VRule", f"{name}-talk", name, Action.UPDATE, FieldChange("entries", [], None, "live"))
    return build.plan()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vms=scenarios())
def test_every_dependency_runs_in_an_earlier_generation(new_builder: Callable[[], Builder], vms: list[dict[str, object]]) -> None:
    plan = make_plan(new_builder(), vms)
    at = {sid: i for i, generation in enumerate(plan.generations) for sid in generation}
    assert set(at) == {s.id for s in plan.steps}  # acyclic: every step is scheduled, once
    assert sum(len(g) for g in plan.generations) == len(plan.steps)
    for dep in plan.dependencies:
        assert at[dep.before] < at[dep.after], dep


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vms=scenarios())
def test_same_inputs_give_byte_identical_plans(new_builder: Callable[[], Builder], vms: list[dict[str, object]]) -> None:
    first, second = make_plan(new_builder(), vms), make_plan(new_builder(), vms)
    assert render_json(first) == render_json(second)
    assert first == second


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(vms=scenarios())
def test_higher_effective_start_priority_first_where_no_dependency_decides(new_builder: Callable[[], Builder], vms: list[dict[str, object]]) -> None:
    build = new_builder()
    for vm in vms:
        vm["action"] = "create"
    plan = make_plan(build, vms)
    at = {sid: i for i, generation in enumerate(plan.generations) for sid in generation}
    needs = {str(v["name"]): {f"vm{d}" for d in v["depends"]} | ({f"vm{v['backend']}"} if v["backend"] is not None else set())  # type: ignore[attr-defined]
             for v in vms}

    def ancestors(vm: str) -> set[str]:
        found, todo = set(), list(needs[vm])
        while todo:
            if (nxt := todo.pop()) not in found:
                found.add(nxt)
                todo += needs[nxt]
        return found

    own = {str(v["name"]): int(v["priority"]) for v in vms}  # type: ignore[call-overload]
    # A VM that a more important one waits for is as important (started as part of it).
    prio = {vm: max([own[vm], *(own[w] for w in own if vm in ancestors(w))]) for vm in own}
    for a in prio:
        for b in prio:
            if prio[a] > prio[b] and b not in ancestors(a) and a not in ancestors(b):
                assert at[f"vm/{a}/unpause"] < at[f"vm/{b}/create"], (a, b)
