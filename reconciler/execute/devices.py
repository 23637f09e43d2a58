"""Device ops of the op table: attach, detach, the settings of a vif's interface (`set`:
MTU, promiscuous mode, ethtool), and binding PCI devices to pciback (and giving back
the ones the reconciler bound, recorded under `PCIBACK_RECORDS`).

Touches the host through the ports in `Runtime` only. Called through
`reconciler.execute.ops.OPS`. Devices are read from the plan's DesiredState (attach)
or identified by the step's arguments (detach: vdev, NIC index, PCI addresses), so a
device the manifests no longer name can still be removed. On a retry each handler first
reads what an earlier try already did (libxl's frontend and pciback nodes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from reconciler import xenfmt
from reconciler.diff.pci import PCIBACK, matches
from reconciler.errors import HostError, TerminalHostError
from reconciler.execute.pcicopy import canonical
from reconciler.execute.runtime import Runtime, arg, int_arg, missing, read_or_empty
from reconciler.model.devices import NIC, PCIPassthrough
from reconciler.model.host import PCIBACK_RECORDS, HostPciDevice
from reconciler.plan.steps import Step


async def attach(rt: Runtime, step: Step, retry: bool) -> str | None:
    domid, tools = await rt.domid(step.vm), rt.ports.toolstack
    if step.kind == "Disk":
        disk = rt.desired.disks[step.name]
        if not (retry and await _frontend(rt, domid, "vbd", xenfmt.vdev_to_devid(disk.spec.vdev))):
            await tools.attach_disk(domid, disk)  # returns once blkback is up (hotplug-status connected)
        return None
    if step.kind == "NIC":
        nic = rt.desired.nics[step.name]
        if not (retry and nic.spec.index is not None and await _frontend(rt, domid, "vif", nic.spec.index)):
            await tools.attach_nic(domid, nic)  # the MAC is resolved by the loader (never `auto` here)
        await plugged_settings(rt, nic, domid)
        return None
    rule = rt.desired.pci[step.name]
    done = await _assigned(rt, domid) if retry else set()
    spec = rule.spec
    addresses = await _pci_addresses(rt, step, rule)
    if not (spec.seize or spec.greedy):
        await _unseized(rt, rule, [b for b in addresses if b not in done])
    for bdf in addresses:
        if bdf not in done:  # pciback took it in the pci-assignable-add step before this one
            await tools.attach_pci(domid, bdf, permissive=spec.permissive, msitranslate=spec.msitranslate,
                                   power_mgmt=spec.power_mgmt, guest_slot=spec.guest_slot)
    return None


async def plugged_settings(rt: Runtime, nic: NIC, domid: int) -> None:
    """A NIC's promiscuous mode and ethtool keys, which xl has no key for, on its new
    interface (plugged by attach, or built by create)."""
    ethtool = nic.spec.ethtool.model_dump(exclude_none=True) if nic.spec.ethtool else {}
    if nic.spec.promiscuous or ethtool:
        # As XenServer applies a VIF's other-config when it plugs it: the new interface
        # starts with netback's defaults (the MTU came with the vif config).
        await _configure(rt, nic, domid, mtu=None, promiscuous=nic.spec.promiscuous, ethtool=ethtool or None)


async def build_pci(rt: Runtime, vm: str, resolved: object) -> dict[str, list[str]]:
    """The host addresses of each PCIPassthrough rule of `vm` the create builds it with:
    the plan's (a create step's `pci` argument), else the rule's bdf, else its match
    against the run's inventory (a plan made from a dump). A `seize: false` rule's
    devices must be on pciback already, as for an attach."""
    known = resolved if isinstance(resolved, dict) else {}
    found: dict[str, list[str]] = {}
    for rule in (d for d in rt.desired.devices_of(vm) if isinstance(d, PCIPassthrough)):
        name, spec = rule.metadata.name, rule.spec
        listed = known.get(name)
        if isinstance(listed, list):
            found[name] = [str(b) for b in listed]
        elif spec.bdf:
            found[name] = [spec.bdf]
        elif spec.match is not None:
            found[name] = sorted(d.bdf for d in (await _inventory(rt)).values() if matches(spec.match, d))
        if not (spec.seize or spec.greedy):
            await _unseized(rt, rule, found.get(name, []))
    return found


async def detach(rt: Runtime, step: Step, retry: bool) -> str | None:
    domid, tools = await rt.live_domid(step.vm), rt.ports.toolstack
    if domid is None:
        return "the domain is gone, and the device with it"  # a guest that powered off was reaped
    if step.kind == "Disk":
        vdev = str(arg(step, "vdev"))
        if not retry or await _frontend(rt, domid, "vbd", xenfmt.vdev_to_devid(vdev)):
            await tools.detach_disk(domid, vdev)  # backend Closing -> Closed; the image file is kept
    elif step.kind == "NIC":
        index = int_arg(step, "index")
        if not retry or await _frontend(rt, domid, "vif", index):
            await tools.detach_nic(domid, index)
    else:
        attached = await _assigned(rt, domid)
        for bdf in _listed(step):
            if bdf in attached:  # a device the host already lost needs no unplug
                await tools.detach_pci(domid, bdf)  # it stays on pciback: no dom0 driver grabs it
    return None


async def media(rt: Runtime, step: Step, retry: bool) -> str | None:
    # A CD drive's new media on a running HVM guest (`xl cd-insert`; an empty target is
    # `xl cd-eject`): QEMU changes it live, the drive stays. A retry first reads the
    # drive's backend `params`, so media already in (or already out) is not changed again.
    domid, tools = await rt.domid(step.vm), rt.ports.toolstack
    vdev, target, fmt = str(arg(step, "vdev")), str(arg(step, "target") or ""), str(arg(step, "format") or "raw")
    if retry and await _holds_media(rt, domid, vdev, target, fmt):
        return "the drive already holds that media"
    if target:
        await tools.cd_insert(domid, vdev, target, fmt)
    else:
        await tools.cd_eject(domid, vdev)
    return None


async def _holds_media(rt: Runtime, domid: int, vdev: str, target: str, fmt: str) -> bool:
    """Does CD drive `vdev` of `domid` hold `target` (in format `fmt`) now? Read from its
    backend's `params`: the path on phy, `<fmt>:<path>` on qdisk (raw as `aio`), "" empty."""
    front = f"/local/domain/{domid}/device/vbd/{xenfmt.vdev_to_devid(vdev)}/backend"
    back = (await read_or_empty(rt, front)).decode("utf-8", "replace")
    if not back:
        return False
    params = (await read_or_empty(rt, f"{back}/params")).decode("utf-8", "replace")
    have_fmt, sep, path = params.partition(":")
    if not sep or not path.startswith("/"):
        have_fmt, path = "raw", params
    return path == target and (not target or {"aio": "raw"}.get(have_fmt, have_fmt) == fmt)


