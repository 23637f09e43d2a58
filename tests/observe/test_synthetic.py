"""The observer on small synthetic trees, for what no real dump shows: failures,
truncation, garbage, driver domains, rates, PCI options, power/managed facts."""

from __future__ import annotations

import pytest

from reconciler.model.observed import DeviceHealth
from reconciler.observe import observe_tree

UUID = "0b7c1a52-3c1e-4d6a-9f5e-2f0e8b1d7c44"


def guest(domid: int = 5, name: str = "web", virt: str | None = "pv") -> dict[str, str]:
    """The nodes libxl writes for a small guest (reference 2.1, 2.2)."""
    d = f"/local/domain/{domid}"
    nodes = {
        "/local/domain/0/name": "Domain-0",
        f"{d}/name": name,
        f"{d}/vm": f"/vm/{UUID}",
        f"{d}/memory/static-max": "1048576",
        f"{d}/memory/target": "524288",
        f"{d}/memory/videoram": "0",
        f"{d}/cpu/0/availability": "online",
        f"{d}/cpu/1/availability": "offline",
        f"/vm/{UUID}/name": name,
    }
    if virt is not None:
        nodes[f"/libxl/{domid}/type"] = virt
    return nodes


def vif(keys: dict[str, str] | None = None, domid: int = 5, backend: int = 0) -> dict[str, str]:
    be = f"/local/domain/{backend}/backend/vif/{domid}/0"
    base = {"state": "4", "mac": "00:16:3e:01:02:03", "bridge": "xenbr0", "type": "vif",
            "script": "/etc/xen/scripts/vif-bridge", "hotplug-status": "connected"}
    base.update(keys or {})
    return {f"{be}/{k}": v for k, v in base.items()}


def vbd(keys: dict[str, str | None] | None = None, domid: int = 5, devid: int = 51712, kind: str = "vbd") -> dict[str, str]:
    be = f"/local/domain/0/backend/{kind}/{domid}/{devid}"
    base: dict[str, str | None] = {"state": "4", "params": "/dev/vg/web", "dev": "xvda", "mode": "w", "device-type": "disk",
            "script": "/etc/xen/scripts/block", "hotplug-status": "connected", "discard-enable": "0"}
    base.update(keys or {})
    return {f"{be}/{k}": v for k, v in base.items() if v is not None}


def test_pv_guest_fields() -> None:
    state = observe_tree(guest() | {f"/vm/{UUID}/image/kernel": "/boot/vmlinuz", f"/vm/{UUID}/image/cmdline": "ro"})
    spec = state.vms["web"].spec
    assert (spec.virt, spec.memory, spec.max_memory, spec.vcpus, spec.max_vcpus) == ("pv", 512, 1024, 1, 2)
    assert (spec.kernel, spec.ramdisk, spec.cmdline) == ("/boot/vmlinuz", None, "ro")
    assert state.problems == ()


def test_arm_videoram_minus_one() -> None:
    # Arm libxl writes videoram -1 and target = static-max + 1 (reference 2.2).
    nodes = guest() | {"/local/domain/5/memory/target": "1048577", "/local/domain/5/memory/videoram": "-1"}
    assert observe_tree(nodes).vms["web"].spec.memory == 1024


@pytest.mark.parametrize(("hvmloader", "virt"), [(True, "hvm"), (False, "pv")])
def test_missing_libxl_type_is_inferred_and_reported(hvmloader: bool, virt: str) -> None:
    nodes = guest(virt=None)
    if hvmloader:
        nodes["/local/domain/5/hvmloader/bios"] = "seabios"
    state = observe_tree(nodes)
    assert state.vms["web"].spec.virt == virt
    assert state.problems == (f"/libxl/5/type is missing; domain 'web' taken as {virt}",)


def test_hotplug_error_is_failed_with_reason() -> None:
    nodes = guest() | vbd({"hotplug-status": "error", "hotplug-error": "/dev/vg/web does not exist.", "state": "2"})
    state = observe_tree(nodes)
    assert state.health == {"web-disk-51712": DeviceHealth("failed", "hotplug script failed: /dev/vg/web does not exist.")}


