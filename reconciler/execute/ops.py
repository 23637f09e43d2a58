"""The op table: each plan step op -> the port calls that carry it out, one why per rule.

Touches the host through the ports in `Runtime` only. `OPS[step.op](rt, step, retry)`
is called by `reconciler.execute.run` for every step; a handler returns None or a note
for the step line, and raises `HostError`s (transient ones are retried by the caller,
with `retry=True` so a handler can first check what an earlier try already did).
Device ops live in `reconciler.execute.devices`, firewall ops in
`reconciler.execute.firewall`; the table at the end names them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from reconciler import vmdata
from reconciler.build import build_of
from reconciler.diff.applied import applied_record, record_chunks
from reconciler.errors import HostError, TerminalHostError
from reconciler.execute.devices import attach, build_pci, detach, media, pci_assignable_add, pci_assignable_remove
from reconciler.execute.devices import plugged_settings, set_netdev
from reconciler.execute.firewall import fw_apply, fw_remove, fw_start, fw_table
from reconciler.execute.hooks import run_hook
from reconciler.execute.rpc import rpc_clear, rpc_set
from reconciler.execute.runtime import DOM0_ONLY, RECORD, Runtime, arg, int_arg, missing, read_or_empty, rm_quiet
from reconciler.model.common import default_vm_uuid
from reconciler.model.host import BUILDING, DomainStatus
from reconciler.plan.steps import Op, Step
from reconciler.ports import XenstoreOps


Handler = Callable[[Runtime, Step, bool], Awaitable[str | None]]


# ---- VM lifecycle ---------------------------------------------------------------------


async def create(rt: Runtime, step: Step, retry: bool) -> str | None:
    vm = rt.desired.vms[step.name]
    existing = await rt.live_domid(step.name, fresh=True) if retry else None
    # Built as xl builds: its disks, NICs and PCI devices are in the domain from the start
    # (emulated ones for an HVM guest, passthrough set up at build), none hot-plugged after.
    build = build_of(rt.desired, step.name, await build_pci(rt, step.name, arg(step, "pci")))
    if existing is None:
        # Intent before effect: once `xl create` runs, a kill at any point leaves a domain
        # that the next plan knows is ours, with its record (and the rest) still to do.
        await _write_intent(rt, vm.spec.uuid, step.name)
    # A try whose answer was lost may have built it: adopt that domain instead of failing on the name.
    domid = existing if existing is not None else await rt.ports.toolstack.create(vm, build, paused=True)
    rt.built.add(step.name)
    rt.built_domain(DomainStatus(domid, step.name, vm.spec.uuid or "", "paused", vm.spec.memory, vm.spec.vcpus,
                                 bool(build.pci)))
    for nic in build.nics:  # settings xl has no key for, on the interfaces the build made
        await plugged_settings(rt, nic, domid)
    # Neither xl nor the simulated toolstack writes vm-data/: the guest reads it at boot,
    # so it goes in while the domain is still paused.
    await _write_data(rt, domid, dict(vm.spec.xenstore_data))
    return None


async def _write_intent(rt: Runtime, uuid: str | None, name: str) -> None:
    async def body(tx: XenstoreOps) -> None:
        await tx.write(f"{BUILDING}/{uuid}", name)
        await tx.set_perms(f"{BUILDING}/{uuid}", DOM0_ONLY)

    await rt.ports.xenstore.transaction(body)


async def record(rt: Runtime, step: Step, retry: bool) -> str | None:
    # Marks the domain ours and keeps what the host cannot show; one transaction, so an
    # observer never sees a marker without the record it vouches for, and the build
    # intent goes with it. The whole directory is rewritten readable by dom0 only (its
    # parent /vm/<uuid> is guest-readable), the record split in chunks that each fit a
    # xenstore value whatever the manifests hold.
    await _write_record(rt, step.name, rt.desired.vms[step.name].spec.uuid)
    return None


async def _write_record(rt: Runtime, name: str, uuid: str | None) -> None:
    """The managed marker and VM `name`'s last-applied record under /vm/<uuid>/reconciler."""
    text, digest = applied_record(rt.desired, name)
    base = f"/vm/{uuid}/{RECORD}"

    async def body(tx: XenstoreOps) -> None:
        await rm_quiet(tx, base)
        await tx.mkdir(base)
        await tx.set_perms(base, DOM0_ONLY)  # nodes made below inherit it
        await tx.write(f"{base}/managed", "1")
        await tx.write(f"{base}/digest", digest)
        for n, chunk in enumerate(record_chunks(text)):
            await tx.write(f"{base}/applied/{n}", chunk)
        await rm_quiet(tx, f"{BUILDING}/{uuid}")

    await rt.ports.xenstore.transaction(body)
    rt.forget_managed(uuid)


