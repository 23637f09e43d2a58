"""`reconciler suspend` / `resume`: recorded on the host in xenstore, dom0-only, read by the
agent's Policy; through the real CLI in processes of their own against a served simulated
host, checked with Xen's own `xenstore-ls`/`xenstore-read`; and on an embedded host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.agent.suspend import SUSPEND_PATH, read_suspension
from reconciler.cli.hostlock import agent_lock
from reconciler.cli.hosts import HostSpec
from tests.execute.conftest import quick_retries, served, state_dir  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "server-host"


def reconciler(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *argv], capture_output=True, text=True,
                          timeout=120, check=False, cwd=REPO)


def xen_tool(state: Path, *argv: str) -> str:
    env = {**os.environ, "XENSTORED_PATH": str(state / "xenstored.sock")}
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_suspend_and_resume_on_a_served_host_while_an_agent_holds_the_lock(
        served: Callable[..., Any], state_dir: Path) -> None:
    host = served()
    with agent_lock(HostSpec("sim", state_dir)):  # as a running agent would: the verbs must not need it
        done = reconciler("suspend", "--host", f"sim:{state_dir}", "--reason", "kernel  upgrade,\nback at 9")
        assert done.returncode == 0, done.stderr
        assert done.stderr == f"host: sim:{state_dir} (simulated host served by reconciler sim serve)\n"
        assert done.stdout.count("\n") == 1 and done.stdout.startswith(f"Host sim:{state_dir} suspended by ")
        assert ": kernel upgrade, back at 9; run `reconciler resume` to lift it." in done.stdout

        listed = xen_tool(state_dir, "xenstore-ls", "-fp", "/local/domain/0/reconciler")
        assert listed.startswith(f"{SUSPEND_PATH} = ") and listed.rstrip().endswith("(n0)")
        record = json.loads(xen_tool(state_dir, "xenstore-read", SUSPEND_PATH))
        assert set(record) == {"by", "at", "reason"} and record["reason"] == "kernel upgrade, back at 9"
        assert "@" in record["by"] and record["at"].endswith("Z") and "T" in record["at"]
        sentence = host.run(lambda p: read_suspension(p.xenstore))
        assert sentence == f"suspended by {record['by']} at {record['at']}: kernel upgrade, back at 9; " \
                           "run `reconciler resume` to lift it"

        done = reconciler("resume", "--host", f"sim:{state_dir}")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"Resumed host sim:{state_dir}: it was suspended by {record['by']}")
        assert host.run(lambda p: read_suspension(p.xenstore)) is None
        assert "suspended" not in xen_tool(state_dir, "xenstore-ls", "-f", "/local/domain/0")

        again = reconciler("resume", "--host", f"sim:{state_dir}")
        assert (again.returncode, again.stdout) == (0, f"Host sim:{state_dir} is not suspended: nothing to resume.\n")


def test_a_corrupt_record_still_suspends(served: Callable[..., Any], state_dir: Path) -> None:
    host = served()
    xen_tool(state_dir, "xenstore-write", SUSPEND_PATH, "{not json")
    sentence = host.run(lambda p: read_suspension(p.xenstore))
    assert sentence == (f"suspended: the record at {SUSPEND_PATH} is unreadable; run `reconciler resume` to lift it")
    done = reconciler("resume", "--host", f"sim:{state_dir}")
    assert done.returncode == 0 and "the record at" in done.stdout and "is unreadable" in done.stdout
    assert host.run(lambda p: read_suspension(p.xenstore)) is None


def test_an_embedded_host_keeps_the_suspension_and_plans_still_converge(tmp_path: Path) -> None:
    """Without `sim serve`: the record is saved with the host's state; the observer does not
    read it, so a converged host still plans "No changes" while it is suspended."""
    host = f"sim:{tmp_path / 'host'}"
    assert reconciler("apply", str(EXAMPLE), "--host", host).returncode == 0
    before = reconciler("observe", "--host", host)
    done = reconciler("suspend", "--host", host)
    assert done.returncode == 0 and "suspended by " in done.stdout
    planned = reconciler("plan", str(EXAMPLE), "--host", host, "--detailed-exitcode")
    assert (planned.returncode, planned.stdout) == (0, "No changes. The host matches the manifests.\n")
    observed = reconciler("observe", "--host", host)
    assert observed.returncode == 0 and observed.stdout == before.stdout  # the observer ignores the node
    done = reconciler("resume", "--host", host)
    assert done.returncode == 0 and done.stdout.startswith(f"Resumed host {host}: it was suspended by ")
    assert reconciler("resume", "--host", host).stdout == f"Host {host} is not suspended: nothing to resume.\n"


@pytest.mark.parametrize("verb", ["suspend", "resume"])
def test_a_bad_host_is_one_line_and_exit_1(verb: str) -> None:
    done = reconciler(verb, "--host", "nowhere")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "unknown host 'nowhere'" in done.stderr and "Traceback" not in done.stderr


def test_a_reason_too_long_for_xenstore_is_refused_before_writing(tmp_path: Path) -> None:
    host = f"sim:{tmp_path / 'host'}"
    done = reconciler("suspend", "--host", host, "--reason", "x" * 1001)
    assert done.returncode == 1 and "--reason: 1001 characters; keep it to 1000" in done.stderr
    assert "Traceback" not in done.stderr
    assert reconciler("resume", "--host", host).stdout == f"Host {host} is not suspended: nothing to resume.\n"


def _serve(state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "RECONCILER_SIM_DELAY_SCALE": "0.02"}
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "sim", "serve", "--state", str(state)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]  # printed once both sockets listen
    assert lines[-1] == f"export XENSTORED_PATH={state / 'xenstored.sock'}\n", lines
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_a_suspension_on_a_sim_serve_host_outlives_the_server(tmp_path: Path) -> None:
    state = tmp_path / "h"
    serve = _serve(state)
    try:
        done = reconciler("suspend", "--host", f"sim:{state}", "--reason", "maintenance")
        assert done.returncode == 0, done.stderr
        assert xen_tool(state, "xenstore-ls", "-fp", "/local/domain/0/reconciler").splitlines()[-1].startswith(
            f'{SUSPEND_PATH} = "{{"by":')
    finally:
        _stop(serve)
    serve = _serve(state)  # the host's xenstore was saved with the record in it
    try:
        assert "maintenance" in xen_tool(state, "xenstore-read", SUSPEND_PATH)
        done = reconciler("resume", "--host", f"sim:{state}")
        assert done.returncode == 0 and ": maintenance; the agent acts from its next pass." in done.stdout
    finally:
        _stop(serve)
