"""The agent's live observer (issue 12, "cheap when idle, proportional when busy"):
what it returns equals a full `observe_host` once the watch events of a change have
arrived; an idle host costs no xenstore request; a one-VM change costs the same number
of requests at 10 and at 40 domains.

Real: the simulated host, embedded (DirectXenstore) and served by `reconciler sim serve`
in a process of its own (the wire client on its socket); changes made through the
toolstack (`reconciler sim destroy|create` processes, or the toolstack port) and by other
xenstore clients (Xen's own `xenstore-write`/`xenstore-rm`, or a second in-process
client of the store). Faked: nothing. Waiting is for the host to settle (backends and
guests move on after a command returns), never a timed assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.sim import open_sim
from drivers.sim.direct import DirectXenstore
from drivers.sim.host import SimHost
from drivers.xenstore.errors import NoEntry
from reconciler.agent.observer import LiveObserver
from reconciler.model import NIC, VM, Disk
from reconciler.observe import observed_to_data
from reconciler.observe.host import observe_host
from reconciler.ports import HostPorts
from reconciler.retry import RetryPolicy

REPO = Path(__file__).resolve().parents[2]
ENV = {"RECONCILER_SIM_DELAY_SCALE": "0.02", "RECONCILER_RETRY_BACKOFF_S": "0", "PYTHONUNBUFFERED": "1"}
RETRY = RetryPolicy(initial_backoff_s=0)


def _vm(name: str, memory: int = 128) -> VM:
    return VM.model_validate({"metadata": {"name": name},
                              "spec": {"virt": "pv", "kernel": "/boot/vmlinuz", "memory": memory, "maxMemory": 512}})


async def add_vm(ports: HostPorts, name: str) -> int:
    """A running domain with a disk and a NIC, as `xl create` of a small config."""
    domid = await ports.toolstack.create(_vm(name), paused=True)
    await ports.toolstack.attach_disk(domid, Disk.model_validate(
        {"metadata": {"name": f"{name}-xvda"}, "spec": {"vm": name, "vdev": "xvda", "target": f"/srv/{name}.img"}}))
    await ports.toolstack.attach_nic(domid, NIC.model_validate(
        {"metadata": {"name": f"{name}-nic0"}, "spec": {"vm": name, "bridge": "xenbr0"}}))
    await ports.toolstack.unpause(domid)
    return domid


async def build(state: Path, count: int) -> None:
    """`count` running VMs saved in `state` (the host closed again)."""
    host = await SimHost.open(state, delay_scale=0.05)  # building: backend timeouts not too tight under load
    try:
        async with open_sim(state) as ports:
            for start in range(0, count, 10):
                await asyncio.gather(*(add_vm(ports, f"vm{i:03d}") for i in range(start, min(start + 10, count))))
    finally:
        await host.close()


async def settled(ports: HostPorts) -> dict[str, Any]:
    """Wait until the host stops moving (backends connecting, guests booting): two full
    observations a moment apart agree. Returns the last one."""
    last = observed_to_data(await observe_host(ports, RETRY))
    for _ in range(200):
        await asyncio.sleep(0.05)
        now = observed_to_data(await observe_host(ports, RETRY))
        if now == last:
            return now
        last = now
    raise AssertionError("the simulated host never settled")


async def delivered(ports: HostPorts) -> None:
    """Let watch events already sent reach the observer: a round trip on the same
    connection (xenstored queues a change's events before the writer's reply, and
    ours after them), then a few turns of the loop for the observer's tasks."""
    await ports.xenstore.get_domain_path(0)
    for _ in range(10):
        await asyncio.sleep(0)


async def check_equal(ports: HostPorts, observer: LiveObserver) -> None:
    expected = await settled(ports)
    await delivered(ports)
    got = observed_to_data(await observer.observe())
    assert got == expected


@pytest.fixture
def state() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="obs-"))  # short: Unix socket paths
    yield path
    shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def watching(ports: HostPorts) -> AsyncIterator[LiveObserver]:
    observer = LiveObserver(ports, RETRY)
    try:
        await observer.start()
        yield observer
    finally:
        await observer.close()


