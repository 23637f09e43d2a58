"""What xl cannot change on a running VM (issue 13, part B): emulated devices of an HVM
guest, PCI passthrough onto a domain built without it, and the one emulated change xl
makes live, a CD's media. Real loader, diff and plan builder; the observed side is a
mirror of a converged host with one thing changed (tests/diff/conftest.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from reconciler.diff import diff
from reconciler.plan.build import plan_for
from reconciler.plan.changes import Action

GUEST = """
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: box}
spec:
  virt: VIRT
  kernel: /boot/vmlinuz
  memory: 1024
  updatePolicy: POLICY
  disks:
    - {name: root, target: /img/root.img, vdev: xvda}
    - {name: cd, devtype: cdrom, target: /iso/a.iso, vdev: hdc}
    - {name: data, target: /img/data.img, vdev: hdb}
    - {name: extra, target: /img/extra.img, vdev: xvdb}
  nics:
    - {name: emu, type: ioemu, model: e1000}
    - {name: pv, type: vif}
    - {name: plain}
  pci:
    - {name: gpu, bdf: "0000:03:00.0"}
"""


def guest(load_yaml: Any, virt: str = "hvm", policy: str = "live", edit: tuple[str, str] = ("", "")) -> Any:
    return load_yaml(GUEST.replace("VIRT", virt).replace("POLICY", policy).replace(*edit))


def without(observed: Any, table: str, name: str) -> Any:
    return dataclasses.replace(observed, **{table: {k: v for k, v in getattr(observed, table).items() if k != name}})


def one(result: Any) -> Any:
    (change,) = result.changes
    return change


@pytest.mark.parametrize(("table", "name", "device"), [
    ("disks", "box-disk-5632", "cd"),  # hdc, a CD drive: QEMU's ide-cd
    ("disks", "box-disk-832", "data"),  # hdb, a whole-disk hd*: emulated IDE
    ("nics", "box-nic-0", "emu"),  # type ioemu
])
def test_hotplugging_an_emulated_device_of_an_hvm_guest_waits_for_a_restart(load_yaml, make_mirror, table, name,
                                                                           device) -> None:  # type: ignore[no-untyped-def]
    desired = guest(load_yaml)
    change = one(diff(desired, without(make_mirror(desired), table, name)))
    assert (change.action, change.name, change.impact, change.pending) == (Action.CREATE, device, "restart", True)
    assert {f.impact for f in change.fields} == {"restart"}
    assert "emulated" in change.reason and "added when box restarts" in change.reason
    assert "-attach would give the guest the PV view only" in change.reason
    plan = plan_for(desired, without(make_mirror(desired), table, name))
    assert plan.steps == ()  # nothing is hot-plugged: QEMU would never see it


@pytest.mark.parametrize(("table", "name", "device"), [
    ("disks", "box-disk-51728", "extra"),  # xvdb: a Xen VBD
    ("nics", "box-nic-1", "pv"),  # type vif
])
def test_pv_devices_of_an_hvm_guest_are_hotplugged_live(load_yaml, make_mirror, table, name, device) -> None:  # type: ignore[no-untyped-def]
    desired = guest(load_yaml)
    change = one(diff(desired, without(make_mirror(desired), table, name)))
    assert (change.action, change.name, change.impact, change.pending) == (Action.CREATE, device, "live", False)
    assert [s.op for s in plan_for(desired, without(make_mirror(desired), table, name)).steps] == ["attach"]


def test_a_nic_without_a_type_is_hotplugged_as_a_pv_nic_and_says_so(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = guest(load_yaml)
    change = one(diff(desired, without(make_mirror(desired), "nics", "box-nic-2")))
    assert (change.action, change.name, change.impact, change.pending) == (Action.CREATE, "plain", "live", False)
    assert "as a PV NIC" in change.reason and "emulated too once box is next built" in change.reason


def test_the_same_devices_of_a_pv_guest_are_hotplugged_live(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = guest(load_yaml, virt="pv", edit=("{name: emu, type: ioemu, model: e1000}", "{name: emu, type: vif}"))
    for table, name in (("disks", "box-disk-5632"), ("disks", "box-disk-832"), ("nics", "box-nic-0")):
        change = one(diff(desired, without(make_mirror(desired), table, name)))
        assert (change.action, change.impact, change.pending) == (Action.CREATE, "live", False), name


def test_unplugging_an_emulated_disk_waits_for_a_restart(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    old = guest(load_yaml)
    new = guest(load_yaml, edit=("    - {name: data, target: /img/data.img, vdev: hdb}\n", ""))
    change = one(diff(new, make_mirror(old)))
    assert (change.action, change.name, change.impact, change.pending) == (Action.DELETE, "data", "restart", True)  # its manifest name, from the record
    assert "QEMU keeps until the domain is rebuilt: removed when box restarts" in change.reason
    assert plan_for(new, make_mirror(old)).steps == ()


def test_an_emulated_disk_change_is_a_restart_not_a_replug(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    old = guest(load_yaml)
    new = guest(load_yaml, edit=("/img/data.img", "/img/data2.img"))
    change = one(diff(new, make_mirror(old)))
    assert (change.action, change.name, change.impact, change.pending) == (Action.UPDATE, "data", "restart", True)
    assert [(f.path, f.impact) for f in change.fields] == [("spec.target", "restart")]
    assert "changed when box restarts" in change.reason


@pytest.mark.parametrize(("iso", "step_target", "word"), [("/iso/b.iso", "/iso/b.iso", "xl cd-insert"),
                                                          ("''", "", "xl cd-eject")])
def test_new_cd_media_is_a_live_media_step(load_yaml, make_mirror, iso, step_target, word) -> None:  # type: ignore[no-untyped-def]
    old = guest(load_yaml)
    new = guest(load_yaml, edit=("target: /iso/a.iso", f"target: {iso}"))
    change = one(diff(new, make_mirror(old)))
    assert (change.action, change.name, change.impact, change.pending) == (Action.UPDATE, "cd", "live", False)
    assert [(f.path, f.before, f.after, f.impact) for f in change.fields] == [("spec.target", "/iso/a.iso", step_target, "live")]
    assert word in change.reason
    (step,) = plan_for(new, make_mirror(old)).steps
    assert (step.id, step.op, dict(step.args)) == ("disk/cd/media", "media", {"vdev": "hdc", "target": step_target, "format": "raw"})


def test_a_pv_guests_cdrom_target_is_still_a_replug(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    # cd-insert "only works with HVM domains" (xl(1)): a PV guest's cdrom is a VBD like any other.
    old = guest(load_yaml, virt="pv", edit=("{name: emu, type: ioemu, model: e1000}", "{name: emu, type: vif}"))
    new = load_yaml(GUEST.replace("VIRT", "pv").replace("POLICY", "live")
                    .replace("{name: emu, type: ioemu, model: e1000}", "{name: emu, type: vif}").replace("/iso/a.iso", "/iso/b.iso"))
    change = one(diff(new, make_mirror(old)))
    assert (change.action, change.impact) == (Action.UPDATE, "destructive")
    assert sorted(s.op for s in plan_for(new, make_mirror(old)).steps) == ["attach", "detach"]


def test_cd_media_and_access_together_is_a_restart(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    old = guest(load_yaml)
    new = guest(load_yaml, edit=("{name: cd, devtype: cdrom, target: /iso/a.iso, vdev: hdc}",
                                 "{name: cd, devtype: cdrom, target: /iso/b.iso, vdev: hdc, access: rw}"))
    change = one(diff(new, make_mirror(old)))
    assert (change.action, change.impact, change.pending) == (Action.UPDATE, "restart", True)


def _pci_missing(load_yaml: Any, make_mirror: Any, passthrough: bool | None, policy: str = "live") -> tuple[Any, Any]:
    desired = guest(load_yaml, policy=policy)
    observed = make_mirror(desired)
    observed = dataclasses.replace(observed, pci={}, domains={
        name: dataclasses.replace(info, passthrough=passthrough) for name, info in observed.domains.items()})
    return desired, observed


def test_pci_onto_a_domain_built_without_passthrough_waits_for_a_restart(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired, observed = _pci_missing(load_yaml, make_mirror, False)
    change = one(diff(desired, observed))
    assert (change.action, change.name, change.impact, change.pending) == (Action.CREATE, "gpu", "restart", True)
    assert "built without passthrough" in change.reason and "passed through when box restarts" in change.reason
    assert plan_for(desired, observed).steps == ()


def test_pci_onto_a_domain_built_with_passthrough_is_hotplugged(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired, observed = _pci_missing(load_yaml, make_mirror, True)
    change = one(diff(desired, observed))
    assert (change.action, change.impact, change.pending) == (Action.CREATE, "live", False)
    assert sorted(s.op for s in plan_for(desired, observed).steps) == ["attach", "pci-assignable-add"]


def test_unknown_passthrough_tries_the_hotplug_and_notes_it(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired, observed = _pci_missing(load_yaml, make_mirror, None)
    result = diff(desired, observed)
    assert (one(result).impact, one(result).pending) == ("live", False)
    assert any("cannot say whether box was built with passthrough" in n for n in result.notes)


@pytest.mark.parametrize(("table", "name"), [("disks", "box-disk-5632"), ("nics", "box-nic-0"), ("pci", None)])
def test_under_updatepolicy_restart_the_vm_is_rebuilt(load_yaml, make_mirror, table, name) -> None:  # type: ignore[no-untyped-def]
    if name is None:
        desired, observed = _pci_missing(load_yaml, make_mirror, False, policy="restart")
    else:
        desired = guest(load_yaml, policy="restart")
        observed = without(make_mirror(desired), table, name)
    change = one(diff(desired, observed))
    assert (change.action, change.kind, change.name, change.impact) == (Action.RESTART, "VM", "box", "restart")
    assert "only take effect on a restart, and updatePolicy is restart" in change.reason
    ops = {s.op for s in plan_for(desired, observed).steps if s.kind == "VM"}
    assert {"shutdown", "destroy", "create"} <= ops


def unfinished(observed: Any) -> Any:
    """The host as an apply left it when killed between `create` and `record`: the domain
    is there, with its build intent and no record (ours, with work left)."""
    info = dataclasses.replace(observed.domains["box"], digest=None, applied=None, unfinished=True)
    return dataclasses.replace(observed, domains={**observed.domains, "box": info})


def test_an_interrupted_build_without_an_emulated_device_is_rebuilt_whatever_the_policy(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    # Only its build gives an HVM guest its emulated devices; the guest of a domain an
    # interrupted apply built never ran (record comes before unpause), so nothing is lost.
    desired = guest(load_yaml)  # updatePolicy live
    observed = unfinished(without(make_mirror(desired), "disks", "box-disk-832"))
    (change,) = [c for c in diff(desired, observed).changes if c.kind == "VM"]
    assert (change.action, change.impact) == (Action.RESTART, "restart")
    assert change.reason.startswith("an interrupted apply built it without data spec.")
    assert "only its build can give" in change.reason
    ops = {s.op for s in plan_for(desired, observed).steps if s.vm == "box"}
    assert {"shutdown", "destroy", "create", "record"} <= ops and "attach" not in ops, ops


def test_an_interrupted_build_without_a_pv_device_gets_it_hotplugged(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = guest(load_yaml)
    observed = unfinished(without(make_mirror(desired), "disks", "box-disk-51728"))  # xvdb
    changes = diff(desired, observed).changes
    assert not [c for c in changes if c.action is Action.RESTART]
    assert [s.op for s in plan_for(desired, observed).steps if s.kind == "Disk"] == ["attach"]
