"""What every part of the diff needs to know about one (desired, observed) pair.

Pure. Built once by `reconciler.diff.diff`: which observed domains are ours (managed),
their parsed last-applied records, which domains are stub domains, and the notes the
parts add. `starting`/`stopping` are filled by `reconciler.diff.vm` and read by the
device and firewall parts (a VM being rebuilt gets its devices with the new domain).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

from reconciler.diff.applied import Record, holds_bare_hash, read_record, unsalt_secrets
from reconciler.diff.compare import Leaf, shared_leaves
from reconciler.diff.fields import plain
from reconciler.model.devices import NIC, Disk, PCIPassthrough, V4VRule
from reconciler.model.host import HostPciDevice
from reconciler.model.observed import DomainInfo, ObservedState, StrandedDevice
from reconciler.model.state import DesiredState
from reconciler.secrets import SALTED

Owned = Disk | NIC | PCIPassthrough | V4VRule
_Dev = TypeVar("_Dev", Disk, NIC, PCIPassthrough)

LIVE_POWER = ("running", "paused")


@dataclass
class Context:
    desired: DesiredState
    observed: ObservedState
    records: dict[str, Record | None] = field(default_factory=dict)
    stubdoms: dict[str, str] = field(default_factory=dict)  # stub domain name -> its guest
    notes: list[str] = field(default_factory=list)
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (desired VM, sentence): plan refuses
    rerecord: set[str] = field(default_factory=set)  # records holding a bare secret hash: written again
    starting: set[str] = field(default_factory=set)  # built by this plan (create, restart)
    stopping: set[str] = field(default_factory=set)  # domains this plan stops or rebuilds
    kept: set[str] = field(default_factory=set)  # managed, running, not rebuilt: devices diffed
    preserved: list[str] = field(default_factory=list)  # crashed, onCrash preserve: left for inspection
    preserved_reboots: list[str] = field(default_factory=list)  # of those, rebooted with onReboot preserve
    # Desired VMs with `adopt: true` -> the unmanaged domain they take over, as observed
    # (in `observed` it shows managed, so every part diffs it as the reconciler's).
    adopted: dict[str, DomainInfo] = field(default_factory=dict)
    # Devices by owning VM (desired: kind then name order), built once so the diff
    # stays linear in the number of VMs.
    wanted: dict[str, list[Owned]] = field(default_factory=dict)
    found: dict[str, list[Disk | NIC | PCIPassthrough]] = field(default_factory=dict)
    # Devices a gone backend domain left stranded: VM -> kind -> devid -> device.
    stranded: dict[str, dict[str, dict[int, StrandedDevice]]] = field(default_factory=dict)
    drivers: dict[str, str | None] = field(default_factory=dict)  # host PCI address -> driver
    # The host PCI inventory by (id field, value), so a match rule looks at its candidates
    # only (`reconciler.diff.pci.resolve_rule`); filled on first use.
    pci_index: dict[tuple[str, int], list[HostPciDevice]] | None = None
    leaf: Leaf = field(default_factory=shared_leaves)  # makes this diff's FieldChanges, sharing equal ones

    def managed(self, name: str) -> DomainInfo | None:
        """The observed domain `name` if the reconciler manages it."""
        info = self.observed.domains.get(name)
        return info if info is not None and info.managed else None

    def running(self, name: str) -> bool:
        info = self.observed.domains.get(name)
        return info is not None and info.power in LIVE_POWER


def _adoptable(info: DomainInfo | None) -> bool:
    return info is not None and not info.managed and not info.unfinished and not info.xenstore_gone


def adoptions(desired: DesiredState, observed: ObservedState) -> dict[str, DomainInfo]:
    """VM name -> the unmanaged domain a desired VM with `adopt: true` takes over (as
    observed, under its own name): the one holding its uuid, else the one with its name.
    One holding its uuid under another name is renamed to the VM's (`xl rename`) when
    nothing else has that name and it has no stub domain to rename with it; else
    `reconciler.diff.vm` names both in a conflict. A domain whose xenstore tree is gone
    is not adopted (nothing to take over in place)."""
    found: dict[str, DomainInfo] = {}
    held = {info.uuid: info for info in observed.domains.values() if info.uuid}
    for name, vm in desired.vms.items():
        if not vm.spec.adopt:
            continue
        info, other = observed.domains.get(name), held.get(vm.spec.uuid or "")
        if other is not None and other.name != name:
            free = info is None and f"{other.name}-dm" not in observed.domains and other.name not in desired.vms
            if free and _adoptable(other):
                found[name] = other
        elif _adoptable(info):
            assert info is not None
            found[name] = info
    return found


def _renamed(observed: ObservedState, adopted: dict[str, DomainInfo]) -> ObservedState:
    """`observed` with each adopted domain managed, and one adopted under another name
    shown under its VM's name (its devices `<vm>-disk-<devid>`..., and the devices of
    other domains it serves naming it as backendVM): the diff then sees what the host
    holds once the rename step ran."""
    names = {info.name: name for name, info in adopted.items() if info.name != name}
    domains = {names.get(key, key): replace(info, name=names.get(info.name, info.name), managed=True)
               if key in names or key in adopted else info for key, info in observed.domains.items()}
    if not names:
        return replace(observed, domains=domains)

    def device_name(name: str, vm: str) -> str:
        return names[vm] + name[len(vm):] if vm in names and name.startswith(vm + "-") else name

    def moved(device: _Dev) -> _Dev:
        spec = device.spec
        updates: dict[str, object] = {}
        if spec.vm in names:
            updates["vm"] = names[spec.vm]
        backend = getattr(spec, "backend_vm", None)
        if backend in names:
            updates["backend_vm"] = names[backend]
        if not updates:
            return device
        meta = device.metadata.model_copy(update={"name": device_name(device.metadata.name, spec.vm)})
        return device.model_copy(update={"metadata": meta, "spec": spec.model_copy(update=updates)})

    def table(found: Mapping[str, _Dev]) -> dict[str, _Dev]:
        out: dict[str, _Dev] = {}
        for device in map(moved, found.values()):
            out[device.metadata.name] = device
        return dict(sorted(out.items()))

    vms = {names.get(key, key): vm.model_copy(update={"metadata": vm.metadata.model_copy(update={"name": names[key]})})
           if key in names else vm for key, vm in observed.vms.items()}
    olds: dict[str, str] = {}
    for seen in (observed.disks, observed.nics, observed.pci):
        olds.update((key, device.spec.vm) for key, device in seen.items())
    return replace(
        observed, domains=dict(sorted(domains.items())), vms=dict(sorted(vms.items())),
        disks=table(observed.disks), nics=table(observed.nics), pci=table(observed.pci),
        health={device_name(key, olds.get(key, "")): value for key, value in observed.health.items()},
        stranded={device_name(key, s.vm): replace(s, name=device_name(s.name, s.vm), vm=names.get(s.vm, s.vm))
                  for key, s in observed.stranded.items()})


def build_context(desired: DesiredState, observed: ObservedState) -> Context:
    adopted = adoptions(desired, observed)
    if adopted:
        observed = _renamed(observed, adopted)
    ctx = Context(desired, observed, adopted=adopted)
    for table in (desired.disks, desired.nics, desired.pci, desired.v4v_rules):
        for device in table.values():
            ctx.wanted.setdefault(device.spec.vm, []).append(device)
    for stale in observed.stranded.values():
        ctx.stranded.setdefault(stale.vm, {}).setdefault(stale.kind, {})[stale.devid] = stale
    ctx.drivers = {dev.bdf: dev.driver for dev in observed.host_pci or ()}
    for seen in (observed.disks, observed.nics, observed.pci):
        for dev in seen.values():
            ctx.found.setdefault(dev.spec.vm, []).append(dev)
    for name, info in observed.domains.items():
        if info.managed:
            record, problem = read_record(info)
            vm = desired.vms.get(name)
            if record is not None and holds_bare_hash(record.vm):
                ctx.rerecord.add(name)
            if record is not None and vm is not None and SALTED in (info.applied or ""):
                hashed = plain(vm.spec)
                record = replace(record, vm=unsalt_secrets(record.vm, hashed if isinstance(hashed, dict) else {}))
            ctx.records[name] = record
            if problem is not None:
                ctx.notes.append(problem)
    # libxl names an HVM guest's device-model stub domain `<guest>-dm`: it belongs to
    # the guest (it is `my-stubdom` in v4v rules), it is not a domain of its own.
    for name in observed.domains:
        guest = name.removesuffix("-dm")
        if guest != name and guest in observed.domains and name not in desired.vms:
            ctx.stubdoms[name] = guest
    return ctx
