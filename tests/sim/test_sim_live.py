"""The simulated host refuses what Xen cannot do to a running domain (issue 13, part B),
and changes CD media as libxl does. Real: the embedded host over its sockets, the ports.

Refused, with one line: hot-plugging an emulated disk (hd*, sd*, a cdrom) or NIC (type
ioemu, or a model) onto an HVM domain that has run (real xl takes it and gives the guest
the PV half only, xl(1)); pci-attach onto a domain built without passthrough (libxl's
error for Xen's EOPNOTSUPP); both also onto a domain built paused that never ran (QEMU
and the IOMMU context come with the build, as under `xl create -p`). Allowed: PV devices,
any device of a PV guest, the devices of the build, re-plugging a device it was built with.
"""

from __future__ import annotations

from typing import Any

import pytest

from drivers.sim.host import SimHost
from reconciler.errors import TerminalHostError
from reconciler.model.host import Build, PciAssignment
from reconciler.ports import HostPorts


def _one_line(exc: pytest.ExceptionInfo[TerminalHostError]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(("vdev", "spec"), [("hdb", {}), ("sda", {}), ("hdc", {"devtype": "cdrom", "target": "/iso/a.iso"})])
def test_emulated_disk_hotplug_onto_a_running_hvm_domain_is_refused(sim: Any, vm: Any, disk: Any, vdev: str,
                                                                    spec: dict[str, Any]) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        domid = await ports.toolstack.create(vm("win", virt="hvm"), paused=False)
        with pytest.raises(TerminalHostError) as exc:
            await ports.toolstack.attach_disk(domid, disk("win", vdev, **spec))
        text = _one_line(exc)
        assert f"block-attach: {vdev} is an emulated" in text and "PV view only" in text
        assert str(domid) not in await ports.xenstore.directory("/libxl") or \
            "vbd" not in await ports.xenstore.directory(f"/libxl/{domid}/device")

    sim(body)


def test_pv_disks_and_pv_guests_still_hotplug(sim: Any, vm: Any, disk: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        hvm = await ports.toolstack.create(vm("win", virt="hvm"), paused=False)
        await ports.toolstack.attach_disk(hvm, disk("win", "xvdb"))  # a Xen VBD
        await ports.toolstack.attach_disk(hvm, disk("win", "hda1", target="/srv/p.img"))  # a partition: PV only
        pv = await ports.toolstack.create(vm("web"), paused=False)
        await ports.toolstack.attach_disk(pv, disk("web", "hdb"))  # a PV guest has no QEMU disks

    sim(body)


def test_emulated_nic_hotplug_is_refused_and_an_untyped_one_is_plugged_pv(sim: Any, vm: Any, nic: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        domid = await ports.toolstack.create(vm("win", virt="hvm"), paused=False)
        for spec in ({"type": "ioemu"}, {"model": "e1000"}):
            with pytest.raises(TerminalHostError) as exc:
                await ports.toolstack.attach_nic(domid, nic("win", 0, **spec))
            assert "network-attach: NIC 0 is an emulated NIC" in _one_line(exc) and "PV NIC only" in _one_line(exc)
        await ports.toolstack.attach_nic(domid, nic("win", 0))
        # libxl__device_nic_setdefault: a NIC hot-plugged without a type is `vif`, not `vif_ioemu`.
        assert await ports.xenstore.read(f"/local/domain/0/backend/vif/{domid}/0/type") == b"vif"

    sim(body)


def test_devices_of_the_build_and_their_replug_are_allowed(sim: Any, vm: Any, disk: Any, nic: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        ts = ports.toolstack
        build = Build(disks=(disk("win", "hdc", devtype="cdrom", target="/iso/a.iso"),),
                      nics=(nic("win", 0, type="ioemu", model="e1000"),))
        domid = await ts.create(vm("win", virt="hvm"), build, paused=True)  # as xl create -p builds it
        with pytest.raises(TerminalHostError, match="hdb is an emulated disk"):
            await ts.attach_disk(domid, disk("win", "hdb"))  # paused, never ran: QEMU started with the build
        await ts.unpause(domid)
        # A backend VM's restart re-plugs them (OXT-1011): QEMU still has its half of them.
        await ts.detach_nic(domid, 0)
        await ts.attach_nic(domid, nic("win", 0, type="ioemu", model="e1000"))
        await ts.detach_disk(domid, "hdc")
        await ts.attach_disk(domid, disk("win", "hdc", devtype="cdrom", target="/iso/a.iso"))
        with pytest.raises(TerminalHostError, match="hdd is an emulated disk"):
            await ts.attach_disk(domid, disk("win", "hdd"))  # not in its build

    sim(body)


def test_pci_attach_without_passthrough_is_refused_as_libxl_reports_it(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        ts = ports.toolstack
        await ports.pciback.assignable_add("0000:02:00.0")
        domid = await ts.create(vm("plain"), paused=False)
        assert {d.domid: d.passthrough for d in await ts.list_domains()}[domid] is False
        with pytest.raises(TerminalHostError) as exc:
            await ts.attach_pci(domid, "0000:02:00.0")
        text = _one_line(exc)
        assert text.startswith(f"libxl: error: libxl_pci.c:1529:pci_add_dm_done: Domain {domid}:xc_assign_device "
                               "failed: Operation not supported")
        assert "built without passthrough" in text
        assert "domid" not in await ports.xenstore.directory("/libxl/pci/0000-02-00-0")  # nothing assigned

    sim(body)


def test_pci_attach_onto_a_domain_built_with_passthrough(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        ts = ports.toolstack
        for bdf in ("0000:00:1f.6", "0000:02:00.0"):
            await ports.pciback.assignable_add(bdf)
        domid = await ts.create(vm("ndvm", virt="hvm"), Build(pci=(PciAssignment("0000:00:1f.6"),)), paused=False)
        assert {d.domid: d.passthrough for d in await ts.list_domains()}[domid] is True
        await ts.attach_pci(domid, "0000:02:00.0")
        assert await ports.xenstore.read("/libxl/pci/0000-02-00-0/domid") == str(domid).encode()

    sim(body)


def test_pci_attach_onto_a_paused_domain_built_without_passthrough_is_refused(sim: Any, vm: Any) -> None:
    # `xl create -p` then `pci-attach`: the domain never ran, but its IOMMU context is
    # decided by its build (no pci=), as on a running one.
    async def body(ports: HostPorts, host: SimHost) -> None:
        ts = ports.toolstack
        await ports.pciback.assignable_add("0000:02:00.0")
        domid = await ts.create(vm("ndvm"), paused=True)
        assert {d.domid: d.passthrough for d in await ts.list_domains()}[domid] is False
        with pytest.raises(TerminalHostError, match="built without passthrough"):
            await ts.attach_pci(domid, "0000:02:00.0")

    sim(body)


def test_cd_insert_and_eject_rewrite_params_as_libxl(sim: Any, vm: Any, disk: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        ts, xs = ports.toolstack, ports.xenstore
        drives = (disk("win", "hdb", devtype="cdrom", target=""),  # empty: QEMU's qdisk
                  disk("win", "hdc", devtype="cdrom", target="/iso/a.iso"))
        domid = await ts.create(vm("win", virt="hvm"), Build(disks=drives), paused=True)
        await ts.unpause(domid)
        await ts.cd_insert(domid, "hdb", "/iso/d.qcow2", "qcow2")
        assert await xs.read(f"/local/domain/0/backend/qdisk/{domid}/832/params") == b"qcow2:/iso/d.qcow2"
        back = (await xs.read(f"/local/domain/{domid}/device/vbd/5632/backend")).decode()
        copy = f"/libxl/{domid}/device/vbd/5632"
        await ts.cd_insert(domid, "hdc", "/iso/b.iso", "raw")
        assert (await xs.read(f"{back}/params"), await xs.read(f"{copy}/params")) == (b"/iso/b.iso", b"/iso/b.iso")
        assert await xs.read(f"{back}/state") == b"4"  # the drive stays connected
        await ts.cd_eject(domid, "hdc")
        assert (await xs.read(f"{back}/params"), await xs.read(f"{copy}/params")) == (b"", b"")
        await ts.cd_insert(domid, "hdc", "/iso/c.iso", "raw")
        assert await xs.read(f"{back}/params") == b"/iso/c.iso"  # a phy drive: the path
        with pytest.raises(TerminalHostError, match="Virtual device not found"):
            await ts.cd_insert(domid, "hdd", "/iso/b.iso", "raw")
        pv = await ts.create(vm("web"), paused=False)
        with pytest.raises(TerminalHostError, match="cdrom-insert requires an HVM domain"):
            await ts.cd_insert(pv, "hdc", "/iso/b.iso", "raw")

    sim(body)