def _domids(data: dict[str, Any]) -> dict[str, int]:
    return {name: int(d["domid"]) for name, d in data["domains"].items()}


# ---- embedded host: random changes, hypothesis picks them -------------------------------

Change = Callable[[HostPorts, DirectXenstore, dict[str, Any]], Awaitable[None]]


def _pick(data: dict[str, Any], seed: int) -> tuple[str, int, str | None]:
    names = sorted(_domids(data))
    name = names[seed % len(names)]
    return name, _domids(data)[name], data["domains"][name].get("uuid")


async def _destroy(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    if len(data["domains"]) > 1:
        await ports.toolstack.destroy(_pick(data, seed)[1])


async def _create(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    if f"new{seed}" not in data["domains"]:
        await add_vm(ports, f"new{seed}")


async def _mem_set(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    await ports.toolstack.mem_set(_pick(data, seed)[1], 64 + seed % 5 * 32)


async def _detach_disk(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    name, domid, _ = _pick(data, seed)
    if f"{name}-disk-51712" in data["disks"]:
        await ports.toolstack.detach_disk(domid, "xvda")


async def _pause(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    await ports.toolstack.pause(_pick(data, seed)[1])


async def _write_target(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    await other.write(f"/local/domain/{_pick(data, seed)[1]}/memory/target", str(1024 * (100 + seed)))


async def _rm_vif(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    with contextlib.suppress(NoEntry):
        await other.rm(f"/local/domain/0/backend/vif/{_pick(data, seed)[1]}")


async def _vm_data(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    await other.write(f"/local/domain/{_pick(data, seed)[1]}/vm-data/k{seed % 3}/v", "x")


async def _managed(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    uuid = _pick(data, seed)[2]
    if uuid:
        await other.write(f"/vm/{uuid}/reconciler/managed", "1")


async def _libxl_type(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    await other.write(f"/libxl/{_pick(data, seed)[1]}/type", "hvm" if seed % 2 else "pv")


async def _building(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    name, _, uuid = _pick(data, seed)
    if uuid:
        await other.write(f"/reconciler/building/{uuid}", name)


async def _guest_noise(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    await other.write(f"/local/domain/{_pick(data, seed)[1]}/data/updated", str(seed))


async def _rm_domain_node(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    with contextlib.suppress(NoEntry):
        await other.rm(f"/local/domain/{_pick(data, seed)[1]}/name")


async def _rm_domain_tree(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    # `xenstore-rm /local/domain/<domid>`: the hypervisor still lists the domain.
    with contextlib.suppress(NoEntry):
        await other.rm(f"/local/domain/{_pick(data, seed)[1]}")


async def _frontend_error(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    await other.write(f"/local/domain/{_pick(data, seed)[1]}/error/device/vbd/51712/error", "bad sector")


async def _hvmloader(ports: HostPorts, other: DirectXenstore, data: dict[str, Any], seed: int) -> None:
    domid = _pick(data, seed)[1]
    with contextlib.suppress(NoEntry):
        await other.rm(f"/libxl/{domid}/type")
    await other.write(f"/local/domain/{domid}/hvmloader/bios", "seabios")


CHANGES = [_frontend_error, _hvmloader, _destroy, _create, _mem_set, _detach_disk, _pause, _write_target, _rm_vif, _vm_data, _managed,
           _libxl_type, _building, _guest_noise, _rm_domain_node, _rm_domain_tree]


@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(CHANGES), st.integers(0, 1000)), min_size=1, max_size=6))
def test_embedded_observer_equals_a_full_observation_after_random_changes(
        state: Path, steps: list[tuple[Any, int]]) -> None:
    if not (state / "xenstore.json").exists():
        asyncio.run(build(state, 6))

    async def body() -> None:
        async with open_sim(state, delay_scale=0.02) as ports:
            assert isinstance(ports.xenstore, DirectXenstore)
            other = DirectXenstore(ports.xenstore._store)  # another client of the same xenstored
            async with watching(ports) as observer:
                for change, seed in steps:
                    await change(ports, other, await settled(ports), seed)
                    await check_equal(ports, observer)
                await check_equal(ports, observer)

    asyncio.run(body())


def test_embedded_observer_sees_a_listed_domain_whose_tree_was_removed(state: Path) -> None:
    """`xenstore-rm /local/domain/<domid>`, then `/vm/<uuid>` too: the domain the
    hypervisor still lists is reported (`xenstore_gone`) by both, equally."""
    asyncio.run(build(state, 3))

    async def body() -> None:
        async with open_sim(state, delay_scale=0.02) as ports:
            assert isinstance(ports.xenstore, DirectXenstore)
            other = DirectXenstore(ports.xenstore._store)
            async with watching(ports) as observer:
                name, domid, uuid = _pick(await settled(ports), 1)
                await other.write(f"/vm/{uuid}/reconciler/managed", "1")
                await check_equal(ports, observer)
                await other.rm(f"/local/domain/{domid}")
                await check_equal(ports, observer)
                seen = await settled(ports)
                assert seen["domains"][name]["xenstore_gone"] is True and seen["domains"][name]["managed"] is True
                await other.rm(f"/vm/{uuid}")
                await check_equal(ports, observer)
                assert (await settled(ports))["domains"][name]["managed"] is False

    asyncio.run(body())


# ---- served host: Xen's own tools and `reconciler sim` in processes of their own -----------


def _serve(state: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "sim", "serve", "--state", str(state)],
                            cwd=REPO, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    assert lines[-1].startswith("export XENSTORED_PATH="), lines
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def _run(state: Path, *argv: str) -> None:
    env = {**os.environ, **ENV, "XENSTORED_PATH": str(state / "xenstored.sock")}
    done = subprocess.run(list(argv), cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{argv}: {done.stderr}"


def _sim(state: Path, *argv: str) -> None:
    _run(state, sys.executable, "-m", "reconciler", "sim", *argv, "--state", str(state))


def test_served_observer_equals_a_full_observation_after_random_changes(state: Path) -> None:
    asyncio.run(build(state, 5))
    proc = _serve(state)
    rng = random.Random(12)
    try:
        async def body() -> None:
            async with open_sim(state) as ports:
                assert not isinstance(ports.xenstore, DirectXenstore)  # the wire client
                async with watching(ports) as observer:
                    for step in range(10):
                        data = await settled(ports)
                        domids = _domids(data)
                        name = rng.choice(sorted(domids))
                        base = f"/local/domain/{domids[name]}"
                        what = rng.choice(["destroy", "create", "target", "rm-vbd", "vm-data", "noise", "rm-libxl"])
                        if what == "destroy" and len(domids) > 1:
                            await asyncio.to_thread(_sim, state, "destroy", name)
                        elif what == "create":
                            await asyncio.to_thread(_sim, state, "create", f"made{step}", "--virt", "pv",
                                                    "--memory", "128", "--kernel", "/boot/vmlinuz",
                                                    "--disk", f"/srv/made{step}.img,xvda", "--nic", "xenbr0")
                        elif what == "target":
                            await asyncio.to_thread(_run, state, "xenstore-write", f"{base}/memory/target", "99999")
                        elif what == "rm-vbd":
                            await asyncio.to_thread(_run, state, "xenstore-rm", f"/local/domain/0/backend/vbd/{domids[name]}")
                        elif what == "vm-data":
                            await asyncio.to_thread(_run, state, "xenstore-write", f"{base}/vm-data/x", str(step))
                        elif what == "noise":
                            await asyncio.to_thread(_run, state, "xenstore-write", f"{base}/data/x", str(step))
                        else:
                            await asyncio.to_thread(_run, state, "xenstore-rm", f"/libxl/{domids[name]}")
                        await check_equal(ports, observer)

        asyncio.run(body())
    finally:
        _stop(proc)


# ---- cost: nothing when idle, the same per one-VM change at any size ----------------------


def test_idle_host_costs_no_request_and_guest_writes_are_no_change(state: Path) -> None:
    """A guest writing its own `data/` over and over (what real guests' agents do) is
    filtered by path: no request, no pass."""
    asyncio.run(build(state, 4))

    async def body() -> None:
        async with open_sim(state, delay_scale=0.02) as ports:
            assert isinstance(ports.xenstore, DirectXenstore)
            guest = DirectXenstore(ports.xenstore._store)
            data = await settled(ports)
            async with watching(ports) as observer:
                await delivered(ports)
                observer.changed.clear()
                before = observer.xenstore_requests()
                for i in range(50):
                    for domid in _domids(data).values():
                        await guest.write(f"/local/domain/{domid}/data/meminfo_free", str(i))
                        await guest.write(f"/local/domain/{domid}/attr/os/uptime", str(i))
                    await asyncio.sleep(0.01)
                for _ in range(10):
                    await asyncio.sleep(0)
                assert not observer.changed.is_set()
                # the guest's writes went through a client of its own: the observer's port sent nothing
                assert observer.xenstore_requests() == before
                # and an observation with nothing named re-reads no xenstore node
                assert observed_to_data(await observer.observe()) == await settled(ports)

    asyncio.run(body())


def test_served_idle_costs_no_request(state: Path) -> None:
    asyncio.run(build(state, 3))
    proc = _serve(state)
    try:
        async def body() -> None:
            async with open_sim(state) as ports:
                data = await settled(ports)
                async with watching(ports) as observer:
                    await delivered(ports)
                    observer.changed.clear()
                    before = observer.xenstore_requests()
                    for domid in _domids(data).values():
                        await asyncio.to_thread(_run, state, "xenstore-write", f"/local/domain/{domid}/data/x", "1")
                    await asyncio.sleep(0.5)
                    assert observer.xenstore_requests() == before
                    assert not observer.changed.is_set()

        asyncio.run(body())
    finally:
        _stop(proc)


async def _one_vm_costs(state: Path) -> dict[str, int]:
    """Requests of the observe() after each of a few one-VM changes, and of a resync."""
    costs: dict[str, int] = {}
    async with open_sim(state, delay_scale=0.02) as ports:
        data = await settled(ports)
        domid = _domids(data)["vm001"]
        async with watching(ports) as observer:
            before = observer.xenstore_requests()
            await observer.observe(full=True)
            costs["resync"] = observer.xenstore_requests() - before
            changes: dict[str, Callable[[], Awaitable[None]]] = {
                "mem-set": lambda: ports.toolstack.mem_set(domid, 96),
                "block-detach": lambda: ports.toolstack.detach_disk(domid, "xvda"),
                "destroy": lambda: ports.toolstack.destroy(domid),
                "create": lambda: add_vm(ports, "fresh"),
            }
            for what, change in changes.items():
                await change()
                await settled(ports)
                await delivered(ports)
                assert observer.changed.is_set(), what
                before = observer.xenstore_requests()
                got = observed_to_data(await observer.observe())
                costs[what] = observer.xenstore_requests() - before
                assert got == await settled(ports), what
    return costs


def test_one_vm_change_costs_the_same_at_10_and_40_domains(state: Path) -> None:
    small, big = state / "small", state / "big"
    small.mkdir()
    big.mkdir()
    asyncio.run(build(small, 10))
    asyncio.run(build(big, 40))
    at_10 = asyncio.run(_one_vm_costs(small))
    at_40 = asyncio.run(_one_vm_costs(big))
    resync_10, resync_40 = at_10.pop("resync"), at_40.pop("resync")
    assert resync_40 > 3 * resync_10  # a full walk grows with the host...
    assert at_10 == at_40  # ...a one-VM change does not
    assert all(0 < n < resync_10 / 5 for n in at_10.values()), (at_10, resync_10)


def test_boot_sentinel_under_a_guest_written_child_is_followed(state: Path) -> None:
    """A managed domain's record may name its boot sentinel under `data/`, which the
    observer otherwise ignores: once the record names it, its writes count, whether
    they come after the observation that read the record or before it."""
    asyncio.run(build(state, 2))
    record = json.dumps({"vm": {"bootSentinel": "data/booted"}})

    async def body() -> None:
        async with open_sim(state, delay_scale=0.02) as ports:
            assert isinstance(ports.xenstore, DirectXenstore)
            other = DirectXenstore(ports.xenstore._store)
            data = await settled(ports)
            async with watching(ports) as observer:
                for name, order in (("vm000", "record, observe, sentinel"), ("vm001", "record, sentinel, observe")):
                    domid, uuid = _domids(data)[name], data["domains"][name]["uuid"]
                    await other.write(f"/vm/{uuid}/reconciler/managed", "1")
                    await other.write(f"/vm/{uuid}/reconciler/applied", record)
                    if order.startswith("record, observe"):
                        await check_equal(ports, observer)
                        assert observed_to_data(await observer.observe())["domains"][name]["booted"] is False
                    await other.write(f"/local/domain/{domid}/data/booted", "1")
                    await delivered(ports)
                    assert observer.changed.is_set(), order
                    await check_equal(ports, observer)
                    assert observed_to_data(await observer.observe())["domains"][name]["booted"] is True, order

    asyncio.run(body())


def test_request_counters_count_what_a_wire_client_sends(state: Path) -> None:
    """The embedded port counts as the served one does: a snapshot of N nodes is 2N."""
    asyncio.run(build(state, 2))
    proc = _serve(state)
    try:
        async def counts() -> dict[str, int]:
            async with open_sim(state) as ports:
                xs: Any = ports.xenstore
                out = {}
                for what, call in (("write", lambda: xs.write("/local/domain/1/data/x", "1")),
                                   ("snapshot", lambda: xs.snapshot("/local/domain/1")),
                                   ("read", lambda: xs.read("/local/domain/1/name")),
                                   ("directory", lambda: xs.directory("/local/domain"))):
                    before = xs.requests
                    result = await call()
                    out[what] = xs.requests - before
                    if what == "snapshot":
                        out["nodes"] = len(result)
                return out

        served = asyncio.run(counts())
    finally:
        _stop(proc)

    async def embedded() -> dict[str, int]:
        async with open_sim(state, delay_scale=0.02) as ports:
            xs: Any = ports.xenstore
            assert isinstance(xs, DirectXenstore)
            out = {}
            for what, call in (("write", lambda: xs.write("/local/domain/1/data/x", "1")),
                               ("snapshot", lambda: xs.snapshot("/local/domain/1")),
                               ("read", lambda: xs.read("/local/domain/1/name")),
                               ("directory", lambda: xs.directory("/local/domain"))):
                before = xs.requests
                result = await call()
                out[what] = xs.requests - before
                if what == "snapshot":
                    out["nodes"] = len(result)
            return out

    assert served == asyncio.run(embedded())
    assert served["snapshot"] == 2 * served["nodes"]
    assert (served["read"], served["directory"], served["write"]) == (1, 1, 1)


class _Current:
    """Forwards to the port it currently holds: the simulated host's RPC client does not
    reconnect after a restart of `sim serve` (the xenstore client does), so the
    non-xenstore ports are opened again and swapped in here."""

    def __init__(self, port: Any) -> None:
        self.port = port

    def __getattr__(self, name: str) -> Any:
        return getattr(self.port, name)


def test_a_restarted_xenstored_makes_the_next_observation_read_everything(state: Path) -> None:
    """Changes made while the daemon was down sent no event: the client re-registers
    its watches once back, each fires again, and that alone says "re-read all"."""
    asyncio.run(build(state, 3))
    proc = _serve(state)
    try:
        async def body() -> None:
            nonlocal proc
            async with open_sim(state) as first:
                others = {k: _Current(getattr(first, k)) for k in ("toolstack", "pciback", "firewall", "netdev")}
                ports = HostPorts(first.name, first.xenstore, **others)
                async with watching(ports) as observer:
                    data = await settled(ports)
                    await delivered(ports)
                    observer.changed.clear()
                    _stop(proc)
                    gone = sorted(_domids(data))[0]
                    await asyncio.to_thread(_sim, state, "destroy", gone)  # on the embedded host meanwhile
                    proc = await asyncio.to_thread(_serve, state)
                    async with open_sim(state) as again:
                        for key, port in others.items():
                            port.port = getattr(again, key)
                        await delivered(ports)  # reconnects: the watches are registered again
                        await delivered(ports)
                        assert observer.changed.is_set()
                        before = observer.xenstore_requests()
                        got = observed_to_data(await observer.observe())
                        assert observer.xenstore_requests() - before > 100  # a whole walk
                        assert gone not in got["domains"]
                        assert got == await settled(ports)

        asyncio.run(body())
    finally:
        _stop(proc)