async def set_netdev(rt: Runtime, step: Step, retry: bool) -> str | None:
    # `ip link set dev vifD.N mtu M promisc on|off`, `ethtool -K vifD.N tso off`: on the
    # running interface, in its backend domain; the guest keeps its link.
    nic = rt.desired.nics[step.name]
    ethtool = arg(step, "ethtool")
    promiscuous = arg(step, "promiscuous")
    await _configure(rt, nic, await rt.domid(step.vm), mtu=int_arg(step, "mtu"),
                     promiscuous=promiscuous if isinstance(promiscuous, bool) else None,
                     ethtool=ethtool if isinstance(ethtool, dict) else None)
    return None


async def _configure(rt: Runtime, nic: NIC, domid: int, *, mtu: int | None, promiscuous: bool | None,
                     ethtool: dict[str, str | int] | None) -> None:
    spec = nic.spec
    if spec.index is None:
        raise TerminalHostError(f"NIC {nic.metadata.name!r} has no index; the plan is malformed: run plan again")
    backend = await rt.domid(spec.backend_vm) if spec.backend_vm else 0
    await rt.ports.netdev.set(backend, xenfmt.vif_ifname(domid, spec.index, spec.vifname), mtu=mtu,
                              promiscuous=promiscuous, ethtool=ethtool)


async def pci_assignable_add(rt: Runtime, step: Step, retry: bool) -> str | None:
    # Bind to pciback (unbind the dom0 driver, quarantine) before any guest may get it;
    # a device already there is left alone (xl would refuse it as already assignable).
    # What it binds it records first, with the driver it came from: it owns that binding
    # and gives it back when no rule needs it (an interrupted bind leaves a record the
    # next plan sees). The inventory is the run's copy (`Runtime.pci`): read once, and
    # an address is reserved before its bind, so other steps bind theirs meanwhile and
    # a device two rules name is bound once.
    rule = rt.desired.pci.get(step.name)
    wanted = await _pci_addresses(rt, step, rule) if rule is not None else _listed(step)
    mine, n = await _claim(rt, wanted, lambda dev: dev is None or dev.driver != PCIBACK), 0
    try:
        for n, bdf in enumerate(mine):
            driver = _driver(await _inventory(rt), bdf)
            await rt.ports.xenstore.write(_record(bdf), driver or "")
            await rt.ports.pciback.assignable_add(bdf)
            rt.pci.settled(bdf, PCIBACK)
    except BaseException:
        rt.pci.failed(mine[n:])
        raise
    return None if mine else "already on pciback"