def test_frontend_error_node_is_failed() -> None:
    nodes = guest() | vif() | {"/local/domain/5/error/device/vif/0/error": "1 allocating event channel"}
    assert observe_tree(nodes).health["web-nic-0"] == DeviceHealth("failed", "guest frontend reported: 1 allocating event channel")


@pytest.mark.parametrize(
    ("keys", "health"),
    [
        ({}, DeviceHealth("connected")),
        ({"hotplug-status": ""}, DeviceHealth("initialising", "backend connected, hotplug script not done (hotplug-status '')")),
        ({"state": "2"}, DeviceHealth("initialising", "backend state 2 (InitWait)")),
        ({"state": "5"}, DeviceHealth("closing", "backend state 5 (Closing)")),
        ({"state": "6"}, DeviceHealth("closed", "backend state 6 (Closed)")),
        ({"hotplug-status": "busy"}, DeviceHealth("failed", "hotplug script: the device is in use by another domain")),
    ],
)
def test_vif_health_by_state(keys: dict[str, str], health: DeviceHealth) -> None:
    assert observe_tree(guest() | vif(keys)).health["web-nic-0"] == health


def test_qdisk_needs_no_hotplug_script() -> None:
    nodes = guest() | vbd({"params": "aio:/srv/web.img", "script": None, "hotplug-status": None}, kind="qdisk")
    state = observe_tree(nodes)
    disk = state.disks["web-disk-51712"].spec
    assert (disk.target, disk.format, disk.discard, disk.script) == ("/srv/web.img", "raw", False, None)
    assert state.health["web-disk-51712"] == DeviceHealth("connected")


def test_disk_without_dev_uses_devid_and_mode_r_is_ro() -> None:
    nodes = guest() | vbd({"dev": None, "mode": "r", "device-type": "cdrom"}, devid=768)
    disk = observe_tree(nodes).disks["web-disk-768"].spec
    assert (disk.vdev, disk.access, disk.devtype) == ("hda", "ro", "cdrom")


def test_driver_domain_backend_names_backend_vm() -> None:
    nodes = guest() | guest(domid=3, name="ndvm") | vif({"rate": "62500,50000", "mtu": "9000", "script": "/etc/xen/scripts/vif-nat"}, backend=3)
    nic = observe_tree(nodes).nics["web-nic-0"].spec
    assert (nic.backend_vm, nic.rate, nic.mtu, nic.script) == ("ndvm", "10Mb/s", 9000, "/etc/xen/scripts/vif-nat")


def test_pci_options_and_guest_slot() -> None:
    be = "/local/domain/0/backend/pci/5/0"
    nodes = guest() | {
        f"{be}/state": "4", f"{be}/num_devs": "2",
        f"{be}/dev-0": "0000:00:02.0", f"{be}/opts-0": "msitranslate=1,power_mgmt=0,permissive=1,rdm_policy=strict",
        f"{be}/vdevfn-0": "28", f"{be}/dev-1": "0000:03:00.1",
        "/libxl/pci/0000-00-02-0/domid": "5", "/libxl/pci/0000-05-00-0/driver_path": "/sys/bus/pci/drivers/e1000e",
    }
    state = observe_tree(nodes)
    first, second = state.pci["web-pci-0"].spec, state.pci["web-pci-1"].spec
    assert (first.bdf, first.msitranslate, first.permissive, first.power_mgmt, first.guest_slot) == (
        "0000:00:02.0", True, True, False, 5
    )
    assert (second.bdf, second.permissive) == ("0000:03:00.1", False)
    assert state.health["web-pci-1"] == DeviceHealth("connected")
    assert state.pci_assignable == ("0000:05:00.0",)


def test_managed_marker_and_digest() -> None:
    nodes = guest() | {f"/vm/{UUID}/reconciler/managed": "1", f"/vm/{UUID}/reconciler/digest": "sha256:ab"}
    info = observe_tree(nodes).domains["web"]
    assert (info.managed, info.digest, info.uuid) == (True, "sha256:ab", UUID)


