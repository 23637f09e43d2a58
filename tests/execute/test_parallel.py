"""What lets `execute` run many VMs' steps at once without extra host reads: one PCI
inventory read per run and binds that overlap (never one device bound twice), domain
lookups that do not list every domain per step, a listing read while a domain is being
built that still shows it once built, and the scheduler's stop, cancel and start order.

Real: the simulated host served on its sockets (conftest), with a latency on every
toolstack/PCI/firewall call (faults.yaml) so calls of concurrent steps overlap. Ports
are wrapped only to count calls or to hold one answer back until a step has ended."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.execute import ExecuteSettings, execute
from reconciler.execute.devices import pci_assignable_add
from reconciler.execute.run import run_step
from reconciler.execute.runtime import Runtime
from reconciler.model.host import DomainStatus
from reconciler.plan.steps import Step
from reconciler.ports import HostPorts

from tests.execute.test_execute import plan_for, vm

SETTINGS = ExecuteSettings(parallelism=4, initial_backoff_s=0, shutdown_timeout_s=1, sentinel_timeout_s=2)
LATENCY = "operations:\n  '*': {latency_ms: 400}\n"  # 8 ms per call at the tests' delay scale


def bdf(i: int) -> str:
    return f"0000:{i + 1:02x}:00.0"


def inventory(n: int) -> str:
    rows = "".join(f"  - {{bdf: '{bdf(i)}', class: 0x0200, vendor: 0x8086, device: 0x10d3, driver: e1000e}}\n"
                   for i in range(n))
    return "devices:\n" + rows


class Calls:
    """A port counting its calls by method name, and the most calls of one method at once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.count: dict[str, int] = {}
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.count[name] = self.count.get(name, 0) + 1
            self.now[name] = self.now.get(name, 0) + 1
            self.peak[name] = max(self.peak.get(name, 0), self.now[name])
            try:
                return await method(*args, **kwargs)
            finally:
                self.now[name] -= 1

        return call


def counted(ports: HostPorts) -> tuple[HostPorts, Calls, Calls]:
    toolstack, pciback = Calls(ports.toolstack), Calls(ports.pciback)
    return HostPorts(ports.name, ports.xenstore, toolstack, pciback, ports.firewall), toolstack, pciback  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [2, 5])
def test_pci_inventory_is_read_once_per_run_and_binds_overlap(
        n: int, served: Callable[..., Any], state_dir: Path, write_manifest: Callable[[str, str], Path]) -> None:
    (state_dir / "pci.yaml").write_text(inventory(n))
    (state_dir / "faults.yaml").write_text(LATENCY)
    for i in range(n):
        folder = write_manifest(f"v{i}.yaml", vm(f"v{i}", f"  pci: [{{bdf: '{bdf(i)}'}}]\n"))
    host = served()

    async def body(ports: HostPorts) -> tuple[bool, Calls, list[str | None]]:
        wrapped, _, pciback = counted(ports)
        report = await execute(await plan_for(ports, folder), wrapped, settings=SETTINGS)
        return report.ok, pciback, [d.driver for d in await ports.pciback.inventory()]

    ok, pciback, drivers = host.run(body)
    assert ok and drivers == ["pciback"] * n
    assert pciback.count["inventory"] == 1  # not one per VM
    assert pciback.count["assignable_add"] == n
    assert pciback.peak["assignable_add"] > 1  # no lock held across the bind: other VMs' binds ran meanwhile


def test_two_steps_binding_one_device_bind_it_once(served: Callable[..., Any], state_dir: Path,
                                                    write_manifest: Callable[[str, str], Path]) -> None:
    (state_dir / "pci.yaml").write_text(inventory(2))
    (state_dir / "faults.yaml").write_text(LATENCY)
    folder = write_manifest("a.yaml", vm("a"))
    host = served()
    steps = [Step(f"PCIPassthrough/{name}:pci-assignable-add", "pci-assignable-add", "PCIPassthrough", name, "a",
                  (("devices", [bdf(0), bdf(1)] if name == "both" else [bdf(0)]),)) for name in ("one", "both", "again")]

    async def body(ports: HostPorts) -> tuple[list[str | None], Calls, list[str | None]]:
        wrapped, _, pciback = counted(ports)
        rt = Runtime(wrapped, (await plan_for(ports, folder)).desired, SETTINGS)
        notes = await asyncio.gather(*(pci_assignable_add(rt, step, False) for step in steps))
        return list(notes), pciback, [d.driver for d in await ports.pciback.inventory()]

    notes, pciback, drivers = host.run(body)
    assert drivers == ["pciback", "pciback"]
    assert pciback.count["assignable_add"] == 2  # bdf(0) once, though three steps name it
    assert notes == [None, None, "already on pciback"]  # `both` waited for `one`'s bind, then bound bdf(1)


