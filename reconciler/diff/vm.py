"""VM-level changes: create, stop, remove, rebuild, and field updates of running VMs.

Pure. `vm_changes(ctx)` walks the desired VMs and the observed domains and returns
ResourceChanges for VMs (plus the device CREATEs of new VMs and the device DELETEs of
removed ones, so the planner can order "detach before destroy"); it records in the
context which VMs start, stop or stay, for the device and firewall parts, and which
desired VMs an unmanaged domain holds (conflicts, raised by the caller). A domain an
interrupted apply built (`DomainInfo.unfinished`) is updated like any managed one and
gets its record; build intents of VMs never built are dropped (a host change).

A crashed domain (`xl list` state `c`, kept by the toolstack: onCrash `preserve`, or
seen before xl handled it) of a VM with state running or paused follows the VM's
`lifecycle.onCrash`: `restart`, `coredump-restart` and `rename-restart` rebuild it
(destroy + create, reason "crashed; lifecycle.onCrash restart: ..."), as xl would; `destroy`
and `coredump-destroy` destroy it and, since a declarative manager keeps a running VM
running, build it again; `preserve` leaves it for inspection: no change, the VM is listed
in `Diff.preserved` (the plan says so, and `plan --detailed-exitcode` exits 2: the host
does not match) until someone destroys the domain. No core is dumped (no port for it);
rename-restart does not keep a renamed copy. A VM with state stopped loses its crashed
domain unless onCrash is preserve.

Domains are built with `xl create -e`: no xl process waits for their death, so nothing
acts on a guest's reboot or power-off behind the reconciler (xl's monitor would destroy
a rebooting domain and build it again by itself, and libxl's destroy removes /vm/<uuid>
with the reconciler's marker and record: the next plan would call our own VM an
unmanaged conflict). The reconciler carries the lifecycle out itself, as OpenXT's xenmgr
does. A domain shut down with reason reboot (`xl list` state `---sr-`, power `rebooted`)
follows `lifecycle.onReboot` like a crash follows onCrash: rebuilt (reason "rebooted;
lifecycle.onReboot restart: ..."), or with `preserve` left shut down and listed in
`Diff.preserved` (and `Diff.rebooted`); a VM with state stopped loses it unless preserve.
A guest that powered off (`xl list` `---s--`, power `shutdown`) while its manifest says
running is built again whatever `onPoweroff` says ("powered off; lifecycle.onPoweroff
destroy: the domain is destroyed, and built again as state is running"): the manifest
declares the state, a guest powering itself off is drift from it, and onPoweroff only
says what becomes of the shut-down domain until the reconciler acts (preserve: kept
until then; unlike a crash or a reboot, a power-off leaves nothing to inspect). To keep
a VM off, set `state: stopped`: its powered-off domain is then destroyed (the toolstack
would have, without `-e`) unless onPoweroff is preserve. A dying domain, or one xenstore
shows but the hypervisor does not list, is `stopped` and rebuilt as before.

A domain the hypervisor lists whose xenstore tree was removed (`xenstore-rm
/local/domain/<domid>`; `DomainInfo.xenstore_gone`) cannot be repaired in place: its
devices, name and control node are gone. If its managed marker under
`/vm/<uuid>/reconciler` survived, it is destroyed and built again (state stopped:
destroyed only); the reason says "its xenstore nodes are gone (domain N is still listed
by the hypervisor)". If the marker went too (`/vm/<uuid>` removed as well), nothing
proves the reconciler made it: a domain holding a desired VM's name is then a conflict
(DESIGN 7: plan and apply exit 1 and name it), never destroyed on a guess.

A VM with `adopt: true` (DESIGN 4) takes over the unmanaged domain holding its uuid, else
the one with its name (`context.adoptions`). One holding its uuid under another name is
renamed first (`xl rename`, a `metadata.name` field of the ADOPT, its `rename` step before
the adopt step) unless that name is taken: then a conflict names both. That domain is diffed
as a managed one with no last-applied record: host fields are compared, record-only
ones are taken from the manifest unchecked, devices are matched by identity. The VM's
change is an ADOPT (`<=`, "adopt: domain N ('web') was built by another toolstack (no
managed marker); taken over, not restarted") carrying the field changes it needs, whose
first step writes the marker and record; restart-only differences are pending under
updatePolicy live, and under restart the change is the RESTART, its reason saying so.
On a managed VM `adopt` does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from reconciler.diff.compare import compare, created
from reconciler.diff.context import LIVE_POWER, Context
from reconciler.diff.devices import deleted, device_changes, recorded_name
from reconciler.diff.pci import resolve_rule
from reconciler.model.devices import Disk, PCIPassthrough, V4VRule
from reconciler.model.observed import DomainInfo
from reconciler.model.vm import VM
from reconciler.plan.changes import HOST, IMPACT_ORDER, Action, FieldChange, Impact, ResourceChange


def worst(fields: tuple[FieldChange, ...] | list[FieldChange], floor: Impact = "live") -> Impact:
    impacts: list[Impact] = [floor, *(f.impact for f in fields)]
    return max(impacts, key=lambda i: IMPACT_ORDER[i])


def _create(ctx: Context, vm: VM) -> list[ResourceChange]:
    name = vm.metadata.name
    ctx.starting.add(name)
    how = "created paused" if vm.spec.state == "paused" else "created and started"
    out = [ResourceChange("VM", name, name, Action.CREATE, "live", created("VM", vm.spec, ctx.leaf),
                          f"not on the host: {how}")]
    applied, attached = f"applied when {name} starts", f"built with {name}"  # in its xl.cfg, as xl builds
    for device in ctx.wanted.get(name, []):
        fields = created(device.kind, device.spec, ctx.leaf)
        if isinstance(device, PCIPassthrough):
            bdfs = resolve_rule(device, ctx)
            if bdfs is not None:
                fields += (FieldChange("devices", None, bdfs, "live"),)
        reason = applied if isinstance(device, V4VRule) else attached
        out.append(ResourceChange(device.kind, device.metadata.name, name, Action.CREATE, "live", fields, reason))
    return out


def _power_change(vm: VM, info: DomainInfo) -> FieldChange | None:
    if info.power != vm.spec.state:
        return FieldChange("spec.state", info.power, vm.spec.state, "live")
    return None


SENTINEL = "sentinel"  # the path of a boot sentinel not met: before "not written", after "written"


def _sentinel_change(ctx: Context, vm: VM, info: DomainInfo) -> FieldChange | None:
    """A running (or to be unpaused) VM whose guest never wrote its boot sentinel: its
    services are not up, so what depends on it must wait for them (xenmgr waits too)."""
    node, record = vm.spec.boot_sentinel, ctx.records.get(vm.metadata.name)
    if vm.spec.state != "running" or not node:
        return None
    if info.unfinished and info.booted is None:
        # Built by an interrupted apply: no record names the node yet, so the host cannot
        # say; the apply that finishes the VM waits for it as its start would have.
        return FieldChange(SENTINEL, "not checked", "written", "live")
    if info.booted is not False:
        return None
    if record is None or record.vm.get("bootSentinel") != node:
        return None  # a new sentinel: the record step writes it, the next plan checks it
    return FieldChange(SENTINEL, "not written", "written", "live")


def _update(ctx: Context, vm: VM, info: DomainInfo) -> list[ResourceChange]:
    """A managed domain that runs (or is paused) and should: compare its fields."""
    name = vm.metadata.name
    seen = ctx.observed.vms.get(name)
    record = ctx.records.get(name)
    impacts: dict[str, Impact] = {}
    if seen is None:
        ctx.notes.append(f"VM {name!r}: the host shows no readable memory for it, so only fields in its last-applied record are compared")
    else:
        # mem-set and vcpu-set cannot go past what the running domain was built with.
        if vm.spec.memory > (seen.spec.max_memory or 0):
            impacts["memory"] = "restart"
        if vm.spec.vcpus > (seen.spec.max_vcpus or 0):
            impacts["vcpus"] = "restart"
    fields = compare("VM", vm.spec, seen.spec if seen is not None else None, record.vm if record else None, impacts, ctx.leaf)
    power, sentinel = _power_change(vm, info), _sentinel_change(ctx, vm, info)
    fields = ([power] if power is not None else []) + [f for f in fields if f.path != "spec.state"]
    fields += [sentinel] if sentinel is not None else []
    devices = device_changes(ctx, name)
    later = [f.path for f in fields if f.impact != "live"]
    later_devices = [f"{d.name} {f.path}" for d in devices for f in d.fields if f.impact == "restart"]
    if (later or later_devices) and (vm.spec.update_policy == "restart" or info.unfinished):
        # Rebuilt: the new domain gets every desired device, so no device changes.
        ctx.starting.add(name)
        ctx.stopping.add(name)
        reason = f"{', '.join(later + later_devices)} only take effect on a restart, and updatePolicy is restart"
        if info.unfinished:  # its guest never ran: whatever the policy, nothing is lost
            reason = (f"an interrupted apply built it without {', '.join(later + later_devices)}, which only its "
                      "build can give (xl builds emulated devices and passthrough with the domain): destroyed and "
                      "built again")
        return [ResourceChange("VM", name, name, Action.RESTART, "restart", tuple(fields), reason)]
    ctx.kept.add(name)
    if info.unfinished:
        left = ["its last-applied record", *(f.path for f in fields), *(f"{d.kind} {d.name}" for d in devices)]
        reason = f"an apply built it and was interrupted before recording it; left to do: {', '.join(left)}"
        return [ResourceChange("VM", name, name, Action.UPDATE, worst(fields), tuple(fields), reason, pending=bool(later)),
                *devices]
    if not fields:
        if name in ctx.rerecord:
            reason = ("its last-applied record holds a bare hash of a secret (an older version wrote it): "
                      "written again, salted and readable by dom0 only")
            return [ResourceChange("VM", name, name, Action.UPDATE, "live", (), reason), *devices]
        return devices
    if later:
        reason = f"{', '.join(later)} only take effect on a restart; updatePolicy is live, so pending until {name} restarts"
        change = ResourceChange("VM", name, name, Action.UPDATE, worst(fields), tuple(fields), reason, pending=True)
    elif sentinel is not None and len(fields) == 1:
        reason = f"its guest has not written {vm.spec.boot_sentinel!r}: waiting for it before what depends on {name} starts"
        change = ResourceChange("VM", name, name, Action.UPDATE, "live", tuple(fields), reason)
    else:
        change = ResourceChange("VM", name, name, Action.UPDATE, "live", tuple(fields), "applied to the running domain")
    return [change, *devices]


def conflict(vm: VM, info: DomainInfo, what: str) -> str:
    if vm.spec.adopt:  # a uuid held under another name, and the domain cannot be renamed (context.adoptions)
        return (f"VM {vm.metadata.name!r}: adopt: domain {info.domid} ({info.name!r}) holds its {what} but cannot be "
                f"renamed {vm.metadata.name!r} and taken over: another domain has that name, a desired VM is named "
                f"{info.name!r} too, or it has a stub domain {info.name}-dm; rename or destroy what is in the way "
                "(xl rename, xl destroy) and plan again")
    return (f"VM {vm.metadata.name!r}: domain {info.domid} ({info.name!r}) holds its {what} but was not made by the "
            "reconciler (no managed marker); to take it over, set spec.adopt: true on the VM (adopted, not "
            "restarted), else destroy that domain, or rename the VM and give it another uuid")


ADOPTED = "adopt: domain {domid} ({name!r}) was built by another toolstack (no managed marker)"


def _said(ctx: Context, name: str) -> str:
    """How an adopt reason starts: the domain taken over, and its rename if it has another name."""
    info = ctx.adopted[name]
    said = ADOPTED.format(domid=info.domid, name=info.name)
    return said if info.name == name else f"{said} and holds the VM's uuid: renamed {name} (xl rename)"


def _adopt(ctx: Context, vm: VM, info: DomainInfo) -> list[ResourceChange]:
    """A running (or paused) unmanaged domain taken over (`spec.adopt`): compared as a
    managed one with no last-applied record (fields only a record holds are taken from
    the manifest unchecked), its devices matched by identity. The VM's change becomes
    the ADOPT (`<=`) with the field changes it needs; a restart under updatePolicy
    restart stays a RESTART, its reason saying the domain is adopted by rebuilding it."""
    name = vm.metadata.name
    said = _said(ctx, name)
    changes = _update(ctx, vm, info)
    own = next((c for c in changes if c.kind == "VM" and c.name == name), None)
    rest = [c for c in changes if c is not own]
    if own is not None and own.action is Action.RESTART:
        return [replace(own, reason=f"{said}; taken over and rebuilt: {own.reason}"), *rest]
    fields = own.fields if own is not None else ()
    old = ctx.adopted[name].name
    if old != name:  # the rename step (xl rename) comes first
        fields = (FieldChange("metadata.name", old, name, "live"), *fields)
    reason = f"{said}; taken over, not restarted"
    if own is not None and own.pending:
        reason += f"; {own.reason}"
    adopt = ResourceChange("VM", name, name, Action.ADOPT, worst(fields), fields, reason,
                           pending=own.pending if own is not None else False)
    return [adopt, *rest]


def _desired_vm(ctx: Context, vm: VM, uuids: dict[str, DomainInfo]) -> list[ResourceChange]:
    name = vm.metadata.name
    info = ctx.observed.domains.get(name)
    wanted = vm.spec.state in LIVE_POWER
    held = uuids.get(vm.spec.uuid or "")
    if held is not None and held.name != name and not held.managed:
        ctx.conflicts.append((name, conflict(vm, held, f"uuid {vm.spec.uuid}")))
        if vm.spec.adopt:  # that conflict names both domains
            return []
    if info is None:
        return _create(ctx, vm) if wanted else []
    if info.xenstore_gone:
        return _treeless(ctx, vm, info, wanted)
    if not info.managed:
        ctx.conflicts.append((name, conflict(vm, info, "name")))
        return []
    if not wanted:
        if info.power in _ENDED and _action(vm, info.power) != "preserve":
            return [_ended_stop(ctx, vm, info.power)]
        if info.power not in LIVE_POWER:
            return []
        ctx.stopping.add(name)
        field = FieldChange("spec.state", info.power, "stopped", "destructive")
        return [ResourceChange("VM", name, name, Action.DELETE, "destructive", (field,), "state: stopped: stop the running domain")]
    if info.power in _ENDED:
        return _ended(ctx, vm, info)
    if info.power not in LIVE_POWER:
        ctx.starting.add(name)
        ctx.stopping.add(name)
        field = FieldChange("spec.state", info.power, vm.spec.state, "restart")
        return [ResourceChange("VM", name, name, Action.RESTART, "restart", (field,),
                               f"the domain is {info.power}: destroyed and built again")]
    if name in ctx.adopted:
        return _adopt(ctx, vm, info)
    if _stub_missing(ctx, vm, info):
        ctx.starting.add(name)
        ctx.stopping.add(name)
        stub = f"{name}-dm"
        field = FieldChange("stubdom", f"{stub} missing", f"{stub} running", "restart")
        return [ResourceChange("VM", name, name, Action.RESTART, "restart", (field,), (
            f"it was built with a device-model stub domain and {stub} is gone (QEMU for its emulated devices runs "
            "there; libxl builds it only with the guest): destroyed and built again"))]
    return _update(ctx, vm, info)


def _adopted_first(ctx: Context, vm: VM, changes: list[ResourceChange]) -> list[ResourceChange]:
    """An adopted domain the plan stops or rebuilds (state stopped, crashed, rebooted...):
    the VM's reason says it is taken over first (its stop steps act on it as on ours)."""
    name = vm.metadata.name
    said = _said(ctx, name)
    return [replace(c, reason=f"{said}; taken over: {c.reason}")
            if c.kind == "VM" and c.name == name and c.action is not Action.ADOPT and not c.reason.startswith("adopt:")
            else c for c in changes]


