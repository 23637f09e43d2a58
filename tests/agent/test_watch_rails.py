"""The agent's safety rails and what it tells monitoring (issue 12), through a real agent
(`watchsite`): a pass that would empty the host is refused (`--max-destroy`), `reconciler
suspend` pauses actions while observing goes on and `resume` acts at once, a failing
resource backs off and shows it in status, Prometheus metrics are scraped over HTTP,
and systemd hears READY=1 after the first pass, WATCHDOG=1, and STOPPING=1 on SIGTERM
(a real datagram socket as $NOTIFY_SOCKET)."""

from __future__ import annotations

import re
import socket
import tempfile
import urllib.request
from pathlib import Path

from tests.agent.watchsite import Agent, reconciler, settled, vm


def test_a_pass_that_would_empty_the_host_is_refused() -> None:
    site = Agent({"a.yaml": vm("a"), "b.yaml": vm("b"), "c.yaml": vm("c")})
    try:
        site.start()
        number = site.converged()["lastPass"]["number"]
        for name in ("a.yaml", "b.yaml"):
            (site.folder / name).unlink()
        site.edit("c.yaml", vm("other"))  # a, b and c go, other comes: 3 VMs stopped, 1 allowed
        refused = site.wait_pass(number, "the refusal", lambda s: s["lastPass"]["outcome"] == "refused")
        assert "--max-destroy 3" in refused["lastPass"]["error"], refused["lastPass"]
        assert site.names() == ["a", "b", "c"]  # nothing acted on, not even the new VM
        assert "refused: this pass would stop or destroy 3 VMs" in site.stderr
        assert site.stop() == 0
    finally:
        site.close()


def test_suspend_pauses_actions_and_resume_acts_at_once() -> None:
    site = Agent({"web.yaml": vm("web")})
    try:
        site.start()
        number = site.converged()["lastPass"]["number"]
        done = reconciler("suspend", "--host", site.host, "--reason", "maintenance")
        assert done.returncode == 0, done.stderr
        (site.folder / "db.yaml").write_text(vm("db"))
        held = site.wait_pass(number, "a suspended pass", lambda s: s["lastPass"]["outcome"] == "suspended"
                              and "VM/db" in s["resources"])
        assert "maintenance" in held["suspended"] and site.names() == ["web"]
        assert "suspended by" in reconciler("status", "--host", site.host).stdout
        assert reconciler("resume", "--host", site.host).returncode == 0  # no manifest change after this
        resumed = site.wait_pass(held["lastPass"]["number"], "the pass after resume",
                                 lambda s: s["suspended"] is None and settled(s))
        assert resumed["lastPass"]["trigger"] == "xenstore" and site.names() == ["db", "web"]
        assert site.stop() == 0
    finally:
        site.close()


def test_a_failing_resource_backs_off_without_blocking_the_others_and_status_shows_it() -> None:
    site = Agent({"web.yaml": vm("web")})
    try:
        site.state.mkdir(exist_ok=True)
        # db's disk never connects: its build fails (xl destroys the domain) and db backs off.
        (site.state / "faults.yaml").write_text("never_connect: {domains: [db]}\n")
        site.start()
        number = site.converged()["lastPass"]["number"]
        (site.folder / "db.yaml").write_text(vm("db") + "  disks:\n    - {target: /srv/db.img, vdev: xvda}\n")
        (site.folder / "cache.yaml").write_text(vm("cache"))
        failing = site.wait_pass(number, "backing off", lambda s: "backoff" in s["resources"].get("VM/db", {}))
        assert failing["resources"]["VM/db"]["backoff"]["failures"] >= 1
        assert "cache" in site.names()  # the independent VM went on
        text = reconciler("status", "--host", site.host).stdout
        # just failed (StepFailed, the backoff said after it) or held since (BackingOff)
        assert re.search(r"VM/db: Failed \((StepFailed|BackingOff)\): .*backing off", text), text
        assert site.stop() == 0
    finally:
        site.close()