async def pci_assignable_remove(rt: Runtime, step: Step, retry: bool) -> str | None:
    # Only devices the reconciler bound (the plan lists its records): unbind from pciback,
    # the kernel gives the device back to its own driver (the one the record names); then
    # the record goes.
    listed = _listed(step)
    mine, n = await _claim(rt, listed, lambda dev: dev is not None and dev.driver == PCIBACK), 0
    try:
        for n, bdf in enumerate(mine):
            back = (await read_or_empty(rt, _record(bdf))).decode("utf-8", "replace") or None
            await rt.ports.pciback.assignable_remove(bdf, rebind=True)
            rt.pci.settled(bdf, back)
    except BaseException:
        rt.pci.failed(mine[n:])
        raise
    for bdf in listed:
        try:
            await rt.ports.xenstore.rm(_record(bdf))
        except HostError as exc:
            if not missing(exc):
                raise
    return None


async def _inventory(rt: Runtime) -> dict[str, HostPciDevice]:
    """The run's copy of the PCI inventory, by canonical address (listed on first use)."""
    return await rt.pci.devices(lambda: rt.read(rt.ports.pciback.inventory))


async def _claim(rt: Runtime, bdfs: list[str], wanted: Callable[[HostPciDevice | None], bool]) -> list[str]:
    """Reserve the addresses of `bdfs` this step must change, once no other step is
    changing any of them (a change that failed makes the copy be listed again)."""
    while True:
        await _inventory(rt)
        mine, waits = rt.pci.claim(bdfs, wanted)
        if not waits:
            return mine
        await asyncio.gather(*waits)


def _driver(devices: dict[str, HostPciDevice], bdf: str) -> str | None:
    dev = devices.get(canonical(bdf))
    return dev.driver if dev is not None else None


def _record(bdf: str) -> str:
    return f"{PCIBACK_RECORDS}/{xenfmt.parse_bdf(bdf).xenstore_key}"


async def _unseized(rt: Runtime, rule: PCIPassthrough, bdfs: list[str]) -> None:
    """`seize: false`: the device must be on pciback already; say which is not, and the fix."""
    devices = await _inventory(rt)
    for bdf in bdfs:
        driver = devices[canonical(bdf)].driver if canonical(bdf) in devices else PCIBACK
        if driver != PCIBACK:
            raise TerminalHostError(
                f"PCI device {bdf} is bound to {driver or 'no driver'}, not pciback, and PCIPassthrough "
                f"{rule.metadata.name!r} has seize: false, so the reconciler does not take it: make it assignable "
                f"(`xl pci-assignable-add {bdf}`) or set seize: true")


def _listed(step: Step) -> list[str]:
    devices = arg(step, "devices")
    return [str(b) for b in devices] if isinstance(devices, list) else []


async def _pci_addresses(rt: Runtime, step: Step, rule: PCIPassthrough) -> list[str]:
    """The step's resolved host addresses, else the rule's bdf, else its match against
    the inventory now (a plan made from a dump could not resolve it)."""
    if isinstance(arg(step, "devices"), list):
        return _listed(step)
    if rule.spec.bdf:
        return [rule.spec.bdf]
    match = rule.spec.match
    if match is None:
        raise TerminalHostError(f"PCIPassthrough {step.name!r} names neither bdf nor match; fix the manifest")
    return sorted(d.bdf for d in (await _inventory(rt)).values() if matches(match, d))


async def _frontend(rt: Runtime, domid: int, kind: str, devid: int) -> bool:
    """Does the guest's frontend directory of the device exist (libxl writes it at attach)?"""
    try:
        await rt.ports.xenstore.directory(f"/local/domain/{domid}/device/{kind}/{devid}")
        return True
    except HostError as exc:
        if missing(exc):
            return False
        raise


async def _assigned(rt: Runtime, domid: int) -> set[str]:
    """Host addresses pciback serves to `domid`: the `dev-<i>` nodes of its pci backend."""
    base = f"/local/domain/0/backend/pci/{domid}/0"
    try:
        keys = [k for k in await rt.ports.xenstore.directory(base) if k.startswith("dev-")]
    except HostError as exc:
        if missing(exc):
            return set()
        raise
    values = [(await read_or_empty(rt, f"{base}/{k}")).decode() for k in keys]
    return {canonical(v) for v in values if v}