def _stub_missing(ctx: Context, vm: VM, info: DomainInfo) -> bool:
    """A running (or paused) domain built with a stub domain (its record says so, or an
    interrupted apply built it from this manifest) whose `<vm>-dm` is not listed: killed
    between the guest's build and its stub domain's, or the stub domain died. A manifest
    that newly asks for one is a `stubdom` field change instead (restart impact)."""
    if f"{vm.metadata.name}-dm" in ctx.observed.domains:
        return False
    record = ctx.records.get(vm.metadata.name)
    if record is not None:
        built = record.vm.get("stubdom")
        return vm.spec.virt == "hvm" and isinstance(built, dict) and built.get("enabled") is True
    stub = vm.spec.stubdom
    return info.unfinished and vm.spec.virt == "hvm" and stub is not None and stub.enabled


def _treeless(ctx: Context, vm: VM, info: DomainInfo, wanted: bool) -> list[ResourceChange]:
    """A domain the hypervisor lists whose `/local/domain/<domid>` was removed (see the
    module docstring): without its tree it has no devices, name or control node anyone
    can use, so a managed one is destroyed and, if the VM should run, built again. One
    whose marker went too is not provably ours: a conflict, nothing is destroyed."""
    name = vm.metadata.name
    gone = f"its xenstore nodes are gone (domain {info.domid} is still listed by the hypervisor)"
    if not info.managed:
        ctx.conflicts.append((name, (
            f"VM {name!r}: domain {info.domid} ({info.name!r}) holds its name; {gone}, and no managed marker under "
            f"/vm/<uuid>/reconciler survives, so nothing shows the reconciler made it and it is not destroyed: "
            f"if it is this VM's, destroy it (xl destroy {info.domid}) and apply again")))
        return []
    ctx.stopping.add(name)
    if not wanted:
        field = FieldChange("spec.state", info.power, "stopped", "destructive")
        return [ResourceChange("VM", name, name, Action.DELETE, "destructive", (field,), f"{gone}: destroyed (state: stopped)")]
    ctx.starting.add(name)
    field = FieldChange("spec.state", "xenstore gone", vm.spec.state, "restart")
    return [ResourceChange("VM", name, name, Action.RESTART, "restart", (field,), f"{gone}: destroyed and built again")]


