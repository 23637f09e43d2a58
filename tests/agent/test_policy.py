"""The agent's Policy: max-destroy, backoff, drift warn vs correct, conditions; and
`execute(..., hold=...)` on the simulated host.

Pure parts run on plans made by the real loader and diff (against an ObservedState
built here, or observed from the simulated host); time is a fake clock and jitter a
seeded `random.Random`, so every number is exact."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.agent.policy import Decision, Policy, default_limit, stopping_vms
from reconciler.execute import ExecuteSettings, Report, execute
from reconciler.execute.report import StepResult, make_report
from reconciler.loader import load
from reconciler.model.observed import DomainInfo, ObservedState
from reconciler.model.state import DesiredState
from reconciler.observe.host import observe_host
from reconciler.plan.build import Plan, plan_for
from reconciler.ports import HostPorts
from tests.execute.conftest import quick_retries, served, state_dir, write_manifest  # noqa: F401  (fixtures)

NO_WAIT = ExecuteSettings(initial_backoff_s=0, shutdown_timeout_s=0.5, sentinel_timeout_s=2)


def vm(name: str, extra: str = "") -> str:
    return (f"apiVersion: xen.reconciler/v1\nkind: VM\nmetadata: {{name: {name}}}\nspec:\n  virt: pv\n"
            f"  kernel: /boot/vmlinuz\n  memory: 256\n  maxMemory: 512\n{extra}"
            f"  disks: [{{vdev: xvda, target: /srv/{name}-a.img}}]\n")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def desired_of(folder: Path) -> DesiredState:
    loaded = load([str(folder)])
    assert loaded.state is not None, loaded.diagnostics
    return loaded.state


def managed(*names: str, stopped: tuple[str, ...] = ()) -> ObservedState:
    """A host with these managed domains, running (`stopped`: shut off), with only what
    the diff needs to stop them."""
    return ObservedState(domains={n: DomainInfo(n, i + 1, f"00000000-0000-0000-0000-{i + 1:012d}",
                                                "stopped" if n in stopped else "running", managed=True)
                                  for i, n in enumerate((*names, *stopped))})


def conditions(policy: Policy, key: str) -> dict[str, dict[str, str]]:
    return {c["type"]: c for c in policy.conditions()[key]}


# ---- max-destroy ----------------------------------------------------------------------

@pytest.mark.parametrize(("count", "limit"), [(0, 1), (1, 1), (2, 1), (3, 1), (4, 2), (7, 3)])
def test_default_limit_is_half_the_managed_vms_but_at_least_one(count: int, limit: int) -> None:
    assert default_limit(managed(*(f"vm{i}" for i in range(count)))) == limit


@pytest.fixture
def keep(write_manifest: Callable[[str, str], Path]) -> DesiredState:
    """A VM to create, and `other0`..`other3`: stopped in the manifests (no change when they
    are stopped on the host, but managed VMs all the same)."""
    for i in range(4):
        write_manifest(f"other{i}.yaml", vm(f"other{i}", "  state: stopped\n"))
    return desired_of(write_manifest("keep.yaml", vm("keep")))


def removing(desired: DesiredState, count: int, *, also: int = 0) -> tuple[Plan, ObservedState]:
    """A plan that removes `count` managed domains no manifest names (of `count + also` managed)."""
    observed = managed(*(f"gone{i}" for i in range(count)), stopped=tuple(f"other{i}" for i in range(also)))
    return plan_for(desired, observed), observed


@pytest.mark.parametrize("max_destroy", [0, 2, 5])
def test_exactly_the_limit_acts_and_one_more_is_refused(keep: DesiredState, max_destroy: int) -> None:
    policy = Policy(max_destroy=max_destroy)
    plan, observed = removing(keep, max_destroy)
    assert len(stopping_vms(plan, observed)) == max_destroy
    assert policy.decide(plan, observed, suspended=None).act
    plan, observed = removing(keep, max_destroy + 1)
    refused = policy.decide(plan, observed, suspended=None)
    assert not refused.act and refused.hold == {}
    assert refused.reason is not None and "\n" not in refused.reason
    assert f"would stop or destroy {max_destroy + 1} VMs" in refused.reason
    assert f"more than the {max_destroy} allowed" in refused.reason
    assert f"--max-destroy {max_destroy + 1}" in refused.reason


@pytest.mark.parametrize(("managed_count", "allowed"), [(1, 1), (2, 1), (3, 1), (4, 2)])
def test_default_limit_on_small_hosts(keep: DesiredState, managed_count: int, allowed: int) -> None:
    policy = Policy()
    plan, observed = removing(keep, allowed, also=managed_count - allowed)
    assert policy.decide(plan, observed, suspended=None).act
    if allowed + 1 <= managed_count:
        plan, observed = removing(keep, allowed + 1, also=managed_count - allowed - 1)
        refused = policy.decide(plan, observed, suspended=None)
        assert not refused.act and "half the managed VMs" in str(refused.reason)


def test_a_refusal_names_five_vms_and_how_many_more(keep: DesiredState) -> None:
    plan, observed = removing(keep, 8)
    reason = str(Policy().decide(plan, observed, suspended=None).reason)
    assert "(gone0, gone1, gone2, gone3, gone4 and 3 more)" in reason
    assert "gone5" not in reason


def test_a_stop_through_state_stopped_counts(write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("a.yaml", vm("a", "  state: stopped\n"))
    write_manifest("b.yaml", vm("b", "  state: stopped\n"))
    desired = desired_of(folder)
    observed = managed("a", "b")
    plan = plan_for(desired, observed)
    assert stopping_vms(plan, observed) == ["a", "b"]
    assert not Policy().decide(plan, observed, suspended=None).act  # 2 of 2 managed: more than 1


def test_suspended_does_not_act_and_says_why(keep: DesiredState) -> None:
    plan, observed = removing(keep, 0)
    sentence = "suspended by ops@host at 2026-12-06T07:00:00Z: kernel upgrade; run `reconciler resume` to lift it"
    decision = Policy().decide(plan, observed, suspended=sentence)
    assert decision == Decision(False, f"not acting: {sentence}", {})


# ---- backoff --------------------------------------------------------------------------

def failing(desired: DesiredState, failed_vm: str) -> tuple[Plan, Callable[[], Report]]:
    """A plan creating every VM of `desired` on an empty host, and a report in which the
    first step of `failed_vm` failed (its dependents skipped) and the rest is done."""
    plan = plan_for(desired, ObservedState())

    def report() -> Report:
        results = []
        first = next(s for s in plan.steps if s.vm == failed_vm and s.op == "create")
        for step in plan.steps:
            if step is first:
                results.append(StepResult(step, "failed", error="xl create: out of memory"))
            elif step.vm == failed_vm:
                results.append(StepResult(step, "skipped", cause=first.id))
            else:
                results.append(StepResult(step, "done"))
        return make_report(plan, results)

    return plan, report


@pytest.fixture
def two(write_manifest: Callable[[str, str], Path]) -> DesiredState:
    write_manifest("a.yaml", vm("a"))
    return desired_of(write_manifest("b.yaml", vm("b")))


def test_backoff_doubles_with_equal_jitter_up_to_the_cap(two: DesiredState) -> None:
    clock, rng = Clock(), random.Random(7)
    policy = Policy(base_s=1, cap_s=10, rng=random.Random(7), clock=clock)
    plan, report = failing(two, "a")
    delays = []
    for failures in range(1, 8):
        decision = policy.decide(plan, ObservedState(), suspended=None)
        assert decision.act and "VM/a" not in decision.hold  # the retry time has come
        policy.record(plan, decision, report())
        retry = policy.next_retry()
        assert retry is not None
        delays.append(retry - clock.now)
        assert policy.backoff()["VM/a"]["failures"] == failures
        held = policy.decide(plan, ObservedState(), suspended=None).hold
        assert held["VM/a"].startswith("backing off until ") and held["VM/a"].endswith(
            f"after {failures} failure{'s' if failures > 1 else ''}")
        assert "VM/b" not in held  # the others are not blocked
        clock.now = retry
    nominal = [1, 2, 4, 8, 10, 10, 10]
    assert all(n / 2 <= d <= n for d, n in zip(delays, nominal)), delays
    expected = [n / 2 + rng.uniform(0, n / 2) for n in nominal]  # the same seeded draws, in order
    assert delays == pytest.approx(expected, abs=1e-5)  # (float seconds since the epoch keep ~1e-7)


def test_success_clears_the_backoff_and_the_failure(two: DesiredState) -> None:
    clock = Clock()
    policy = Policy(rng=random.Random(1), clock=clock)
    plan, report = failing(two, "a")
    decision = policy.decide(plan, ObservedState(), suspended=None)
    policy.record(plan, decision, report())
    failed = conditions(policy, "VM/a")["Failed"]
    assert (failed["status"], failed["reason"], failed["message"]) == ("True", "StepFailed", "xl create: out of memory")
    assert conditions(policy, "VM/b")["Ready"]["status"] == "True"
    # held while backing off: Failed stays True, reason BackingOff
    clock.now += 0.1
    held = policy.decide(plan, ObservedState(), suspended=None)
    skipped = [StepResult(s, "skipped", note="held") for s in plan.steps if s.vm == "a"]
    policy.record(plan, held, make_report(plan, skipped))
    assert conditions(policy, "VM/a")["Failed"]["reason"] == "BackingOff"
    assert conditions(policy, "VM/a")["Failed"]["lastTransitionTime"] == failed["lastTransitionTime"]
    clock.now += 1000
    ok = policy.decide(plan, ObservedState(), suspended=None)
    policy.record(plan, ok, make_report(plan, [StepResult(s, "done") for s in plan.steps]))
    assert policy.backoff() == {} and policy.next_retry() is None
    now = conditions(policy, "VM/a")
    assert now["Failed"]["status"] == "False" and now["Ready"]["status"] == "True"
    assert now["Ready"]["lastTransitionTime"] == "2027-01-15T08:16:40Z"  # the flip, at the fake clock's time


# ---- drift, on the simulated host ----------------------------------------------------

async def pass_(ports: HostPorts, folder: Path, policy: Policy) -> tuple[Plan, Decision, Report | None]:
    """One agent pass: observe, plan, decide, execute what is not held, record."""
    observed = await observe_host(ports)
    plan = plan_for(desired_of(folder), observed)
    decision = policy.decide(plan, observed, suspended=None)
    report = await execute(plan, ports, settings=NO_WAIT, hold=decision.hold) if decision.act else None
    policy.record(plan, decision, report)
    return plan, decision, report


@pytest.fixture
def site(served: Callable[..., Any], write_manifest: Callable[[str, str], Path]) -> tuple[Any, Path]:
    write_manifest("a.yaml", vm("a"))
    return served(), write_manifest("b.yaml", vm("b"))


def test_warn_holds_drift_and_correct_undoes_it(site: tuple[Any, Path]) -> None:
    host, folder = site
    warn = Policy(drift="warn", clock=Clock())
    _, decision, report = host.run(lambda p: pass_(p, folder, warn))
    assert decision.hold == {} and report is not None and report.ok  # new VMs: a manifest change

    async def mem_set(ports: HostPorts) -> None:  # `xl mem-set a 384`, behind the reconciler's back
        domid = next(d.domid for d in await ports.toolstack.list_domains() if d.name == "a")
        await ports.toolstack.mem_set(domid, 384)

    host.run(mem_set)
    plan, decision, report = host.run(lambda p: pass_(p, folder, warn))
    assert [c.name for c in plan.diff.changes] == ["a"]
    assert decision.act and list(decision.hold) == ["VM/a"]
    assert decision.hold["VM/a"].startswith("drift: warn (spec.memory (384 on the host, 256 in the manifest)")
    assert report is not None and report.steps and all(r.outcome == "skipped" for r in report.steps)
    assert {r.step.id: r.line() for r in report.steps}["vm/a/mem-set"].startswith(
        "vm/a/mem-set: skipped (held: drift: warn")
    drifted = conditions(warn, "VM/a")["Drifted"]
    assert (drifted["status"], drifted["reason"]) == ("True", "Drift") and "spec.memory" in drifted["message"]
    assert conditions(warn, "VM/a")["Ready"]["status"] == "False"
    # still drift on the next pass (nothing was corrected), and the host still shows it
    assert host.run(lambda p: pass_(p, folder, warn))[1].hold.keys() == {"VM/a"}

    correct = Policy(drift="correct", clock=Clock())
    correct._applied = dict(warn._applied)  # the same history: only the mode differs
    plan, decision, report = host.run(lambda p: pass_(p, folder, correct))
    assert decision.hold == {} and report is not None and report.ok
    assert conditions(correct, "VM/a")["Drifted"]["status"] == "True"  # found, and corrected
    assert not host.run(lambda p: pass_(p, folder, correct))[0].has_changes


def test_warn_never_holds_a_manifest_change(site: tuple[Any, Path]) -> None:
    host, folder = site
    warn = Policy(drift="warn", clock=Clock())
    host.run(lambda p: pass_(p, folder, warn))
    (folder / "a.yaml").write_text(vm("a").replace("memory: 256", "memory: 320"))  # an edited spec
    (folder / "c.yaml").write_text(vm("c"))  # a new resource
    plan, decision, report = host.run(lambda p: pass_(p, folder, warn))
    assert {c.name for c in plan.diff.changes} >= {"a", "c"}
    assert decision.hold == {} and report is not None and report.ok
    assert not host.run(lambda p: pass_(p, folder, warn))[0].has_changes


def test_warn_holds_a_vm_destroyed_behind_its_back_but_not_without_a_history(site: tuple[Any, Path],
                                                                              state_dir: Path) -> None:
    host, folder = site
    warn = Policy(drift="warn", clock=Clock())
    host.run(lambda p: pass_(p, folder, warn))

    async def destroy(ports: HostPorts) -> None:
        domid = next(d.domid for d in await ports.toolstack.list_domains() if d.name == "b")
        await ports.toolstack.destroy(domid)

    host.run(destroy)
    _, decision, report = host.run(lambda p: pass_(p, folder, warn))
    assert "VM/b" in decision.hold and "is gone from the host" in decision.hold["VM/b"]
    assert report is not None and {r.name: r.outcome for r in report.resources}["b"] == "skipped"
    # A fresh agent has seen nothing applied: in doubt, it acts.
    fresh = Policy(drift="warn", clock=Clock())
    _, decision, report = host.run(lambda p: pass_(p, folder, fresh))
    assert decision.hold == {} and report is not None and report.ok
    assert [d.name for d in host.run(lambda p: p.toolstack.list_domains())] == ["a", "b"]


def test_a_record_from_other_manifests_is_a_manifest_change(site: tuple[Any, Path], state_dir: Path) -> None:
    host, folder = site
    warn = Policy(drift="warn", clock=Clock())
    host.run(lambda p: pass_(p, folder, warn))
    other = folder.parent / "other"
    other.mkdir()
    (other / "a.yaml").write_text(vm("a", "  startPriority: 7\n"))
    (other / "b.yaml").write_text(vm("b"))
    async def apply_other(ports: HostPorts) -> Report:
        return await execute(plan_for(desired_of(other), await observe_host(ports)), ports, settings=NO_WAIT)

    assert host.run(apply_other).ok  # someone applied other manifests by hand: a's record changed
    plan, decision, _ = host.run(lambda p: pass_(p, folder, warn))
    assert [c.name for c in plan.diff.changes] == ["a"] and decision.hold == {}


def test_conditions_move_only_on_a_flip(site: tuple[Any, Path]) -> None:
    host, folder = site
    clock = Clock()
    policy = Policy(clock=clock)
    host.run(lambda p: pass_(p, folder, policy))
    first = conditions(policy, "VM/a")
    assert [c["type"] for c in policy.conditions()["VM/a"]] == ["Ready", "Progressing", "Drifted", "Failed",
                                                                "RestartRequired"]
    assert first["Progressing"]["status"] == "True" and first["Ready"]["status"] == "True"
    assert first["Ready"]["reason"] == "Applied" and "Disk/a-xvda" in policy.conditions()
    clock.now += 60
    plan, _, _ = host.run(lambda p: pass_(p, folder, policy))
    assert not plan.has_changes  # nothing to do: every resource stays Ready, Progressing flips
    later = conditions(policy, "VM/a")
    assert (later["Ready"]["status"], later["Ready"]["reason"]) == ("True", "Converged")
    assert later["Ready"]["lastTransitionTime"] == first["Ready"]["lastTransitionTime"] == "2027-01-15T08:00:00Z"
    assert later["Progressing"]["status"] == "False"
    assert later["Progressing"]["lastTransitionTime"] == "2027-01-15T08:01:00Z"


def test_restart_required_while_restart_only_changes_are_pending(site: tuple[Any, Path]) -> None:
    host, folder = site
    policy = Policy(drift="warn", clock=Clock())
    host.run(lambda p: pass_(p, folder, policy))
    (folder / "a.yaml").write_text(vm("a").replace("maxMemory: 512", "maxMemory: 1024"))  # updatePolicy live
    plan, decision, report = host.run(lambda p: pass_(p, folder, policy))
    assert [(c.name, c.pending) for c in plan.diff.changes] == [("a", True)]
    restart = conditions(policy, "VM/a")["RestartRequired"]
    assert restart["status"] == "True" and "maxMemory" in restart["message"]
    assert conditions(policy, "VM/a")["Ready"]["status"] == "False"
    assert conditions(policy, "VM/b")["RestartRequired"]["status"] == "False"
    # the next pass shows it again: still the manifest's edit, never drift, even in warn mode
    plan, decision, _ = host.run(lambda p: pass_(p, folder, policy))
    assert [(c.name, c.pending) for c in plan.diff.changes] == [("a", True)] and decision.hold == {}
    assert conditions(policy, "VM/a")["Drifted"]["status"] == "False"
    assert conditions(policy, "VM/a")["RestartRequired"]["status"] == "True"


# ---- execute(hold=...) ----------------------------------------------------------------

def test_held_vm_is_skipped_and_an_independent_one_created(site: tuple[Any, Path]) -> None:
    host, folder = site

    async def body(ports: HostPorts) -> Report:
        plan = plan_for(desired_of(folder), await observe_host(ports))
        held = {"VM/a": "backing off until 12:00:03 after 3 failures"}
        return await execute(plan, ports, settings=NO_WAIT, hold=held)

    report = host.run(body)
    lines = {r.step.id: r.line() for r in report.steps}
    assert lines["vm/a/create"] == "vm/a/create: skipped (held: backing off until 12:00:03 after 3 failures)"
    dependents = [r for r in report.steps if r.step.vm == "a" and r.step.id != "vm/a/create"]
    assert dependents and all(r.outcome == "skipped" and r.cause == "vm/a/create" for r in dependents)
    assert all("held: requires vm/a/create (backing off" in r.line() for r in dependents)
    assert {r.name: r.outcome for r in report.resources} == {"a": "skipped", "a-xvda": "skipped",
                                                             "b": "created", "b-xvda": "created"}
    assert [d.name for d in host.run(lambda p: p.toolstack.list_domains())] == ["b"]


def test_without_hold_execute_is_unchanged(site: tuple[Any, Path]) -> None:
    host, folder = site

    async def body(ports: HostPorts) -> tuple[Report, Report]:
        plan = plan_for(desired_of(folder), await observe_host(ports))
        return await execute(plan, ports, settings=NO_WAIT, hold={}), await execute(
            plan_for(desired_of(folder), await observe_host(ports)), ports, settings=NO_WAIT)

    first, second = host.run(body)
    assert first.ok and all(r.note is None for r in first.steps)
    assert second.steps == ()  # converged: the empty hold ran everything


def test_warn_holds_a_vm_data_key_rewritten_with_xenstore_write(served: Callable[..., Any], state_dir: Path,
                                                                 write_manifest: Callable[[str, str], Path]) -> None:
    """Drift made with Xen's own `xenstore-write` on the served host's socket."""
    host = served()
    folder = write_manifest("a.yaml", vm("a", "  xenstoreData: {vm-data/role: web}\n"))
    write_manifest("b.yaml", vm("b"))
    warn = Policy(drift="warn", clock=Clock())
    assert host.run(lambda p: pass_(p, folder, warn))[2] is not None
    domid = next(d.domid for d in host.run(lambda p: p.toolstack.list_domains()) if d.name == "a")
    env = {**os.environ, "XENSTORED_PATH": str(state_dir / "xenstored.sock")}
    subprocess.run(["xenstore-write", f"/local/domain/{domid}/vm-data/role", "db"], env=env, check=True, timeout=30)
    plan, decision, report = host.run(lambda p: pass_(p, folder, warn))
    assert [c.name for c in plan.diff.changes] == ["a"] and list(decision.hold) == ["VM/a"]
    assert "vm-data/role" in decision.hold["VM/a"] and "db on the host, web in the manifest" in decision.hold["VM/a"]
    assert report is not None and all(r.outcome == "skipped" for r in report.steps)
    assert host.run(lambda p: p.xenstore.read(f"/local/domain/{domid}/vm-data/role")) == b"db"  # left as found


def test_every_changed_resource_has_all_five_conditions_even_when_refused(keep: DesiredState) -> None:
    policy = Policy(max_destroy=0, clock=Clock())
    plan, observed = removing(keep, 1)
    decision = policy.decide(plan, observed, suspended=None)
    policy.record(plan, decision, None)
    gone = conditions(policy, "VM/gone0")
    assert list(gone) == ["Ready", "Progressing", "Drifted", "Failed", "RestartRequired"]
    assert (gone["Ready"]["status"], gone["Ready"]["reason"]) == ("False", "Refused")
    assert gone["Ready"]["message"] == decision.reason and gone["Failed"]["status"] == "False"
    assert all(c["lastTransitionTime"] == "2027-01-15T08:00:00Z" for c in gone.values())


def test_a_held_device_skips_its_steps_and_what_requires_them(site: tuple[Any, Path]) -> None:
    """b's disk is held: b is not built (the disk is in its build, as xl builds it), so
    neither recorded nor unpaused; a is untouched by it."""
    host, folder = site

    async def body(ports: HostPorts) -> Report:
        plan = plan_for(desired_of(folder), await observe_host(ports))
        return await execute(plan, ports, settings=NO_WAIT, hold={"Disk/b-xvda": "drift: warn (test)"})

    report = host.run(body)
    outcomes = {r.name: r.outcome for r in report.resources}
    assert outcomes == {"a": "created", "a-xvda": "created", "b": "skipped", "b-xvda": "skipped"}
    lines = {r.step.id: r.line() for r in report.steps if r.outcome != "done"}
    assert lines == {"vm/b/create": "vm/b/create: skipped (held: drift: warn (test))",
                     "vm/b/record": "vm/b/record: skipped (held: requires vm/b/create (drift: warn (test)))",
                     "vm/b/unpause": "vm/b/unpause: skipped (held: requires vm/b/create (drift: warn (test)))"}
