"""Priority levels of many VMs are joined through one gate step, not every pair: a
plan stays linear when many VMs have a high start (or shutdown) priority and many a
low one. Where pairs are fewer (the examples' few prioritised VMs), the pairs stay."""

from __future__ import annotations

from collections.abc import Callable

from reconciler.plan.build import Plan
from reconciler.plan.changes import Action
from tests.plan.conftest import Builder


def _starts(build: Builder, high: int, low: int) -> Plan:
    for i in range(high):
        build.vm(f"hi{i}", startPriority=10)
    for i in range(low):
        build.vm(f"lo{i}")
    build.create_all()
    return build.plan()


def _tiebreaks(plan: Plan) -> list[tuple[str, str, str]]:
    return sorted((d.before, d.after, d.kind) for d in plan.dependencies if d.rule == "start_priority_tiebreak")


def test_two_levels_of_many_vms_meet_at_one_gate(build: Builder) -> None:
    plan = _starts(build, 3, 4)
    gate = "vm/(start-priority-10)/gate"
    assert [s.id for s in plan.steps if s.op == "gate"] == [gate]
    expected = [(f"vm/hi{i}/unpause", gate, "orders") for i in range(3)]
    expected += [(gate, f"vm/lo{i}/create", "orders") for i in range(4)]
    assert _tiebreaks(plan) == sorted(expected)  # 7 edges where pairs would be 12
    at = {sid: n for n, generation in enumerate(plan.generations) for sid in generation}
    assert max(at[f"vm/hi{i}/unpause"] for i in range(3)) < at[gate] < min(at[f"vm/lo{i}/create"] for i in range(4))


def test_few_pairs_stay_pairs(new_builder: Callable[[], Builder]) -> None:
    build = new_builder()
    plan = _starts(build, 1, 3)  # 3 pairs, where a gate would take 4 edges
    assert not [s for s in plan.steps if s.op == "gate"]
    assert _tiebreaks(plan) == [("vm/hi0/unpause", f"vm/lo{i}/create", "orders") for i in range(3)]
    build = new_builder()
    plan = _starts(build, 2, 2)  # 4 pairs, 4 edges through a gate: the pairs, no extra step
    assert not [s for s in plan.steps if s.op == "gate"]


def test_three_levels_chain_through_two_gates(build: Builder) -> None:
    for i in range(3):
        build.vm(f"a{i}", startPriority=20)
        build.vm(f"b{i}", startPriority=10)
        build.vm(f"c{i}")
    build.create_all()
    plan = build.plan()
    assert sorted(s.id for s in plan.steps if s.op == "gate") == ["vm/(start-priority-10)/gate",
                                                                   "vm/(start-priority-20)/gate"]
    at = {sid: n for n, generation in enumerate(plan.generations) for sid in generation}
    for i in range(3):
        for j in range(3):
            assert at[f"vm/a{i}/unpause"] < at[f"vm/b{j}/create"] < at[f"vm/b{j}/unpause"] < at[f"vm/c{i}/create"]
    assert len(_tiebreaks(plan)) == 12  # 3 + 3 into each gate and out: pairs would be 18


def test_edges_grow_linearly_with_two_large_levels(new_builder: Callable[[], Builder]) -> None:
    sizes = []
    for n in (10, 20, 40):
        plan = _starts(new_builder(), n, n)
        sizes.append(len(_tiebreaks(plan)))
    assert sizes == [20, 40, 80]  # 2n through one gate; pairs were n * n (100, 400, 1,600)


def test_stops_of_many_by_shutdown_priority_meet_at_one_gate(build: Builder) -> None:
    for i in range(6):
        name = f"s{i}"
        build.vm(name, state="stopped", shutdownPriority=5 if i < 3 else 0)
        build.running(name, 10 + i)
        build.change("VM", name, name, Action.DELETE)
    plan = build.plan()
    gate = "vm/(stop-priority-5)/gate"
    rows = sorted((d.before, d.after) for d in plan.dependencies if d.rule == "shutdown_priority_tiebreak")
    assert rows == sorted([(f"vm/s{i}/destroy", gate) for i in range(3)] + [(gate, f"vm/s{i}/shutdown") for i in range(3, 6)])