def test_metrics_are_scraped_over_http() -> None:
    site = Agent({"web.yaml": vm("web")}, "--metrics", "127.0.0.1:0")
    try:
        site.start()
        site.converged()
        port = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", site.stderr)
        assert port is not None, site.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/metrics", timeout=30) as answer:
            text = answer.read().decode()
        assert re.search(r'reconciler_passes_total\{outcome="changed",trigger="start"\} 1\.0', text), text
        assert re.search(r'reconciler_resources\{condition="Ready"\} 1\.0', text), text
        assert "reconciler_pass_duration_seconds_count" in text and "reconciler_xenstore_requests_total" in text
        assert site.stop() == 0
    finally:
        site.close()


def test_systemd_hears_ready_after_the_first_pass_the_watchdog_and_stopping() -> None:
    folder = Path(tempfile.mkdtemp(prefix="ag-n-"))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(folder / "notify"))
        sock.settimeout(120)
        site = Agent({"web.yaml": vm("web")}, env={"NOTIFY_SOCKET": str(folder / "notify"), "WATCHDOG_USEC": "200000"})
        try:
            site.start()
            heard = [sock.recv(4096).decode() for _ in range(3)]
            first = next(m for m in heard if "READY=1" in m)
            assert "STATUS=pass 1 (start): changed" in first, heard
            site.converged()
            assert any(m == "WATCHDOG=1" for m in heard) or sock.recv(4096).decode() == "WATCHDOG=1"
            assert site.stop() == 0
            rest = []
            while not rest or rest[-1] != "STOPPING=1":
                rest.append(sock.recv(4096).decode())
        finally:
            site.close()
            (folder / "notify").unlink(missing_ok=True)
            folder.rmdir()


def test_drift_warn_reports_a_destroyed_vm_instead_of_restarting_it_until_the_manifest_changes() -> None:
    site = Agent({"web.yaml": vm("web"), "db.yaml": vm("db")}, "--drift", "warn")
    try:
        site.start()
        number = site.converged()["lastPass"]["number"]
        site.sim("destroy", "web")
        held = site.wait_pass(number, "the drift reported", lambda s: s["lastPass"]["outcome"] == "refused")
        drifted = {c["type"]: c for c in held["resources"]["VM/web"]["conditions"]}["Drifted"]
        assert drifted["status"] == "True" and site.names() == ["db"]  # seen, said, not corrected
        assert "VM/web: Drifted" in reconciler("status", "--host", site.host).stdout
        site.edit("web.yaml", vm("web", 640))  # an edit of the manifest is not drift: it acts
        site.wait_pass(held["lastPass"]["number"], "the edit applied", lambda s: settled(s) and site.names() == ["db", "web"])
        assert site.stop() == 0
    finally:
        site.close()


def test_a_conflict_the_host_brings_about_is_said_once_and_the_agent_goes_on() -> None:
    site = Agent({"web.yaml": vm("web"), "db.yaml": vm("db")})
    try:
        site.start()
        number = site.converged()["lastPass"]["number"]
        assert reconciler("suspend", "--host", site.host, "--reason", "swap db by hand").returncode == 0
        site.sim("destroy", "db")
        site.sim("create", "db", "--virt", "pvh", "--memory", "256", "--kernel", "/srv/other")  # not ours
        seen = site.wait_pass(number, "the conflict", lambda s: any("'db'" in p for p in s["invalid"]))
        assert seen["lastPass"]["outcome"] == "invalid"
        problem = seen["invalid"][0]
        assert reconciler("resume", "--host", site.host).returncode == 0
        site.wait_pass(seen["lastPass"]["number"], "a pass after resume", lambda s: s["suspended"] is None)
        assert site.proc is not None and site.proc.poll() is None  # alive, not acting on db
        assert site.stderr.count(problem) == 1, site.stderr
        assert site.stop() == 0
    finally:
        site.close()
