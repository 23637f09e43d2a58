"""Devices on the simulated host: disk/NIC/PCI attach and detach with the XenbusState
moves real backends make, PCI assignable add/remove, and the v4v firewall table."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.sim.host import SimHost
from reconciler.errors import TerminalHostError, UsageError
from reconciler.model.host import FirewallEntry
from reconciler.ports import HostPorts
from reconciler.model import default_vm_uuid
from reconciler.xenfmt import auto_mac, rate_to_xenstore

BE_VBD = "/local/domain/0/backend/vbd/1/51712"
FE_VBD = "/local/domain/1/device/vbd/51712"


def _values(seen: list[tuple[str, str | None]], path: str) -> list[str | None]:
    out: list[str | None] = []
    for p, v in seen:
        if p == path and (not out or out[-1] != v):
            out.append(v)
    return out


def test_disk_attach_goes_1_2_4_and_detach_5_6_then_gone(sim: Any, vm: Any, disk: Any, recorder: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> tuple[Any, dict[str, bytes], dict[str, bytes]]:
        domid = await ports.toolstack.create(vm(), paused=False)
        seen = recorder(host, "/local/domain")
        await ports.toolstack.attach_disk(domid, disk())
        attached = await ports.xenstore.snapshot("/")
        await ports.toolstack.detach_disk(domid, "xvda")
        return seen, attached, await ports.xenstore.snapshot("/")

    seen, attached, detached = sim(body)
    assert attached[f"{BE_VBD}/state"] == b"4" and attached[f"{BE_VBD}/hotplug-status"] == b"connected"
    assert attached[f"{FE_VBD}/state"] == b"4" and attached[f"{BE_VBD}/params"] == b"/srv/web1.img"
    assert attached[f"{FE_VBD}/backend"] == BE_VBD.encode()
    assert attached["/libxl/1/device/vbd/51712/state"] == b"1"  # the intent copy stays at 1
    assert _values(seen, f"{BE_VBD}/state") == ["1", "2", "4", "5", "6"]
    assert _values(seen, f"{FE_VBD}/state") == ["1", "3", "4", "5", "6"]
    assert (BE_VBD, None) in seen and (FE_VBD, None) in seen  # then both directories are removed
    assert not [p for p in detached if "vbd" in p]


def test_qcow2_disk_goes_to_qdisk_and_nic_keys_are_libxls(sim: Any, vm: Any, disk: Any, nic: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> dict[str, bytes]:
        domid = await ports.toolstack.create(vm(), paused=False)
        await ports.toolstack.attach_disk(domid, disk(vdev="xvdb", target="/srv/d.qcow2", format="qcow2"))
        with pytest.raises(TerminalHostError, match="disk xvdc: no suitable backend"):  # qdisk runs no script
            await ports.toolstack.attach_disk(domid, disk(vdev="xvdc", target="/srv/e.qcow2", format="qcow2",
                                                          script="block-iscsi"))
        await ports.toolstack.attach_nic(domid, nic(mac="auto", mtu=9000, rate="10Mb/s"))
        with pytest.raises(TerminalHostError, match="already attached"):
            await ports.toolstack.attach_nic(domid, nic())
        return await ports.xenstore.snapshot("/")

    tree = sim(body)
    qdisk = "/local/domain/0/backend/qdisk/1/51728"
    assert tree[f"{qdisk}/params"] == b"qcow2:/srv/d.qcow2" and tree[f"{qdisk}/state"] == b"4"
    vif = "/local/domain/0/backend/vif/1/0"
    assert tree[f"{vif}/mac"] == auto_mac(default_vm_uuid("web1"), 0).encode()
    assert (tree[f"{vif}/mtu"], tree[f"{vif}/rate"], tree[f"{vif}/bridge"]) == (b"9000", rate_to_xenstore("10Mb/s").encode(), b"xenbr0")
    assert tree[f"{vif}/state"] == b"4" and tree[f"{vif}/hotplug-status"] == b"connected"
    assert tree["/libxl/1/device/vif/0/backend"] == vif.encode()


def test_a_paused_guest_gets_hotplug_but_connects_only_once_unpaused(sim: Any, vm: Any, nic: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        domid = await ports.toolstack.create(vm(), paused=True)
        await ports.toolstack.attach_nic(domid, nic())
        vif = "/local/domain/0/backend/vif/1/0"
        assert await ports.xenstore.read(f"{vif}/hotplug-status") == b"connected"
        assert await ports.xenstore.read(f"{vif}/state") == b"2"  # no frontend runs yet
        await ports.toolstack.unpause(domid)
        await host.core.backends.settle(1.0)
        assert await ports.xenstore.read(f"{vif}/state") == b"4"

    sim(body)


def test_pci_assignable_and_attach_detach(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        ts, pci, xs = ports.toolstack, ports.pciback, ports.xenstore
        domid = await ts.create(vm("ndvm"), paused=False)
        host.core.domains.get(domid).passthrough = True  # as if built with a pci= (libxl turns passthrough on)
        with pytest.raises(TerminalHostError, match="not assignable"):
            await ts.attach_pci(domid, "0000:00:1f.6")
        await pci.assignable_add("00:1f.6")
        await pci.assignable_add("0000:02:00.0")
        drivers = {d.bdf: d.driver for d in await pci.inventory()}
        assert (drivers["0000:00:1f.6"], drivers["0000:02:00.0"], drivers["0000:00:02.0"]) == ("pciback", "pciback", "i915")
        assert await xs.read("/libxl/pci/0000-00-1f-6/driver_path") == b"/sys/bus/pci/drivers/e1000e"
        await ts.attach_pci(domid, "0000:00:1f.6", permissive=True, guest_slot=5)  # vdevfn 5 << 3 | function 6
        await ts.attach_pci(domid, "0000:02:00.0")
        be = "/local/domain/0/backend/pci/1/0"
        tree = await xs.snapshot(be)
        assert (tree[f"{be}/num_devs"], tree[f"{be}/dev-0"], tree[f"{be}/dev-1"]) == (b"2", b"0000:00:1f.6", b"0000:02:00.0")
        assert tree[f"{be}/opts-0"] == b"msitranslate=0,power_mgmt=0,permissive=1,rdm_policy=strict"
        assert tree[f"{be}/vdevfn-0"] == b"2e" and tree[f"{be}/state"] == b"4" and tree[f"{be}/domain"] == b"ndvm"
        assert await xs.read("/libxl/pci/0000-00-1f-6/domid") == b"1"
        with pytest.raises(TerminalHostError, match="assigned to domain 1"):
            await pci.assignable_remove("0000:00:1f.6")
        await ts.detach_pci(domid, "0000:00:1f.6")  # index 1 moves down to 0
        tree = await xs.snapshot(be)
        assert (tree[f"{be}/num_devs"], tree[f"{be}/dev-0"], f"{be}/dev-1" in tree) == (b"1", b"0000:02:00.0", False)
        await ts.detach_pci(domid, "0000:02:00.0")  # the last one: the backend goes
        assert "pci" not in await xs.directory("/local/domain/0/backend")
        await pci.assignable_remove("0000:00:1f.6", rebind=True)
        await pci.assignable_remove("0000:02:00.0", rebind=False)
        drivers = {d.bdf: d.driver for d in await pci.inventory()}
        assert (drivers["0000:00:1f.6"], drivers["0000:02:00.0"]) == ("e1000e", None)
        assert await xs.directory("/libxl/pci") == []  # no longer assignable: its node went
        with pytest.raises(TerminalHostError, match="no PCI device 0000:09:00.0"):
            await pci.assignable_add("0000:09:00.0")
        with pytest.raises(TerminalHostError, match="no PCI device 0000:09:00.0"):  # xl pci-attach refuses it too
            await ts.attach_pci(domid, "09:00.0")
        assert "pci" not in await xs.directory("/local/domain/0/backend")

    sim(body)


def test_a_guest_slot_holds_one_device(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        ts = ports.toolstack
        domid = await ts.create(vm("ndvm"), paused=False)
        host.core.domains.get(domid).passthrough = True  # as if built with a pci=
        for bdf in ("0000:00:1f.6", "0000:02:00.0"):
            await ports.pciback.assignable_add(bdf)
        await ts.attach_pci(domid, "0000:00:1f.6", guest_slot=5)
        with pytest.raises(TerminalHostError, match="guest slot 0x05 of domain 1 is taken"):
            await ts.attach_pci(domid, "0000:02:00.0", guest_slot=5)  # QEMU/pcifront refuse a used slot
        await ts.attach_pci(domid, "0000:02:00.0", guest_slot=6)

    sim(body)


def test_a_vif_has_an_interface_from_plug_to_unplug(sim: Any, vm: Any, nic: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> list[Any]:
        ts, netdev = ports.toolstack, ports.netdev
        domid = await ts.create(vm(), paused=False)
        await ts.attach_nic(domid, nic(mtu=9000))
        await ts.attach_nic(domid, nic(index=1, vifname="web-eth1"))
        fresh = await netdev.list()
        assert [(d.backend_domid, d.name, d.mtu, d.promiscuous) for d in fresh] == [
            (0, "vif1.0", 9000, False), (0, "web-eth1", 1500, False)]
        assert fresh[0].ethtool["tso"] == "on"
        await netdev.set(0, "vif1.0", mtu=1400, promiscuous=True, ethtool={"tso": "off"})
        with pytest.raises(TerminalHostError, match="mtu 12: expected 68..65535"):
            await netdev.set(0, "vif1.0", mtu=12, promiscuous=False)  # refused whole: promiscuous stays on
        with pytest.raises(TerminalHostError, match='Cannot find device "vif7.0"'):
            await netdev.set(0, "vif7.0", mtu=1400)
        await ts.detach_nic(domid, 1)
        await ts.attach_nic(domid, nic(index=1))  # replugged: a fresh interface
        return await netdev.list()

    after = sim(body)
    assert [(d.name, d.mtu, d.promiscuous, d.ethtool["tso"]) for d in after] == [
        ("vif1.0", 1400, True, "off"), ("vif1.1", 1500, False, "on")]

    async def kept(ports: HostPorts, host: SimHost) -> list[Any]:  # saved in host.json, then the domain goes
        seen = await ports.netdev.list()
        await ports.toolstack.destroy(1)
        return [seen, await ports.netdev.list()]

    seen, gone = sim(kept)
    assert [(d.name, d.mtu, d.promiscuous) for d in seen] == [("vif1.0", 1400, True), ("vif1.1", 1500, False)]
    assert gone == []


def test_destroy_frees_assigned_pci_devices(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        domid = await ports.toolstack.create(vm(), paused=False)
        host.core.domains.get(domid).passthrough = True  # as if built with a pci=
        await ports.pciback.assignable_add("0000:00:02.0")
        await ports.toolstack.attach_pci(domid, "0000:00:02.0")
        await ports.toolstack.destroy(domid)
        assert await ports.xenstore.directory("/libxl/pci/0000-00-02-0") == ["driver_path"]
        second = await ports.toolstack.create(vm("other"), paused=False)
        host.core.domains.get(second).passthrough = True
        await ports.toolstack.attach_pci(second, "0000:00:02.0")  # assignable again

    sim(body)


def test_pci_inventory_from_pci_yaml_and_its_errors(sim: Any, state_dir: Any) -> None:
    (state_dir / "pci.yaml").write_text(
        "devices:\n  - {bdf: '0000:05:00.0', class: 0x0200, vendor: 0x10ec, device: 0x8168, driver: r8169}\n"
    )

    async def body(ports: HostPorts, host: SimHost) -> list[Any]:
        return await ports.pciback.inventory()

    (only,) = sim(body)
    assert (only.bdf, only.pci_class, only.vendor, only.device, only.driver) == ("0000:05:00.0", "0x0200", "0x10ec", "0x8168", "r8169")
    (state_dir / "pci.yaml").write_text("devices:\n  - {bdf: 0000:05:00.0, class: 0x0200, vendor: 0x10ec, device: 1}\n")
    with pytest.raises(UsageError, match=r"devices\[0\]\.bdf: YAML read .* quote the address"):
        sim(body)


def test_firewall_starts_default_deny_and_inserts_and_deletes(sim: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> list[str]:
        fw = ports.firewall
        assert [str(e) for e in await fw.list()] == ["--dom-in 0 --dom-out 0 -j ACCEPT", "-j REJECT"]
        rule = FirewallEntry(dom_in=3, dom_out=0, port_out=5555)
        await fw.insert(rule)
        await fw.insert(FirewallEntry(dom_in=0, dom_out=3, port_in=5555), 2)
        await fw.insert(rule, 4)
        with pytest.raises(TerminalHostError, match="index 7 is out of range"):
            await fw.insert(rule, 7)
        await fw.delete(rule)  # the first equal entry goes
        await fw.delete(FirewallEntry(dom_in=0, dom_out=3, port_in=5555))
        with pytest.raises(TerminalHostError, match="no entry `--dom-in 9 -j ACCEPT`"):
            await fw.delete(FirewallEntry(dom_in=9))
        return [str(e) for e in await fw.list()]

    assert sim(body) == ["--dom-in 0 --dom-out 0 -j ACCEPT", "--dom-in 3 --dom-out 0 --port-out 5555 -j ACCEPT", "-j REJECT"]


def test_firewall_holds_any_list_as_viptables_does(sim: Any) -> None:
    """Copies, entries below the REJECT, no REJECT at all: the table's shape is not the
    simulated viptables' business, so drift in it can be made and seen."""
    async def body(ports: HostPorts, host: SimHost) -> list[str]:
        fw = ports.firewall
        await fw.delete(FirewallEntry(target="REJECT"))
        await fw.insert(FirewallEntry(), 1)
        await fw.insert(FirewallEntry(), 1)
        await fw.append(FirewallEntry(dom_in=7))
        return [str(e) for e in await fw.list()]

    assert sim(body) == ["-j ACCEPT", "-j ACCEPT", "--dom-in 0 --dom-out 0 -j ACCEPT", "--dom-in 7 -j ACCEPT"]


