"""`execute` itself, against the simulated host's ports: at most N steps at once, no step
before the steps it depends on, outcome words, a guest that ignores shutdown; and the
pure parts (settings precedence, firewall entry text)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import TerminalHostError, TransientHostError, UsageError
from reconciler.execute import ExecuteSettings, Report, StepResult, execute
from reconciler.execute.firewall import parse_entry
from reconciler.execute.settings import resolve_settings
from reconciler.loader import load
from reconciler.model.host import FirewallEntry
from reconciler.observe.host import observe_host
from reconciler.plan.build import Plan
from reconciler.plan.build import plan_for as plan_states
from reconciler.ports import HostPorts

NO_WAIT = ExecuteSettings(initial_backoff_s=0, shutdown_timeout_s=0.5, sentinel_timeout_s=2)


def vm(name: str, extra: str = "") -> str:
    return (f"apiVersion: xen.reconciler/v1\nkind: VM\nmetadata: {{name: {name}}}\nspec:\n  virt: pv\n"
            f"  kernel: /boot/vmlinuz\n  memory: 256\n  maxMemory: 512\n{extra}"
            f"  disks: [{{vdev: xvda, target: /srv/{name}-a.img}}, {{vdev: xvdb, target: /srv/{name}-b.img}}]\n")


async def plan_for(ports: HostPorts, folder: Path) -> Plan:
    state = load([str(folder)]).state
    assert state is not None
    observed = await observe_host(ports)
    return plan_states(state, observed)


class Counting:
    """The toolstack port, counting calls in flight (the most at once in `peak`)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.now, self.peak = inner, 0, 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                return await method(*args, **kwargs)
            finally:
                self.now -= 1

        return call


@pytest.fixture
def four_vms(write_manifest: Callable[[str, str], Path]) -> Path:
    for name in ("a", "b", "c"):
        write_manifest(f"{name}.yaml", vm(name))
    return write_manifest("d.yaml", vm("d"))


@pytest.mark.parametrize("parallelism", [1, 3])
def test_at_most_parallelism_steps_run_at_once(parallelism: int, served: Callable[..., Any], state_dir: Path,
                                               four_vms: Path) -> None:
    (state_dir / "faults.yaml").write_text("operations:\n  '*': {latency_ms: 400}\n")  # 8 ms each at FAST
    host = served()

    async def body(ports: HostPorts) -> tuple[int, Report]:
        counting = Counting(ports.toolstack)
        counted = HostPorts(ports.name, ports.xenstore, counting, ports.pciback, ports.firewall)  # type: ignore[arg-type]
        report = await execute(await plan_for(ports, four_vms), counted,
                               settings=ExecuteSettings(parallelism=parallelism, initial_backoff_s=0))
        return counting.peak, report

    peak, report = host.run(body)
    assert report.ok and report.count("done") == 4 * 3  # create (with its disks), record, unpause
    # list_domains calls of the firewall/domid lookups ride along with steps, never beyond them
    assert peak == parallelism if parallelism == 1 else 1 < peak <= parallelism


def test_no_step_ends_before_a_step_it_depends_on(served: Callable[..., Any], four_vms: Path) -> None:
    host = served()
    seen: list[StepResult] = []

    async def body(ports: HostPorts) -> Plan:
        plan = await plan_for(ports, four_vms)
        await execute(plan, ports, settings=NO_WAIT, on_step=seen.append)
        return plan

    plan = host.run(body)
    order = {r.step.id: n for n, r in enumerate(seen)}
    assert sorted(order) == sorted(s.id for s in plan.steps)
    assert plan.dependencies and all(order[d.before] < order[d.after] for d in plan.dependencies)


