"""Persistence of the simulated host: two open_sim sessions see one host, devices left
half-way resume, corrupt state is refused, and one directory has one owner."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from drivers.sim import open_sim
from drivers.sim.host import DirectoryBusy, SimHost
from reconciler.errors import StateFileError
from reconciler.model.host import FirewallEntry

FAST = 0.02


def test_two_open_sim_sessions_see_one_host(state_dir: Path, vm: Any, disk: Any) -> None:
    async def first() -> int:
        async with open_sim(state_dir, delay_scale=FAST) as ports:
            assert ports.name == f"sim:{state_dir.resolve()}"
            domid = await ports.toolstack.create(vm(), paused=False)
            await ports.toolstack.attach_disk(domid, disk())
            await ports.pciback.assignable_add("0000:00:02.0")
            await ports.firewall.insert(FirewallEntry(dom_in=domid, dom_out=0))
            return domid

    async def second() -> tuple[Any, ...]:
        async with open_sim(state_dir, delay_scale=FAST) as ports:
            domains = await ports.toolstack.list_domains()
            state = await ports.xenstore.read("/local/domain/0/backend/vbd/1/51712/state")
            driver = {d.bdf: d.driver for d in await ports.pciback.inventory()}["0000:00:02.0"]
            table = [str(e) for e in await ports.firewall.list()]
            new = await ports.toolstack.create(vm("web2"))
            await ports.toolstack.shutdown(domains[0].domid, timeout=5)  # the guest runs again
            return [(d.name, d.power) for d in domains], state, driver, table[0], new

    domid = asyncio.run(first())
    assert (state_dir / "host.json").exists() and (state_dir / "xenstore.json").exists()
    assert not (state_dir / "host.sock").exists() and not (state_dir / "xenstored.sock").exists()
    assert asyncio.run(second()) == ([("web1", "running")], b"4", "pciback", "--dom-in 1 --dom-out 0 -j ACCEPT", domid + 1)


def test_a_device_left_half_way_resumes_on_restart(state_dir: Path, vm: Any, disk: Any) -> None:
    async def leave_half_way() -> None:
        host = await SimHost.open(state_dir, delay_scale=FAST)
        async with open_sim(state_dir) as ports:
            domid = await ports.toolstack.create(vm(), paused=True)
            await ports.toolstack.attach_disk(domid, disk())  # paused: waits only for hotplug
        await host.rpc.stop()
        await host.xenstored.stop()
        for job in list(host.core.backends.jobs.values()):  # "kill -9" the backends mid-way
            assert job.task is not None
            job.task.cancel()
        host.save()
        os.close(host._lock_fd)

    async def restart() -> tuple[bytes, bytes]:
        async with open_sim(state_dir, delay_scale=FAST) as ports:
            before = await ports.xenstore.read("/local/domain/0/backend/vbd/1/51712/state")
            await ports.toolstack.unpause(1)
            for _ in range(100):
                after = await ports.xenstore.read("/local/domain/0/backend/vbd/1/51712/state")
                if after == b"4":
                    break
                await asyncio.sleep(0.01)
            return before, after

    asyncio.run(leave_half_way())
    assert asyncio.run(restart()) == (b"2", b"4")


def test_corrupt_host_state_is_refused(state_dir: Path, sim: Any) -> None:
    (state_dir / "host.json").write_text('{"format": "something else"}')
    with pytest.raises(StateFileError, match="refusing a bad simulated host state"):
        sim(lambda ports, host: None)
    assert (state_dir / "host.json").read_text() == '{"format": "something else"}'  # never emptied


def test_one_owner_per_directory_and_clients_connect_to_it(state_dir: Path, vm: Any) -> None:
    async def body() -> None:
        host = await SimHost.open(state_dir, delay_scale=FAST)
        try:
            with pytest.raises(DirectoryBusy):
                await SimHost.open(state_dir)
            async with open_sim(state_dir) as ports:  # the socket answers: a client, not an owner
                await ports.toolstack.create(vm())
            assert [d.name for d in host.core.domains.statuses()] == ["web1"]
        finally:
            await host.close()

    asyncio.run(body())


def test_a_running_guest_writes_its_sentinel_after_the_host_is_reloaded(state_dir: Path, vm: Any) -> None:
    """The process embedding the host died between unpause and the guest's sentinel: the
    guest ran on (it is not the reconciler's), so the reloaded host sees it come up."""

    async def unpause_and_leave() -> int:
        host = await SimHost.open(state_dir, delay_scale=1.0)  # guest_boot_ms: 500 ms, far past the close
        async with open_sim(state_dir) as ports:
            domid = await ports.toolstack.create(vm(name="ndvm", bootSentinel="booted"), paused=False)
        await host.close()
        assert b"booted" not in (state_dir / "xenstore.json").read_bytes()  # saved before the guest came up
        return domid

    async def reload(domid: int) -> bytes | None:
        async with open_sim(state_dir, delay_scale=FAST) as ports:
            for _ in range(100):
                if "booted" in await ports.xenstore.directory(f"/local/domain/{domid}"):
                    return await ports.xenstore.read(f"/local/domain/{domid}/booted")
                await asyncio.sleep(0.01)
        return None

    domid = asyncio.run(unpause_and_leave())
    assert asyncio.run(reload(domid)) == b"1"


def test_passthrough_is_saved_and_old_state_loads_without_it() -> None:
    from drivers.sim.domains import Domain

    domain = Domain(3, "gpu", "u", "hvm", "paused", 1024, 1024, 0, 1, 1, passthrough=True)
    assert Domain.load(domain.dump()).passthrough is True
    old = {k: v for k, v in domain.dump().items() if k != "passthrough"}  # a host.json from before the field
    assert Domain.load(old).passthrough is False
