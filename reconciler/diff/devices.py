"""Device changes of one running, managed VM: disks, NICs and PCI devices.

Pure. Devices are matched by identity, never by name (observed ones are named
`<vm>-disk-<devid>`): a Disk by the devid of its vdev, a NIC by its index, a PCI
device by its host address. Missing -> CREATE (hotplug, live); extra -> DELETE (a
Disk detach is destructive, NIC and PCI unplug live); different -> UPDATE with the
fields' impacts from `reconciler.diff.fields` (a NIC whose only changes are the
interface's MTU, promiscuous mode or ethtool settings is set in place). Called by
`reconciler.diff.vm`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TypeVar

from reconciler import xenfmt
from reconciler.diff.applied import Record
from reconciler.diff.compare import Leaf, compare, created
from reconciler.diff.context import Context
from reconciler.diff.fields import NETDEV_FIELDS, plain, shown
from reconciler.diff.pci import observed_pci, resolve_rule, rule_change
from reconciler.model.common import Kind
from reconciler.model.devices import NIC, Disk, PCIPassthrough
from reconciler.plan.changes import IMPACT_ORDER, Action, FieldChange, Impact, ResourceChange

D = TypeVar("D", Disk, NIC)
_EXTRA: dict[Kind, tuple[Impact, str]] = {
    "Disk": ("destructive", "not in the manifests: detached from the running domain (the image is kept)"),
    "NIC": ("live", "not in the manifests: unplugged from the running domain"),
    "PCIPassthrough": ("live", "not in the manifests: unplugged from the running domain"),
}


def _devid(name: str) -> int | None:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


@functools.lru_cache(maxsize=1024)
def _vdev_devid(vdev: str) -> int | None:
    try:
        return xenfmt.vdev_to_devid(vdev)
    except ValueError:
        return None


def _by_identity(devices: Sequence[object], disk_key: Callable[[Disk], int | None],
                 nic_key: Callable[[NIC], int | None]) -> tuple[dict[int, Disk], dict[int, NIC]]:
    """(disks, NICs) of a device list by identity, in one pass (the last one wins)."""
    disks: dict[int, Disk] = {}
    nics: dict[int, NIC] = {}
    for device in devices:
        if isinstance(device, Disk):
            if (ident := disk_key(device)) is not None:
                disks[ident] = device
        elif isinstance(device, NIC) and (ident := nic_key(device)) is not None:
            nics[ident] = device
    return disks, nics


def _worst(fields: tuple[FieldChange, ...]) -> Impact:
    return max((f.impact for f in fields), key=lambda i: IMPACT_ORDER[i])


def _pair(kind: Kind, want: Disk | NIC, have: Disk | NIC, record: Record | None, leaf: Leaf) -> ResourceChange | None:
    name, vm = want.metadata.name, want.spec.vm
    recorded = (record.disks if kind == "Disk" else record.nics).get(name) if record else None
    fields = tuple(compare(kind, want.spec, have.spec, recorded, leaf=leaf))
    if not fields:
        return None
    impact = _worst(fields)
    if kind == "Disk":
        reason = "detached and attached again with the new values"
    elif impact == "restart":
        reason = f"emulated NIC settings only take effect when {vm} restarts: pending"
    elif all(netdev_field(f.path) for f in fields):
        reason = "set on the running interface in its backend domain (ip link/ethtool, live)"
    else:
        reason = "unplugged and plugged again with the new values (live)"
    return ResourceChange(kind, name, vm, Action.UPDATE, impact, fields, reason, pending=impact == "restart")


def _matched(kind: Kind, desired: dict[int, D], observed: dict[int, D], record: Record | None,
             leaf: Leaf) -> list[ResourceChange]:
    out: list[ResourceChange] = []
    for ident, want in sorted(desired.items()):
        have = observed.get(ident)
        if have is None:
            out.append(ResourceChange(kind, want.metadata.name, want.spec.vm, Action.CREATE, "live",
                                      created(kind, want.spec, leaf), "hotplugged into the running domain"))
        elif (change := _pair(kind, want, have, record, leaf)) is not None:
            out.append(change)
    for ident, have in sorted(observed.items()):
        if ident not in desired:
            out.append(deleted(have, *_EXTRA[kind]))
    return out


def _pci(ctx: Context, vm: str) -> list[ResourceChange]:
    attached = observed_pci(ctx, vm)
    claimed: set[str] = set()
    unresolved = False
    out: list[ResourceChange] = []
    rules = [r for r in ctx.wanted.get(vm, []) if isinstance(r, PCIPassthrough)]
    for rule in sorted(rules, key=lambda r: r.metadata.name):
        bdfs = resolve_rule(rule, ctx)
        if bdfs is None:
            unresolved = True
            ctx.notes.append(f"PCIPassthrough {rule.metadata.name!r}: match rules need the host PCI inventory, "
                             "which this source does not show; not compared")
            continue
        claimed.update(bdfs)
        change = rule_change(rule, bdfs, attached, ctx)
        if change is not None:
            out.append(change)
    if not unresolved:  # with an unresolved match rule, any attached device may be its
        for bdf, have in sorted(attached.items()):
            if bdf not in claimed:
                out.append(deleted(have, *_EXTRA["PCIPassthrough"]))
    return out


def device_changes(ctx: Context, vm: str) -> list[ResourceChange]:
    """Every device change of running, managed VM `vm`."""
    record = ctx.records.get(vm)
    want_disks, want_nics = _by_identity(ctx.wanted.get(vm, []), lambda d: _vdev_devid(d.spec.vdev), lambda n: n.spec.index)
    have_disks, have_nics = _by_identity(ctx.found.get(vm, []), lambda d: _devid(d.metadata.name), lambda n: _devid(n.metadata.name))
    out = _matched("Disk", want_disks, have_disks, record, ctx.leaf)
    out += _matched("NIC", want_nics, have_nics, record, ctx.leaf)
    return out + _pci(ctx, vm)


def netdev_field(path: str) -> bool:
    """Is `spec.mtu`, `spec.promiscuous` or `spec.ethtool.<key>` a field the network-device port sets?"""
    return path.split(".")[1] in NETDEV_FIELDS if path.startswith("spec.") else False


def deleted(device: Disk | NIC | PCIPassthrough, impact: Impact, reason: str) -> ResourceChange:
    """A DELETE of an observed device, with its observed values as `before`."""
    values = plain(device.spec)
    assert isinstance(values, dict)
    keys = shown(device.spec)
    fields = tuple(FieldChange(f"spec.{k}", v, None, impact) for k, v in values.items()
                   if k in keys and k != "vm" and v is not None)
    return ResourceChange(device.kind, device.metadata.name, device.spec.vm, Action.DELETE, impact, fields, reason)
