"""Domain lifecycle on the simulated host: create, layout, events, power, memory, vCPUs,
shutdown with and without the guest's cooperation, destroy."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from drivers.sim.host import SimHost
from reconciler.errors import TerminalHostError, TransientHostError
from reconciler.model import default_vm_uuid
from reconciler.ports import HostPorts


def test_create_paused_and_running_allocate_domids_and_show_in_list(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        first = await ports.toolstack.create(vm("a"), paused=True)
        second = await ports.toolstack.create(vm("b", memory=1024, vcpus=2, maxVcpus=4), paused=False)
        assert (first, second) == (1, 2)
        listed = {(s.domid, s.name, s.power, s.memory_mib, s.vcpus) for s in await ports.toolstack.list_domains()}
        assert listed == {(1, "a", "paused", 512, 1), (2, "b", "running", 1024, 2)}
        await ports.toolstack.destroy(first)
        third = await ports.toolstack.create(vm("c"))
        assert third == 3  # Xen counts up; a freed domid is not reused at once
        with pytest.raises(TerminalHostError, match="already exists"):
            await ports.toolstack.create(vm("b"))

    sim(body)


def test_layout_of_a_created_domain(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> dict[str, bytes]:
        spec = vm("web1", virt="pv", memory=1024, maxMemory=2048, vcpus=2, maxVcpus=3, cmdline="ro quiet")
        assert await ports.toolstack.create(spec, paused=False) == 1  # the first domid after dom0
        await asyncio.sleep(0.01)  # xenconsoled fills the console tty asynchronously
        return await ports.xenstore.snapshot("/")

    tree = {k: v.decode() for k, v in sim(body).items()}
    uuid = default_vm_uuid("web1")
    dom = "/local/domain/1"
    expected = {
        f"{dom}/name": "web1", f"{dom}/vm": f"/vm/{uuid}", f"{dom}/domid": "1",
        f"{dom}/memory/static-max": "2097152", f"{dom}/memory/target": "1048576", f"{dom}/memory/videoram": "0",
        f"{dom}/cpu/0/availability": "online", f"{dom}/cpu/1/availability": "online",
        f"{dom}/cpu/2/availability": "offline", f"{dom}/control/shutdown": "",
        f"{dom}/console/type": "xenconsoled", f"{dom}/console/tty": "/dev/pts/0",
        f"{dom}/console/backend": "/local/domain/0/backend/console/1/0",
        f"/vm/{uuid}/name": "web1", f"/vm/{uuid}/uuid": uuid, f"/vm/{uuid}/image/ostype": "linux",
        f"/vm/{uuid}/image/kernel": "/boot/vmlinuz", f"/vm/{uuid}/image/cmdline": "ro quiet",
        "/libxl/1/type": "pv", "/libxl/1/dm-version": "qemu_xen",
        "/libxl/1/device/console/0/backend": "/local/domain/0/backend/console/1/0",
        "/local/domain/0/backend/console/1/0/state": "1", "/local/domain/0/name": "Domain-0",
    }
    assert {k: tree.get(k) for k in expected} == expected


def test_hvm_target_is_memory_minus_video_ram(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> dict[str, bytes]:
        await ports.toolstack.create(vm("win", virt="hvm", memory=16384))
        return await ports.xenstore.snapshot("/local/domain/1/memory")

    tree = sim(body)
    assert tree["/local/domain/1/memory/static-max"] == b"16777216"
    assert tree["/local/domain/1/memory/target"] == b"16760832"  # as the 2019 dump shows


def test_introduce_and_release_events_reach_a_client_watch(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> list[str]:
        intro = await ports.xenstore.watch("@introduceDomain")
        release = await ports.xenstore.watch("@releaseDomain")
        got = [(await intro.get(1)).path, (await release.get(1)).path]  # the registration events
        domid = await ports.toolstack.create(vm())
        got.append((await intro.get(1)).path)
        with pytest.raises(TimeoutError):
            await release.get(0.05)
        await ports.toolstack.destroy(domid)
        got.append((await release.get(1)).path)
        assert not await _exists(ports, "/local/domain/1")
        return got

    assert sim(body) == ["@introduceDomain", "@releaseDomain", "@introduceDomain", "@releaseDomain"]


async def _exists(ports: HostPorts, path: str) -> bool:
    parent, _, name = path.rpartition("/")
    return name in await ports.xenstore.directory(parent)


def test_destroy_removes_every_node_of_the_domain(sim: Any, vm: Any, disk: Any, nic: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> dict[str, bytes]:
        before = await ports.xenstore.snapshot("/")
        domid = await ports.toolstack.create(vm(), paused=False)
        await ports.toolstack.attach_disk(domid, disk())
        await ports.toolstack.attach_nic(domid, nic())
        await ports.toolstack.destroy(domid)
        assert await ports.toolstack.list_domains() == []
        after = await ports.xenstore.snapshot("/")
        assert set(after) - set(before) == {"/vm", "/libxl"} - set(before)
        return after

    tree = sim(body)
    assert not [p for p in tree if p.startswith(("/local/domain/1", "/libxl/1", "/vm/")) or "/backend/" in p]


def test_pause_unpause_mem_set_vcpu_set(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        ts = ports.toolstack
        domid = await ts.create(vm(memory=512, maxMemory=1024, vcpus=1, maxVcpus=4), paused=False)
        await ts.pause(domid)
        assert (await ts.list_domains())[0].power == "paused"
        await ts.unpause(domid)
        assert (await ts.list_domains())[0].power == "running"
        await ts.mem_set(domid, 768)
        assert await ports.xenstore.read("/local/domain/1/memory/target") == b"786432"
        with pytest.raises(TerminalHostError, match="static maximum"):
            await ts.mem_set(domid, 2048)
        await ts.vcpu_set(domid, 3)
        cpus = [await ports.xenstore.read(f"/local/domain/1/cpu/{i}/availability") for i in range(4)]
        assert cpus == [b"online", b"online", b"online", b"offline"]
        with pytest.raises(TerminalHostError, match="1..4"):
            await ts.vcpu_set(domid, 5)
        status = (await ts.list_domains())[0]
        assert (status.memory_mib, status.vcpus) == (768, 3)
        with pytest.raises(TerminalHostError, match="invalid domain"):
            await ts.pause(42)

    sim(body)


def test_graceful_shutdown_with_a_cooperative_guest(sim: Any, vm: Any, recorder: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> list[tuple[str, str | None]]:
        domid = await ports.toolstack.create(vm(), paused=False)
        seen = recorder(host, f"/local/domain/{domid}/control/shutdown")
        await ports.toolstack.shutdown(domid, timeout=5)
        assert await ports.toolstack.list_domains() == []
        return seen

    seen = sim(body)
    path = "/local/domain/1/control/shutdown"
    assert seen[:2] == [(path, "poweroff"), (path, "")]  # requested, then the guest acknowledged
    assert seen[-1] == (path, None)  # then the domain and its nodes went away


def test_shutdown_of_a_paused_guest_times_out_as_transient(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        domid = await ports.toolstack.create(vm(), paused=True)
        with pytest.raises(TransientHostError, match="did not shut down within 0.1 s"):
            await ports.toolstack.shutdown(domid, timeout=0.1)
        assert [s.power for s in await ports.toolstack.list_domains()] == ["paused"]
        await ports.toolstack.unpause(domid)  # the guest now sees the pending request
        await ports.toolstack.shutdown(domid, timeout=5)
        assert await ports.toolstack.list_domains() == []

    sim(body)


def test_a_shutdown_written_with_xenstore_is_obeyed_by_the_guest(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        domid = await ports.toolstack.create(vm(), paused=False)
        await ports.xenstore.write(f"/local/domain/{domid}/control/shutdown", "poweroff")
        for _ in range(200):
            if not await ports.toolstack.list_domains():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the guest ignored control/shutdown written through xenstore")

    sim(body)


def test_on_poweroff_preserve_leaves_the_domain_shut_down(sim: Any, vm: Any) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        domid = await ports.toolstack.create(vm(lifecycle={"onPoweroff": "preserve"}), paused=False)
        await ports.toolstack.shutdown(domid, timeout=5)
        assert [s.power for s in await ports.toolstack.list_domains()] == ["shutdown"]
        with pytest.raises(TerminalHostError, match="is shutdown"):
            await ports.toolstack.unpause(domid)
        await ports.toolstack.destroy(domid)
        assert await ports.toolstack.list_domains() == []

    sim(body)