def test_firewall_batches_insert_on_top_in_order_and_delete_first_copies_or_nothing(sim: Any) -> None:
    """`insert_many` is `-I 1` of each entry in order (the last ends on top), one call;
    `delete_many` deletes the first copy of each, or, with one entry absent, nothing."""
    a, b, c = FirewallEntry(dom_in=1), FirewallEntry(dom_in=2), FirewallEntry(dom_in=3)

    async def body(ports: HostPorts, host: SimHost) -> list[list[str]]:
        fw, seen = ports.firewall, []
        await fw.insert_many([a, b, a])
        seen.append([str(e) for e in await fw.list()])
        with pytest.raises(TerminalHostError, match="no entry `--dom-in 3 -j ACCEPT`"):
            await fw.delete_many([a, c])
        with pytest.raises(TerminalHostError, match="no entry `--dom-in 2 -j ACCEPT`"):
            await fw.delete_many([b, b])  # one copy held, two asked
        await fw.delete_many([a, b])
        seen.append([str(e) for e in await fw.list()])
        return seen

    before, after = sim(body)
    assert before == ["--dom-in 1 -j ACCEPT", "--dom-in 2 -j ACCEPT", "--dom-in 1 -j ACCEPT",
                      "--dom-in 0 --dom-out 0 -j ACCEPT", "-j REJECT"]
    assert after == ["--dom-in 1 -j ACCEPT", "--dom-in 0 --dom-out 0 -j ACCEPT", "-j REJECT"]
