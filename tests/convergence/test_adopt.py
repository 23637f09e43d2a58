"""`spec.adopt: true` (issue 16, DESIGN 4): a domain another toolstack built is taken over
on purpose. The plan shows `<= adopt` and only the changes its manifest needs; apply marks
it managed first (a kill right after leaves a managed VM with only the rest to do), then
converges without restarting it, unless the manifest asks for a restart-only change and
updatePolicy is restart.

Real: domains built by `reconciler sim create` (the simulated toolstack, no managed
marker: another toolstack as far as the reconciler can tell), the CLI in processes of its
own against the simulated host served on real sockets, Xen's `xenstore-read` for the
marker, SIGKILL. The one instrument: the served host's operation table is wrapped so the
signal goes out at an exact step (`SignalAt`, as the crash tests of tests/execute do).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.model import default_vm_uuid
from tests.convergence.conftest import ENV, REPO, reconciler, short_dir
from tests.execute.conftest import ServedHost
from tests.execute.test_crash_safe import SignalAt

UUID = default_vm_uuid("web")  # what `sim create web` gives the domain
CHANGE = re.compile(r"^  (<=|\+|~|-/\+|-) (\S+) (\S+) \[")  # "  <= VM web [live]: ..."


def manifest(*, memory: int = 384, max_memory: int = 512, uuid: str = UUID, adopt: bool = True,
             policy: str = "live", nics: int = 1) -> str:
    nic_list = ", ".join("{bridge: xenbr0}" for _ in range(nics))
    return f"""\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: web}}
spec:
  adopt: {str(adopt).lower()}
  uuid: {uuid}
  virt: pv
  kernel: /boot/vmlinuz
  memory: {memory}
  maxMemory: {max_memory}
  updatePolicy: {policy}
  disks: [{{target: /srv/web.img, vdev: xvda}}]
  nics: [{nic_list}]
