"""What every part of the diff needs to know about one (desired, observed) pair.

Pure. Built once by `reconciler.diff.diff`: which observed domains are ours (managed),
their parsed last-applied records, which domains are stub domains, and the notes the
parts add. `starting`/`stopping` are filled by `reconciler.diff.vm` and read by the
device and firewall parts (a VM being rebuilt gets its devices with the new domain).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from reconciler.diff.applied import Record, holds_bare_hash, read_record, unsalt_secrets
from reconciler.diff.compare import Leaf, shared_leaves
from reconciler.diff.fields import plain
from reconciler.model.devices import NIC, Disk, PCIPassthrough, V4VRule
from reconciler.model.host import HostPciDevice
from reconciler.model.observed import DomainInfo, ObservedState, StrandedDevice
from reconciler.model.state import DesiredState
from reconciler.secrets import SALTED

Owned = Disk | NIC | PCIPassthrough | V4VRule

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


def adoptions(desired: DesiredState, observed: ObservedState) -> dict[str, DomainInfo]:
    """VM name -> the unmanaged domain a desired VM with `adopt: true` takes over: the one
    with its name, unless another domain holds its uuid (that one is matched first, and
    `reconciler.diff.vm` names both in a conflict: the host port cannot rename a domain).
    A domain whose xenstore tree is gone is not adopted (nothing to take over in place)."""
    found: dict[str, DomainInfo] = {}
    held = {info.uuid: info for info in observed.domains.values() if info.uuid}
    for name, vm in desired.vms.items():
        info = observed.domains.get(name)
        if not vm.spec.adopt or info is None or info.managed or info.unfinished or info.xenstore_gone:
            continue
        other = held.get(vm.spec.uuid or "")
        if other is not None and other.name != name:
            continue
        found[name] = info
    return found


def build_context(desired: DesiredState, observed: ObservedState) -> Context:
    adopted = adoptions(desired, observed)
    if adopted:
        domains = {name: replace(info, managed=True) if name in adopted else info for name, info in observed.domains.items()}
        observed = replace(observed, domains=domains)
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
