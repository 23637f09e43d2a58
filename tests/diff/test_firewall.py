"""v4v resolution (openxt.md 4.2) and the firewall part of the diff: missing entries,
entries waiting for a VM the plan starts, stale entries, dumps without a table."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from reconciler.diff import diff
from reconciler.diff.firewall import RunningVM, references, resolve
from reconciler.model import DesiredState, V4VRule
from reconciler.model.host import FirewallEntry
from reconciler.plan.changes import HOST, TABLE_NAME, Action

UUID_B = "00000000-0000-0000-0000-0000000000bb"
RUNNING = {
    "a": RunningVM(3, "svm", "00000000-0000-0000-0000-0000000000aa", stubdom=4),
    "b": RunningVM(5, "ndvm", UUID_B),
    "c": RunningVM(7, "ndvm", None),
}


def rule(text: str, vm: str = "a", bidirectional: bool = True) -> V4VRule:
    return V4VRule.model_validate({"metadata": {"name": "r"}, "spec": {"vm": vm, "rule": text, "bidirectional": bidirectional}})


def strs(rules: list[V4VRule]) -> list[str]:
    return sorted(str(e) for e in resolve(rules, RUNNING))


@pytest.mark.parametrize(("text", "bidirectional", "expected"), [
    ("myself -> 0:5555", True, ["--dom-in 0 --dom-out 3 --port-in 5555 -j ACCEPT", "--dom-in 3 --dom-out 0 --port-out 5555 -j ACCEPT"]),
    ("myself -> 0:5555", False, ["--dom-in 3 --dom-out 0 --port-out 5555 -j ACCEPT"]),
    ("myself:7 -> dom-type=ndvm:80", False, ["--dom-in 3 --dom-out 5 --port-in 7 --port-out 80 -j ACCEPT",
                                             "--dom-in 3 --dom-out 7 --port-in 7 --port-out 80 -j ACCEPT"]),
    ("dom-type=ndvm -> dom-type=ndvm:1", False, ["--dom-in 5 --dom-out 7 --port-out 1 -j ACCEPT",
                                                 "--dom-in 7 --dom-out 5 --port-out 1 -j ACCEPT"]),
    ("myself -> dom-name=zzz", True, []),          # not running: nothing, not an error
    ("myself -> dom-type=uivm", True, []),
    ("myself -> myself:22", True, []),              # internal
    ("* -> *", True, []),
    ("* -> myself:22", False, ["--dom-out 3 --port-out 22 -j ACCEPT"]),
    ("my-stubdom -> 0:4001", False, ["--dom-in 4 --dom-out 0 --port-out 4001 -j ACCEPT"]),
    (f"myself -> {UUID_B}", False, ["--dom-in 3 --dom-out 5 -j ACCEPT"]),
    ("dom-name=c -> myself", False, ["--dom-in 7 --dom-out 3 -j ACCEPT"]),
])
def test_resolve(text: str, bidirectional: bool, expected: list[str]) -> None:
    assert strs([rule(text, bidirectional=bidirectional)]) == expected


def test_nothing_resolves_while_the_owner_is_not_running() -> None:
    assert strs([rule("* -> 0:80", vm="nobody")]) == []


def test_my_stubdom_without_a_stub_domain_is_nothing() -> None:
    assert strs([rule("my-stubdom -> 0:4001", vm="b")]) == []


def test_references(desktop: DesiredState) -> None:
    rules = desktop.v4v_rules
    assert references(rules["uivm-to-ndvm"], desktop) == {"uivm", "ndvm"}
    assert references(rules["win10-v4v-96bf4bc7"], desktop) == {"win10", "uivm"}  # dom-type=uivm
    assert references(rules["win10-rpc"], desktop) == {"win10"}
    by_uuid = rule("myself -> 00000000-0000-0000-0000-000000000002:1", vm="uivm")
    assert references(by_uuid, desktop) == {"uivm", "ndvm"}
    assert references(rule("myself -> dom-name=ndvm", vm="uivm"), desktop) == {"uivm", "ndvm"}


def _stopped(desired: DesiredState, name: str) -> DesiredState:
    vm = desired.vms[name]
    return dataclasses.replace(desired, vms={**desired.vms, name: vm.model_copy(update={"spec": vm.spec.model_copy(update={"state": "stopped"})})})


def test_rules_naming_a_vm_the_plan_starts_wait_for_it(desktop: DesiredState, make_mirror: Any) -> None:
    result = diff(desktop, make_mirror(_stopped(desktop, "ndvm")))
    waiting = [c for c in result.changes if c.kind == "V4VRule" and c.vm != "ndvm"]
    assert [(c.name, c.action, c.reason) for c in waiting] == [
        ("uivm-ndvm-status", Action.UPDATE, "applied when ndvm starts"),
        ("uivm-to-ndvm", Action.UPDATE, "applied when ndvm starts"),
    ]
    assert all(not c.fields for c in waiting)  # nothing missing now: the entries they keep are not listed
    assert {c.action for c in result.changes if c.vm == "ndvm"} == {Action.CREATE}


def test_stopping_vm_takes_its_entries_with_it(desktop: DesiredState, make_mirror: Any) -> None:
    observed = make_mirror(desktop)
    result = diff(_stopped(desktop, "win10"), observed)
    assert [(c.kind, c.name, c.action) for c in result.changes] == [
        ("VM", "win10", Action.DELETE), ("V4VRule", "win10-firewall-stale", Action.DELETE)]
    win10, stub = observed.domains["win10"].domid, observed.domains["win10-dm"].domid
    stale = result.changes[1].fields[0].before
    expected = sorted(str(e) for e in observed.firewall if {e.dom_in, e.dom_out} & {win10, stub})
    assert stale == expected and len(stale) == 14  # 5 stub-domain rules, win10-rpc and dom-type=uivm, each both ways
    assert result.changes[1].fields[0].after is None


def test_entry_no_rule_explains_is_stale(desktop: DesiredState, make_mirror: Any) -> None:
    observed = make_mirror(desktop)
    uivm = observed.domains["uivm"].domid
    extra = FirewallEntry(uivm, 0, None, 9999)
    unmanaged = FirewallEntry(0, 0, 1, 2)
    result = diff(desktop, dataclasses.replace(observed, firewall=(extra, unmanaged, *observed.firewall)))
    table, change = result.changes  # the table's own change sorts first: HOST is "(host)"
    assert (change.kind, change.name, change.vm, change.action, change.impact) == (
        "V4VRule", "uivm-firewall-stale", "uivm", Action.DELETE, "live")
    assert change.fields[0].before == [str(extra)]
    # An entry naming no managed domain is not derived from the manifests either: the table owns it.
    assert (table.kind, table.name, table.vm, table.action) == ("V4VRule", TABLE_NAME, HOST, Action.UPDATE)
    assert [(f.path, f.before, f.after) for f in table.fields] == [("entries", [str(unmanaged)], None)]


def test_no_firewall_table_is_a_note_not_a_change(desktop: DesiredState, make_mirror: Any) -> None:
    observed = dataclasses.replace(make_mirror(desktop), firewall=None)
    result = diff(desktop, observed)
    assert result.changes == ()
    assert any("firewall" in n for n in result.notes)


def _table_fields(desktop: DesiredState, observed: Any, table: tuple[FirewallEntry, ...]) -> list[tuple[str, object, object]]:
    result = diff(desktop, dataclasses.replace(observed, firewall=table))
    changes = [c for c in result.changes if c.vm == HOST]
    return [(f.path, f.before, f.after) for c in changes for f in c.fields]


def test_table_is_compared_as_an_ordered_multiset(desktop: DesiredState, make_mirror: Any) -> None:
    observed = make_mirror(desktop)
    *derived, dom0, reject = observed.firewall
    assert _table_fields(desktop, observed, observed.firewall) == []
    # a second copy of a derived entry is drift: it goes under the VM the entry names
    copy = derived[0]
    result = diff(desktop, dataclasses.replace(observed, firewall=(copy, *observed.firewall)))
    (stale,) = result.changes
    assert stale.name.endswith("-firewall-stale") and stale.fields[0].before == [str(copy)]
    # the default REJECT removed: v4v is open
    assert _table_fields(desktop, observed, (*derived, dom0)) == [("default", None, "-j REJECT, last")]
    # an entry below the default REJECT never matches: the REJECT must move
    moved = (*derived[1:], dom0, reject, derived[0])
    assert _table_fields(desktop, observed, moved) == [("default", f"-j REJECT at {len(moved) - 1} of {len(moved)}", "-j REJECT, last")]
    # a second REJECT above everything closes v4v
    assert _table_fields(desktop, observed, (reject, *observed.firewall))[0][0] == "default"
    # a foreign entry below the REJECT goes in the same step as the move, before it
    foreign = FirewallEntry(None, None, None, 22)
    assert _table_fields(desktop, observed, (*derived[1:], dom0, reject, foreign, derived[0])) == [
        ("entries", [str(foreign)], None), ("default", f"-j REJECT at {len(moved) - 1} of {len(moved) + 1}", "-j REJECT, last")]


def test_entries_of_a_domain_that_died_are_the_tables(desktop: DesiredState, make_mirror: Any) -> None:
    observed = make_mirror(desktop)
    dead = 999  # no domain has it: xl destroy leaves viptables alone
    entries = (FirewallEntry(dead, 0, None, 80), FirewallEntry(0, dead, 80, None))
    assert _table_fields(desktop, observed, (*entries, *observed.firewall)) == [
        ("entries", sorted(str(e) for e in entries), None)]