async def rename(rt: Runtime, step: Step, retry: bool) -> str | None:
    # `xl rename` of a domain adopted (spec.adopt) that holds the VM's uuid under another
    # name; before its adopt step, so a kill in between leaves an unmanaged domain with the
    # VM's name and uuid: the next plan adopts it. Only the very domain the plan saw.
    domid, old, uuid = int_arg(step, "domid"), arg(step, "from"), arg(step, "uuid")
    now = next((d for d in await rt.domains() if d.domid == domid), None)
    if now is None or not isinstance(uuid, str) or now.uuid.lower() != uuid.lower() or now.name not in (old, step.name):
        raise TerminalHostError(f"VM {step.name!r}: domain {domid} ({old!r}, uuid {uuid}) that the plan renames and "
                                f"adopts is no longer on {rt.ports.name} as it was: run plan again")
    if now.name == step.name:
        return "already renamed"  # a try whose answer was lost
    try:
        await rt.ports.toolstack.rename(domid, step.name)
    finally:
        rt.domains_changed()
    return None


async def adopt(rt: Runtime, step: Step, retry: bool) -> str | None:
    # Taking over a domain another toolstack built (spec.adopt): the same marker and record
    # as a build's `record` step, under the uuid the domain has, before any other step of
    # the VM touches it. Only the very domain the plan saw: one that went (or was replaced
    # under that name) since is not taken over on a guess.
    uuid, domid = arg(step, "uuid"), arg(step, "domid")
    if not isinstance(uuid, str) or not uuid:
        raise TerminalHostError(f"step {step.id} names no uuid; the plan is malformed: run plan again")
    listed = await rt.domains()
    if not any(d.name == step.name and d.uuid.lower() == uuid.lower() and (domid is None or d.domid == domid)
               for d in listed):
        raise TerminalHostError(f"VM {step.name!r}: the domain the plan adopts ({step.name!r}, uuid {uuid}) is no "
                                f"longer on {rt.ports.name} as it was: run plan again")
    await _write_record(rt, step.name, uuid)
    return None


async def unpause(rt: Runtime, step: Step, retry: bool) -> str | None:
    domid = await rt.domid(step.name)
    await rt.ports.toolstack.unpause(domid)
    rt.powered(domid, "running")
    return None


async def pause(rt: Runtime, step: Step, retry: bool) -> str | None:
    domid = await rt.domid(step.name)
    await rt.ports.toolstack.pause(domid)
    rt.powered(domid, "paused")
    return None


async def wait_sentinel(rt: Runtime, step: Step, retry: bool) -> str | None:
    # "running" is long before the services are up: the guest writes its sentinel node
    # when they are. A watch fires at once and on every change; re-read on each event.
    node, timeout = arg(step, "node"), rt.settings.sentinel_timeout_s
    if not isinstance(node, str) or not node:
        raise TerminalHostError(f"step {step.id} names no sentinel node; the plan is malformed: run plan again")
    path = f"/local/domain/{await rt.domid(step.name)}/{node}"
    stream = await rt.ports.xenstore.watch(path)
    try:
        async with asyncio.timeout(timeout):
            async for _ in stream:
                if await read_or_empty(rt, path):
                    return None
    except TimeoutError:
        raise TerminalHostError(f"VM {step.name!r} did not write {path} within {timeout:g} s; check that its "
                                f"agent writes the bootSentinel node, or raise the timeout") from None
    finally:
        await stream.close()
    raise TerminalHostError(f"the watch on {path} ended before the guest wrote it; run apply again")


