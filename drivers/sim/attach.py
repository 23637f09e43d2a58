"""The simulated toolstack's disk and NIC attach/detach (`xl block-*`, `xl network-*`).

Stage: simulated host. Attach plays libxl's add transaction (`drivers.sim.layout`),
starts the backend moves and waits as libxl does: for hotplug, and for Connected (4)
when the guest runs; on timeout the device is removed again and the call fails as
transient. Detach writes Closing (5), waits for the backend to close (6) and the
nodes to go; after LIBXL_DESTROY_TIMEOUT it forces the removal, as libxl does.
PCI is in `drivers.sim.pcidev`. Called by `drivers.sim.host`.
"""

from __future__ import annotations

import asyncio

from drivers.sim.backends import DeviceJob, DeviceRef
from drivers.sim.domains import Domain
from drivers.sim.builder import disk_ops, nic_ops
from drivers.sim.layout import device_destroy, device_remove
from drivers.sim.ops import Op, libxl_path
from drivers.sim.player import play
from drivers.sim.toolstack import Core
from reconciler.errors import TerminalHostError, TransientHostError
from reconciler.model import NIC, Disk
from reconciler.xenfmt import vdev_to_devid, vif_ifname


class Devices:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def attach_disk(self, domid: int, disk: Disk) -> None:
        core, spec = self.core, disk.spec
        async with core.lock(domid):
            domain = core.live(domid)
            devid = vdev_to_devid(spec.vdev)
            self._check_free(domid, "vbd", devid, f"disk {spec.vdev}")
            ops, ref = disk_ops(core, domain, disk, "block-attach to")  # the layout libxl writes at create too
            play(core.store, ops)
            await self._wait_attached(core.backends.start(ref, "add"), domain, f"disk {spec.vdev}")

    async def attach_nic(self, domid: int, nic: NIC) -> None:
        core, spec = self.core, nic.spec
        async with core.lock(domid):
            domain = core.live(domid)
            devid = spec.index if spec.index is not None else self._free_devid(domid, "vif")
            self._check_free(domid, "vif", devid, f"NIC {devid}")
            ops, ref = nic_ops(core, domain, nic, devid, "network-attach to")  # the layout libxl writes at create too
            play(core.store, ops)
            core.netdevs.plug(ref.backend_domid, vif_ifname(domid, devid, spec.vifname), domid=domid, devid=devid, mtu=spec.mtu)
            await self._wait_attached(core.backends.start(ref, "add"), domain, f"NIC {devid}")

    async def detach_disk(self, domid: int, vdev: str) -> None:
        try:
            devid = vdev_to_devid(vdev)
        except ValueError as exc:
            raise TerminalHostError(f"block-detach: {exc}") from exc
        await self._detach(domid, "vbd", devid, f"disk {vdev}")

    async def detach_nic(self, domid: int, devid: int) -> None:
        await self._detach(domid, "vif", devid, f"NIC {devid}")

    # -- shared -------------------------------------------------------------------

    def _check_free(self, domid: int, kind: str, devid: int, what: str) -> None:
        if self.core.exists(f"{libxl_path(domid)}/device/{kind}/{devid}"):
            raise TerminalHostError(f"{what} is already attached to domain {domid} (libxl ERROR_DEVICE_EXISTS); detach it first")

    def _free_devid(self, domid: int, kind: str) -> int:
        node = self.core.store.peek(f"{libxl_path(domid)}/device/{kind}")
        used = {int(c) for c in node.children if c.isdigit()} if node else set()
        return next(i for i in range(len(used) + 1) if i not in used)

    async def _wait_attached(self, job: DeviceJob, domain: Domain, what: str) -> None:
        timeout = self.core.settings.scaled(self.core.settings.attach_timeout_s)
        try:
            await asyncio.wait_for(job.attached(domain), timeout)
        except TimeoutError:
            self.core.backends.cancel(job.ref.paths[1])
            self._destroy(job.ref)
            raise TransientHostError(
                f"{what} of domain {domain.domid} ({domain.name}): the backend did not connect within "
                f"{timeout:g} s (hotplug script or backend stuck); the device was removed, retry the attach") from None

    def _ref(self, domid: int, kind: str, devid: int, what: str) -> DeviceRef:
        back = self.core.value(f"{libxl_path(domid)}/device/{kind}/{devid}/backend")
        parts = (back or "").split("/")
        if len(parts) != 8 or not parts[3].isdigit():
            raise TerminalHostError(f"domain {domid} has no {what}; nothing to detach")
        return DeviceRef(domid, kind, devid, int(parts[3]), parts[5])

    async def _detach(self, domid: int, kind: str, devid: int, what: str, ref: DeviceRef | None = None) -> None:
        core = self.core
        async with core.lock(domid):
            core.live(domid)
            ref = ref or self._ref(domid, kind, devid, what)
            state = core.value(f"{ref.paths[1]}/state")
            play(core.store, device_remove(domid, kind, devid, backend_state=int(state) if state and state.isdigit() else None,
                                           backend_domid=ref.backend_domid, backend_kind=ref.backend_kind))
            job = core.backends.start(ref, "remove")
            try:
                await asyncio.wait_for(job.finished_wait(), core.settings.scaled(core.settings.destroy_timeout_s))
            except TimeoutError:  # libxl: "timeout reached, initiating forced remove"
                core.backends.cancel(ref.paths[1])
            self._destroy(ref)

    def _destroy(self, ref: DeviceRef) -> None:
        if ref.kind == "vif":
            self.core.netdevs.unplug(ref.domid, ref.devid)
        play(self.core.store, [
            *device_destroy(ref.domid, ref.kind, ref.devid, backend_domid=ref.backend_domid, backend_kind=ref.backend_kind),
            *[Op("rm", f"/local/domain/{ref.domid}/error/device/{ref.kind}/{ref.devid}")],
        ])
