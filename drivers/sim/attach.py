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
from typing import get_args

from drivers.sim.backends import DeviceJob, DeviceRef
from drivers.sim.domains import Domain
from drivers.sim.builder import disk_ops, nic_ops
from drivers.sim.devices import DiskFormat, media_params
from drivers.sim.layout import device_destroy, device_remove
from drivers.sim.ops import Op, libxl_path
from drivers.sim.player import play
from drivers.sim.toolstack import Core
from reconciler.errors import TerminalHostError, TransientHostError
from reconciler.model import NIC, Disk
from reconciler.xenfmt import emulated_disk, emulated_nic, vdev_to_devid, vif_ifname


class Devices:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def attach_disk(self, domid: int, disk: Disk) -> None:
        core, spec = self.core, disk.spec
        async with core.lock(domid):
            domain = core.live(domid)
            devid = vdev_to_devid(spec.vdev)
            self._check_free(domid, "vbd", devid, f"disk {spec.vdev}")
            if emulated_disk(domain.virt, spec.vdev, spec.devtype):
                self._emulated(domain, f"vbd/{devid}", f"block-attach: {spec.vdev} is an emulated "
                               f"{'CD drive' if spec.devtype == 'cdrom' else 'disk'}", "PV view")
            ops, ref = disk_ops(core, domain, disk, "block-attach to")  # the layout libxl writes at create too
            play(core.store, ops)
            await self._wait_attached(core.backends.start(ref, "add"), domain, f"disk {spec.vdev}")

    async def attach_nic(self, domid: int, nic: NIC) -> None:
        core, spec = self.core, nic.spec
        async with core.lock(domid):
            domain = core.live(domid)
            devid = spec.index if spec.index is not None else self._free_devid(domid, "vif")
            self._check_free(domid, "vif", devid, f"NIC {devid}")
            if emulated_nic(domain.virt, spec.type, spec.model):
                self._emulated(domain, f"vif/{devid}", f"network-attach: NIC {devid} is an emulated NIC "
                               f"(type {spec.type or 'unset'}, model {spec.model or 'rtl8139'})", "PV NIC")
            # libxl__device_nic_setdefault: a NIC hot-plugged without a type is vif (PV only)
            ops, ref = nic_ops(core, domain, nic, devid, "network-attach to", untyped_pv=True)
            play(core.store, ops)
            core.netdevs.plug(ref.backend_domid, vif_ifname(domid, devid, spec.vifname), domid=domid, devid=devid, mtu=spec.mtu)
            await self._wait_attached(core.backends.start(ref, "add"), domain, f"NIC {devid}")

    async def cd_insert(self, domid: int, vdev: str, target: str, disk_format: str) -> None:
        """`xl cd-insert` (`xl cd-eject`: an empty target), as `libxl_cdrom_insert` does it:
        only into an existing CD drive of an HVM guest; the drive is emptied (backend and
        /libxl copy `params` ""), then given the new media (`params`, `<fmt>:<path>` on
        qdisk). QEMU changes the media; the backend stays connected."""
        core = self.core
        if disk_format not in get_args(DiskFormat):
            raise TerminalHostError(f"cd-insert {vdev} of domain {domid}: unknown disk format {disk_format!r}")
        try:
            devid = vdev_to_devid(vdev)
        except ValueError as exc:
            raise TerminalHostError(f"cd-insert: {exc}") from exc
        async with core.lock(domid):
            domain = core.live(domid)
            if domain.virt != "hvm":  # libxl_cdrom_insert
                raise TerminalHostError(f"libxl: error: Domain {domid}:cdrom-insert requires an HVM domain")
            copy = f"{libxl_path(domid)}/device/vbd/{devid}"
            back = core.value(f"{copy}/backend")
            if back is None or core.value(f"{back}/device-type") != "cdrom":
                raise TerminalHostError(f"libxl: error: Domain {domid}:Virtual device not found ({vdev} is no CD drive "
                                        f"of domain {domid})")
            kind = core.value(f"{back}/type") or "phy"
            params = media_params(kind, target, disk_format)  # type: ignore[arg-type]
            for value in ("", params):  # ejected first, then inserted: two transactions, as libxl writes them
                play(core.store, [Op("write", f"{path}/params", value) for path in (back, copy)])

    async def detach_disk(self, domid: int, vdev: str) -> None:
        try:
            devid = vdev_to_devid(vdev)
        except ValueError as exc:
            raise TerminalHostError(f"block-detach: {exc}") from exc
        await self._detach(domid, "vbd", devid, f"disk {vdev}")

    async def detach_nic(self, domid: int, devid: int) -> None:
        await self._detach(domid, "vif", devid, f"NIC {devid}")

    # -- shared -------------------------------------------------------------------

    def _emulated(self, domain: Domain, key: str, what: str, view: str) -> None:
        """Refuse to hot-plug a device QEMU would have to emulate onto an HVM domain that
        has run. QEMU takes its devices from the config the domain is built with: real xl
        takes `block-attach hdc` or `network-attach type=ioemu` and gives the guest only
        the PV half (xl(1)), a device its BIOS and a guest without PV drivers never see.
        Allowed: re-plugging a device it was built with (QEMU still has its emulated half).
        A paused domain that never ran is no different: QEMU started with the build."""
        if key in domain.built:
            return
        raise TerminalHostError(
            f"{what} of HVM domain {domain.domid} ({domain.name}), which QEMU only gets when the domain is built: "
            f"xl would give the guest the {view} only; put it in the domain's config and rebuild it")

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