async def shutdown(rt: Runtime, step: Step, retry: bool) -> str | None:
    # Graceful first (`xl shutdown -w`): the guest flushes its disks. A guest that does not
    # cooperate is no reason to stop here: the destroy step after this one ends it.
    if arg(step, "xenstoreGone"):  # no control/shutdown node the guest could see: nothing to ask
        return "its xenstore nodes are gone, so the guest cannot be asked to shut down; destroyed next"
    domid = await rt.live_domid(step.name)
    if domid is None:
        return "already gone"
    try:
        await rt.ports.toolstack.shutdown(domid, timeout=rt.settings.shutdown_timeout_s)
    except HostError as exc:
        if await rt.live_domid(step.name) is None:
            return "gone while shutting down"
        return f"not shut down gracefully ({exc}); destroyed next"
    finally:
        rt.domains_changed()  # shut down and kept (onPoweroff: preserve), or reaped: a listing says which
    return None


async def _treeless_domid(rt: Runtime, step: Step) -> int | None:
    """The domain of a step whose xenstore tree was removed, from a fresh `xl list`. Real
    xl reads names from xenstore and prints "(null)" for such a domain, so it is found by
    uuid: the one the plan observed, else the VM's own; by name only where the listing
    still has one (the simulated host's)."""
    vm = rt.desired.vms.get(step.name)
    own = (vm.spec.uuid or default_vm_uuid(step.name)) if vm is not None else None
    uuids = {str(u).lower() for u in (arg(step, "uuid"), own) if u}
    listed = await rt.domains()
    by_uuid = next((d.domid for d in listed if d.uuid.lower() in uuids), None)
    return by_uuid if by_uuid is not None else next((d.domid for d in listed if d.name == step.name), None)


async def destroy(rt: Runtime, step: Step, retry: bool) -> str | None:
    # A domain whose xenstore tree was removed has no name node to confirm it by: `xl list` does.
    if arg(step, "xenstoreGone"):
        domid = await _treeless_domid(rt, step)
    else:
        domid = await rt.live_domid(step.name)
    if domid is not None:  # else a cooperative guest powered off and the toolstack reaped it already
        await rt.ports.toolstack.destroy(domid)
    rt.gone(step.name, domid)
    # A domain an interrupted apply built still has its build intent: it goes with the domain.
    vm = rt.desired.vms.get(step.name)
    uuid = (rt.uuids.get(domid) if domid is not None else None) or (vm.spec.uuid if vm is not None else None)
    if uuid:
        await rt.ports.xenstore.transaction(lambda tx: rm_quiet(tx, f"{BUILDING}/{uuid}"))
    return None


async def gate(rt: Runtime, step: Step, retry: bool) -> str | None:
    # Nothing on the host: the point between two priority levels that the VMs of the
    # lower one wait for (`reconciler.plan.rules.priority_gates`).
    return None


async def forget(rt: Runtime, step: Step, retry: bool) -> str | None:
    uuids = arg(step, "uuids")
    if not isinstance(uuids, list):
        raise TerminalHostError(f"step {step.id} names no uuids; the plan is malformed: run plan again")
    built = {d.uuid for d in await rt.domains()}
    kept = sorted(str(u) for u in uuids if u in built)
    for uuid in sorted(str(u) for u in uuids if u not in built):
        await rt.ports.xenstore.transaction(lambda tx: rm_quiet(tx, f"{BUILDING}/{uuid}"))
    return f"kept the intent of {', '.join(kept)}: a domain with that uuid exists now" if kept else None


async def mem_set(rt: Runtime, step: Step, retry: bool) -> str | None:
    await rt.ports.toolstack.mem_set(await rt.domid(step.name), int_arg(step, "memory"))
    return None


async def vcpu_set(rt: Runtime, step: Step, retry: bool) -> str | None:
    await rt.ports.toolstack.vcpu_set(await rt.domid(step.name), int_arg(step, "vcpus"))
    return None


async def xenstore_write(rt: Runtime, step: Step, retry: bool) -> str | None:
    # The vm-data/ subtree is owned whole: tampered keys are written back, keys the
    # manifests do not name are removed, keys that match are left alone.
    data = arg(step, "data")
    if not isinstance(data, dict):
        raise TerminalHostError(f"step {step.id} has no xenstore data; the plan is malformed: run plan again")
    base, want = f"/local/domain/{await rt.domid(step.name)}", {str(k): str(v) for k, v in data.items()}

    async def body(tx: XenstoreOps) -> None:
        # Read inside the transaction: on a conflict (EAGAIN) the whole body runs again
        # and decides from what the subtree holds then, not from a stale read.
        nodes = await _subtree(tx, f"{base}/{vmdata.ROOT}")
        have = vmdata.keys({path[len(base) + 1:]: value.decode("utf-8", "backslashreplace") for path, value in nodes.items()})
        removes, writes = vmdata.sync(have, want)
        for key in removes:
            await tx.rm(f"{base}/{key}")
        for key, value in writes.items():
            await tx.write(f"{base}/{key}", value)

    await rt.ports.xenstore.transaction(body)
    return None