RESTART_ON_CRASH = ("restart", "coredump-restart", "rename-restart")


@dataclass(frozen=True)
class _Ended:
    """How a guest ended its domain (crash, reboot, power-off) and the lifecycle key that
    says what follows; the words of the plan's reasons."""

    said: str  # "crashed", as the reason starts
    key: str  # "onCrash", the lifecycle field
    subject: str  # "the crashed domain", what is destroyed
    event: str  # "crash", what xl would handle
    preserve: bool  # does `preserve` keep the domain (a power-off is built again regardless)


_ENDED = {
    "crashed": _Ended("crashed", "onCrash", "the crashed domain", "crash", True),
    "rebooted": _Ended("rebooted", "onReboot", "the domain", "reboot", True),
    "shutdown": _Ended("powered off", "onPoweroff", "the domain", "poweroff", False),
}


def _action(vm: VM, power: str) -> str:
    life = vm.spec.lifecycle
    return {"crashed": life.on_crash, "rebooted": life.on_reboot, "shutdown": life.on_poweroff}[power]


def _ended(ctx: Context, vm: VM, info: DomainInfo) -> list[ResourceChange]:
    """A managed domain the guest ended (crashed, rebooted, powered off), of a VM that
    should run (or be paused): no xl monitor acted on it (`xl create -e`), so the
    reconciler carries out the lifecycle action, as OpenXT's xenmgr does. `preserve`
    leaves a crashed or rebooted domain for inspection (listed, not changed; OpenXT's
    preserve-on-reboot); every other action rebuilds it: the restart kinds as xl would,
    the destroy kinds because a declarative manager keeps a `state: running` VM running
    (a powered-off one is built again whatever onPoweroff says: see the module
    docstring). The rebuild is the restart path: the new domain is made and recorded by
    this apply, so /vm/<uuid>/reconciler is written afresh with it."""
    name, state, how = vm.metadata.name, vm.spec.state, _ENDED[info.power]
    action = _action(vm, info.power)
    if action == "preserve" and how.preserve:
        ctx.preserved.append(name)
        if info.power == "rebooted":
            ctx.preserved_reboots.append(name)
        return []
    ctx.starting.add(name)
    ctx.stopping.add(name)
    if action in RESTART_ON_CRASH:
        reason = f"{how.said}; lifecycle.{how.key} {action}: destroyed and built again"
    else:
        reason = f"{how.said}; lifecycle.{how.key} {action}: {how.subject} is destroyed, and built again as state is {state}"
    if action.startswith("coredump-") and how.preserve:
        reason += f" (no core is dumped: that is xl's, when it handles the {how.event})"
    field = FieldChange("spec.state", info.power, state, "restart")
    return [ResourceChange("VM", name, name, Action.RESTART, "restart", (field,), reason)]


