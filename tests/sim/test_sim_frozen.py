"""The read-only view plan and observe use (`open_sim(..., read_only=True)`): it shows
what the running host shows, changes nothing on disk, moves nothing on, refuses writes,
and waits for a process that runs the host."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from drivers.sim import open_sim
from drivers.sim.host import SimHost
from drivers.xenstore import errors
from reconciler.errors import TerminalHostError
from reconciler.model.host import FirewallEntry
from reconciler.observe.host import observe_host

FAST = 0.02
BACKEND_STATE = "/local/domain/0/backend/vbd/1/51712/state"


def _files(state_dir: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(state_dir.glob("*.json"))}


def _build(state_dir: Path, vm: Any, disk: Any, *, paused: bool) -> None:
    async def body() -> None:
        async with open_sim(state_dir, delay_scale=FAST) as ports:
            domid = await ports.toolstack.create(vm(), paused=paused)
            await ports.toolstack.attach_disk(domid, disk())  # paused: the frontend waits
            await ports.pciback.assignable_add("0000:00:02.0")
            await ports.firewall.insert(FirewallEntry(dom_in=domid, dom_out=0))

    asyncio.run(body())


def test_read_only_view_observes_what_the_running_host_shows(state_dir: Path, vm: Any, disk: Any) -> None:
    _build(state_dir, vm, disk, paused=False)

    async def observe(read_only: bool) -> Any:
        async with open_sim(state_dir, read_only=read_only) as ports:
            return await observe_host(ports)

    frozen, running = asyncio.run(observe(True)), asyncio.run(observe(False))
    assert frozen == running
    assert [d.power for d in frozen.domains.values()] == ["running"]
    assert FirewallEntry(dom_in=1, dom_out=0) in frozen.firewall


def test_read_only_view_changes_nothing_and_moves_nothing_on(state_dir: Path, vm: Any, disk: Any) -> None:
    _build(state_dir, vm, disk, paused=True)  # the disk stays half-way while the guest is paused
    before = _files(state_dir)

    async def look() -> bytes:
        async with open_sim(state_dir, read_only=True) as ports:
            snapshot = await ports.xenstore.snapshot()
            assert await ports.xenstore.read(BACKEND_STATE) == snapshot[BACKEND_STATE]
            with pytest.raises(errors.ReadOnly, match="read-only"):
                await ports.xenstore.write("/local/domain/1/data/x", "1")
            with pytest.raises(TerminalHostError, match="open read-only"):
                await ports.toolstack.unpause(1)
            return snapshot[BACKEND_STATE]

    assert asyncio.run(look()) == b"2"  # initialising; a running host would not move it on either
    assert _files(state_dir) == before
    assert not (state_dir / "xenstored.sock").exists() and not (state_dir / "host.sock").exists()


def test_read_only_view_of_a_directory_never_used_is_an_empty_host(tmp_path: Path) -> None:
    async def look() -> Any:
        async with open_sim(tmp_path / "none", read_only=True) as ports:
            return await observe_host(ports), await ports.pciback.inventory()

    observed, inventory = asyncio.run(look())
    assert observed.domains == {} and any(d.bdf == "0000:00:02.0" for d in inventory)
    assert not (tmp_path / "none").exists()


def test_read_only_view_waits_for_the_process_that_runs_the_host(state_dir: Path) -> None:
    async def body() -> list[str]:
        host = await SimHost.open(state_dir, delay_scale=FAST)
        await host.rpc.stop()  # the owner is busy (starting, saving): its sockets do not answer yet
        await host.xenstored.stop()

        async def owner_finishes() -> None:
            await asyncio.sleep(0.2)
            host.save()
            os.close(host._lock_fd)

        finishing = asyncio.create_task(owner_finishes())
        async with open_sim(state_dir, read_only=True) as ports:
            names = [d.name for d in await ports.toolstack.list_domains()]
        await finishing
        return names

    assert asyncio.run(body()) == []