def test_restart_only_change_rebuilds_the_domain_and_says_restarted(
        served: Callable[..., Any], write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("a.yaml", vm("a", "  updatePolicy: restart\n"))
    host = served()

    async def first(ports: HostPorts) -> int:
        assert (await execute(await plan_for(ports, folder), ports, settings=NO_WAIT)).ok
        return (await ports.toolstack.list_domains())[0].domid

    old = host.run(first)
    write_manifest("a.yaml", vm("a", "  updatePolicy: restart\n").replace("maxMemory: 512", "maxMemory: 1024"))

    async def second(ports: HostPorts) -> tuple[Report, list[Any]]:
        report = await execute(await plan_for(ports, folder), ports, settings=NO_WAIT)
        return report, await ports.toolstack.list_domains()

    report, domains = host.run(second)
    assert report.ok and [r.line() for r in report.resources] == ["VM `a`: restarted"]
    assert [(d.name, d.power) for d in domains] == [("a", "running")] and domains[0].domid != old
    assert host.run(lambda p: plan_for(p, folder)).has_changes is False


def test_a_guest_that_ignores_shutdown_is_destroyed(served: Callable[..., Any], state_dir: Path,
                                                    write_manifest: Callable[[str, str], Path]) -> None:
    write_manifest("a.yaml", vm("a"))
    folder = write_manifest("stubborn.yaml", vm("stubborn"))
    (state_dir / "faults.yaml").write_text("uncooperative: [stubborn]\n")
    host = served()
    assert host.run(lambda p: execute_plan(p, folder)).ok
    (folder / "stubborn.yaml").unlink()
    report = host.run(lambda p: execute_plan(p, folder))
    results = {r.step.id: r for r in report.steps}
    assert report.ok and results["vm/stubborn/shutdown"].note is not None
    assert "not shut down gracefully" in results["vm/stubborn/shutdown"].line()
    assert [d.name for d in host.run(lambda p: p.toolstack.list_domains())] == ["a"]


async def execute_plan(ports: HostPorts, folder: Path) -> Report:
    return await execute(await plan_for(ports, folder), ports, settings=NO_WAIT)


def test_empty_plan_touches_nothing(served: Callable[..., Any], write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("a.yaml", vm("a", "  state: stopped\n"))
    host = served()
    report = host.run(lambda p: execute_plan(p, folder))
    assert report.steps == () and report.ok and report.summary() == "Apply complete: no changes."


# ---- pure parts ----------------------------------------------------------------------------


def test_settings_flag_beats_environment_beats_default() -> None:
    assert resolve_settings(None, {}) == ExecuteSettings()
    env = {"RECONCILER_PARALLELISM": "2", "RECONCILER_RETRY_ATTEMPTS": "9", "RECONCILER_RETRY_BACKOFF_S": "0.5"}
    assert resolve_settings(None, env) == ExecuteSettings(parallelism=2, attempts=9, initial_backoff_s=0.5)
    assert resolve_settings(7, env).parallelism == 7


@pytest.mark.parametrize("env,message", [
    ({"RECONCILER_RETRY_ATTEMPTS": "many"}, "RECONCILER_RETRY_ATTEMPTS='many' is not an integer"),
    ({"RECONCILER_RETRY_BACKOFF_S": "-1"}, "initial_backoff_s must not be negative, found -1.0"),
    ({"RECONCILER_RETRY_ATTEMPTS": "0"}, "attempts must be at least 1, found 0"),
])
def test_bad_settings_are_one_sentence(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        resolve_settings(None, env)


@pytest.mark.parametrize("entry", [
    FirewallEntry(3, 0, None, 80), FirewallEntry(None, 5, 4001, None), FirewallEntry(0, 0),
    FirewallEntry(target="REJECT"), FirewallEntry(7, 8, 1, 2, "REJECT"),
])
def test_firewall_entry_text_round_trips(entry: FirewallEntry) -> None:
    assert parse_entry(str(entry)) == entry


@pytest.mark.parametrize("text", ["--dom-in", "--dom-in x -j ACCEPT", "--bogus 3 -j ACCEPT", "-j DROP"])
def test_firewall_entry_text_that_is_not_viptables_is_refused(text: str) -> None:
    with pytest.raises(TerminalHostError, match="is not viptables options"):
        parse_entry(text)


def test_retry_policy_stops_after_attempts() -> None:
    from reconciler.errors import TransientHostError
    from reconciler.retry import retrying

    calls = 0

    async def flaky() -> None:
        nonlocal calls
        async for attempt in retrying(ExecuteSettings(attempts=3, initial_backoff_s=0).retry):
            with attempt:
                calls += 1
                raise TransientHostError("busy")

    with pytest.raises(TransientHostError, match="busy"):
        asyncio.run(flaky())
    assert calls == 3


class FlakyFirewall:
    """The firewall port, counting `list` calls; the first batch insert fails after it took effect
    (an answer lost on the way back), as a timeout against viptables can."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.lists, self.inserts = inner, 0, 0

    async def list(self) -> list[FirewallEntry]:
        self.lists += 1
        listed: list[FirewallEntry] = await self.inner.list()
        return listed

    async def insert_many(self, entries: list[FirewallEntry]) -> None:
        await self.inner.insert_many(entries)
        self.inserts += 1
        if self.inserts == 1:
            raise TransientHostError("viptables: no answer (simulated lost reply)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_firewall_is_listed_once_per_run_and_again_after_a_failed_change(
        served: Callable[..., Any], write_manifest: Callable[[str, str], Path]) -> None:
    rules = "  v4vRules: ['myself -> 0:80', 'myself -> 0:443', '0 -> myself:22']\n"
    for name in ("a", "b", "c"):
        folder = write_manifest(f"{name}.yaml", vm(name, rules))
    host = served()

    async def body(ports: HostPorts) -> tuple[Report, FlakyFirewall, list[FirewallEntry], Plan]:
        flaky = FlakyFirewall(ports.firewall)
        wrapped = HostPorts(ports.name, ports.xenstore, ports.toolstack, ports.pciback, flaky)  # type: ignore[arg-type]
        report = await execute(await plan_for(ports, folder), wrapped, settings=NO_WAIT)
        return report, flaky, await ports.firewall.list(), await plan_for(ports, folder)

    report, flaky, table, again = host.run(body)
    assert report.ok and report.count("done") == 3 * 4  # create (with its disk and NIC), record, fw-start, unpause
    # 3 batches (one per VM's start): one listing for the run, one more after the batch whose answer was lost
    assert flaky.lists == 2
    assert len(table) == len(set(table))  # the insert whose answer was lost was not repeated
    assert not again.steps  # and nothing is missing
