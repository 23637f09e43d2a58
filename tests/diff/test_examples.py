"""The example manifest sets against an empty host (everything is created), a converged
host (nothing changes) and hosts with one kind of drift each."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler.diff import diff
from reconciler.model import DesiredState, ObservedState
from reconciler.model.common import KINDS
from reconciler.model.host import FirewallEntry, HostPciDevice
from reconciler.plan.changes import Action

NAMES = ["openxt-desktop", "server-host", "manifests"]


def _expected_creates(desired: DesiredState) -> set[tuple[str, str]]:
    running = {n for n, vm in desired.vms.items() if vm.spec.state != "stopped"}
    out = {("VM", n) for n in running}
    for kind in KINDS[1:]:
        if kind == "RPCRule":
            continue  # ObservedState() cannot show rpc-proxy's policy, so none is planned (tests/plan/test_rpc_plan.py)
        out |= {(kind, name) for name, r in desired.by_kind(kind).items() if r.spec.vm in running}  # type: ignore[union-attr]
    return out


@pytest.mark.parametrize("name", NAMES)
def test_empty_host_creates_every_resource_of_running_vms(name: str, examples: dict[str, DesiredState]) -> None:
    desired = examples[name]
    result = diff(desired, ObservedState())
    assert {c.action for c in result.changes} == {Action.CREATE}
    assert {(c.kind, c.name) for c in result.changes} == _expected_creates(desired)
    assert result.unmanaged == ()


def test_stopped_vm_is_not_created(server: DesiredState) -> None:
    assert server.vms["mail-staging"].spec.state == "stopped"
    assert not [c for c in diff(server, ObservedState()).changes if c.vm == "mail-staging"]


@pytest.mark.parametrize("name", NAMES)
def test_converged_host_has_no_changes(name: str, examples: dict[str, DesiredState], make_mirror) -> None:  # type: ignore[no-untyped-def]
    result = diff(examples[name], make_mirror(examples[name]))
    assert result.changes == ()
    assert result.notes == ()


@pytest.mark.parametrize("name", NAMES)
def test_diff_is_deterministic(name: str, examples: dict[str, DesiredState], make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = examples[name]
    assert diff(desired, ObservedState()) == diff(desired, ObservedState())
    observed = make_mirror(desired)
    drifted = dataclasses.replace(observed, nics={}, firewall=observed.firewall[3:])
    assert diff(desired, drifted) == diff(desired, drifted)


def test_changes_are_sorted_by_vm_kind_name(desktop: DesiredState) -> None:
    changes = diff(desktop, ObservedState()).changes
    keys = [(c.vm, KINDS.index(c.kind), c.name) for c in changes]
    assert keys == sorted(keys)


def test_nic_detached(desktop: DesiredState, make_mirror) -> None:  # type: ignore[no-untyped-def]
    observed = make_mirror(desktop)
    nics = {k: v for k, v in observed.nics.items() if k != "win10-nic-0"}
    result = diff(desktop, dataclasses.replace(observed, nics=nics))
    # win10's NIC is emulated (model e1000): QEMU only gets it when win10 is built.
    assert [(c.action, c.kind, c.name, c.impact, c.pending) for c in result.changes] == [
        (Action.CREATE, "NIC", "win10-wired", "restart", True)]


def test_memory_changed(server: DesiredState, make_mirror) -> None:  # type: ignore[no-untyped-def]
    observed = make_mirror(server)
    db = observed.vms["db"]
    shrunk = db.model_copy(update={"spec": db.spec.model_copy(update={"memory": 2048})})
    result = diff(server, dataclasses.replace(observed, vms={**observed.vms, "db": shrunk}))
    (change,) = result.changes
    assert (change.action, change.name, change.impact, change.pending) == (Action.UPDATE, "db", "live", False)
    assert [(f.path, f.before, f.after, f.impact) for f in change.fields] == [("spec.memory", 2048, 4096, "live")]


def test_pci_device_taken_by_another_driver(desktop: DesiredState, make_mirror) -> None:  # type: ignore[no-untyped-def]
    observed = make_mirror(desktop)
    assert observed.host_pci is not None
    host = tuple(dataclasses.replace(d, driver="i915") if d.bdf == "0000:00:02.0" else d for d in observed.host_pci)
    (change,) = diff(desktop, dataclasses.replace(observed, host_pci=host)).changes
    assert (change.action, change.kind, change.name, change.impact) == (Action.UPDATE, "PCIPassthrough", "win10-igd", "live")
    assert ("driver[0000:00:02.0]", "i915", "pciback") in [(f.path, f.before, f.after) for f in change.fields]
    assert ("devices", [], ["0000:00:02.0"]) in [(f.path, f.before, f.after) for f in change.fields]


def test_firewall_entry_missing(desktop: DesiredState, make_mirror) -> None:  # type: ignore[no-untyped-def]
    observed = make_mirror(desktop)
    uivm = observed.domains["uivm"].domid
    gone = FirewallEntry(uivm, 0, None, 80)
    assert gone in observed.firewall
    result = diff(desktop, dataclasses.replace(observed, firewall=tuple(e for e in observed.firewall if e != gone)))
    (change,) = result.changes
    assert (change.action, change.kind, change.name, change.vm) == (Action.UPDATE, "V4VRule", "uivm-v4v-d50a8863", "uivm")
    (entries,) = change.fields
    assert str(gone) in entries.after and str(gone) not in entries.before


def test_managed_vm_removed_from_manifests(server: DesiredState, make_mirror) -> None:  # type: ignore[no-untyped-def]
    observed = make_mirror(server)
    fewer = dataclasses.replace(server, vms={k: v for k, v in server.vms.items() if k != "app2"},
                                disks={k: v for k, v in server.disks.items() if v.spec.vm != "app2"},
                                nics={k: v for k, v in server.nics.items() if v.spec.vm != "app2"})
    changes = diff(fewer, observed).changes
    assert [(c.action, c.kind, c.name, c.impact) for c in changes] == [
        (Action.DELETE, "VM", "app2", "destructive"),
        (Action.DELETE, "Disk", "app2-root", "destructive"),  # as applied (the record), not app2-disk-51712
        (Action.DELETE, "Disk", "app2-uploads", "destructive"),
        (Action.DELETE, "NIC", "app2-front", "live"),
    ]
    assert changes[0].reason == "removed from the manifests"


def test_unmanaged_domain_listed_once_and_untouched(server: DesiredState, make_mirror) -> None:  # type: ignore[no-untyped-def]
    observed = make_mirror(server)
    stranger = dataclasses.replace(observed.domains["app1"], name="legacy-box", domid=99, managed=False,
                                   uuid="00000000-0000-4000-8000-000000000099")
    result = diff(server, dataclasses.replace(observed, domains={**observed.domains, "legacy-box": stranger}))
    assert result.changes == ()
    assert result.unmanaged == ("legacy-box",)


def test_host_pci_inventory_is_used_for_match_rules(desktop: DesiredState, make_mirror) -> None:  # type: ignore[no-untyped-def]
    observed = make_mirror(desktop)
    extra = HostPciDevice("0000:09:00.0", "0x10ec", "0x8168", "0x0200", "r8169")
    result = diff(desktop, dataclasses.replace(observed, host_pci=(*observed.host_pci, extra)))
    (change,) = result.changes
    assert (change.kind, change.name, change.action) == ("PCIPassthrough", "ndvm-ethernet", Action.UPDATE)
    fields = {f.path: (f.before, f.after) for f in change.fields}
    assert fields["devices"][1] == sorted([*fields["devices"][0], "0000:09:00.0"])
    assert fields["driver[0000:09:00.0]"] == ("r8169", "pciback")