@pytest.mark.parametrize("n", [2, 5])
def test_removing_vms_does_not_list_domains_per_step(
        n: int, served: Callable[..., Any], state_dir: Path, write_manifest: Callable[[str, str], Path]) -> None:
    (state_dir / "faults.yaml").write_text(LATENCY)
    for i in range(n):
        folder = write_manifest(f"v{i}.yaml", vm(f"v{i}", "  nics: [{bridge: xenbr0}]\n"))
    host = served()

    async def body(ports: HostPorts) -> tuple[bool, int, Calls, list[DomainStatus]]:
        first = await execute(await plan_for(ports, folder), ports, settings=SETTINGS)
        for i in range(n):
            (folder / f"v{i}.yaml").unlink()
        (folder / "keep.yaml").write_text(vm("keep"))
        plan = await plan_for(ports, folder)
        wrapped, toolstack, _ = counted(ports)
        report = await execute(plan, wrapped, settings=SETTINGS)
        return first.ok and report.ok, len(plan.steps), toolstack, await ports.toolstack.list_domains()

    ok, steps, toolstack, left = host.run(body)
    assert ok and steps > 3 * n  # shutdown, destroy and device steps per VM, plus keep's build
    assert [d.name for d in left] == ["keep"]
    assert toolstack.count["list_domains"] <= 2  # the run's first listing (+ one a firewall lookup may need)