"""


class Host:
    """A simulated host served in this process, a manifest folder, and the CLI against both."""

    def __init__(self) -> None:
        self.state = short_dir("ad-")
        self.folder = short_dir("ad-m-")
        self._served: ServedHost | None = None

    @property
    def served(self) -> ServedHost:
        """The host served from here, started on first use (after what another toolstack built)."""
        return self.start()

    def start(self) -> ServedHost:
        if self._served is None:
            self._served = ServedHost(self.state)
        return self._served

    def write(self, text: str) -> None:
        (self.folder / "web.yaml").write_text(text)

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        self.start()
        return reconciler(*argv, "--host", f"sim:{self.state}")

    def plan(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("plan", str(self.folder), "--detailed-exitcode", *extra)

    def apply(self) -> subprocess.CompletedProcess[str]:
        return self.run("apply", str(self.folder))

    def sim(self, *argv: str) -> str:
        self.start()  # a `sim` verb then talks to the served host
        done = reconciler("sim", *argv, "--state", str(self.state))
        assert done.returncode == 0, done.stderr
        return done.stdout

    def other_toolstack_builds_web(self, *, nics: int = 1, name: str = "web") -> None:
        """`sim create web` on the host before it is served, at the simulator's real pace:
        its devices' backends connect well within libxl's timeout on a busy machine."""
        assert self._served is None
        extra = [arg for _ in range(nics) for arg in ("--nic", "xenbr0")]
        done = subprocess.run([sys.executable, "-m", "reconciler", "sim", "create", name, "--virt", "pv", "--memory",
                               "256", "--max-memory", "512", "--kernel", "/boot/vmlinuz", "--disk", "/srv/web.img,xvda",
                               *extra, "-q", "--state", str(self.state)], cwd=REPO,
                              env={**os.environ, **ENV, "RECONCILER_SIM_DELAY_SCALE": "1"}, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr

    def domids(self) -> dict[str, int]:
        rows = [line.split() for line in self.sim("list").splitlines()[1:] if line.strip()]
        return {row[0]: int(row[1]) for row in rows}

    def marker(self, uuid: str) -> str:
        env = {**os.environ, "XENSTORED_PATH": str(self.state / "xenstored.sock")}
        done = subprocess.run(["xenstore-read", f"/vm/{uuid}/reconciler/managed"], env=env, capture_output=True,
                              text=True, timeout=30, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    def close(self) -> None:
        if self._served is not None:
            self._served.close()
        shutil.rmtree(self.state, ignore_errors=True)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def host() -> Iterator[Host]:
    made = Host()
    try:
        yield made
    finally:
        made.close()


def changes(plan_text: str) -> list[tuple[str, str, str]]:
    """(symbol, kind, name) of every resource line of a text plan."""
    return [(m[1], m[2], m[3]) for m in map(CHANGE.match, plan_text.splitlines()) if m]


def test_adopt_shows_only_real_changes_and_converges_without_a_restart(host: Host) -> None:
    host.other_toolstack_builds_web(nics=2)
    host.write(manifest(memory=384))  # memory within maxMemory (live), one NIC of the two
    before = host.domids()
    plan = host.plan()
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert changes(plan.stdout) == [("<=", "VM", "web"), ("-", "NIC", "web-nic-1")], plan.stdout
    domid = before["web"]
    assert (f"<= VM web [live]: adopt: domain {domid} ('web') was built by another toolstack (no managed marker); "
            "taken over, not restarted\n      ~ spec.memory: 256 -> 384\n") in plan.stdout
    assert "Plan: 1 to adopt, 0 to create" in plan.stdout
    assert "<= adopt" in plan.stdout.splitlines()[0]  # the legend explains the symbol
    assert "  1. vm/web/adopt\n" in plan.stdout  # marked first, alone: then its memory and NIC change
    js = host.plan("--format", "json")
    assert '"action": "adopt"' in js.stdout and '"symbol": "<="' in js.stdout and '"adopt": 1' in js.stdout
    markdown = host.plan("--format", "markdown").stdout
    assert "| `<=` adopt (take over, not restarted) | 1 | 0 | 0 | 1 |" in markdown, markdown
    mermaid = host.plan("--format", "mermaid").stdout
    assert "classDef adopt " in mermaid and "fill: adopt" in mermaid, mermaid

    done = host.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 adopted" in done.stdout and "1 unplugged" in done.stdout, done.stdout
    assert host.marker(UUID) == "1"
    again = host.plan()
    assert (again.returncode, again.stdout) == (0, "No changes. The host matches the manifests.\n"), again.stdout
    assert host.domids() == before  # nothing restarted; adopt: true left in the manifest does nothing now


@pytest.mark.parametrize("when", ["after-adopt", "before-adopt"])
def test_a_kill_around_the_adopt_step_leaves_a_plan_of_what_is_left(host: Host, when: str) -> None:
    host.other_toolstack_builds_web()
    host.write(manifest(memory=384))
    before = host.domids()
    if when == "after-adopt":
        # The adopt step is the VM's first; the kill replaces its mem-set (never run).
        trap = SignalAt(host.served, "mem_set", 1, signal.SIGKILL, when="instead")
    else:
        # The adopt step lists the domains (is it still the one the plan saw?) before it
        # writes anything: killed there, after the apply's own observation listed them.
        trap = SignalAt(host.served, "list_domains", 2, signal.SIGKILL, when="instead")
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "apply", str(host.folder), "--host",
                             f"sim:{host.state}", "--parallelism", "1"], cwd=REPO, env={**os.environ, **ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trap.pid = proc.pid
    out, err = proc.communicate(timeout=120)
    trap.restore()
    assert proc.returncode == -signal.SIGKILL, out + err

    plan = host.plan()
    assert plan.returncode == 2, plan.stdout + plan.stderr
    if when == "after-adopt":
        assert host.marker(UUID) == "1"
        assert changes(plan.stdout) == [("~", "VM", "web")], plan.stdout  # managed now: only the memory is left
        assert "~ spec.memory: 256 -> 384" in plan.stdout
    else:
        assert host.marker(UUID) == ""
        assert changes(plan.stdout) == [("<=", "VM", "web")], plan.stdout  # nothing was taken over yet
    done = host.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert host.plan().returncode == 0
    assert host.domids() == before


def test_adopt_by_name_when_the_domain_has_another_uuid(host: Host) -> None:
    other = default_vm_uuid("web-elsewhere")
    host.other_toolstack_builds_web()
    host.write(manifest(memory=256, uuid=other))
    before = host.domids()
    plan = host.plan()
    # The NIC's default MAC derives from the manifest's uuid: a real difference too.
    assert changes(plan.stdout) == [("<=", "VM", "web"), ("~", "NIC", "web-nic0")], plan.stdout
    # The uuid is given at build: a real difference, pending under updatePolicy live.
    assert f"~ spec.uuid: \"{UUID}\" -> \"{other}\"  [restart] (pending: updatePolicy is live)" in plan.stdout
    done = host.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert host.marker(UUID) == "1" and host.marker(other) == ""  # marked where the domain is
    again = host.plan()
    assert changes(again.stdout) == [("~", "VM", "web")] and "spec.uuid" in again.stdout, again.stdout
    assert host.domids() == before


def test_a_domain_holding_the_uuid_under_another_name_is_renamed_then_adopted(host: Host) -> None:
    host.other_toolstack_builds_web()
    host.write(manifest(uuid=UUID).replace("metadata: {name: web}", "metadata: {name: www}"))
    before = host.domids()
    plan = host.plan()
    assert changes(plan.stdout) == [("<=", "VM", "www")], plan.stdout  # its disk and NIC match, under the new name
    assert (f"<= VM www [live]: adopt: domain {before['web']} ('web') was built by another toolstack (no managed "
            "marker) and holds the VM's uuid: renamed www (xl rename); taken over, not restarted\n"
            "      ~ metadata.name: \"web\" -> \"www\"\n") in plan.stdout
    assert "  1. vm/www/rename\n  2. vm/www/adopt\n" in plan.stdout  # renamed, marked, then changed
    done = host.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert host.domids() == {"www": before["web"]}  # the same domain, renamed
    again = host.plan()
    assert (again.returncode, again.stdout) == (0, "No changes. The host matches the manifests.\n"), again.stdout


def test_a_kill_after_the_rename_leaves_the_adoption_to_do(host: Host) -> None:
    host.other_toolstack_builds_web()
    host.write(manifest(uuid=UUID).replace("metadata: {name: web}", "metadata: {name: www}"))
    before = host.domids()
    trap = SignalAt(host.served, "rename", 1, signal.SIGKILL, when="after")  # renamed, not yet marked
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "apply", str(host.folder), "--host",
                             f"sim:{host.state}", "--parallelism", "1"], cwd=REPO, env={**os.environ, **ENV},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    trap.pid = proc.pid
    out, err = proc.communicate(timeout=120)
    trap.restore()
    assert proc.returncode == -signal.SIGKILL, out + err
    assert host.domids() == {"www": before["web"]} and host.marker(UUID) == ""
    plan = host.plan()
    assert changes(plan.stdout) == [("<=", "VM", "www")] and "metadata.name" not in plan.stdout, plan.stdout
    assert host.apply().returncode == 0
    assert host.plan().returncode == 0 and host.domids() == {"www": before["web"]}


def test_a_uuid_held_under_another_name_that_cannot_be_renamed_is_a_conflict_naming_both(host: Host) -> None:
    host.other_toolstack_builds_web()
    host.other_toolstack_builds_web(name="www")  # the name the rename would need
    host.write(manifest(uuid=UUID).replace("metadata: {name: web}", "metadata: {name: www}"))
    plan = host.plan()
    assert plan.returncode == 1 and plan.stdout == "", plan.stdout + plan.stderr
    line = plan.stderr.strip().splitlines()[-1]
    assert f"VM 'www': adopt: domain 1 ('web') holds its uuid {UUID} but cannot be renamed 'www'" in line, line
    assert "another domain has that name" in line and "Traceback" not in plan.stderr


def test_without_adopt_the_domain_is_still_a_conflict(host: Host) -> None:
    host.other_toolstack_builds_web()
    host.write(manifest(adopt=False))
    plan = host.plan()
    assert plan.returncode == 1, plan.stdout + plan.stderr
    assert "was not made by the reconciler (no managed marker); to take it over, set spec.adopt: true" in plan.stderr
    assert host.apply().returncode == 1
    assert host.marker(UUID) == ""


def test_a_restart_only_difference_is_pending_under_live(host: Host) -> None:
    host.other_toolstack_builds_web()
    host.write(manifest(memory=256, max_memory=1024))
    before = host.domids()
    plan = host.plan()
    assert changes(plan.stdout) == [("<=", "VM", "web")], plan.stdout
    assert "<= VM web [restart, restart pending]: adopt: domain" in plan.stdout
    assert "spec.maxMemory only take effect on a restart; updatePolicy is live, so pending until web restarts" in plan.stdout
    done = host.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert host.domids() == before  # taken over, not restarted
    again = host.plan()
    assert changes(again.stdout) == [("~", "VM", "web")] and "spec.maxMemory: 512 -> 1024" in again.stdout


def test_a_restart_only_difference_rebuilds_under_updatepolicy_restart(host: Host) -> None:
    host.other_toolstack_builds_web()
    host.write(manifest(memory=256, max_memory=1024, policy="restart"))
    before = host.domids()
    plan = host.plan()
    assert changes(plan.stdout) == [("-/+", "VM", "web")], plan.stdout
    assert f"-/+ VM web [restart]: adopt: domain {before['web']} ('web') was built by another toolstack" in plan.stdout
    assert "taken over and rebuilt: spec.maxMemory only take effect on a restart, and updatePolicy is restart" in plan.stdout
    done = host.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert host.domids()["web"] != before["web"]  # the plan said so
    assert host.plan().returncode == 0


def test_adopt_with_no_domain_creates_the_vm(host: Host) -> None:
    host.write(manifest())
    plan = host.plan()
    assert changes(plan.stdout)[0] == ("+", "VM", "web"), plan.stdout
    assert host.apply().returncode == 0
    assert host.plan().returncode == 0
