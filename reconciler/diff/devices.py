"""Device changes of one running, managed VM: disks, NICs and PCI devices.

Pure. Devices are matched by identity, never by name (observed ones are named
`<vm>-disk-<devid>`): a Disk by the devid of its vdev, a NIC by its index, a PCI
device by its host address. Missing -> CREATE (hotplug, live); extra -> DELETE (a
Disk detach is destructive, NIC and PCI unplug live); different -> UPDATE with the
fields' impacts from `reconciler.diff.fields` (a NIC whose only changes are the
interface's MTU, promiscuous mode or ethtool settings is set in place). Called by
`reconciler.diff.vm`.

What xl cannot change live (xl(1), xl.cfg(5), xen-vbd-interface(7); issue 13): QEMU takes
an HVM guest's emulated devices (`xenfmt.emulated_disk`: whole-disk hd*/sd* and cdroms;
`xenfmt.emulated_nic`: `type: ioemu`, or a `model` without a type) from the config the
domain is built with, so adding, removing or re-plugging one on a running HVM guest is
a `restart` impact, pending under updatePolicy live (the plan says so on its line) and a
VM restart under updatePolicy restart (`reconciler.diff.vm` rebuilds on any restart
field of a device). `xl block-attach`/`network-attach` would give the guest only the
PV view. A NIC without a type on an HVM guest is hot-plugged live: libxl gives a
hot-plugged NIC type `vif` (PV: the guest needs its PV drivers), and the reason says
it is emulated too once the VM is next built. The one emulated change xl makes live is
a CD's media: a cdrom of an HVM guest whose only changes are `target`/`format` is a
`live` UPDATE whose step is `media` (`xl cd-insert`, `xl cd-eject` for an empty target).
A PCI device for a running VM built without passthrough (`DomainInfo.passthrough` False:
libxl enables the IOMMU context only when the config has `pci=`, and Xen refuses
`pci-attach` without it) is a `restart` impact too. Passthrough unknown (None: a dump or
an older xl) counts as enabled when the domain holds a PCI device; otherwise the
hot-plug is tried live and a note says what to do if Xen refuses it. Re-plugs of devices
the domain was built with (stranded, or their backend VM restarted) stay live: QEMU's
side of them is still there. A domain an interrupted apply built (`DomainInfo.unfinished`)
gets the same verdicts: one that lacks a device only its build can give is rebuilt by
`reconciler.diff.vm` (the guest never ran, so nothing is lost).

Re-plug (OpenXT OXT-1011, "Reconnect vifs on ndvm reboot"): a disk or NIC served by a
backend VM (`backendVM`) does not survive that VM's domain. When the backend domain is
gone behind our back, the guest keeps a stale frontend and /libxl copy (observed as
`stranded`): a plain attach fails ERROR_DEVICE_EXISTS, so the device is re-plugged, an
UPDATE whose steps detach (libxl finds no backend and only cleans up) and attach again
once the backend runs. When this plan restarts the backend VM, `replug_changes` re-plugs
the devices it serves in running guests: unplugged before it stops, plugged after it
is up (the edge rules in `reconciler.plan.rules` order them).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from reconciler import xenfmt
from reconciler.diff.applied import Record, manifest_name
from reconciler.diff.compare import Leaf, compare, created
from reconciler.diff.context import Context
from reconciler.diff.fields import NETDEV_FIELDS, plain, shown
from reconciler.diff.pci import observed_pci, resolve_rule, rule_change
from reconciler.model.common import Kind
from reconciler.model.devices import NIC, Disk, DiskSpec, PCIPassthrough
from reconciler.model.observed import StrandedDevice
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


def _emulated(virt: str, device: Disk | NIC) -> bool:
    """Does QEMU emulate `device` for a guest of this virt (desired or observed spec)?"""
    spec = device.spec
    if isinstance(spec, DiskSpec):
        return xenfmt.emulated_disk(virt, spec.vdev, spec.devtype)
    return xenfmt.emulated_nic(virt, spec.type, spec.model)


def _what(device: Disk | NIC) -> str:
    spec = device.spec
    if isinstance(spec, DiskSpec):
        return f"{spec.vdev} is an emulated {'CD drive' if spec.devtype == 'cdrom' else 'disk'}"
    return f"NIC {spec.index} is an emulated NIC"


def _restart_fields(fields: tuple[FieldChange, ...], keep: Callable[[str], bool] = lambda _p: False) -> tuple[FieldChange, ...]:
    """`fields` with the restart impact, but those `keep` says stay as they are."""
    return tuple(f if keep(f.path) or f.impact == "restart" else dataclasses.replace(f, impact="restart") for f in fields)


_MEDIA = frozenset({"spec.target", "spec.format"})


def _media(want: Disk, have: Disk, fields: tuple[FieldChange, ...]) -> ResourceChange | None:
    """A CD drive of an HVM guest whose only change is its media: `xl cd-insert`/`cd-eject`."""
    if want.spec.devtype != "cdrom" or have.spec.devtype != "cdrom" or not all(f.path in _MEDIA for f in fields):
        return None
    live = tuple(dataclasses.replace(f, impact="live") for f in fields)
    vm = want.spec.vm
    if want.spec.target:
        reason = f"new media in {vm}'s running CD drive {want.spec.vdev} (xl cd-insert, live)"
    else:
        reason = f"media ejected from {vm}'s running CD drive {want.spec.vdev} (xl cd-eject, live)"
    return ResourceChange("Disk", want.metadata.name, vm, Action.UPDATE, "live", live, reason)


def _pair(kind: Kind, want: Disk | NIC, have: Disk | NIC, record: Record | None, leaf: Leaf, virt: str) -> ResourceChange | None:
    name, vm = want.metadata.name, want.spec.vm
    recorded = (record.disks if kind == "Disk" else record.nics).get(name) if record else None
    fields = tuple(compare(kind, want.spec, have.spec, recorded, leaf=leaf))
    if not fields:
        return None
    emulated = _emulated(virt, want) or _emulated(virt, have)
    if emulated and isinstance(want, Disk) and isinstance(have, Disk) and (media := _media(want, have, fields)) is not None:
        return media
    if emulated and not all(netdev_field(f.path) for f in fields):
        # Unplugging and plugging it again would leave QEMU's device as it was built.
        fields = _restart_fields(fields, netdev_field)
    impact = _worst(fields)
    if kind == "Disk" and impact == "restart":
        reason = (f"{_what(want)} of HVM guest {vm}: QEMU takes its drives when the domain is built, so it is "
                  f"changed when {vm} restarts")
    elif kind == "Disk":
        reason = "detached and attached again with the new values"
    elif impact == "restart":
        reason = f"emulated NIC settings only take effect when {vm} restarts: pending"
    elif all(netdev_field(f.path) for f in fields):
        reason = "set on the running interface in its backend domain (ip link/ethtool, live)"
    else:
        reason = "unplugged and plugged again with the new values (live)"
    return ResourceChange(kind, name, vm, Action.UPDATE, impact, fields, reason, pending=impact == "restart")


def _hotplug(kind: Kind, want: Disk | NIC, leaf: Leaf, virt: str) -> ResourceChange:
    """A device the running domain lacks: hot-plugged, unless QEMU would have to emulate it."""
    name, vm = want.metadata.name, want.spec.vm
    fields = created(kind, want.spec, leaf)
    if _emulated(virt, want):
        reason = (f"{_what(want)} of HVM guest {vm}: QEMU only gets its devices when the domain is built "
                  f"(xl {'block' if kind == 'Disk' else 'network'}-attach would give the guest the PV view only): "
                  f"added when {vm} restarts")
        return ResourceChange(kind, name, vm, Action.CREATE, "restart", _restart_fields(fields), reason, pending=True)
    if isinstance(want, NIC) and virt == "hvm" and want.spec.type is None:
        reason = (f"hotplugged into the running domain as a PV NIC (xl network-attach; the HVM guest needs its PV "
                  f"drivers): emulated too once {vm} is next built")
        return ResourceChange(kind, name, vm, Action.CREATE, "live", fields, reason)
    return ResourceChange(kind, name, vm, Action.CREATE, "live", fields, "hotplugged into the running domain")


def _unplug(kind: Kind, have: Disk | NIC, virt: str, name: str | None = None) -> ResourceChange:
    """An observed device no manifest wants: unplugged, unless QEMU emulates it. `name`:
    the one it was applied under (`applied.manifest_name`), if known."""
    if not _emulated(virt, have):
        return deleted(have, *_EXTRA[kind], name=name)
    vm = have.spec.vm
    reason = (f"not in the manifests: {_what(have)} of HVM guest {vm}, which QEMU keeps until the domain is "
              f"rebuilt: removed when {vm} restarts")
    return dataclasses.replace(deleted(have, "restart", reason, name=name), pending=True)


def recorded_name(ctx: Context, device: Disk | NIC | PCIPassthrough) -> str | None:
    """The manifest name an observed device of a managed domain was applied under, from
    its VM's last-applied record: a disk by its vdev, a NIC by its index, a PCI device by
    its address (None when the record does not say)."""
    record = ctx.records.get(device.spec.vm)
    if isinstance(device, PCIPassthrough):
        return manifest_name(record, device.kind, device.spec.bdf, ctx.desired.pci) if device.spec.bdf else None
    devid = _devid(device.metadata.name)
    if devid is None:
        return None
    taken = ctx.desired.disks if isinstance(device, Disk) else ctx.desired.nics
    return manifest_name(record, device.kind, devid, taken)


REPLUGGED = "re-plugged"


def replug(kind: Kind, name: str, vm: str, backend: str | None, impact: Impact, before: str, reason: str) -> ResourceChange:
    """An UPDATE whose steps unplug the device and plug it again (the step table re-plugs
    an update that is not a network-device setting); `backend` shows where it goes."""
    field = FieldChange("backend", before, backend or "dom0", impact)
    return ResourceChange(kind, name, vm, Action.UPDATE, impact, (field,), reason)


def _stranded_replug(kind: Kind, want: Disk | NIC, stale: StrandedDevice) -> ResourceChange:
    backend = want.spec.backend_vm
    why = f"backend VM {backend} restarted: {REPLUGGED}" if backend else f"its backend domain is gone: {REPLUGGED}"
    reason = f"{why} (the guest still holds a frontend for backend domain {stale.backend_domid}, which is gone: cleaned up first)"
    return replug(kind, want.metadata.name, want.spec.vm, backend, "live", f"domain {stale.backend_domid} (gone)", reason)


def _stranded_delete(stale: StrandedDevice) -> ResourceChange:
    """A stranded device no manifest wants: its stale nodes are cleaned up (a detach)."""
    ident = FieldChange("spec.vdev", stale.vdev, None, "live") if stale.kind == "Disk" else FieldChange("spec.index", stale.devid, None, "live")
    reason = f"not in the manifests, and its backend domain {stale.backend_domid} is gone: its stale frontend is cleaned up"
    return ResourceChange(stale.kind, stale.name, stale.vm, Action.DELETE, "live", (ident,), reason)


def _matched(kind: Kind, desired: dict[int, D], observed: dict[int, D], record: Record | None,
             leaf: Leaf, stranded: dict[int, StrandedDevice], virt: str = "pv",
             names: Mapping[int, str | None] = {}) -> list[ResourceChange]:
    out: list[ResourceChange] = []
    for ident, want in sorted(desired.items()):
        have = observed.get(ident)
        if have is None and ident in stranded:
            out.append(_stranded_replug(kind, want, stranded[ident]))
        elif have is None:
            out.append(_hotplug(kind, want, leaf, virt))
        elif (change := _pair(kind, want, have, record, leaf, virt)) is not None:
            out.append(change)
    for ident, have in sorted(observed.items()):
        if ident not in desired:
            out.append(_unplug(kind, have, virt, names.get(ident)))
    for ident, stale in sorted(stranded.items()):
        if ident not in desired and ident not in observed:
            out.append(_stranded_delete(stale))
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
        if change is not None and change.action is Action.CREATE:
            change = _passthrough(ctx, vm, change, bool(attached))
        if change is not None:
            out.append(change)
    if not unresolved:  # with an unresolved match rule, any attached device may be its
        for bdf, have in sorted(attached.items()):
            if bdf not in claimed:
                out.append(deleted(have, *_EXTRA["PCIPassthrough"], name=recorded_name(ctx, have)))
    return out


def _passthrough(ctx: Context, vm: str, change: ResourceChange, holds_pci: bool) -> ResourceChange:
    """A PCI hot-plug (`change`, a CREATE) onto running `vm`: live if the domain was built
    with passthrough, a restart if it was built without (see the module docstring)."""
    info = ctx.observed.domains.get(vm)
    built_with = info.passthrough if info is not None else None
    if built_with is None and holds_pci:
        built_with = True  # it holds a device, so its IOMMU context exists
    if built_with is None:
        ctx.notes.append(f"PCIPassthrough {change.name!r}: the host cannot say whether {vm} was built with "
                         "passthrough; the pci-attach is tried live, and Xen refuses it if it was not (then restart "
                         f"{vm}, or set its updatePolicy to restart)")
        return change
    if built_with:
        return change
    reason = (f"{vm} was built without passthrough (no pci= in the config it was built from), and Xen refuses "
              f"pci-attach to such a domain: passed through when {vm} restarts (built with pci=)")
    return dataclasses.replace(change, impact="restart", fields=_restart_fields(change.fields), reason=reason, pending=True)


def device_changes(ctx: Context, vm: str) -> list[ResourceChange]:
    """Every device change of running, managed VM `vm`."""
    record = ctx.records.get(vm)
    want_disks, want_nics = _by_identity(ctx.wanted.get(vm, []), lambda d: _vdev_devid(d.spec.vdev), lambda n: n.spec.index)
    have_disks, have_nics = _by_identity(ctx.found.get(vm, []), lambda d: _devid(d.metadata.name), lambda n: _devid(n.metadata.name))
    stranded = ctx.stranded.get(vm, {})
    desired_vm = ctx.desired.vms.get(vm)
    virt = desired_vm.spec.virt if desired_vm is not None else "pv"
    disk_names = {ident: recorded_name(ctx, have) for ident, have in have_disks.items() if ident not in want_disks}
    nic_names = {ident: recorded_name(ctx, have) for ident, have in have_nics.items() if ident not in want_nics}
    out = _matched("Disk", want_disks, have_disks, record, ctx.leaf, stranded.get("Disk", {}), virt, disk_names)
    out += _matched("NIC", want_nics, have_nics, record, ctx.leaf, stranded.get("NIC", {}), virt, nic_names)
    return out + _pci(ctx, vm)


def replug_changes(ctx: Context, changes: list[ResourceChange]) -> list[ResourceChange]:
    """`changes` with the disks and NICs of running guests (kept, not rebuilt) whose backend
    VM this plan restarts re-plugged: the old backend domain takes the device's backend
    with it (OXT-1011). A device that already re-plugs or is hotplugged keeps its change; a
    NIC whose change only sets its interface (MTU, offloads) is re-plugged instead, with
    those values (the interface goes with the old backend). Unplugging a disk from a
    running guest is destructive."""
    restarted = ctx.starting & ctx.stopping
    if not restarted:
        return changes
    by_key = {(c.kind, c.name): c for c in changes}
    replaced: set[tuple[str, str]] = set()
    added: list[ResourceChange] = []
    for vm in sorted(ctx.kept):
        for device in ctx.wanted.get(vm, []):
            backend = device.spec.backend_vm if isinstance(device, (Disk, NIC)) else None
            if backend not in restarted:
                continue
            key = (device.kind, device.metadata.name)
            change = by_key.get(key)
            if change is not None and not (change.fields and all(netdev_field(f.path) for f in change.fields)):
                continue
            if change is not None:
                replaced.add(key)
            impact: Impact = "destructive" if isinstance(device, Disk) else "live"
            added.append(replug(device.kind, device.metadata.name, vm, backend, impact, f"{backend} (restarting)",
                                f"backend VM {backend} restarted: {REPLUGGED}"))
    return [c for c in changes if (c.kind, c.name) not in replaced] + added


def netdev_field(path: str) -> bool:
    """Is `spec.mtu`, `spec.promiscuous` or `spec.ethtool.<key>` a field the network-device port sets?"""
    return path.split(".")[1] in NETDEV_FIELDS if path.startswith("spec.") else False


def deleted(device: Disk | NIC | PCIPassthrough, impact: Impact, reason: str, name: str | None = None) -> ResourceChange:
    """A DELETE of an observed device, with its observed values as `before`; named `name`
    (the manifest name it was applied under) when given, else as the observer names it."""
    values = plain(device.spec)
    assert isinstance(values, dict)
    keys = shown(device.spec)
    fields = tuple(FieldChange(f"spec.{k}", v, None, impact) for k, v in values.items()
                   if k in keys and k != "vm" and v is not None)
    return ResourceChange(device.kind, name or device.metadata.name, device.spec.vm, Action.DELETE, impact, fields, reason)
