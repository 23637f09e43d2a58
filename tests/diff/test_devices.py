"""Device rules: identity matching, hotplug, detach, per-field impacts, canonical NIC
rates, PCI match rules against the host inventory, greedy rules, dumps without one."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from reconciler.diff import diff
from reconciler.diff.pci import matches
from reconciler.model import PciMatch
from reconciler.model.host import HostPciDevice
from reconciler.plan.changes import Action

VM = """
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: box}
spec:
  virt: hvm
  memory: 1024
  state: STATE
  disks:
    - {name: root, target: /img/root.qcow2, format: qcow2, vdev: xvda}
  nics:
    - {name: lan, bridge: xenbr0, rate: 10Mb/s, model: e1000, type: ioemu}
  pci:
    - {name: gpu, match: {class: "0x0300"}, GREEDY}
"""


def box(load_yaml: Any, state: str = "running", greedy: bool = False) -> Any:
    return load_yaml(VM.replace("STATE", state).replace("GREEDY", f"greedy: {str(greedy).lower()}"))


def with_device(observed: Any, table: str, name: str, **spec: object) -> Any:
    devices = getattr(observed, table)
    dev = devices[name]
    return dataclasses.replace(observed, **{table: {**devices, name: dev.model_copy(update={"spec": dev.spec.model_copy(update=spec)})}})


def summary(result: Any) -> list[tuple[Action, str, str, str]]:
    return [(c.action, c.kind, c.name, c.impact) for c in result.changes]


@pytest.mark.parametrize(("spec", "path"), [
    ({"target": "/img/other.qcow2"}, "spec.target"),
    ({"format": "raw"}, "spec.format"),
    ({"access": "ro"}, "spec.access"),
    ({"backend_vm": "stor"}, "spec.backendVM"),
])
def test_disk_change_is_destructive(load_yaml, make_mirror, spec, path) -> None:  # type: ignore[no-untyped-def]
    desired = box(load_yaml)
    (change,) = diff(desired, with_device(make_mirror(desired), "disks", "box-disk-51712", **spec)).changes
    assert (change.action, change.kind, change.name, change.impact) == (Action.UPDATE, "Disk", "root", "destructive")
    assert [f.path for f in change.fields] == [path]


def test_disks_match_by_vdev_not_by_name(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = box(load_yaml)
    observed = make_mirror(desired)
    assert "box-disk-51712" in observed.disks and "root" not in observed.disks
    assert diff(desired, observed).changes == ()


def test_extra_disk_is_detached_destructively(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = box(load_yaml)
    observed = make_mirror(desired)
    extra = observed.disks["box-disk-51712"].model_copy(update={"metadata": observed.disks["box-disk-51712"].metadata.model_copy(update={"name": "box-disk-51728"})})
    extra = extra.model_copy(update={"spec": extra.spec.model_copy(update={"vdev": "xvdb"})})
    result = diff(desired, dataclasses.replace(observed, disks={**observed.disks, "box-disk-51728": extra}))
    assert summary(result) == [(Action.DELETE, "Disk", "box-disk-51728", "destructive")]
    assert ("spec.target", "/img/root.qcow2", None) in [(f.path, f.before, f.after) for f in result.changes[0].fields]


def test_missing_disk_is_hotplugged(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = box(load_yaml)
    result = diff(desired, dataclasses.replace(make_mirror(desired), disks={}))
    assert summary(result) == [(Action.CREATE, "Disk", "root", "live")]


def test_extra_nic_is_unplugged_live(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = box(load_yaml)
    observed = make_mirror(desired)
    nic = observed.nics["box-nic-0"]
    extra = nic.model_copy(update={"metadata": nic.metadata.model_copy(update={"name": "box-nic-1"}),
                                   "spec": nic.spec.model_copy(update={"index": 1, "type": "vif"})})
    result = diff(desired, dataclasses.replace(observed, nics={**observed.nics, "box-nic-1": extra}))
    assert summary(result) == [(Action.DELETE, "NIC", "box-nic-1", "live")]


@pytest.mark.parametrize("rate", ["1250KB/s", "10000Kb/s", "1250000B/s@50ms"])
def test_nic_rate_compares_by_value_not_spelling(load_yaml, make_mirror, rate) -> None:  # type: ignore[no-untyped-def]
    desired = box(load_yaml)
    assert diff(desired, with_device(make_mirror(desired), "nics", "box-nic-0", rate=rate)).changes == ()


@pytest.mark.parametrize(("spec", "path", "impact"), [
    ({"rate": "20Mb/s"}, "spec.rate", "live"),
    ({"mtu": 9000}, "spec.mtu", "live"),
    ({"bridge": "xenbr1"}, "spec.bridge", "live"),
    ({"mac": "00:16:3e:00:00:01"}, "spec.mac", "live"),
    ({"type": "ioemu"}, "spec.type", "restart"),
])
def test_nic_field_impacts(load_yaml, make_mirror, spec, path, impact) -> None:  # type: ignore[no-untyped-def]
    """A PV NIC (type vif) of the HVM guest: re-plugged live; its type only at a restart."""
    desired = load_yaml(VM.replace("STATE", "running").replace("GREEDY", "greedy: false").replace("type: ioemu", "type: vif"))
    (change,) = diff(desired, with_device(make_mirror(desired), "nics", "box-nic-0", **spec)).changes
    assert (change.action, change.name, change.impact, change.pending) == (Action.UPDATE, "lan", impact, impact == "restart")
    assert [(f.path, f.impact) for f in change.fields] == [(path, impact)]


@pytest.mark.parametrize(("spec", "path", "impact"), [
    ({"rate": "20Mb/s"}, "spec.rate", "restart"),
    ({"mtu": 9000}, "spec.mtu", "live"),
    ({"bridge": "xenbr1"}, "spec.bridge", "restart"),
    ({"mac": "00:16:3e:00:00:01"}, "spec.mac", "restart"),
    ({"type": "vif"}, "spec.type", "restart"),
])
def test_emulated_nic_field_impacts(load_yaml, make_mirror, spec, path, impact) -> None:  # type: ignore[no-untyped-def]
    """An emulated NIC (type ioemu) of an HVM guest: QEMU's NIC is as it was built, so
    what a re-plug would change waits for a restart; the MTU is set in place."""
    desired = box(load_yaml)
    (change,) = diff(desired, with_device(make_mirror(desired), "nics", "box-nic-0", **spec)).changes
    assert (change.action, change.name, change.impact, change.pending) == (Action.UPDATE, "lan", impact, impact == "restart")
    assert [(f.path, f.impact) for f in change.fields] == [(path, impact)]


def test_nic_model_change_is_found_through_the_record(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    old = box(load_yaml)
    new = load_yaml(VM.replace("STATE", "running").replace("GREEDY", "greedy: false").replace("e1000", "rtl8139"))
    (change,) = diff(new, make_mirror(old)).changes
    assert [(f.path, f.before, f.after, f.impact) for f in change.fields] == [("spec.model", "e1000", "rtl8139", "restart")]
    assert change.pending


@pytest.mark.parametrize(("rule", "cls", "vendor", "hit"), [
    ({"class": "0x0300"}, "0x0300", "0x8086", True),
    ({"class": "0x0300"}, "0x0380", "0x8086", True),   # any display controller
    ({"class": "0x0300"}, "0x0400", "0x8086", False),
    ({"class": "0x0200"}, "0x0280", "0x8086", False),  # only 0x0300 is special
    ({"class": "0x0280", "vendor": "0x8086"}, "0x0280", "0x8086", True),
    ({"class": "0x0280", "vendor": "0x8086"}, "0x0280", "0x10ec", False),
    ({}, "0x0c03", "0x1b21", True),
])
def test_pci_match(rule, cls, vendor, hit) -> None:  # type: ignore[no-untyped-def]
    assert matches(PciMatch.model_validate(rule), HostPciDevice("0000:01:00.0", vendor, "0x1234", cls)) is hit


def test_match_rule_without_inventory_is_a_note(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = box(load_yaml)
    observed = dataclasses.replace(make_mirror(desired), host_pci=None, pci={})
    result = diff(desired, observed)
    assert result.changes == ()
    assert any("'gpu'" in n and "inventory" in n for n in result.notes)


def test_missing_pci_device_is_hotplugged(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = box(load_yaml)
    observed = make_mirror(desired)
    (change,) = diff(desired, dataclasses.replace(observed, pci={})).changes
    assert (change.action, change.name, change.impact) == (Action.CREATE, "gpu", "live")
    assert ("devices", None, [observed.host_pci[0].bdf]) in [(f.path, f.before, f.after) for f in change.fields]


def test_pci_option_change_is_live(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = box(load_yaml)
    (change,) = diff(desired, with_device(make_mirror(desired), "pci", "box-pci-0", permissive=True)).changes
    assert [(f.path, f.before, f.after, f.impact) for f in change.fields] == [("spec.permissive", True, False, "live")]


def test_unclaimed_pci_device_is_unplugged(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = box(load_yaml)
    observed = make_mirror(desired)
    pci = observed.pci["box-pci-0"]
    other = pci.model_copy(update={"metadata": pci.metadata.model_copy(update={"name": "box-pci-1"}),
                                   "spec": pci.spec.model_copy(update={"bdf": "0000:07:00.0"})})
    result = diff(desired, dataclasses.replace(observed, pci={**observed.pci, "box-pci-1": other}))
    assert summary(result) == [(Action.DELETE, "PCIPassthrough", "box-pci-1", "live")]


@pytest.mark.parametrize(("greedy", "expected"), [(True, 1), (False, 0)])
def test_greedy_rule_keeps_devices_on_pciback_while_stopped(load_yaml, make_mirror, greedy, expected) -> None:  # type: ignore[no-untyped-def]
    desired = box(load_yaml, state="stopped", greedy=greedy)
    observed = make_mirror(box(load_yaml, greedy=greedy))
    observed = dataclasses.replace(observed, vms={}, domains={}, disks={}, nics={}, pci={},
                                   host_pci=tuple(dataclasses.replace(d, driver="nouveau") for d in observed.host_pci))
    changes = diff(desired, observed).changes
    assert len(changes) == expected
    if greedy:
        assert (changes[0].action, changes[0].name, changes[0].fields[0].after) == (Action.UPDATE, "gpu", "pciback")


@pytest.mark.parametrize("shown", ["vif", "ioemu"])
def test_unset_nic_type_accepts_the_type_libxl_chose(load_yaml, make_mirror, shown) -> None:  # type: ignore[no-untyped-def]
    desired = load_yaml(VM.replace("STATE", "running").replace(", type: ioemu", "").replace("GREEDY", "greedy: false"))
    assert desired.nics["lan"].spec.type is None
    assert diff(desired, with_device(make_mirror(desired), "nics", "box-nic-0", type=shown)).changes == ()
    # an explicit type is still compared: the host showing another one is a restart-only change
    explicit = box(load_yaml)
    (change,) = diff(explicit, with_device(make_mirror(explicit), "nics", "box-nic-0", type="vif")).changes
    assert [(f.path, f.before, f.after, f.impact) for f in change.fields] == [("spec.type", "vif", "ioemu", "restart")]


INVENTORY = (
    HostPciDevice("0000:00:02.0", "0x8086", "0x9b41", "0x0300"),
    HostPciDevice("0000:01:00.0", "0x10de", "0x1c82", "0x0302"),
    HostPciDevice("0000:01:00.1", "0x10de", "0x0fb9", "0x0403"),
    HostPciDevice("0000:02:00.0", "0x8086", "0x10d3", "0x0200"),
    HostPciDevice("0000:03:00.0", "0x8086", "0x24fd", "0x0280"),
    HostPciDevice("0000:04:00.0", "0x1b21", "0x1242", "0x0c03"),
)


@pytest.mark.parametrize("rule", [
    {}, {"class": "0x0300"}, {"class": "0x0302"}, {"class": "0x0200"}, {"class": "0x0280"}, {"class": "0x0c03"},
    {"vendor": "0x8086"}, {"vendor": "0x10de", "class": "0x0300"}, {"device": "0x10d3"},
    {"device": "0x1c82", "class": "0x0300"}, {"device": "0x1c82", "vendor": "0x8086"}, {"class": "0x0100"},
])
def test_match_resolves_to_every_inventory_device_it_matches(load_yaml, make_mirror, rule) -> None:  # type: ignore[no-untyped-def]
    """The diff looks at a match rule's candidates only (by device id, vendor or class):
    it must find what testing every device finds."""
    match = ", ".join(f'{key}: "{value}"' for key, value in rule.items())
    desired = load_yaml(VM.replace("STATE", "running").replace("GREEDY", "greedy: false")
                        .replace('match: {class: "0x0300"}', f"match: {{{match}}}"))
    observed = dataclasses.replace(make_mirror(desired), host_pci=INVENTORY, pci={})
    expected = sorted(d.bdf for d in INVENTORY if matches(PciMatch.model_validate(rule), d))
    gpu = [c for c in diff(desired, observed).changes if c.name == "gpu"]
    assert [f.after for c in gpu for f in c.fields if f.path == "devices"] == ([expected] if expected else [])