async def _subtree(tx: XenstoreOps, path: str) -> dict[str, bytes]:
    """{path: value} for `path` and every node below it, read in the transaction; {} if absent."""
    try:
        out, names = {path: await tx.read(path)}, await tx.directory(path)
    except HostError as exc:
        if not missing(exc):
            raise
        return {}
    for name in names:
        out.update(await _subtree(tx, f"{path}/{name}"))
    return out


async def _write_data(rt: Runtime, domid: int, data: Mapping[str, str]) -> None:
    if not data:
        return

    async def body(tx: XenstoreOps) -> None:
        for key, value in sorted(data.items()):  # keys are vm-data/... (the loader refuses others)
            await tx.write(f"/local/domain/{domid}/{key}", value)

    await rt.ports.xenstore.transaction(body)


# Ops that may start or stop a domain. Each tells the run's listing what it did (`Runtime.built_domain`,
# `powered`, `gone`, `domains_changed`); after one that failed, the next lookup lists domains again.
CHANGES_DOMAINS: frozenset[Op] = frozenset({"create", "unpause", "pause", "shutdown", "destroy", "rename",
                                           "post-create"})  # a failed postCreate destroys what it built

# Every op of `reconciler.plan.steps.Op`, in the order a VM's life uses them; the
# planner's edge rules (`reconciler.plan.rules`) decide when each may run.
OPS: dict[Op, Handler] = {
    "pci-assignable-add": pci_assignable_add,  # quarantine on pciback before the build
    "create": create,  # `xl create -p`: built paused, so nothing runs before its devices
    "record": record,  # managed marker + last-applied record, before anything else can fail
    "rename": rename,  # xl rename of a domain adopted under another name, before its adopt step
    "adopt": adopt,  # the same, on a domain another toolstack built (spec.adopt), before its other steps
    "attach": attach,  # block/network/pci-attach onto the paused (or running) domain
    "fw-start": fw_start,  # what a VM's start resolves, one batch, before the guest may talk
    "fw-apply": fw_apply,  # a kept VM's rule: v4v entries resolved now
    "unpause": unpause,  # the guest runs: devices and rules are in place
    "wait-sentinel": wait_sentinel,  # dependents wait for the services, not for "running"
    "pause": pause,  # desired state: paused
    "mem-set": mem_set,  # balloon target within maxMemory
    "vcpu-set": vcpu_set,  # online vCPUs within maxVcpus
    "xenstore-write": xenstore_write,  # vm-data/ keys, live
    "set": set_netdev,  # a vif's MTU, promiscuous mode, ethtool settings, on the running interface
    "media": media,  # a CD drive's new media (xl cd-insert / cd-eject), live
    "shutdown": shutdown,  # graceful, bounded; destroy follows regardless
    "detach": detach,  # after shutdown (flushed), before destroy (clean Closing -> Closed)
    "destroy": destroy,  # what the guest did not finish
    "fw-remove": fw_remove,  # entries of stopped domains, after they stopped
    "fw-table": fw_table,  # entries no rule derives out, the default REJECT last
    "rpc-set": rpc_set,  # a VM's whole rpc-proxy entry, before its guest runs (or live)
    "rpc-clear": rpc_clear,  # ... removed once it has stopped
    "pci-assignable-remove": pci_assignable_remove,  # a binding it made, once no rule needs it
    "gate": gate,  # nothing: orders the VMs of two priority levels
    "forget": forget,  # build intents of VMs an interrupted apply never built
    # VM hooks, as OpenXT runs them (openxt.md 1.11); `reconciler.execute.hooks` says how they fail.
    "pre-boot": run_hook,  # before the build: a failure fails the start
    "post-create": run_hook,  # built, paused and recorded, before it runs
    "on-running": run_hook,  # onStateChange after each state change the plan makes: logged, never fails
    "on-paused": run_hook,
    "on-stopped": run_hook,
    "pre-delete": run_hook,  # a VM removed from the manifests, before its shutdown: a failure keeps it
}
