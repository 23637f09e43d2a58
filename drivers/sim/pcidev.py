"""The simulated toolstack's PCI passthrough and pciback binding (xen.md 2.7, 4.2).

Stage: simulated host. `assignable_add/remove` move a host function to or from
pciback and keep `/libxl/pci/<DDDD-BB-SS-F>/driver_path`; `attach/detach` maintain the
guest's one pci backend (devid 0): the first device builds it and waits for Connected,
later ones are hot-added at the next index (backend Reconfiguring 7 -> Reconfigured 8
-> Connected 4), removal shifts higher indexes down, the last one tears it down.
`/libxl/pci/<bdf>/domid` marks an assigned device. Called by `drivers.sim.host`.
"""

from __future__ import annotations

import asyncio

from drivers.sim.attach import Devices
from drivers.sim.backends import DeviceJob, DeviceRef
from drivers.sim.devices import PciOpts, device_paths, pci_backend
from drivers.sim.domains import Domain
from drivers.sim.layout import Step
from drivers.sim.ops import Op
from drivers.sim.pci import PCIBACK
from drivers.sim.player import play
from drivers.sim.toolstack import Core
from reconciler.errors import TerminalHostError, TransientHostError
from reconciler.xenfmt import parse_bdf


class PciDevices:
    def __init__(self, core: Core, devices: Devices) -> None:
        self.core, self.devices = core, devices

    async def assignable_add(self, bdf: str) -> None:
        device = self.core.pci.get(bdf)
        original = self.core.pci.assignable_add(device.bdf)
        key = parse_bdf(device.bdf).xenstore_key
        if original is not None and original != PCIBACK:
            play(self.core.store, [Op("write", f"/libxl/pci/{key}/driver_path", f"/sys/bus/pci/drivers/{original}")])
        else:
            play(self.core.store, [Op("mkdir", f"/libxl/pci/{key}")])

    async def assignable_remove(self, bdf: str, *, rebind: bool) -> None:
        device = self.core.pci.get(bdf)
        key = parse_bdf(device.bdf).xenstore_key
        owner = self.core.value(f"/libxl/pci/{key}/domid")
        if owner is not None:
            raise TerminalHostError(f"PCI device {device.bdf} is assigned to domain {owner}; detach it first")
        self.core.pci.assignable_remove(device.bdf, rebind=rebind)
        play(self.core.store, [Op("rm_tidy", f"/libxl/pci/{key}")])

    async def attach(self, domid: int, bdf: str, opts: PciOpts) -> None:
        core = self.core
        async with core.lock(domid):
            domain = core.live(domid)
            device = core.pci.get(bdf)
            key = parse_bdf(device.bdf).xenstore_key
            if device.driver != PCIBACK:
                raise TerminalHostError(f"PCI device {device.bdf} is not assignable (driver {device.driver or 'none'}); "
                                        "make it assignable first (pciback)")
            if (owner := core.value(f"/libxl/pci/{key}/domid")) is not None:
                raise TerminalHostError(f"PCI device {device.bdf} is already assigned to domain {owner}")
            _need_passthrough(domain, device.bdf)
            _, back, _ = device_paths(domid, "pci", 0)
            ref = DeviceRef(domid, "pci", 0)
            if not core.exists(back):
                play(core.store, pci_backend(domid, domain.name, [(parse_bdf(device.bdf), opts)]))
                await self._attached(core.backends.start(ref, "add"), domain, device.bdf, key)
                return
            index = int(core.value(f"{back}/num_devs") or "0")
            if opts.vslot is not None and opts.vslot in self._slots(back, index):
                raise TerminalHostError(f"PCI device {device.bdf}: guest slot {opts.vslot:#04x} of domain {domid} is "
                                        "taken by another device; choose another guestSlot")
            keys = _device_keys(index, device.bdf, opts)
            play(core.store, [*(Op("write", f"{back}/{k}", v) for k, v in keys),
                              Op("write", f"{back}/num_devs", str(index + 1)), Op("write", f"{back}/state", "7"),
                              Op("write", f"/libxl/pci/{key}/domid", str(domid))])
            job = core.backends.start(ref, "add", _reconfigure(domid, []))
            await self._attached(job, domain, device.bdf, key)

    async def _attached(self, job: DeviceJob, domain: Domain, bdf: str, key: str) -> None:
        """Wait for the backend; on a timeout (the device removed) libxl also unassigns
        it, so a retry or another domain may take it."""
        try:
            await self.devices._wait_attached(job, domain, f"PCI device {bdf}")
        except TransientHostError:
            play(self.core.store, [Op("rm", f"/libxl/pci/{key}/domid")])
            raise

    async def detach(self, domid: int, bdf: str) -> None:
        core = self.core
        async with core.lock(domid):
            core.live(domid)
            canonical = core.pci.canonical(bdf)
            _, back, _ = device_paths(domid, "pci", 0)
            count = int(core.value(f"{back}/num_devs") or "0")
            index = next((i for i in range(count) if core.value(f"{back}/dev-{i}") == canonical), None)
            if index is None:
                raise TerminalHostError(f"PCI device {canonical} is not attached to domain {domid}; nothing to detach")
            key = parse_bdf(canonical).xenstore_key
            play(core.store, [Op("rm", f"/libxl/pci/{key}/domid")])
        if count == 1:
            await self.devices._detach(domid, "pci", 0, f"PCI device {canonical}", DeviceRef(domid, "pci", 0))
            return
        async with core.lock(domid):
            play(core.store, [Op("write", f"{back}/state-{index}", "5"), Op("write", f"{back}/state", "7")])
            job = core.backends.start(DeviceRef(domid, "pci", 0), "add", _reconfigure(domid, self._shift(back, index, count)))
            try:
                await asyncio.wait_for(job.finished_wait(), core.settings.scaled(core.settings.destroy_timeout_s))
            except TimeoutError:  # a guest that cannot answer (paused): libxl gives up on the frontend
                core.backends.cancel(back)
                now = int(core.value(f"{back}/num_devs") or "0")
                left = next((i for i in range(now) if core.value(f"{back}/dev-{i}") == canonical), None)
                shift = [] if left is None else self._shift(back, left, now)  # pciback may have dropped it already
                play(core.store, shift + [Op("write", f"{back}/state", "4")])

    def _slots(self, back: str, count: int) -> set[int]:
        """Guest slots the domain's passed-through devices hold (`vdevfn-i` = slot << 3 | function)."""
        values = (self.core.value(f"{back}/vdevfn-{i}") for i in range(count))
        return {int(v, 16) >> 3 for v in values if v and all(c in "0123456789abcdefABCDEF" for c in v)}

    def _shift(self, back: str, index: int, count: int) -> list[Op]:
        """Drop device `index`'s keys and move every higher index down by one."""
        names = ("key", "dev", "vdevfn", "name", "opts", "state", "vdev", "root")
        ops = [Op("rm", f"{back}/{n}-{index}") for n in names]
        for i in range(index + 1, count):
            for n in names:
                value = self.core.value(f"{back}/{n}-{i}")
                if value is not None:
                    ops += [Op("write", f"{back}/{n}-{i - 1}", value), Op("rm", f"{back}/{n}-{i}")]
        return ops + [Op("write", f"{back}/num_devs", str(count - 1))]


