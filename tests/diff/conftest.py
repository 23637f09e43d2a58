"""Diff tests. What is real: the example manifests, loaded by the real loader, and the
real resolver and record writer. What is built here: `mirror`, an ObservedState that a
converged host would produce, made from the observer's point of view: VM and device
models carry only the fields `reconciler.observe` sets (never the unseen defaults), the
domain carries the last-applied record the reconciler writes, the host PCI inventory
has the claimed devices on pciback, the firewall holds what the rules resolve to and
rpc-proxy's policy each running VM's entry.
Drift cases start from a mirror and change one thing. Nothing is mocked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler import xenfmt
from reconciler.diff.applied import applied_record
from reconciler.diff.firewall import RunningVM, resolve
from reconciler.diff.rpc import desired_entry, vm_uuid
from reconciler.loader import load_or_raise
from reconciler.model import NIC, VM, DesiredState, Disk, DomainInfo, ObservedState, PCIPassthrough
from reconciler.model.host import FirewallEntry, HostPciDevice, RpcPolicy
from reconciler.rpc import STOCK_RULES

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "openxt-desktop": [str(ROOT / "examples" / "openxt-desktop")],
    "server-host": [str(ROOT / "examples" / "server-host")],
    "manifests": [str(ROOT / "manifests")],
}
BASELINE = (FirewallEntry(0, 0), FirewallEntry(target="REJECT"))  # xenmgr's default deny (openxt.md 4.3)
Mirror = Callable[..., ObservedState]


def _model(cls: Any, kind: str, name: str, spec: dict[str, object]) -> Any:
    return cls.model_validate({"apiVersion": "xen.reconciler/v1", "kind": kind, "metadata": {"name": name}, "spec": spec})


def _vm(vm: VM) -> VM:
    s = vm.spec
    spec: dict[str, object] = {"uuid": s.uuid, "virt": s.virt, "memory": s.memory, "maxMemory": s.max_memory,
                               "vcpus": s.vcpus, "maxVcpus": s.max_vcpus}
    if s.virt == "pv":  # /vm/<uuid>/image is written for PV only
        spec.update({k: v for k, v in (("kernel", s.kernel), ("ramdisk", s.ramdisk), ("cmdline", s.cmdline)) if v})
    if s.xenstore_data:  # the domain's vm-data/ subtree
        spec["xenstoreData"] = dict(s.xenstore_data)
    return _model(VM, "VM", vm.metadata.name, spec)  # type: ignore[no-any-return]


def _disk(d: Disk) -> tuple[str, Disk]:
    s = d.spec
    spec: dict[str, object] = {"vm": s.vm, "target": s.target, "format": s.format, "vdev": s.vdev,
                               "access": s.access, "devtype": s.devtype, "discard": s.discard}
    spec.update({k: v for k, v in (("backendVM", s.backend_vm), ("script", s.script)) if v})
    name = f"{s.vm}-disk-{xenfmt.vdev_to_devid(s.vdev)}"
    return name, _model(Disk, "Disk", name, spec)


def _nic(n: NIC) -> tuple[str, NIC]:
    s = n.spec
    spec: dict[str, object] = {"vm": s.vm, "index": s.index, "mac": s.mac, "bridge": s.bridge, "mtu": s.mtu}
    if s.rate:  # the observer spells the xenstore pair canonically, not as written
        spec["rate"] = xenfmt.rate_from_xenstore(xenfmt.rate_to_xenstore(s.rate))
    spec.update({k: v for k, v in (("backendVM", s.backend_vm), ("script", s.script), ("vifname", s.vifname),
                                   ("ip", s.ip), ("type", s.type)) if v})
    name = f"{s.vm}-nic-{s.index}"
    return name, _model(NIC, "NIC", name, spec)


def _inventory(desired: DesiredState, running: set[str]) -> dict[str, tuple[HostPciDevice, PCIPassthrough]]:
    """One host device per bdf rule and per match rule (a device the match selects)."""
    out: dict[str, tuple[HostPciDevice, PCIPassthrough]] = {}
    for i, rule in enumerate(desired.pci.values()):
        s = rule.spec
        on_pciback = s.vm in running or s.greedy
        driver = "pciback" if on_pciback else None
        if s.bdf is not None:
            dev = HostPciDevice(s.bdf, "0x8086", "0x1000", "0x0400", driver)
        else:
            assert s.match is not None
            pick = {"class": s.match.class_, "vendor": s.match.vendor, "device": s.match.device}
            fill = {"class": "0x0400", "vendor": "0x8086", "device": f"0x{0x2000 + i:04x}"}
            ids = {k: fill[k] if v == "any" else v for k, v in pick.items()}
            dev = HostPciDevice(f"0000:{0x80 + i:02x}:00.0", ids["vendor"], ids["device"], ids["class"], driver)
        out[dev.bdf] = (dev, rule)
    return out


def mirror(desired: DesiredState, *, firewall: bool = True, host_pci: bool = True,
           stubdoms: bool = True, rpc: bool = True) -> ObservedState:
    """What observing a host that runs exactly `desired` gives (with `rpc`, rpc-proxy's
    policy holds each running VM's entry: its rules and properties)."""
    running = sorted(n for n, vm in desired.vms.items() if vm.spec.state != "stopped")
    domains: dict[str, DomainInfo] = {}
    fw_running: dict[str, RunningVM] = {}
    next_domid = 1
    for name in running:
        spec = desired.vms[name].spec
        text, digest = applied_record(desired, name)
        domains[name] = DomainInfo(name, next_domid, spec.uuid, spec.state, True, digest, text)  # type: ignore[arg-type]
        stub = None
        if stubdoms and spec.stubdom is not None and spec.stubdom.enabled:
            stub = next_domid + 1
            domains[f"{name}-dm"] = DomainInfo(f"{name}-dm", stub, None)
        fw_running[name] = RunningVM(next_domid, spec.type, spec.uuid, stub)
        next_domid += 3
    live = set(running)
    disks = dict(_disk(d) for d in desired.disks.values() if d.spec.vm in live)
    nics = dict(_nic(n) for n in desired.nics.values() if n.spec.vm in live)
    inventory = _inventory(desired, live)
    pci: dict[str, PCIPassthrough] = {}
    for vm in running:
        attached = sorted((bdf, rule) for bdf, (_, rule) in inventory.items() if rule.spec.vm == vm)
        for i, (bdf, rule) in enumerate(attached):
            s = rule.spec
            spec: dict[str, object] = {"vm": vm, "bdf": bdf, "permissive": s.permissive,
                                       "msitranslate": s.msitranslate, "powerMgmt": s.power_mgmt}
            if s.guest_slot is not None:
                spec["guestSlot"] = s.guest_slot
            pci[f"{vm}-pci-{i}"] = _model(PCIPassthrough, "PCIPassthrough", f"{vm}-pci-{i}", spec)
    entries = resolve(desired.v4v_rules.values(), fw_running)
    return ObservedState(
        vms={n: _vm(desired.vms[n]) for n in running},
        disks=dict(sorted(disks.items())),
        nics=dict(sorted(nics.items())),
        pci=pci,
        domains=dict(sorted(domains.items())),
        host_pci=tuple(sorted((dev for dev, _ in inventory.values()), key=lambda d: d.bdf)) if host_pci else None,
        firewall=(*sorted(entries, key=str), *BASELINE) if firewall else None,
        rpc=RpcPolicy(STOCK_RULES, {vm_uuid(desired, n): e for n in running if (e := desired_entry(desired, n))})
        if rpc else None,
    )


@pytest.fixture(scope="session")
def make_mirror() -> Mirror:
    return mirror


@pytest.fixture(scope="session")
def examples() -> dict[str, DesiredState]:
    return {name: load_or_raise(paths) for name, paths in EXAMPLES.items()}


@pytest.fixture(scope="session")
def desktop(examples: dict[str, DesiredState]) -> DesiredState:
    return examples["openxt-desktop"]


@pytest.fixture(scope="session")
def server(examples: dict[str, DesiredState]) -> DesiredState:
    return examples["server-host"]


LoadYaml = Callable[[str], DesiredState]


@pytest.fixture
def load_yaml(tmp_path: Path) -> LoadYaml:
    """Manifests from YAML text, through the real loader (defaults, MACs, names)."""
    count = iter(range(1_000_000))

    def load(text: str) -> DesiredState:
        path = tmp_path / f"m{next(count)}.yaml"
        path.write_text(text)
        return load_or_raise([str(path)])

    return load
