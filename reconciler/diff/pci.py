"""PCI passthrough: rules -> host devices, and what differs for one VM's devices.

Pure. A `bdf` rule names one device; a `match` rule resolves against the host
inventory (`ObservedState.host_pci`, sysfs): class, vendor and device must each equal
the device's unless `any`, and class 0x0300 matches every display controller
(`class & 0xff00`, as xenmgr does, openxt.md 3.2). A captured dump has no inventory:
match rules cannot be resolved, which is a note and no change.

Derived fields (not manifest paths): `devices` is the sorted list of host addresses a
rule has attached (before) and should have (after); `driver[<bdf>]` is the host driver
a device is bound to, where it must be `pciback` (the VM runs, or the rule is greedy).
Devices the reconciler bound (`ObservedState.pciback_bound`) that no rule needs any more
are given back (`release_changes`): `PCIPassthrough pciback-<DDDD-BB-SS-F>` of `HOST`.
Every address a `bdf` rule names must be a function the host has (`missing_devices`):
the plan refuses the manifests otherwise, at the rule's line, as apply would fail every
VM it touches (xl pci-assignable-add refuses an unknown address).
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler import xenfmt
from reconciler.diff.compare import compare, created
from reconciler.diff.context import LIVE_POWER, Context
from reconciler.errors import Diagnostic, Location
from reconciler.model.devices import PCIPassthrough, PciMatch
from reconciler.model.host import HostPciDevice
from reconciler.plan.changes import HOST, Action, FieldChange, ResourceChange

PCIBACK = "pciback"
_DISPLAY = 0x0300


def matches(match: PciMatch, dev: HostPciDevice) -> bool:
    """Does host device `dev` satisfy `match`? (Every field not `any` must equal.)"""
    if match.class_ != "any":
        want, have = int(match.class_, 16), int(dev.pci_class, 16)
        if not (have & 0xFF00 == _DISPLAY if want == _DISPLAY else have == want):
            return False
    for want_text, have_text in ((match.vendor, dev.vendor), (match.device, dev.device)):
        if want_text != "any" and int(want_text, 16) != int(have_text, 16):
            return False
    return True


def resolve_rule(rule: PCIPassthrough, ctx: Context) -> list[str] | None:
    """The host addresses a rule selects, sorted; None when it cannot be known."""
    if rule.spec.bdf is not None:
        return [rule.spec.bdf]
    inventory = ctx.observed.host_pci
    if inventory is None or rule.spec.match is None:
        return None
    return sorted(dev.bdf for dev in _candidates(rule.spec.match, inventory, ctx) if matches(rule.spec.match, dev))


def _candidates(match: PciMatch, inventory: Sequence[HostPciDevice], ctx: Context) -> Sequence[HostPciDevice]:
    """The inventory devices that may satisfy `match`: those with its device id, else its
    vendor, else its class's upper byte (0x03 for the display rule), else all of them.
    A host with a thousand match rules and devices would otherwise test every pair."""
    if ctx.pci_index is None:
        ctx.pci_index = {}
        for dev in inventory:
            for key in (("device", int(dev.device, 16)), ("vendor", int(dev.vendor, 16)),
                        ("class", int(dev.pci_class, 16) >> 8)):
                ctx.pci_index.setdefault(key, []).append(dev)
    if match.device != "any":
        return ctx.pci_index.get(("device", int(match.device, 16)), [])
    if match.vendor != "any":
        return ctx.pci_index.get(("vendor", int(match.vendor, 16)), [])
    if match.class_ != "any":
        return ctx.pci_index.get(("class", int(match.class_, 16) >> 8), [])
    return inventory


def _canonical(bdf: str | None) -> str | None:
    try:
        return str(xenfmt.parse_bdf(bdf or ""))
    except ValueError:
        return None


SHOWN_ADDRESSES = 4  # host addresses a missing-device error names, the nearest first


def _position(bdf: str) -> int:
    parsed = xenfmt.parse_bdf(bdf)
    return parsed.domain << 16 | parsed.bus << 8 | parsed.slot << 3 | parsed.func


def _nearest(bdf: str, have: Sequence[str]) -> str:
    """The host addresses closest to `bdf` (a mistyped bus or function is found first),
    in address order, and how many more the host has."""
    target = _position(bdf)
    shown = sorted(sorted(have, key=lambda other: (abs(_position(other) - target), other))[:SHOWN_ADDRESSES])
    more = f" and {len(have) - len(shown)} more" if len(have) > len(shown) else ""
    return f"{', '.join(shown)}{more}" if shown else "no PCI devices at all"


def missing_devices(ctx: Context) -> list[Diagnostic]:
    """An error for each `bdf` rule whose address the host inventory lacks, at the
    rule's manifest line, naming the nearest addresses the host has. A source without
    an inventory (a captured dump) cannot say: a note, nothing refused."""
    named = [(rule, bdf) for rule in ctx.desired.pci.values() if (bdf := _canonical(rule.spec.bdf)) is not None]
    if not named:
        return []
    inventory = ctx.observed.host_pci
    if inventory is None:
        ctx.notes.append("the host PCI inventory is not in this source (a captured dump?): the addresses "
                         "PCIPassthrough rules name are not checked against the host")
        return []
    have = sorted(dev.bdf for dev in inventory)
    known = set(have)
    out: list[Diagnostic] = []
    for rule, bdf in named:
        if bdf in known:
            continue
        name = rule.metadata.name
        where = ctx.desired.origins.get(("PCIPassthrough", name)) or Location("<manifests>")
        out.append(Diagnostic(where, "error", (
            f"PCIPassthrough {name!r} (VM {rule.spec.vm!r}): the host has no PCI device {bdf}; "
            f"it has {_nearest(bdf, have)} (lspci -D lists them)")))
    return out


def observed_pci(ctx: Context, vm: str) -> dict[str, PCIPassthrough]:
    """The devices passed through to `vm`, by canonical host address."""
    out: dict[str, PCIPassthrough] = {}
    for dev in ctx.found.get(vm, []):
        bdf = _canonical(dev.spec.bdf) if isinstance(dev, PCIPassthrough) else None
        if isinstance(dev, PCIPassthrough) and bdf is not None:
            out[bdf] = dev
    return out


def driver_drift(bdfs: list[str], ctx: Context) -> list[FieldChange]:
    """`driver[<bdf>]` changes for devices the host shows bound to another driver."""
    drivers = ctx.drivers
    return [FieldChange(f"driver[{b}]", drivers[b], PCIBACK, "live")
            for b in bdfs if b in drivers and drivers[b] != PCIBACK]


def rule_change(rule: PCIPassthrough, bdfs: list[str], attached: dict[str, PCIPassthrough],
                ctx: Context) -> ResourceChange | None:
    """One rule of a running VM: attach what is missing, re-bind what was taken, and
    compare the options of what is attached."""
    name, vm = rule.metadata.name, rule.spec.vm
    drift = driver_drift(bdfs, ctx)
    taken = {f.path[len("driver["):-1] for f in drift}
    healthy = sorted(b for b in bdfs if b in attached and b not in taken)
    if bdfs and not any(b in attached for b in bdfs):
        fields = created("PCIPassthrough", rule.spec, ctx.leaf) + (FieldChange("devices", None, bdfs, "live"),) + tuple(drift)
        return ResourceChange("PCIPassthrough", name, vm, Action.CREATE, "live", fields,
                              f"passed through to the running {vm} (hotplug)")
    record = ctx.records.get(vm)
    fields_list: list[FieldChange] = []
    if healthy != bdfs:
        fields_list.append(FieldChange("devices", healthy, bdfs, "live"))
    seen: set[str] = set()
    for bdf in healthy:
        for change in compare("PCIPassthrough", rule.spec, attached[bdf].spec,
                              record.pci.get(name) if record else None, leaf=ctx.leaf):
            if change.path not in seen:
                seen.add(change.path)
                fields_list.append(change)
    fields_list.extend(drift)
    if not fields_list:
        return None
    reason = "taken by another host driver: re-bind to pciback and attach" if drift else "detach and attach again (live)"
    return ResourceChange("PCIPassthrough", name, vm, Action.UPDATE, "live", tuple(fields_list), reason)


def greedy_changes(ctx: Context) -> list[ResourceChange]:
    """Greedy rules of VMs that do not run (and are not started by this plan): their
    devices must stay on pciback so no dom0 driver takes them."""
    out: list[ResourceChange] = []
    for rule in ctx.desired.pci.values():
        vm = rule.spec.vm
        if not rule.spec.greedy or vm in ctx.kept or vm in ctx.starting or vm not in ctx.desired.vms:
            continue
        if ctx.observed.domains.get(vm) is not None and not ctx.observed.domains[vm].managed:
            continue  # not ours
        bdfs = resolve_rule(rule, ctx)
        drift = driver_drift(bdfs or [], ctx)
        if drift:
            out.append(ResourceChange("PCIPassthrough", rule.metadata.name, vm, Action.UPDATE, "live", tuple(drift),
                                      f"greedy: kept on pciback while {vm} is stopped"))
    return out


def _needed(ctx: Context, changes: list[ResourceChange]) -> set[str] | None:
    """Host devices a rule needs on pciback after this plan (greedy, or its VM is to run),
    and devices a domain keeps (one this plan neither stops nor detaches them from);
    None when a match rule cannot be resolved (no inventory)."""
    needed: set[str] = set()
    for rule in ctx.desired.pci.values():
        vm = ctx.desired.vms.get(rule.spec.vm)
        if vm is not None and (rule.spec.greedy or vm.spec.state in LIVE_POWER):
            bdfs = resolve_rule(rule, ctx)
            if bdfs is None:
                return None
            needed.update(filter(None, map(_canonical, bdfs)))
    detached = {c.name for c in changes if c.kind == "PCIPassthrough" and c.action is Action.DELETE}
    for name, dev in ctx.observed.pci.items():
        if dev.spec.vm not in ctx.stopping and name not in detached and (bdf := _canonical(dev.spec.bdf)):
            needed.add(bdf)
    return needed


def release_changes(ctx: Context, changes: list[ResourceChange]) -> list[ResourceChange]:
    """Devices the reconciler bound to pciback that nothing needs any more go back to the
    driver they came from (DESIGN 7: it owns the bindings it made, and only those)."""
    bound = ctx.observed.pciback_bound
    needed = _needed(ctx, changes) if bound and ctx.observed.host_pci is not None else None
    if needed is None:
        return []
    out: list[ResourceChange] = []
    for bdf, original in sorted(bound.items()):
        if bdf in needed:
            continue
        name = f"pciback-{xenfmt.parse_bdf(bdf).xenstore_key}"
        driver = ctx.drivers.get(bdf)
        if driver == PCIBACK:
            field = FieldChange(f"driver[{bdf}]", PCIBACK, original, "live")
            reason = f"bound to pciback by the reconciler, needed by no rule now: given back to {original or 'no driver'}"
        else:  # someone rebound it: only the record is left
            field = FieldChange(f"pciback[{bdf}]", "bound by the reconciler", None, "live")
            reason = f"the reconciler's record of binding it outlived the binding (driver {driver or 'none'}): forgotten"
        out.append(ResourceChange("PCIPassthrough", name, HOST, Action.DELETE, "live", (field,), reason))
    return out


def unseized_notes(ctx: Context) -> list[str]:
    """`seize: false`: the reconciler never binds the device, so a start needs it on
    pciback already (xl without pci_seize refuses a device that is not assignable)."""
    out: list[str] = []
    for rule in ctx.desired.pci.values():
        vm = ctx.desired.vms.get(rule.spec.vm)
        if rule.spec.seize or rule.spec.greedy or vm is None or rule.spec.vm not in ctx.starting:
            continue
        for bdf in resolve_rule(rule, ctx) or []:
            driver = ctx.drivers.get(_canonical(bdf) or bdf, PCIBACK)
            if driver != PCIBACK:
                out.append(f"PCIPassthrough {rule.metadata.name!r}: device {bdf} is bound to {driver or 'no driver'} and "
                           f"seize is false, so {rule.spec.vm} will not start until it is made assignable "
                           f"(`xl pci-assignable-add {bdf}`), or set seize: true")
    return out