def _need_passthrough(domain: Domain, bdf: str) -> None:
    """Xen refuses to assign a device to a domain built without passthrough: libxl sets
    up the IOMMU context only when the config has `pci=` (libxl_create.c), and
    XEN_DOMCTL_assign_device then fails with EOPNOTSUPP (iommu_do_domctl), which libxl
    reports as below (4.17, libxl_pci.c), also on a paused domain that never ran."""
    if domain.passthrough:
        return
    raise TerminalHostError(
        f"libxl: error: libxl_pci.c:1529:pci_add_dm_done: Domain {domain.domid}:xc_assign_device failed: Operation not "
        f"supported (pci-attach {bdf}: domain {domain.domid} ({domain.name}) was built without passthrough, no pci= in "
        "its config; rebuild it with the device)")


def _device_keys(index: int, bdf: str, opts: PciOpts) -> list[tuple[str, str]]:
    parsed = parse_bdf(bdf)
    keys = [(f"key-{index}", bdf), (f"dev-{index}", bdf)]
    if opts.vslot is not None:
        keys.append((f"vdevfn-{index}", f"{opts.vslot << 3 | parsed.func:x}"))
    return keys + [(f"opts-{index}", opts.xenstore()), (f"state-{index}", "1")]


def _reconfigure(domid: int, backend_ops: list[Op]) -> list[Step]:
    """pciback's hotplug dance: Reconfiguring (7) -> Reconfigured (8) -> frontend -> Connected (4)."""
    front, back, _ = device_paths(domid, "pci", 0)
    return [
        Step(10, "backend", (*backend_ops, Op("write", f"{back}/state", "8")), "pciback applied the change"),
        Step(10, "frontend", (Op("write", f"{front}/state", "4"),), "pcifront rescanned its bus"),
        Step(5, "backend", (Op("write", f"{back}/state", "4"),), "pciback back to Connected"),
    ]
