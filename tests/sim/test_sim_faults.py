"""Fault injection (DIR/faults.yaml): error rate, latency, hang, backends that never
connect, crashing domains, uncooperative guests, xenstore commits that answer EAGAIN;
deterministic with a seed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from drivers.sim.faults import Faults, parse_faults
from drivers.sim.host import SimHost
from drivers.xenstore import XenstoreClient
from drivers.xenstore import errors as xs_errors
from reconciler.errors import TransientHostError, UsageError
from reconciler.ports import HostPorts, XenstoreOps


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


def test_a_pci_attach_that_times_out_leaves_the_device_unassigned(sim: Any, vm: Any, state_dir: Path) -> None:
    # libxl unassigns a device whose attach failed; a left `/libxl/pci/<bdf>/domid` made
    # the retry (and any other domain) fail with "already assigned" for good.
    _faults(state_dir, "never_connect: {domains: [stuck]}\n")

    async def body(ports: HostPorts, host: SimHost) -> None:
        ts = ports.toolstack
        await ports.pciback.assignable_add("0000:02:00.0")
        stuck = await ts.create(vm("stuck"), paused=False)
        host.core.domains.get(stuck).passthrough = True  # as if built with a pci= (libxl turns passthrough on)
        with pytest.raises(TransientHostError, match="did not connect"):
            await ts.attach_pci(stuck, "0000:02:00.0")
        assert "0000-02-00-0" not in await ports.xenstore.directory("/libxl/pci") or \
            "domid" not in await ports.xenstore.directory("/libxl/pci/0000-02-00-0")
        other = await ts.create(vm("other"), paused=False)
        host.core.domains.get(other).passthrough = True
        await ts.attach_pci(other, "0000:02:00.0")  # free again
        assert await ports.xenstore.read("/libxl/pci/0000-02-00-0/domid") == str(other).encode()

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
        ("operations:\n  xenstore_transaction_end: {latency_ms: 5}\n", "only error_rate applies to a xenstore commit"),
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


def _commit_pattern(seed: int, rate: float, n: int) -> list[bool]:
    faults = Faults(parse_faults({"seed": seed, "operations": {"xenstore_transaction_end": {"error_rate": rate}}}, "t"))
    return [faults.decide("xenstore_transaction_end").fail for _ in range(n)]


def test_xenstore_commits_answer_eagain_from_the_seed_and_are_counted(sim: Any, state_dir: Path) -> None:
    """Over the real socket: a faulted commit answers EAGAIN and applies nothing, the
    transaction is gone; which commits fail follows the seed; `injected` counts them."""
    _faults(state_dir, "seed: 4\noperations:\n  xenstore_transaction_end: {error_rate: 0.5}\n")
    expected = _commit_pattern(4, 0.5, 16)
    assert 3 < sum(expected) < 13

    async def body(ports: HostPorts, host: SimHost) -> list[bool]:
        xs = ports.xenstore
        assert isinstance(xs, XenstoreClient)  # a served host: the wire protocol
        outcomes = []
        for i in range(16):
            tx = await xs.begin()
            await tx.write(f"/t/{i}", "x")
            try:
                await tx.commit()
                outcomes.append(False)
            except xs_errors.Again as exc:
                assert isinstance(exc, TransientHostError) and "EAGAIN" in str(exc)
                outcomes.append(True)
        assert sorted(await xs.directory("/t"), key=int) == [str(i) for i, failed in enumerate(outcomes) if not failed]
        assert host.core.faults.injected() == {"xenstore_transaction_end": sum(outcomes)}
        assert not any(c.transactions for c in host.xenstored.connections)
        await xs.write("/plain", "y")  # outside a transaction: never faulted (xen.md 1.4)
        return outcomes

    assert sim(body) == expected


def test_a_faulted_commit_redoes_the_whole_transaction_reading_afresh(sim: Any, state_dir: Path) -> None:
    _faults(state_dir, "seed: 4\noperations:\n  '*': {error_rate: 0.5}\n")  # '*' reaches xenstore commits
    expected = _commit_pattern(4, 0.5, 10)
    first_ok = expected.index(False)
    assert first_ok >= 1  # seed 4: the first commit conflicts

    async def body(ports: HostPorts, host: SimHost) -> None:
        await ports.xenstore.write("/counter", "0")
        reads: list[bytes] = []

        async def incr(tx: XenstoreOps) -> None:
            value = await tx.read("/counter")
            reads.append(value)
            await tx.write("/counter", str(int(value) + 1))

        await ports.xenstore.transaction(incr)
        assert len(reads) == first_ok + 1  # the body ran again after each EAGAIN, reading again
        assert await ports.xenstore.read("/counter") == b"1"  # and applied once

    sim(body)


def _xen_tool(state_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XENSTORED_PATH": str(state_dir / "xenstored.sock")}
    return subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("faults", ["", "seed: 1\noperations:\n  xenstore_transaction_end: {error_rate: 0.5}\n"])
def test_xens_own_tools_work_against_the_hosts_xenstored(sim: Any, state_dir: Path, faults: str) -> None:
    """xenstore-write/-rm run each command in a transaction and redo it on EAGAIN
    (tools/xenstore/xenstore_client.c), so they work with the commit faults too."""
    _faults(state_dir, faults)

    async def body(ports: HostPorts, host: SimHost) -> dict[str, int]:
        for i in range(8):
            done = await asyncio.to_thread(_xen_tool, state_dir, "xenstore-write", f"/tool/k{i}", f"v{i}")
            assert done.returncode == 0, done.stderr
        done = await asyncio.to_thread(_xen_tool, state_dir, "xenstore-rm", "/tool/k0")
        assert done.returncode == 0, done.stderr
        done = await asyncio.to_thread(_xen_tool, state_dir, "xenstore-ls", "-f", "/tool")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [f'/tool/k{i} = "v{i}"' for i in range(1, 8)]
        return host.core.faults.injected()

    injected = sim(body)
    assert (injected.get("xenstore_transaction_end", 0) > 0) == bool(faults)