def _ended_stop(ctx: Context, vm: VM, power: str) -> ResourceChange:
    """A domain the guest ended, of a VM that should be stopped: destroyed, as its
    lifecycle action says (the caller keeps a `preserve`d one)."""
    name, how = vm.metadata.name, _ENDED[power]
    ctx.stopping.add(name)
    field = FieldChange("spec.state", power, "stopped", "destructive")
    return ResourceChange("VM", name, name, Action.DELETE, "destructive", (field,),
                          f"{how.said}; lifecycle.{how.key} {_action(vm, power)}: {how.subject} is destroyed (state: stopped)")


def _removed(ctx: Context, info: DomainInfo) -> list[ResourceChange]:
    """A managed domain no manifest describes: stop it, and detach its devices."""
    name = info.name
    ctx.stopping.add(name)
    why = "removed from the manifests"
    out = [ResourceChange("VM", name, name, Action.DELETE, "destructive",
                          (FieldChange("spec.state", info.power, None, "destructive"),), why)]
    for device in ctx.found.get(name, []):
        impact: Impact = "destructive" if isinstance(device, Disk) else "live"
        out.append(deleted(device, impact, f"{why} with {name}", name=recorded_name(ctx, device)))
    return out


def _stale_intents(ctx: Context) -> list[ResourceChange]:
    """Build intents whose domain was never built and that this plan does not build: the
    apply that wrote them was stopped before `xl create`. Left, one would make a domain
    someone builds later by hand with that name and uuid look like the reconciler's."""
    held = {info.uuid for info in ctx.observed.domains.values()}
    stale: dict[str, list[str]] = {}
    for uuid, name in ctx.observed.building.items():
        if uuid not in held and name not in ctx.starting:
            stale.setdefault(name, []).append(uuid)
    return [ResourceChange("VM", name, HOST, Action.UPDATE, "live",
                           tuple(FieldChange(f"intent[{uuid}]", name, None, "live") for uuid in uuids),
                           "an interrupted apply meant to build it and never did: its build intent is dropped")
            for name, uuids in sorted(stale.items())]


def vm_changes(ctx: Context) -> tuple[list[ResourceChange], list[str]]:
    """(changes, unmanaged domain names)."""
    out: list[ResourceChange] = []
    uuids = {info.uuid: info for info in ctx.observed.domains.values() if info.uuid}
    for vm in ctx.desired.vms.values():
        found = _desired_vm(ctx, vm, uuids)
        out.extend(_adopted_first(ctx, vm, found) if vm.metadata.name in ctx.adopted else found)
    out.extend(_stale_intents(ctx))
    unmanaged: list[str] = []
    for name, info in ctx.observed.domains.items():
        if name in ctx.desired.vms or name in ctx.stubdoms:
            continue
        if info.managed:
            out.extend(_removed(ctx, info))
        else:
            unmanaged.append(name)
    return out, sorted(unmanaged)
