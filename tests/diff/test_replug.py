"""Re-plug (issue 12, OpenXT OXT-1011 "Reconnect vifs on ndvm reboot"): the disks and NICs a
backend VM serves do not survive its domain. Built here: a mirror of a converged host
(conftest) changed the way a gone or restarting backend VM changes it; real: the loader,
the diff and the planner."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from reconciler.diff import diff
from reconciler.model.observed import StrandedDevice
from reconciler.plan.build import build_plan
from reconciler.plan.changes import Action
from reconciler.plan.rules import edge_kind

SET = """
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: net}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64, type: ndvm, providesNetworkBackend: true, NETSPEC}
---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: guest}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 64
  nics: [{backendVM: net}, {bridge: xenbr0}]
  disks: [{target: /img/g.img, vdev: xvda, backendVM: net}]
"""


def _gone(observed: Any) -> Any:
    """net destroyed behind our back: its backends went with it; the guest's frontends
    and /libxl copies stay (stranded)."""
    stranded = {"guest-disk-51712": StrandedDevice("Disk", "guest-disk-51712", "guest", 51712, 1, "xvda"),
                "guest-nic-0": StrandedDevice("NIC", "guest-nic-0", "guest", 0, 1)}
    return dataclasses.replace(observed, domains={k: v for k, v in observed.domains.items() if k != "net"},
                               vms={k: v for k, v in observed.vms.items() if k != "net"},
                               disks={}, nics={k: v for k, v in observed.nics.items() if k != "guest-nic-0"},
                               stranded=stranded)


def _changes(result: Any) -> dict[tuple[str, str], Any]:
    return {(c.kind, c.name): c for c in result.changes}


def test_devices_of_a_gone_backend_vm_are_replugged_not_hotplugged(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = load_yaml(SET.replace(", NETSPEC", ""))
    observed = _gone(make_mirror(desired))
    changes = _changes(diff(desired, observed))
    assert set(changes) == {("VM", "net"), ("NIC", "guest-nic0"), ("Disk", "guest-xvda")}
    nic = changes[("NIC", "guest-nic0")]
    assert (nic.action, nic.impact) == (Action.UPDATE, "live")
    assert nic.reason.startswith("backend VM net restarted: re-plugged")
    assert [(f.path, f.before, f.after) for f in nic.fields] == [("backend", "domain 1 (gone)", "net")]
    plan = build_plan(diff(desired, observed), desired, observed, fingerprint="")
    ids = {s.id for s in plan.steps}
    assert {"nic/guest-nic0/detach", "nic/guest-nic0/attach", "disk/guest-xvda/detach", "disk/guest-xvda/attach"} <= ids
    edges = {(d.before, d.after): d.kind for d in plan.dependencies}
    # attached again only once the new backend domain is up
    assert edges[("vm/net/unpause", "nic/guest-nic0/attach")] == "requires"
    assert edges[("nic/guest-nic0/detach", "nic/guest-nic0/attach")] == "requires"


def test_stranded_device_no_manifest_wants_is_cleaned_up(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = load_yaml(SET.replace(", NETSPEC", ""))
    observed = _gone(make_mirror(desired))
    observed = dataclasses.replace(observed, stranded={**observed.stranded, "guest-nic-5": StrandedDevice("NIC", "guest-nic-5", "guest", 5, 1)})
    result = diff(desired, observed)
    (extra,) = [c for c in result.changes if c.name == "guest-nic-5"]
    assert (extra.action, extra.impact) == (Action.DELETE, "live")
    plan = build_plan(result, desired, observed, fingerprint="")
    (step,) = [s for s in plan.steps if s.id == "nic/guest-nic-5/detach"]
    assert dict(step.args) == {"index": 5}


@pytest.mark.parametrize("kind", ["NIC", "Disk"])
def test_planned_backend_restart_replugs_what_it_serves_around_its_stop(load_yaml, make_mirror, kind) -> None:  # type: ignore[no-untyped-def]
    before = load_yaml(SET.replace(", NETSPEC", ""))
    desired = load_yaml(SET.replace("NETSPEC", "maxMemory: 128, updatePolicy: restart"))
    observed = make_mirror(before)
    result = diff(desired, observed)
    changes = _changes(result)
    assert changes[("VM", "net")].action is Action.RESTART
    name = "guest-nic0" if kind == "NIC" else "guest-xvda"
    change = changes[(kind, name)]
    assert (change.action, change.reason) == (Action.UPDATE, "backend VM net restarted: re-plugged")
    assert change.impact == ("live" if kind == "NIC" else "destructive")  # a disk leaves a running guest
    assert ("NIC", "guest-nic1") not in changes  # on dom0's bridge: untouched
    plan = build_plan(result, desired, observed, fingerprint="")
    edges = {(d.before, d.after): (d.rule, d.kind) for d in plan.dependencies}
    prefix = "nic" if kind == "NIC" else "disk"
    assert edges[(f"{prefix}/{name}/detach", "vm/net/shutdown")] == ("frontends_unplugged_before_backend_stops", "orders")
    assert edges[("vm/net/unpause", f"{prefix}/{name}/attach")][1] == "requires"
    assert edge_kind("frontends_unplugged_before_backend_stops") == "orders"


def test_no_backend_restart_no_replug(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = load_yaml(SET.replace(", NETSPEC", ""))
    assert diff(desired, make_mirror(desired)).changes == ()


def test_interface_settings_of_a_nic_whose_backend_restarts_go_with_its_replug(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    before = load_yaml(SET.replace(", NETSPEC", ""))
    desired = load_yaml(SET.replace("NETSPEC", "maxMemory: 128, updatePolicy: restart").replace("{backendVM: net}", "{backendVM: net, mtu: 9000}"))
    result = diff(desired, make_mirror(before))
    (nic,) = [c for c in result.changes if c.name == "guest-nic0"]
    assert (nic.action, nic.reason) == (Action.UPDATE, "backend VM net restarted: re-plugged")
    plan = build_plan(result, desired, make_mirror(before), fingerprint="")
    assert [s.op for s in plan.steps if s.name == "guest-nic0"] == ["attach", "detach"]  # no `set` on the old interface