class HeldListing:
    """The toolstack port; while `hold` is set a `list_domains` answer, once the host gave
    it, waits for `release` before it reaches the caller (a slow reply on the way back)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.hold = inner, False
        self.answered, self.release = asyncio.Event(), asyncio.Event()

    async def list_domains(self) -> list[DomainStatus]:
        listed: list[DomainStatus] = await self.inner.list_domains()
        if self.hold:
            self.answered.set()
            await self.release.wait()
        return listed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_listing_read_across_a_create_still_shows_the_new_domain(served: Callable[..., Any],
                                                    write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("a.yaml", vm("a"))
    host = served()

    async def body(ports: HostPorts) -> tuple[str, set[str], int]:
        held = HeldListing(ports.toolstack)
        wrapped = HostPorts(ports.name, ports.xenstore, held, ports.pciback, ports.firewall)  # type: ignore[arg-type]
        plan = await plan_for(ports, folder)
        rt = Runtime(wrapped, plan.desired, SETTINGS)
        await rt.domains()
        held.hold = True
        listing = asyncio.create_task(rt.domains())  # answered before `a` exists, delivered after
        await held.answered.wait()
        create = next(s for s in plan.steps if s.op == "create")
        result = await run_step(rt, create)
        held.release.set()
        await listing
        held.hold = False
        return result.outcome, set(await rt.running()), await rt.domid("a")

    outcome, running, domid = host.run(body)
    assert outcome == "done"
    assert "a" in running and domid > 0  # the stale listing did not replace the host's state


def test_a_domain_stopped_by_a_step_is_not_running_for_the_next_one(
        served: Callable[..., Any], write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("a.yaml", vm("a"))
    host = served()

    async def body(ports: HostPorts) -> tuple[set[str], str, set[str]]:
        plan = await plan_for(ports, folder)
        assert (await execute(plan, ports, settings=SETTINGS)).ok
        rt = Runtime(ports, plan.desired, SETTINGS)
        await rt.domains()
        before = set(await rt.running())
        shutdown = Step("VM/a:shutdown", "shutdown", "VM", "a", "a")
        outcome = (await run_step(rt, shutdown)).outcome
        return before, outcome, set(await rt.running())

    before, outcome, after = host.run(body)
    assert "a" in before and outcome == "done"
    assert "a" not in after  # the shutdown step made the run list the domains again


def test_a_failed_domain_change_makes_the_run_list_domains_again(
        served: Callable[..., Any], state_dir: Path, write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("a.yaml", vm("a"))
    host = served()

    async def body(ports: HostPorts) -> tuple[int, str, int]:
        plan = await plan_for(ports, folder)
        assert (await execute(plan, ports, settings=SETTINGS)).ok
        wrapped, toolstack, _ = counted(ports)
        rt = Runtime(wrapped, plan.desired, SETTINGS)
        await rt.running()
        before = toolstack.count["list_domains"]
        (state_dir / "faults.yaml").write_text("operations:\n  pause: {error_rate: 1.0}\n")
        outcome = (await run_step(rt, Step("VM/a:pause", "pause", "VM", "a", "a"))).outcome
        await rt.running()
        return before, outcome, toolstack.count["list_domains"]

    before, outcome, after = host.run(body)
    assert outcome == "failed"
    assert after == before + 1  # the pause may have happened (a lost answer): the listing is not trusted


def test_a_vm_that_started_goes_on_before_the_next_vm_starts(
        served: Callable[..., Any], write_manifest: Callable[[str, str], Path]) -> None:
    # Step by step (parallelism 1) the order shows the schedule's preference: the steps of
    # VMs already under way first, so what runs one at a time (firewall changes) is spread
    # over the run instead of left for its end.
    for name in ("a", "b", "c"):
        folder = write_manifest(f"{name}.yaml", vm(name, "  v4vRules: ['myself -> 0:80']\n"))
    host = served()
    seen: list[str] = []

    async def body(ports: HostPorts) -> bool:
        report = await execute(await plan_for(ports, folder), ports, on_step=lambda r: seen.append(r.step.vm),
                               settings=ExecuteSettings(parallelism=1, initial_backoff_s=0))
        return report.ok

    assert host.run(body)
    assert seen == sorted(seen) and len(seen) == 3 * 4  # create (with its disk and NIC), record, fw-start, unpause


class CreateWatch:
    """The toolstack port, noting when a `create` starts and whether it returned or was cancelled."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.started = inner, asyncio.Event()
        self.ends: list[str] = []

    async def create(self, *args: Any, **kwargs: Any) -> int:
        self.started.set()
        try:
            domid: int = await self.inner.create(*args, **kwargs)
        except asyncio.CancelledError:
            self.ends.append("cancelled")
            raise
        self.ends.append("returned")
        return domid

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_cancelling_execute_cancels_the_steps_it_started(
        served: Callable[..., Any], state_dir: Path, write_manifest: Callable[[str, str], Path]) -> None:
    (state_dir / "faults.yaml").write_text("operations:\n  create: {latency_ms: 10000}\n")  # 0.2 s at the tests' scale
    folder = write_manifest("a.yaml", vm("a"))
    host = served()

    async def body(ports: HostPorts) -> list[str]:
        watch = CreateWatch(ports.toolstack)
        wrapped = HostPorts(ports.name, ports.xenstore, watch, ports.pciback, ports.firewall)  # type: ignore[arg-type]
        run = asyncio.create_task(execute(await plan_for(ports, folder), wrapped, settings=SETTINGS))
        await watch.started.wait()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        return watch.ends

    assert host.run(body) == ["cancelled"]  # not left to run on (a watch loop that stops must not wait for it)


class HeldCreate:
    """The toolstack port; the `create` of VM `held` waits for `release` before it runs."""

    def __init__(self, inner: Any, held: str, release: asyncio.Event) -> None:
        self.inner, self.held, self.release = inner, held, release

    async def create(self, vm: Any, *args: Any, **kwargs: Any) -> int:
        if vm.metadata.name == self.held:
            await self.release.wait()
        domid: int = await self.inner.create(vm, *args, **kwargs)
        return domid

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_once_stopped_no_step_starts_while_running_ones_finish(
        served: Callable[..., Any], write_manifest: Callable[[str, str], Path]) -> None:
    write_manifest("a.yaml", vm("a"))
    folder = write_manifest("b.yaml", vm("b"))
    host = served()

    async def body(ports: HostPorts) -> dict[str, str]:
        stop = asyncio.Event()
        wrapped = HostPorts(ports.name, ports.xenstore, HeldCreate(ports.toolstack, "b", stop),  # type: ignore[arg-type]
                            ports.pciback, ports.firewall)

        def on_step(result: Any) -> None:
            if result.step.id.endswith("a/create"):
                stop.set()  # as SIGINT would, while b's create still runs

        report = await execute(await plan_for(ports, folder), wrapped, on_step=on_step, stop=stop,
                               settings=ExecuteSettings(parallelism=2, initial_backoff_s=0))
        return {r.step.id: r.outcome for r in report.steps}

    outcomes = host.run(body)
    assert sorted(sid for sid, outcome in outcomes.items() if outcome == "done") == ["vm/a/create", "vm/b/create"]
    assert set(outcomes.values()) == {"done", "skipped"}
