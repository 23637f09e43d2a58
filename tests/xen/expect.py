"""What libxl must hold for a VM, derived from its manifests (never copied from output).

Each function maps manifest resources to the libxl JSON xl prints (`xl create -n`) or
libxl's device JSON (libxlutil's parsers): field names from libxl_types.idl; libxl's
generator leaves out fields at their default (0, false, empty), so those are left out
here too, and a test compares whole device objects: a field xl sets that the manifest
does not explain fails it. Every VM of every example directory is a case.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from reconciler import xenfmt
from reconciler.loader import load
from reconciler.model.common import default_vm_uuid
from reconciler.model.devices import NIC, Disk, PCIPassthrough
from reconciler.model.state import DesiredState
from reconciler.model.vm import VM

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# xl.cfg action names -> libxl JSON enum names (reference xen.md 3.2)
ACTIONS = {"rename-restart": "restart_rename", "coredump-destroy": "coredump_destroy",
           "coredump-restart": "coredump_restart", "soft-reset": "soft_reset"}


@cache
def example_state(example: str) -> DesiredState:
    result = load([str(EXAMPLES / example)])
    assert result.state is not None, [str(d) for d in result.diagnostics]
    return result.state


def example_vms() -> list[tuple[str, str]]:
    """(example directory, VM name) for every VM of every example."""
    return [(example.name, vm) for example in sorted(EXAMPLES.iterdir()) if example.is_dir()
            for vm in example_state(example.name).vms]


@dataclass(frozen=True)
class Manifest:
    """One desired VM and the device resources that name it (`spec.vm`)."""

    vm: VM
    disks: tuple[Disk, ...]
    nics: tuple[NIC, ...]
    pci: tuple[PCIPassthrough, ...]


def manifest(example: str, name: str) -> Manifest:
    state = example_state(example)
    return Manifest(
        state.vms[name],
        tuple(d for d in state.disks.values() if d.spec.vm == name),
        tuple(n for n in state.nics.values() if n.spec.vm == name),
        tuple(p for p in state.pci.values() if p.spec.vm == name),
    )


def made_up_addresses(rules: tuple[PCIPassthrough, ...]) -> dict[str, list[str]]:
    """Host addresses for match rules (the plan resolves them from the host's inventory;
    these tests have no host): one made-up function per rule, on buses 0x40 upwards."""
    matched = sorted(rule.metadata.name for rule in rules if rule.spec.bdf is None)
    return {name: [f"0000:{0x40 + i:02x}:00.0"] for i, name in enumerate(matched)}


def _nonzero(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value not in (None, 0, False, "")}


def disk(resource: Disk) -> dict[str, Any]:
    """libxl_device_disk as libxlutil's xlu_disk_parse fills it (before libxl defaults)."""
    spec = resource.spec
    cdrom = spec.devtype == "cdrom"
    access = spec.access or ("ro" if cdrom else "rw")
    return _nonzero(
        backend_domname=spec.backend_vm,
        pdev_path=spec.target,
        vdev=spec.vdev,
        format=spec.format if spec.target else "empty",
        script=spec.script,
        removable=1 if cdrom else 0,
        readwrite=1 if access == "rw" else 0,
        is_cdrom=1 if cdrom else 0,
        discard_enable="True" if spec.discard else "False",
    )


def nic(resource: NIC) -> dict[str, Any]:
    """libxl_device_nic as xl's parse_nic_config fills it from the manifest's NIC (devid
    is always printed: its "unset" is -1, not 0)."""
    spec = resource.spec
    rate = xenfmt.parse_rate(spec.rate) if spec.rate else (0, 0)
    return {"devid": spec.index} | _nonzero(
        backend_domname=spec.backend_vm,
        mtu=spec.mtu,
        model=spec.model,
        mac=spec.mac,
        ip=spec.ip,
        bridge=spec.bridge,
        ifname=spec.vifname,
        script=spec.script,
        nictype={"ioemu": "vif_ioemu", "vif": "vif", None: None}[spec.type],
        rate_bytes_per_interval=rate[0],
        rate_interval_usecs=rate[1],
    )


def pci(bdf: str, rule: PCIPassthrough) -> dict[str, Any]:
    """libxl_device_pci for one host function a rule gives the VM (xl-pci-configuration(5))."""
    address, spec = xenfmt.parse_bdf(bdf), rule.spec
    return _nonzero(
        func=address.func,
        dev=address.slot,
        bus=address.bus,
        domain=address.domain,
        vdevfn=spec.guest_slot << 3 if spec.guest_slot is not None else None,
        vfunc_mask=1,  # xl's parser: one function, not `*` (all functions)
        msitranslate=spec.msitranslate,
        power_mgmt=spec.power_mgmt,
        permissive=spec.permissive,
    )


def pci_devices(m: Manifest, resolved: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Every function the VM's rules give it, in address order (sorted as the cfg is)."""
    found: dict[str, dict[str, Any]] = {}
    for rule in m.pci:
        for bdf in resolved.get(rule.metadata.name) or ([rule.spec.bdf] if rule.spec.bdf else []):
            found.setdefault(str(xenfmt.parse_bdf(bdf)), pci(bdf, rule))
    return [found[key] for key in sorted(found)]


def domain(m: Manifest) -> dict[str, Any]:
    """name, uuid, type, memory (KiB), vCPUs, boot and lifecycle as libxl holds them."""
    spec = m.vm.spec
    return {
        "name": m.vm.metadata.name,
        "uuid": spec.uuid or default_vm_uuid(m.vm.metadata.name),
        "type": spec.virt,
        "target_memkb": spec.memory * 1024,
        "max_memkb": (spec.max_memory or spec.memory) * 1024,
        "max_vcpus": spec.max_vcpus or spec.vcpus,
        "avail_vcpus": list(range(spec.vcpus)),
        "kernel": spec.kernel,
        "ramdisk": spec.ramdisk,
        "cmdline": spec.cmdline,
        "bootloader": spec.bootloader,
        "ssid_label": spec.flask_label,
        "on_poweroff": ACTIONS.get(spec.lifecycle.on_poweroff, spec.lifecycle.on_poweroff),
        "on_reboot": ACTIONS.get(spec.lifecycle.on_reboot, spec.lifecycle.on_reboot),
        "on_crash": ACTIONS.get(spec.lifecycle.on_crash, spec.lifecycle.on_crash),
    }
