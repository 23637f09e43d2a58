"""Fault injection (DIR/faults.yaml): error rate, latency, hang, backends that never
connect, crashing domains, uncooperative guests; deterministic with a seed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from drivers.sim.faults import Faults, parse_faults
from drivers.sim.host import SimHost
from reconciler.errors import TransientHostError, UsageError
from reconciler.ports import HostPorts


def _faults(state_dir: Path, text: str) -> None:
    (state_dir / "faults.yaml").write_text(text)


def _pattern(seed: int) -> list[bool]:
    faults = Faults(parse_faults({"seed": seed, "operations": {"create": {"error_rate": 0.5}}}, "t"))
    return [faults.decide("create").fail for _ in range(32)]


def test_error_rate_is_deterministic_with_a_seed() -> None:
    assert _pattern(7) == _pattern(7)
    assert _pattern(7) != _pattern(8)
    assert 8 < sum(_pattern(7)) < 24  # about half fail


def test_error_rate_fails_calls_as_transient_and_changes_nothing(sim: Any, vm: Any, state_dir: Path) -> None:
    _faults(state_dir, "seed: 3\noperations:\n  create: {error_rate: 0.5}\n")
    expected = _pattern(3)[:10]

    async def body(ports: HostPorts, host: SimHost) -> list[bool]:
        outcomes = []
        for i in range(10):
            try:
                await ports.toolstack.create(vm(f"vm{i}"))
                outcomes.append(False)
            except TransientHostError as exc:
                assert "simulated transient error" in str(exc)
                outcomes.append(True)
        assert len(await ports.toolstack.list_domains()) == outcomes.count(False)
        return outcomes

    assert sim(body) == expected


def test_latency_and_hang(sim: Any, vm: Any, state_dir: Path) -> None:
    _faults(state_dir, "operations:\n  pause: {latency_ms: 5000}\n  unpause: {hang: true, hang_s: 0.2}\n")

    async def body(ports: HostPorts, host: SimHost) -> None:
        domid = await ports.toolstack.create(vm())
        start = time.monotonic()
        await ports.toolstack.pause(domid)  # 5000 ms scaled by 0.02 = 0.1 s
        assert time.monotonic() - start >= 0.09
        start = time.monotonic()
        with pytest.raises(TransientHostError, match="simulated hang"):
            await ports.toolstack.unpause(domid)
        assert time.monotonic() - start >= 0.19
        assert [s.power for s in await ports.toolstack.list_domains()] == ["paused"]

    sim(body)


def test_backend_that_never_connects_times_out_and_is_removed(sim: Any, vm: Any, disk: Any, nic: Any, state_dir: Path) -> None:
    _faults(state_dir, "never_connect: {kinds: [vif], domains: [stuck]}\n")

    async def body(ports: HostPorts, host: SimHost) -> None:
        domid = await ports.toolstack.create(vm(), paused=False)
        await ports.toolstack.attach_disk(domid, disk())  # vbd is not affected
        with pytest.raises(TransientHostError, match="did not connect within 0.2 s"):
            await ports.toolstack.attach_nic(domid, nic())
        assert "vif" not in await ports.xenstore.directory("/local/domain/0/backend")
        other = await ports.toolstack.create(vm("stuck"), paused=False)
        with pytest.raises(TransientHostError, match="stuck"):
            await ports.toolstack.attach_disk(other, disk("stuck"))

    sim(body)


def test_domain_crashes_after_unpause(sim: Any, vm: Any, state_dir: Path) -> None:
    _faults(state_dir, "crash_after_unpause: {domains: [flaky, keeper], after_ms: 100}\n")

    async def body(ports: HostPorts, host: SimHost) -> None:
        flaky = await ports.toolstack.create(vm("flaky"), paused=True)
        keeper = await ports.toolstack.create(vm("keeper", lifecycle={"onCrash": "preserve"}), paused=True)
        await ports.toolstack.unpause(flaky)
        await ports.toolstack.unpause(keeper)
        for _ in range(100):
            powers = {s.name: s.power for s in await ports.toolstack.list_domains()}
            if powers == {"keeper": "crashed"}:
                break
            await asyncio.sleep(0.01)
        assert powers == {"keeper": "crashed"}  # flaky was destroyed (onCrash: destroy)
        assert flaky not in [s.domid for s in await ports.toolstack.list_domains()]
        await ports.toolstack.destroy(keeper)

    sim(body)


def test_uncooperative_guest_makes_shutdown_time_out(sim: Any, vm: Any, state_dir: Path) -> None:
    _faults(state_dir, "uncooperative: [stubborn]\n")

    async def body(ports: HostPorts, host: SimHost) -> None:
        domid = await ports.toolstack.create(vm("stubborn"), paused=False)
        with pytest.raises(TransientHostError, match="did not acknowledge"):
            await ports.toolstack.shutdown(domid, timeout=0.2)
        assert await ports.xenstore.read(f"/local/domain/{domid}/control/shutdown") == b"poweroff"
        await ports.toolstack.destroy(domid)

    sim(body)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("operations:\n  frobnicate: {}\n", "unknown operation 'frobnicate'"),
        ("operations:\n  create: {error_rate: 2}\n", r"operations.create.error_rate: expected a probability in \[0, 1\]"),
        ("never_connect: {kinds: [usb]}\n", "unknown kind 'usb'"),
        ("seed: -1\n", "seed: expected a non-negative integer"),
        ("bogus: 1\n", "unknown key 'bogus'"),
        ("delay_scale: 0\n", "delay_scale: 0.0 is out of range"),
        ("a: [\n", "cannot read the fault plan"),
    ],
)
def test_bad_fault_plans_are_one_line_errors(sim: Any, state_dir: Path, text: str, message: str) -> None:
    _faults(state_dir, text)
    with pytest.raises(UsageError, match=message) as info:
        sim(lambda ports, host: None)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(state_dir / "faults.yaml"))


def test_a_guest_writes_its_boot_sentinel_unless_silent(sim: Any, vm: Any, state_dir: Path) -> None:
    _faults(state_dir, "silent: [mute]\n")

    async def children(ports: HostPorts, domid: int) -> list[str]:
        return await ports.xenstore.directory(f"/local/domain/{domid}")

    async def body(ports: HostPorts, host: SimHost) -> None:
        ndvm = await ports.toolstack.create(vm(name="ndvm", bootSentinel="booted"), paused=True)
        mute = await ports.toolstack.create(vm(name="mute", bootSentinel="booted"), paused=False)
        await asyncio.sleep(0.05)  # guest_boot_ms (500) at delay scale 0.02 is 10 ms
        assert "booted" not in await children(ports, ndvm)  # a paused guest boots nothing
        await ports.toolstack.unpause(ndvm)
        for _ in range(100):
            await asyncio.sleep(0.01)
            if "booted" in await children(ports, ndvm):
                break
        assert await ports.xenstore.read(f"/local/domain/{ndvm}/booted") == b"1"
        assert "booted" not in await children(ports, mute)  # silent: its services never come up

    sim(body)
