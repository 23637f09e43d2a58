"""The simulated host builds a domain with the devices of its cfg, as libxl does at
`xl create` (disks, NICs, one pci backend), through the real RPC and xenstored sockets,
and refuses what libxl refuses before the domain exists."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.sim.host import SimHost
from reconciler.errors import TerminalHostError, TransientHostError
from reconciler.model.host import Build, PciAssignment
from reconciler.ports import HostPorts

GPU, NIC_BDF = "0000:00:02.0", "0000:00:1f.6"


def test_create_builds_disks_nics_and_pci_before_returning(sim: Any, vm: Any, disk: Any, nic: Any) -> None:
    build = Build(disks=(disk(vm="win", vdev="hda", target="/srv/w.img"),
                         disk(vm="win", vdev="hdc", target="/srv/w.iso", devtype="cdrom")),
                  nics=(nic(vm="win", type="ioemu", model="e1000"),),
                  pci=(PciAssignment(GPU, msitranslate=True, guest_slot=5),))

    async def body(ports: HostPorts, host: SimHost) -> tuple[dict[str, bytes], Any]:
        await ports.pciback.assignable_add(GPU)
        domid = await ports.toolstack.create(vm("win", virt="hvm"), build, paused=True)
        tree = await ports.xenstore.snapshot("/")  # at once: create returned with the backends up
        listed = host.core.domains.get(domid)
        return tree, (domid, listed.power, listed.passthrough)

    tree, (domid, power, passthrough) = sim(body)
    assert (power, passthrough) == ("paused", True)
    be = f"/local/domain/0/backend/vbd/{domid}"
    assert tree[f"{be}/768/params"] == b"/srv/w.img" and tree[f"{be}/768/hotplug-status"] == b"connected"
    assert tree[f"{be}/5632/device-type"] == b"cdrom" and tree[f"{be}/5632/mode"] == b"r"
    assert tree[f"/local/domain/{domid}/device/vbd/768/backend"] == f"{be}/768".encode()
    vif = f"/local/domain/0/backend/vif/{domid}/0"
    assert tree[f"{vif}/type"] == b"vif_ioemu" and tree[f"{vif}/hotplug-status"] == b"connected"
    assert tree[f"{vif}/state"] == b"2"  # paused: hotplug done, no frontend yet (as after attach)
    pci = f"/local/domain/0/backend/pci/{domid}/0"
    assert (tree[f"{pci}/dev-0"], tree[f"{pci}/vdevfn-0"], tree[f"{pci}/num_devs"]) == (GPU.encode(), b"28", b"1")  # slot 5 << 3
    assert tree["/libxl/pci/0000-00-02-0/domid"] == str(domid).encode()


def test_an_unpaused_create_runs_the_guest_once_built_and_its_frontends_connect(sim: Any, vm: Any, disk: Any) -> None:
    # xl create without -p: the devices are added while the domain is still paused
    # (hotplug done), then it is unpaused and the guest's frontends connect.
    async def body(ports: HostPorts, host: SimHost) -> tuple[bytes, bytes]:
        domid = await ports.toolstack.create(vm(), Build(disks=(disk(),)), paused=False)
        back = f"/local/domain/0/backend/vbd/{domid}/51712"
        hotplug = await ports.xenstore.read(f"{back}/hotplug-status")
        await host.core.backends.settle(1.0)
        return hotplug, await ports.xenstore.read(f"{back}/state")

    assert sim(body) == (b"connected", b"4")


def test_bootloader_without_a_disk_is_refused_as_xl_does(sim: Any, vm: Any, disk: Any) -> None:
    pygrub = vm("mail", virt="pv", bootloader="pygrub", kernel=None)

    async def body(ports: HostPorts, host: SimHost) -> list[str]:
        with pytest.raises(TerminalHostError, match="cannot run bootloader with no boot disk"):
            await ports.toolstack.create(pygrub)
        left = [d.name for d in await ports.toolstack.list_domains()]
        await ports.toolstack.create(pygrub, Build(disks=(disk(vm="mail"),)))
        return left + [d.name for d in await ports.toolstack.list_domains()]

    assert sim(body) == ["mail"]  # nothing was left by the refused create


@pytest.mark.parametrize(("bdf", "prepare", "message"), [
    ("0000:09:00.0", False, "no PCI device 0000:09:00.0 on this host"),
    (NIC_BDF, False, "not assignable \\(driver e1000e\\)"),
    (GPU, True, "already assigned to domain 1"),
])
def test_unknown_or_unassignable_pci_is_refused_before_building(sim: Any, vm: Any, bdf: str, prepare: bool,
                                                                  message: str) -> None:
    async def body(ports: HostPorts, host: SimHost) -> list[str]:
        await ports.pciback.assignable_add(GPU)
        if prepare:
            await ports.toolstack.create(vm("first"), Build(pci=(PciAssignment(GPU),)))
        with pytest.raises(TerminalHostError, match=message):
            await ports.toolstack.create(vm("second"), Build(pci=(PciAssignment(bdf),)))
        return [d.name for d in await ports.toolstack.list_domains()]

    assert "second" not in sim(body)


def test_a_backend_that_never_connects_fails_the_create_and_leaves_no_domain(sim: Any, vm: Any, nic: Any,
                                                                             state_dir: Any) -> None:
    (state_dir / "faults.yaml").write_text("never_connect: {kinds: [vif], domains: [stuck]}\n")

    async def body(ports: HostPorts, host: SimHost) -> tuple[list[str], list[str]]:
        with pytest.raises(TransientHostError, match="create of stuck: a device's backend did not connect"):
            await ports.toolstack.create(vm("stuck"), Build(nics=(nic(vm="stuck"),)))
        return [d.name for d in await ports.toolstack.list_domains()], await ports.xenstore.directory("/local/domain")

    assert sim(body) == ([], ["0"])  # as xl destroys a domain whose create failed