@pytest.mark.parametrize(("record", "node", "booted"), [
    ('{"version":1,"vm":{"bootSentinel":"attr/booted"}}', "1", True),
    ('{"version":1,"vm":{"bootSentinel":"attr/booted"}}', "", False),  # empty is not written
    ('{"version":1,"vm":{"bootSentinel":"attr/booted"}}', None, False),
    ('{"version":1,"vm":{}}', "1", None),  # no sentinel recorded
    ('{"bootSentinel": broken', "1", None),  # unreadable: the diff reports it
])
def test_boot_sentinel_named_by_the_record(record: str, node: str | None, booted: bool | None) -> None:
    nodes = guest() | {f"/vm/{UUID}/reconciler/managed": "1", f"/vm/{UUID}/reconciler/applied": record}
    if node is not None:
        nodes["/local/domain/5/attr/booted"] = node
    assert observe_tree(nodes).domains["web"].booted is booted


def test_truncated_values_are_reported() -> None:
    path = "/local/domain/0/backend/vbd/5/51712/params"
    nodes = guest() | vbd({"params": "/home/user/a-very-long-path-that-the-terminal-c"})
    state = observe_tree(nodes, truncated=frozenset({path}))
    assert state.disks["web-disk-51712"].spec.target == "/home/user/a-very-long-path-that-the-terminal-c"
    assert state.problems == (f"{path}: value was truncated by the dump; read '/home/user/a-very-long-path-that-the-terminal-c' as is",)


def test_garbage_is_reported_never_raised() -> None:
    nodes = guest() | {
        "/local/domain/abc/name": "x",
        "/local/domain/5/memory/target": "lots",
        "/local/domain/0/backend/vif/9/0/state": "4",
        "/local/domain/0/backend/vbd/5/zz/state": "4",
        "/local/domain/0/backend/vif/5/0/state": "nine",
        "/libxl/pci/not-a-bdf/driver_path": "",
    }
    state = observe_tree(nodes)
    assert list(state.domains) == ["web"] and state.vms["web"].spec.memory == 1024
    assert state.health["web-nic-0"] == DeviceHealth("initialising", "backend state unknown")
    assert set(state.problems) == {
        "/local/domain/abc: 'abc' is not a domid; skipped",
        "/local/domain/5/memory/target = 'lots' is not an integer (current memory in KiB)",
        "/local/domain/0/backend/vif/9: backend for domain 9, which has no /local/domain/9; stale, skipped",
        "/local/domain/0/backend/vbd/5/zz: 'zz' is not a devid; skipped",
        "/local/domain/0/backend/vif/5/0/state = 'nine' is not a XenbusState (0-8)",
        "/libxl/pci/not-a-bdf: not a DDDD-BB-SS-F PCI address; skipped",
    }


def test_dead_domain_with_leftover_vm_node_is_not_listed() -> None:
    nodes = {"/local/domain/0/name": "Domain-0", f"/vm/{UUID}/name": "gone", f"/vm/{UUID}/uuid": UUID}
    state = observe_tree(nodes)
    assert state.domains == {} and state.vms == {} and state.problems == ()


def test_output_is_sorted_by_name() -> None:
    nodes = guest(domid=7, name="zeta") | guest(domid=3, name="alpha")
    state = observe_tree(nodes)
    assert list(state.vms) == ["alpha", "zeta"] and list(state.domains) == ["alpha", "zeta"]


def test_host_values_breaking_manifest_rules_are_kept_and_reported() -> None:
    # A multicast MAC cannot be written in a manifest, but the host has it: keep it.
    nodes = guest() | vif({"mac": "01:00:5e:00:00:01"})
    state = observe_tree(nodes)
    assert state.nics["web-nic-0"].spec.mac == "01:00:5e:00:00:01"
    assert len(state.problems) == 1
    assert state.problems[0].startswith("NIC 'web-nic-0': observed values break manifest rules (spec.mac: ")
    assert state.problems[0].endswith("kept unvalidated")
