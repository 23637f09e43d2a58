"""The step table: each ResourceChange -> the ordered host steps that carry it out.

Pure. `steps_for(change, inputs)` is called by `reconciler.plan.build` for every change
of the Diff; execute later runs the steps through the ports, one op per port call
(xenopsd's `atomics_of_operation`, as a table). Step ids are stable and readable:
`<kind prefix>/<resource name>/<op>` (`vm/uivm/create`, `disk/uivm-xvda1/attach`).
A starting VM's firewall is one step, `v4v/<vm>-firewall/fw-start`: everything its start
resolves (its own rules, and the entries of other VMs' rules that name it), in one batch,
as xenmgr's applyVmFirewallRules does (openxt.md 4.3); so a plan holds one firewall step
per starting VM however many rules name it, never one per (rule, VM named). Likewise a
VM's rpc-proxy entry is one step, `rpc/<vm>-rpc/rpc-set` (or `rpc-clear`), however many
of its RPCRules change: rpc-proxy reads the entry whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from reconciler.diff.applied import read_record
from reconciler.diff.devices import netdev_field
from reconciler.diff.pci import matches
from reconciler.diff.rpc import desired_entry, vm_uuid
from reconciler.model.common import Kind
from reconciler.model.observed import ObservedState
from reconciler.model.state import DesiredState
from reconciler.plan.changes import HOST, Action, FieldChange, ResourceChange

Op = Literal[
    "pre-boot", "post-create", "on-running", "on-paused", "on-stopped", "pre-delete",  # VM hooks
    "pci-assignable-add", "create", "record", "attach", "fw-apply", "unpause", "wait-sentinel",
    "pause", "mem-set", "vcpu-set", "xenstore-write", "shutdown", "detach", "destroy", "fw-remove",
    "fw-table", "pci-assignable-remove", "set", "forget", "fw-start", "gate", "media",
    "rpc-set", "rpc-clear",  # a VM's whole rpc-proxy entry: set when it starts (or live), cleared when it stops
    "adopt",  # managed marker + record on a domain another toolstack built (spec.adopt), before its other steps
    "rename",  # `xl rename`: an adopted domain holding the VM's uuid under another name, before anything else
]
# Seconds a hook may run before its process group is killed (`ExecuteSettings.hook_timeout_s`,
# RECONCILER_HOOK_TIMEOUT_S): a hook registers, checks or notifies, it does not install.
HOOK_TIMEOUT_S = 30.0
PREFIX: Mapping[Kind, str] = {"VM": "vm", "Disk": "disk", "NIC": "nic", "PCIPassthrough": "pci", "V4VRule": "v4v",
                            "RPCRule": "rpc"}


@dataclass(frozen=True, slots=True)
class Step:
    """One host operation on one resource. `args` are what execute needs beyond the
    resource itself (which it reads from the plan's DesiredState): sorted (key, JSON
    value) pairs, e.g. `(("memory", 4096),)` for a mem-set."""

    id: str
    op: Op
    kind: Kind
    name: str
    vm: str
    args: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True)
class Inputs:
    """What the table reads besides the change: the manifests (for the values to
    apply) and the host (for what to detach), and the VMs this plan builds."""

    desired: DesiredState
    observed: ObservedState
    starting: frozenset[str]
    fw_touched: Callable[[str], bool]  # desired VM -> does its start resolve firewall entries
    hook_timeout_s: float = HOOK_TIMEOUT_S  # what each hook step gets, shown in the plan
    # VM -> {PCIPassthrough match rule: the host addresses the diff resolved it to}, for
    # the VMs this plan creates (their rules' CREATE changes carry them).
    resolved_pci: Mapping[str, Mapping[str, list[str]]] = field(default_factory=dict)


def step_id(kind: Kind, name: str, op: Op) -> str:
    return f"{PREFIX[kind]}/{name}/{op}"


def make(kind: Kind, name: str, vm: str, op: Op, args: Mapping[str, object] | None = None) -> Step:
    pairs = tuple(sorted([item for item in args.items() if item[1] is not None])) if args else ()
    sid = f"{PREFIX[kind]}/{name}/{op}"  # step_id, inline: made for every step of a plan
    return Step(sid, op, kind, name, vm, pairs)


# ---- VM ----------------------------------------------------------------------------------


def fw_start(vm: str) -> Step:
    """The one firewall step of a starting VM (a V4VRule step, so it is not chained to
    the VM's own steps: the edge rules place it between build and unpause)."""
    return make("V4VRule", f"{vm}-firewall", vm, "fw-start")


def _build_pci(inputs: Inputs, vm: str) -> dict[str, list[str]] | None:
    """The host addresses each match rule of a VM this plan builds resolved to: the diff's
    for a new VM, the inventory now for a rebuild; a plan made from a dump has none (the
    create resolves it then). Rules with a `bdf` need no entry."""
    known = inputs.resolved_pci.get(vm, {})
    found: dict[str, list[str]] = {}
    for device in inputs.desired.devices_of(vm):
        if device.kind != "PCIPassthrough" or device.spec.bdf is not None or device.spec.match is None:
            continue
        name = device.metadata.name
        if name in known:
            found[name] = list(known[name])
        elif inputs.observed.host_pci is not None:
            match = device.spec.match
            found[name] = sorted(d.bdf for d in inputs.observed.host_pci if matches(match, d))
    return found or None


def start_steps(inputs: Inputs, vm: str) -> list[Step]:
    spec = inputs.desired.vms[vm].spec
    # Build paused (`xl create -p`), as xl builds: the disks, NICs and PCI devices are in
    # the domain's cfg (no attach steps); the firewall rules go in before the guest runs.
    steps = [make("VM", vm, vm, "create", {"pci": _build_pci(inputs, vm)})]
    steps[:0] = hook(inputs, vm, "pre-boot")  # OpenXT run-pre-boot: before the build; a failure fails the start
    # Mark it managed at once, so a crash mid-plan never leaves a domain we would not adopt.
    steps.append(make("VM", vm, vm, "record"))
    steps += hook(inputs, vm, "post-create")  # built and paused (OpenXT's `created`), recorded first
    steps += hook(inputs, vm, "on-paused") if spec.state == "paused" else []
    if spec.state != "paused":  # desired paused: built, never unpaused
        steps.append(make("VM", vm, vm, "unpause"))
        steps += hook(inputs, vm, "on-running")
        if spec.boot_sentinel:
            # "running" is long before the services are up: dependents wait for the sentinel node.
            steps.append(make("VM", vm, vm, "wait-sentinel", {"node": spec.boot_sentinel}))
    if inputs.fw_touched(vm):
        steps.append(fw_start(vm))  # last: the VM's own steps stay one chain
    if inputs.observed.rpc is not None and desired_entry(inputs.desired, vm) is not None:
        steps.append(rpc_step(inputs, vm))  # rpc-proxy denies by default: its rules, before it runs
    return steps


def rpc_step(inputs: Inputs, vm: str) -> Step:
    """A VM's one rpc-proxy step, `rpc/<vm>-rpc/...` however many of its rules change: its
    whole entry set (a VM that runs once the plan is applied and has rules or properties),
    else cleared. An RPCRule step, so it is not chained to the VM's own steps: the edge rules
    place it after the build and before the unpause, or after the destroy."""
    desired = inputs.desired.vms.get(vm)
    info = inputs.observed.domains.get(vm)
    uuid = (vm_uuid(inputs.desired, vm) if desired is not None else info.uuid if info is not None
            else next((u for u, name in sorted(inputs.observed.rpc_owned.items()) if name == vm), None))
    want = desired_entry(inputs.desired, vm) if desired is not None and desired.spec.state != "stopped" else None
    if want is None:
        return make("RPCRule", f"{vm}-rpc", vm, "rpc-clear", {"uuid": uuid})
    args = {"uuid": uuid, "rules": list(want.rules), "properties": dict(want.properties)}
    return make("RPCRule", f"{vm}-rpc", vm, "rpc-set", args)


def rename_steps(change: ResourceChange, inputs: Inputs) -> list[Step]:
    """`xl rename` of the domain a VM adopts (`spec.adopt`) when it holds the VM's uuid
    under another name (the diff shows it under the VM's name already); else none."""
    if change.name in inputs.observed.domains or change.vm == HOST:
        return []
    desired = inputs.desired.vms.get(change.name)
    if desired is None or not desired.spec.adopt:
        return []
    uuid = desired.spec.uuid
    held = next((i for i in inputs.observed.domains.values() if i.uuid == uuid and not i.managed), None)
    if held is None:
        return []
    return [make("VM", change.name, change.vm, "rename", {"domid": held.domid, "from": held.name, "uuid": uuid})]


def _stop_steps(change: ResourceChange, inputs: Inputs) -> list[Step]:
    # Graceful first (`xl shutdown -w`: the guest flushes its disks), then destroy what is left.
    # A domain whose xenstore tree was removed cannot be asked (no control/shutdown node)
    # nor found by its xenstore name: the steps say so, and look it up in `xl list` by
    # uuid (real xl prints such a domain's name as "(null)").
    info = inputs.observed.domains.get(change.name)
    args = {"xenstoreGone": True, "uuid": info.uuid} if info is not None and info.xenstore_gone else None
    return [*rename_steps(change, inputs), *hook(inputs, change.name, "pre-delete"),
            make("VM", change.name, change.vm, "shutdown", args), make("VM", change.name, change.vm, "destroy", args),
            *hook(inputs, change.name, "on-stopped")]


def _restart(change: ResourceChange, inputs: Inputs) -> list[Step]:
    # A restart-only field takes effect only in a new domain: stop, rebuild with every
    # device of the manifests (the old domain's went with it), and apply every rule.
    steps = _stop_steps(change, inputs) + start_steps(inputs, change.name)
    for device in inputs.desired.devices_of(change.name):
        change_like = ResourceChange(device.kind, device.metadata.name, change.name, Action.CREATE, "live")
        steps += TABLE[(device.kind, Action.CREATE)](change_like, inputs)
    return steps


LIVE_OPS: tuple[tuple[str, Op], ...] = (
    ("spec.memory", "mem-set"),  # balloon target, within maxMemory (static-max)
    ("spec.vcpus", "vcpu-set"),  # online vCPUs, within maxVcpus
    ("spec.xenstoreData", "xenstore-write"),  # vm-data/ keys under /local/domain/<domid>
    ("spec.state", "unpause"),  # running <-> paused: `xl pause` / `xl unpause`
    # A guest that never wrote its boot sentinel: wait for it again, so dependents do too.
    ("sentinel", "wait-sentinel"),
)


def _live_fields(change: ResourceChange) -> list[FieldChange]:
    # Pending restart-only fields get no step: they wait for a restart the policy forbids.
    return [f for f in change.fields if not change.pending or f.impact == "live"]


def _vm_update(change: ResourceChange, inputs: Inputs) -> list[Step]:
    if change.vm == HOST:
        # Build intents of a VM never built: removed, nothing else is touched.
        uuids = [f.path[len("intent["):-1] for f in change.fields]
        return [make("VM", change.name, HOST, "forget", {"uuids": uuids})]
    vm, spec = change.name, inputs.desired.vms[change.name].spec
    fields = _live_fields(change)
    steps: list[Step] = []
    wait: list[Step] = []  # last, as in a start: the record does not wait for the guest
    for prefix, op in LIVE_OPS:
        if not any(f.path == prefix or f.path.startswith(prefix + ".") for f in fields):
            continue
        if op == "mem-set":
            steps.append(make("VM", vm, vm, op, {"memory": spec.memory}))
        elif op == "vcpu-set":
            steps.append(make("VM", vm, vm, op, {"vcpus": spec.vcpus}))
        elif op == "xenstore-write":
            steps.append(make("VM", vm, vm, op, {"data": dict(sorted(spec.xenstore_data.items()))}))
        elif op == "wait-sentinel":
            wait.append(make("VM", vm, vm, op, {"node": spec.boot_sentinel}))
        else:
            steps.append(make("VM", vm, vm, "pause" if spec.state == "paused" else "unpause"))
            steps += hook(inputs, vm, "on-paused" if spec.state == "paused" else "on-running")
    info = inputs.observed.domains.get(vm)
    if not change.pending or (info is not None and info.unfinished):
        # Fields the host cannot show (hooks, lifecycle...) change by recording them. With
        # restart fields pending the record stays old, so they keep showing until a restart;
        # a domain an interrupted apply built has no record at all: it gets one.
        steps.append(make("VM", vm, vm, "record"))
    return steps + wait


def _adopt(change: ResourceChange, inputs: Inputs) -> list[Step]:
    """An unmanaged domain taken over: first its managed marker and record (`adopt`,
    under the uuid the domain has; `reconciler.plan.rules.adopt_first` puts it before
    every other step of the VM), then the live steps of its field changes as for an
    update (whose own `record` the adopt step already wrote)."""
    renamed = rename_steps(change, inputs)
    info = inputs.observed.domains.get(change.name)
    args: dict[str, object] | None = {"uuid": info.uuid, "domid": info.domid} if info is not None else None
    if renamed:  # the domain the rename step gave the VM's name
        args = {key: dict(renamed[0].args)[key] for key in ("uuid", "domid")}
    rest = [s for s in _vm_update(change, inputs) if s.op != "record"]
    return [*renamed, make("VM", change.name, change.vm, "adopt", args), *rest]


# ---- hooks --------------------------------------------------------------------------------

# Each hook op: the manifest's hook (camelCase, as `hooks:` spells it) and the public state
# (openxt.md 6.1) an onStateChange hook is given after the uuid. OpenXT (openxt.md 1.11):
# run-pre-boot before the domain is built, run-post-create once built, run-pre-delete
# before a VM goes, all hard failures; run-on-state-change on each public state change,
# logged and the apply goes on.
HOOKS: Mapping[Op, tuple[str, str | None]] = {
    "pre-boot": ("preBoot", None),
    "post-create": ("postCreate", None),
    "on-running": ("onStateChange", "running"),
    "on-paused": ("onStateChange", "paused"),
    "on-stopped": ("onStateChange", "stopped"),
    "pre-delete": ("preDelete", None),
}


_ATTRS: Mapping[str, str] = {"preBoot": "pre_boot", "postCreate": "post_create", "onStateChange": "on_state_change",
                              "preDelete": "pre_delete"}


def _recorded(inputs: Inputs, vm: str, name: str) -> tuple[object, str | None]:
    """(hook `name`'s path, uuid) of a VM removed from the manifests, from its last-applied
    record (the manifest is gone)."""
    info = inputs.observed.domains.get(vm)
    record = read_record(info)[0] if info is not None else None
    hooks = record.vm.get("hooks") if record is not None else None
    return (hooks.get(name) if isinstance(hooks, dict) else None), (info.uuid if info is not None else None)


def hook(inputs: Inputs, vm: str, op: Op) -> list[Step]:
    """The step running VM `vm`'s hook for `op` (a HOOKS key), or none when the VM has no
    such hook; its args are the argv (`[path, uuid]`, `[path, uuid, state]`) and the timeout."""
    name, state = HOOKS[op]
    desired = inputs.desired.vms.get(vm)
    if desired is None:
        path, uuid = _recorded(inputs, vm, name)
    elif op == "pre-delete":
        return []  # stopped or restarted, not deleted: the VM stays in the manifests
    else:
        path, uuid = getattr(desired.spec.hooks, _ATTRS[name]), desired.spec.uuid
    if path is None:
        return []  # (called for every start: the common answer first)
    if not isinstance(path, str) or not path.startswith("/") or not uuid:
        return []  # a record (dom0-only, digest-checked) with a path the loader would refuse
    argv = [path, uuid] if state is None else [path, uuid, state]
    return [make("VM", vm, vm, op, {"hook": name, "argv": argv, "timeout": inputs.hook_timeout_s})]


# ---- devices -----------------------------------------------------------------------------


def _field(change: ResourceChange, path: str, side: str) -> object:
    for found in change.fields:
        if found.path == path:
            return getattr(found, side)
    return None


def _pci_devices(change: ResourceChange, inputs: Inputs) -> list[str] | None:
    """The host addresses a PCI rule gives its VM: the diff's resolved `devices`, the
    rule's bdf, or its match against the host inventory; None when unknown (a dump)."""
    listed = _field(change, "devices", "after")
    if isinstance(listed, list):
        return [str(b) for b in listed]
    spec = inputs.desired.pci[change.name].spec
    if spec.bdf:
        return [spec.bdf]
    if spec.match is None or inputs.observed.host_pci is None:
        return None
    return sorted(d.bdf for d in inputs.observed.host_pci if matches(spec.match, d))


def _identity(change: ResourceChange, inputs: Inputs) -> dict[str, object]:
    """How execute finds the device the host has now: vdev, NIC index or PCI addresses,
    from the host for an observed-only device, else from the manifests."""
    kind, name = change.kind, change.name
    if kind == "Disk":
        disk = inputs.observed.disks.get(name) or inputs.desired.disks.get(name)
        return {"vdev": _field(change, "spec.vdev", "before") or (disk.spec.vdev if disk else None)}
    if kind == "NIC":
        nic = inputs.observed.nics.get(name) or inputs.desired.nics.get(name)
        return {"index": nic.spec.index if nic else _field(change, "spec.index", "before")}
    before = _field(change, "devices", "before")
    if change.action is not Action.DELETE and name in inputs.desired.pci:
        # A rule's devices, by address: an observed device's name (`<vm>-pci-<i>`, its
        # backend index) may be another device's, and a match rule names no bdf. The
        # detach step unplugs those of them the domain holds.
        listed = before if isinstance(before, list) else []
        return {"devices": sorted({*map(str, listed), *(_pci_devices(change, inputs) or [])}) or None}
    if isinstance(before, list):
        return {"devices": before}
    pci = inputs.observed.pci.get(name) or inputs.desired.pci.get(name)
    if pci is None and isinstance(bdf := _field(change, "spec.bdf", "before"), str):
        return {"devices": [bdf]}  # a removed device named as applied (`applied.manifest_name`): its address
    return {"devices": [pci.spec.bdf] if pci and pci.spec.bdf else None}


def _attach_args(change: ResourceChange, inputs: Inputs) -> dict[str, object]:
    if change.kind == "Disk":
        return {"vdev": inputs.desired.disks[change.name].spec.vdev}
    if change.kind == "NIC":
        return {"index": inputs.desired.nics[change.name].spec.index}
    devices = _pci_devices(change, inputs)
    match = inputs.desired.pci[change.name].spec.match
    return {"devices": devices, "match": match.model_dump(by_alias=True) if match and devices is None else None}


def _attach(change: ResourceChange, inputs: Inputs) -> list[Step]:
    args = _attach_args(change, inputs)
    steps = []
    spec = inputs.desired.pci[change.name].spec if change.kind == "PCIPassthrough" else None
    if spec is not None and (spec.seize or spec.greedy):
        # Bind to pciback (unbind the dom0 driver, quarantine) before any guest may get it.
        # `seize: false`: never; the device must be assignable already (xl without pci_seize).
        steps.append(make(change.kind, change.name, change.vm, "pci-assignable-add", args))
    if change.vm in inputs.starting:
        # Built with its VM, as xl builds a cfg's devices: the VM's create step holds it.
        return steps
    return [*steps, make(change.kind, change.name, change.vm, "attach", args)]


def _detach(change: ResourceChange, inputs: Inputs) -> list[Step]:
    if change.vm == HOST:
        # A device the reconciler bound and no rule needs: back to the driver it came from.
        devices = [f.path[f.path.index("[") + 1:-1] for f in change.fields]
        return [make(change.kind, change.name, change.vm, "pci-assignable-remove", {"devices": devices})]
    return [make(change.kind, change.name, change.vm, "detach", _identity(change, inputs))]


def _reattach(change: ResourceChange, inputs: Inputs) -> list[Step]:
    # Xen cannot change a backend in place: a new target, format or vdev is a new device.
    # A pending change (restart-only, updatePolicy live) is reported and left alone.
    if change.pending:
        return []
    return _detach(change, inputs) + _attach(change, inputs)


def netdev_args(inputs: Inputs, name: str) -> dict[str, object]:
    """What a `set` step gives the vif's interface: the manifest's MTU, promiscuous mode
    and the ethtool keys it sets (the others are left as the host has them)."""
    spec = inputs.desired.nics[name].spec
    ethtool = spec.ethtool.model_dump(exclude_none=True) if spec.ethtool else {}
    return {"index": spec.index, "mtu": spec.mtu, "promiscuous": spec.promiscuous, "ethtool": ethtool or None}


def _nic_update(change: ResourceChange, inputs: Inputs) -> list[Step]:
    # MTU, promiscuous mode and ethtool settings change on the running interface (`ip link
    # set`, `ethtool -K`): no unplug, the guest keeps its link. Anything else re-plugs.
    if not change.pending and change.fields and all(netdev_field(f.path) for f in change.fields):
        return [make("NIC", change.name, change.vm, "set", netdev_args(inputs, change.name))]
    return _reattach(change, inputs)


def _pci_update(change: ResourceChange, inputs: Inputs) -> list[Step]:
    taken = sorted(f.path[len("driver["):-1] for f in change.fields if f.path.startswith("driver["))
    if len(taken) == len(change.fields) and change.vm not in inputs.observed.domains:
        # Greedy rule of a stopped VM: only take the device back from the dom0 driver.
        return [make(change.kind, change.name, change.vm, "pci-assignable-add", {"devices": taken})]
    # New options, addresses or a device a host driver took: unplug, re-bind, plug again.
    return _reattach(change, inputs)


_MEDIA_FIELDS = frozenset({"spec.target", "spec.format"})


def _disk_update(change: ResourceChange, inputs: Inputs) -> list[Step]:
    # A CD drive's new media (or none) on a running HVM guest: `xl cd-insert`/`cd-eject`,
    # live (the diff makes such a change `live`; any other disk change re-plugs or waits).
    disk = inputs.desired.disks.get(change.name)
    if (disk is not None and disk.spec.devtype == "cdrom" and change.impact == "live" and change.fields
            and all(f.path in _MEDIA_FIELDS for f in change.fields)):
        args = {"vdev": disk.spec.vdev, "target": disk.spec.target, "format": disk.spec.format}
        return [make("Disk", change.name, change.vm, "media", args)]
    return _reattach(change, inputs)


def _unless_pending(row: Callable[[ResourceChange, Inputs], list[Step]]) -> Callable[[ResourceChange, Inputs], list[Step]]:
    """`row`, but no step for a pending change: a hot-plug or unplug xl cannot do live
    (an emulated device, PCI without passthrough) waits for the VM's restart."""
    return lambda change, inputs: [] if change.pending else row(change, inputs)


def _fw_apply(change: ResourceChange, inputs: Inputs) -> list[Step]:
    if change.vm in inputs.starting:
        # The owner is built by this plan: its start's one batch carries the rule.
        return [fw_start(change.vm)]
    # A kept VM's rule: insert what resolves now. What it resolves to once a VM this plan
    # starts runs (`dom-type=ndvm` and the new NDVM) goes in with that VM's fw-start.
    return [make("V4VRule", change.name, change.vm, "fw-apply")]


def _fw_update(change: ResourceChange, inputs: Inputs) -> list[Step]:
    if change.vm != HOST:
        return _fw_apply(change, inputs)
    # The table's own drift in one step: foreign entries out, then the default REJECT
    # made the one last entry (appended before an old one goes, so v4v is never open).
    entries = next((f.before for f in change.fields if f.path == "entries"), None)
    default = any(f.path == "default" for f in change.fields)
    args: dict[str, object] = {"entries": entries, "default": default}
    if any(f.path == "baseline" for f in change.fields):
        args["baseline"] = True  # a bare table: xenmgr's dom0<->dom0 ACCEPT before the REJECT
    return [make("V4VRule", change.name, change.vm, "fw-table", args)]


def _fw_remove(change: ResourceChange, inputs: Inputs) -> list[Step]:
    entries = next((f.before for f in change.fields if f.path == "entries"), None)
    return [make("V4VRule", change.name, change.vm, "fw-remove", {"entries": entries})]


Row = Callable[[ResourceChange, Inputs], list[Step]]

TABLE: dict[tuple[Kind, Action], Row] = {
    ("VM", Action.CREATE): lambda c, i: start_steps(i, c.name),
    ("VM", Action.UPDATE): _vm_update,
    ("VM", Action.RESTART): _restart,
    ("VM", Action.DELETE): _stop_steps,
    ("VM", Action.ADOPT): _adopt,
    ("Disk", Action.CREATE): _unless_pending(_attach),
    ("Disk", Action.UPDATE): _disk_update,
    ("Disk", Action.RESTART): _reattach,
    ("Disk", Action.DELETE): _unless_pending(_detach),
    ("NIC", Action.CREATE): _unless_pending(_attach),
    ("NIC", Action.UPDATE): _nic_update,
    ("NIC", Action.RESTART): _reattach,
    ("NIC", Action.DELETE): _unless_pending(_detach),
    # Hot-plugged PCI is re-added after a detach; pciback keeps the device if it was there.
    ("PCIPassthrough", Action.CREATE): _unless_pending(_attach),
    ("PCIPassthrough", Action.UPDATE): _pci_update,
    ("PCIPassthrough", Action.RESTART): _reattach,
    ("PCIPassthrough", Action.DELETE): _detach,
    ("V4VRule", Action.CREATE): _fw_apply,
    ("V4VRule", Action.UPDATE): _fw_update,
    ("V4VRule", Action.RESTART): _fw_apply,
    ("V4VRule", Action.DELETE): _fw_remove,
    # Every change of a VM's rpc-proxy entry is its one step: rpc-proxy reads the entry whole.
    ("RPCRule", Action.CREATE): lambda c, i: [rpc_step(i, c.vm)],
    ("RPCRule", Action.UPDATE): lambda c, i: [rpc_step(i, c.vm)],
    ("RPCRule", Action.DELETE): lambda c, i: [rpc_step(i, c.vm)],
}


# TABLE by (kind, id of the Action member): hashing an Enum member runs Python code,
# and steps_for is called for every change of a plan.
_BY_ID: dict[tuple[Kind, int], Row] = {(kind, id(action)): row for (kind, action), row in TABLE.items()}


def steps_for(change: ResourceChange, inputs: Inputs) -> list[Step]:
    """The steps of one change, in the order they run on that resource."""
    return _BY_ID[(change.kind, id(change.action))](change, inputs)
