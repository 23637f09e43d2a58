"""Signals and the host lock (issue 12): SIGTERM in the middle of a pass lets the step in
flight finish, exits 0 and leaves a host that `plan` then `apply` finish without a
duplicate; SIGHUP makes a pass; a second agent, and an `apply`, on the same host fail
at once naming the agent that holds it. Real processes and signals: see `watchsite`.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.agent.watchsite import WAIT_S, Agent, reconciler, settled, vm

# Each unpause takes 50 s x the delay scale 0.02 = 1 s: a pass over three VMs, one step
# at a time, is still running when the first VM's steps have been logged.
SLOW_UNPAUSE = "operations:\n  unpause: {latency_ms: 50000}\n"


def _wait_for(text: str, site: Agent) -> None:
    deadline = time.monotonic() + WAIT_S
    while text not in site.stderr:
        assert time.monotonic() < deadline and site.proc is not None and site.proc.poll() is None, site.stderr
        time.sleep(0.05)


def test_sigterm_mid_pass_exits_0_and_the_next_apply_finishes_without_duplicates() -> None:
    site = Agent({f"vm{i}.yaml": vm(f"vm{i}") for i in range(3)}, "--parallelism", "1")
    try:
        (site.state).mkdir(exist_ok=True)
        (site.state / "faults.yaml").write_text(SLOW_UNPAUSE)
        site.start()
        _wait_for("/create: done", site)  # the pass is under way: a domain is built, others wait
        assert site.stop() == 0
        err = site.stderr
        assert "SIGTERM: stopping" in err and "Traceback" not in err, err
        status = site.status()
        assert status is not None and status["lastPass"]["outcome"] == "interrupted", status
        assert status["agent"]["state"] == "stopped"
        (site.state / "faults.yaml").unlink()
        plan = reconciler("plan", str(site.folder), "--host", site.host, "--detailed-exitcode")
        assert plan.returncode == 2, plan.stdout + plan.stderr  # what is left, shown
        done = reconciler("apply", str(site.folder), "--host", site.host)
        assert done.returncode == 0, done.stdout + done.stderr  # the lock was released
        assert site.names() == ["vm0", "vm1", "vm2"]  # each once
        again = reconciler("plan", str(site.folder), "--host", site.host, "--detailed-exitcode")
        assert again.returncode == 0, again.stdout
    finally:
        site.close()


def test_sighup_makes_a_pass() -> None:
    site = Agent({"web.yaml": vm("web")})
    try:
        site.start()
        number = site.converged()["lastPass"]["number"]
        site.signal(signal.SIGHUP)
        status = site.wait_pass(number, "a pass on SIGHUP", lambda s: s["lastPass"]["trigger"] == "signal")
        assert status["lastPass"]["outcome"] == "converged"
        assert site.stop() == 0
    finally:
        site.close()


def test_a_second_agent_and_an_apply_are_refused_naming_the_agent() -> None:
    site = Agent({"web.yaml": vm("web")})
    try:
        first = site.start()
        site.converged()
        second = reconciler("watch", str(site.folder), "--host", site.host)
        lock = Path(site.state) / "agent.lock"
        assert second.returncode == 1
        assert f"is busy: pid {first.pid} (reconciler watch) holds {lock}" in second.stderr, second.stderr
        applied = reconciler("apply", str(site.folder), "--host", site.host)
        assert applied.returncode == 1 and applied.stdout == ""
        assert f"is busy: pid {first.pid} (reconciler watch) holds {lock}; the agent keeps this host" in applied.stderr
        assert first.poll() is None and settled(site.status() or {})
        assert site.stop() == 0
        assert reconciler("apply", str(site.folder), "--host", site.host).returncode == 0  # released on exit
    finally:
        site.close()


def test_status_says_so_when_the_agent_was_killed() -> None:
    site = Agent({"web.yaml": vm("web")})
    try:
        proc = site.start()
        site.converged()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=WAIT_S)
        text = reconciler("status", "--host", site.host).stdout
        assert f"(agent pid {proc.pid}, gone (started " in text and "it did not stop cleanly" in text, text
        again = Agent({}, state=site.state, folder=site.folder)  # the kernel dropped the lock with the process
        second = again.start()
        again.wait(lambda s: s["agent"]["pid"] == second.pid and settled(s), "the next agent's pass")
        assert again.stop() == 0
    finally:
        site.close()
