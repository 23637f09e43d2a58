"""After any interruption of `apply`, `plan` tells the truth and `apply` finishes the work
(DESIGN 7), and what the reconciler records stays its own.

Real: `reconciler apply` as a process of its own, stopped by real signals (SIGKILL,
SIGINT, SIGTERM); the simulated host served on real sockets (`served`, as `sim serve`
would) or embedded in the apply process; Xen's `xenstore-ls` reading the permissions.
The only instrument: the served host's own operation table is wrapped so that the
signal goes out at an exact point (right after a toolstack call did its work, before
the apply hears back), which no timer could hit reliably.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.xenstore import errors
from drivers.xenstore.nodes import Caller
from reconciler.errors import TransientHostError
from reconciler.model import default_vm_uuid
from reconciler.model.host import BUILDING

NIC_BDF = "0000:00:1f.6"  # the simulated laptop's I219 Ethernet
WEB = f"""\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: web}}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 256
  type: web
  xenstoreData: {{vm-data/a: "1"}}
  disks: [{{target: /srv/web.img, vdev: xvda}}]
  nics: [{{bridge: xenbr0}}]
  pci: [{{bdf: "{NIC_BDF}"}}]
  v4vRules: ["myself -> 0:80"]
"""
DB = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: db}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 128
  type: db
  disks: [{target: /srv/db.img, vdev: xvda}]
  v4vRules: ["dom-type=web -> myself:5432"]
"""
SECRET = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: desk}
spec:
  virt: hvm
  memory: 256
  display: {type: vnc, vncPassword: hunter2}
"""
Cli = Callable[..., tuple[int, str, str]]


def _apply_process(repo: Path, folder: Path, state_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "reconciler", "apply", str(folder), "--host", f"sim:{state_dir}",
                             *extra], cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class SignalAt:
    """Sends `sig` to the apply process from inside the served host at the `nth` call of
    toolstack operation `op`: `after` it did its work, `before` it starts (it still runs),
    or `instead` of it (it never runs: the apply died before its request left)."""

    def __init__(self, served: Any, op: str, nth: int, sig: signal.Signals, *, when: str = "after") -> None:
        self.ops, self.op = served.host.dispatch.ops, op
        self.original = self.ops[op]
        self.pid: int | None = None
        self.calls = 0

        async def wrapped(args: Any) -> Any:
            self.calls += 1
            hit = self.calls == nth and self.pid is not None
            if hit and when != "after":
                os.kill(self.pid, sig)  # type: ignore[arg-type]
                if when == "instead":
                    raise TransientHostError("the caller is gone")
            result = await self.original(args)
            if hit and when == "after":
                os.kill(self.pid, sig)  # type: ignore[arg-type]
            return result

        self.ops[op] = wrapped

    def restore(self) -> None:
        self.ops[self.op] = self.original


@pytest.fixture
def two_vms(write_manifest: Callable[[str, str], Path]) -> Path:
    write_manifest("web.yaml", WEB)
    return write_manifest("db.yaml", DB)


def _converged_without_leftovers(host: Any, cli: Cli, folder: Path) -> None:
    code, out, err = cli("plan", str(folder), "--detailed-exitcode")
    assert code == 0 and out.startswith("No changes."), out + err
    domains = host.run(lambda p: p.toolstack.list_domains())
    assert sorted(d.name for d in domains) == ["db", "web"]  # no second domain of either
    table = host.run(lambda p: p.firewall.list())
    assert [e for e, n in collections.Counter(table).items() if n > 1] == []  # no entry twice
    tree = host.run(lambda p: p.xenstore.snapshot("/"))
    assert not [k for k in tree if k.startswith(BUILDING + "/")]  # every intent settled
    web = next(d.domid for d in domains if d.name == "web")
    backends = [k for k in tree if k.startswith(f"/local/domain/0/backend/") and k.endswith("/state")]
    assert sum(f"/{web}/" in k for k in backends if "/vbd/" in k) == 1  # one disk, not two
    assert sum(f"/{web}/" in k for k in backends if "/vif/" in k) == 1
    inventory = host.run(lambda p: p.pciback.inventory())
    assert next(d.driver for d in inventory if d.bdf == NIC_BDF) == "pciback"


# ---- SIGKILL at several points ------------------------------------------------------------

POINTS = [
    ("assignable_add", 1, "after"),  # the NIC quarantined on pciback, nothing built yet
    ("create", 1, "after"),  # the first domain built with its devices, its record not written: the case that said "No changes"
    ("create", 1, "before"),  # the apply dies while the host builds the domain and its devices
    ("create", 2, "after"),  # both built
    ("fw_insert_many", 1, "after"),  # one VM's firewall in, the other's not
    ("unpause", 1, "after"),  # one guest running, the other paused
]


@pytest.mark.parametrize(("op", "nth", "when"), POINTS, ids=[f"{op}-{n}-{w}" for op, n, w in POINTS])
def test_sigkill_at_any_step_then_plan_shows_the_rest_and_apply_finishes_it(
        served: Callable[..., Any], cli: Cli, two_vms: Path, repo: Path, state_dir: Path, op: str, nth: int,
        when: str) -> None:
    host = served()
    trap = SignalAt(host, op, nth, signal.SIGKILL, when=when)
    proc = _apply_process(repo, two_vms, state_dir, "--parallelism", "1")
    trap.pid = proc.pid
    out, err = proc.communicate(timeout=120)
    trap.restore()
    assert proc.returncode == -signal.SIGKILL, out + err

    code, plan, err = cli("plan", str(two_vms), "--detailed-exitcode")
    assert (code, err) == (2, ""), plan + err  # never "No changes" with work left
    built = {d.name for d in host.run(lambda p: p.toolstack.list_domains())}
    for name in built:  # a domain the killed apply built is ours, and its unfinished work is named
        assert f"~ VM {name}" in plan or f"VM {name}:" not in plan, plan
    if op == "create":
        assert "an apply built it and was interrupted before recording it; left to do: its last-applied record" in plan
        assert "not adopted" not in plan

    code, out, err = cli("apply", str(two_vms))
    assert code == 0, out + err
    _converged_without_leftovers(host, cli, two_vms)


def test_sigkill_between_intent_and_build_builds_once(served: Callable[..., Any], cli: Cli, two_vms: Path,
                                                      repo: Path, state_dir: Path) -> None:
    host = served()
    trap = SignalAt(host, "create", 1, signal.SIGKILL, when="instead")  # the intent is written, xl create not run
    proc = _apply_process(repo, two_vms, state_dir, "--parallelism", "1")
    trap.pid = proc.pid
    proc.communicate(timeout=120)
    trap.restore()
    assert proc.returncode == -signal.SIGKILL
    assert host.run(lambda p: p.toolstack.list_domains()) == []
    tree = host.run(lambda p: p.xenstore.snapshot(BUILDING))
    assert len([k for k in tree if k != BUILDING]) == 1  # the intent of the VM being built
    assert cli("plan", str(two_vms), "--detailed-exitcode")[0] == 2
    assert cli("apply", str(two_vms))[0] == 0
    _converged_without_leftovers(host, cli, two_vms)


# ---- SIGINT / SIGTERM ---------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_new_steps_lets_the_running_one_finish_and_lists_the_rest(
        served: Callable[..., Any], cli: Cli, two_vms: Path, repo: Path, state_dir: Path, sig: signal.Signals) -> None:
    host = served()
    trap = SignalAt(host, "create", 1, sig, when="before")  # arrives while the first create runs
    proc = _apply_process(repo, two_vms, state_dir, "--parallelism", "1")
    trap.pid = proc.pid
    out, err = proc.communicate(timeout=120)
    trap.restore()
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err and f"{sig.name}: no new step starts" in err
    created = re.findall(r"^\[\d+/\d+\] vm/([^/]+)/create: done \(", out, re.M)
    assert len(created) == 1, out  # the running create finished and was reported ...
    assert trap.calls == 1  # ... and nothing else was started
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"Interrupted by {sig.name}: ") and "steps left undone" in last and "/record" in last, out
    assert [d.name for d in host.run(lambda p: p.toolstack.list_domains())] == created

    code, plan, _ = cli("plan", str(two_vms), "--detailed-exitcode")
    assert code == 2 and "interrupted before recording it" in plan
    assert cli("apply", str(two_vms))[0] == 0
    _converged_without_leftovers(host, cli, two_vms)


# ---- the embedded host persists as it goes -------------------------------------------------


def _wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_sigkill_of_an_apply_that_embeds_the_host_loses_at_most_the_step_in_flight(
        cli: Cli, write_manifest: Callable[[str, str], Path], repo: Path, state_dir: Path) -> None:
    folder = write_manifest("web.yaml", WEB)
    # unpause blocks (a hung toolstack call): the apply sits there with web built and recorded.
    (state_dir / "faults.yaml").write_text("operations:\n  unpause: {hang: true, hang_s: 300}\n")
    proc = _apply_process(repo, folder, state_dir, "--parallelism", "1")
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if re.match(r"\[\d+/\d+\] vm/web/record: done", line):
                break
        uuid = default_vm_uuid("web")
        state = state_dir / "xenstore.json"
        _wait_for(lambda: state.exists() and f"/vm/{uuid}/reconciler/managed".encode() in state.read_bytes(),
                  "the embedded host to save the record while the apply runs")
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    (state_dir / "faults.yaml").unlink()
    code, plan, err = cli("plan", str(folder), "--detailed-exitcode")
    assert code == 2, plan + err
    assert "Plan: 0 to create" in plan and "~ VM web" in plan and 'spec.state: "paused" -> "running"' in plan, plan
    assert cli("apply", str(folder))[0] == 0
    code, plan, _ = cli("plan", str(folder), "--detailed-exitcode")
    assert code == 0, plan


# ---- records that always fit, and that only dom0 reads -------------------------------------


def test_a_record_larger_than_a_xenstore_value_is_split_and_read_back(
        served: Callable[..., Any], cli: Cli, write_manifest: Callable[[str, str], Path]) -> None:
    # What the host cannot show is recorded: a long command line and many disks' options.
    disks = ", ".join(f"{{target: /srv/web-{i}.img, vdev: xvd{chr(97 + i)}}}" for i in range(12))
    big = WEB.replace("disks: [{target: /srv/web.img, vdev: xvda}]", f"disks: [{disks}]").replace(
        "kernel: /boot/vmlinuz", "kernel: /boot/vmlinuz\n  cmdline: " + "console=hvc0" + " quiet" * 500)
    folder = write_manifest("web.yaml", big)
    host = served()
    code, out, err = cli("apply", str(folder))
    assert code == 0, out + err
    nodes = host.run(lambda p: p.xenstore.snapshot(f"/vm/{default_vm_uuid('web')}/reconciler"))
    chunks = [v for k, v in nodes.items() if "/applied/" in k]
    assert sum(map(len, chunks)) > 4096 and max(map(len, chunks)) <= 1024, [len(c) for c in chunks]
    code, out, _ = cli("plan", str(folder), "--detailed-exitcode")
    assert code == 0 and out.startswith("No changes."), out
    # The record is read back, not merely present: a field only it holds is compared.
    (folder / "web.yaml").write_text(big.replace("type: web", "type: web2"))
    code, out, _ = cli("plan", str(folder), "--detailed-exitcode")
    assert code == 2 and 'spec.type: "web" -> "web2"' in out, out


def _xenstore_ls(state_dir: Path, path: str) -> str:
    env = {**os.environ, "XENSTORED_PATH": str(state_dir / "xenstored.sock")}
    done = subprocess.run(["xenstore-ls", "-fp", path], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_records_are_dom0_only_and_hold_no_guessable_hash_of_a_secret(
        served: Callable[..., Any], cli: Cli, write_manifest: Callable[[str, str], Path], state_dir: Path) -> None:
    import hashlib

    folder = write_manifest("desk.yaml", SECRET)
    host = served()
    code, out, err = cli("apply", str(folder))
    assert code == 0, out + err
    domid = next(d.domid for d in host.run(lambda p: p.toolstack.list_domains()) if d.name == "desk")
    base = f"/vm/{default_vm_uuid('desk')}/reconciler"
    listed = _xenstore_ls(state_dir, base).splitlines()  # Xen's own tool: `path = "value"  (perms)`
    assert listed and all(line.endswith("(n0)") for line in listed), listed
    with pytest.raises(errors.AccessDenied):
        host.host.store.read(f"{base}/applied/0", Caller(domid))  # the guest itself
    bare = hashlib.sha256(b"hunter2").hexdigest().encode()
    everything = host.run(lambda p: p.xenstore.snapshot("/"))
    assert not [k for k, v in everything.items() if bare in v or b"hunter2" in v]
    code, shown, _ = cli("observe")
    assert code == 0 and "pbkdf2" not in shown and bare.decode() not in shown and "(sensitive)" in shown
    assert cli("plan", str(folder), "--detailed-exitcode")[0] == 0  # the salted record still matches
    (folder / "desk.yaml").write_text(SECRET.replace("hunter2", "hunter3"))
    code, out, _ = cli("plan", str(folder), "--detailed-exitcode")
    assert code == 2 and "spec.display.vncPassword: (sensitive) -> (sensitive)" in out, out


# ---- a domain the reconciler did not make --------------------------------------------------


def test_desired_vm_held_by_an_unmanaged_domain_is_a_conflict(
        served: Callable[..., Any], cli: Cli, two_vms: Path, state_dir: Path, repo: Path) -> None:
    host = served()
    made = subprocess.run([sys.executable, "-m", "reconciler", "sim", "create", "web", "--virt", "pv", "--memory", "64",
                           "--kernel", "/boot/vmlinuz", "--state", str(state_dir)], cwd=repo, capture_output=True,
                          text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    domid = next(d.domid for d in host.run(lambda p: p.toolstack.list_domains()) if d.name == "web")
    for verb, extra in (("plan", ["--detailed-exitcode"]), ("apply", [])):
        code, out, err = cli(verb, str(two_vms), *extra)
        assert code == 1, out + err
        (line,) = err.splitlines()
        assert line.startswith(f"{two_vms / 'web.yaml'}:") and f"VM 'web': domain {domid} ('web')" in line
        assert "not made by the reconciler" in line and "set spec.adopt: true" in line
    assert [d.name for d in host.run(lambda p: p.toolstack.list_domains())] == ["web"]  # apply touched nothing


def test_an_older_record_with_a_bare_secret_hash_is_read_and_written_again_salted(
        served: Callable[..., Any], cli: Cli, write_manifest: Callable[[str, str], Path], state_dir: Path) -> None:
    import hashlib
    import json

    folder = write_manifest("desk.yaml", SECRET)
    host = served()
    assert cli("apply", str(folder))[0] == 0
    base = f"/vm/{default_vm_uuid('desk')}/reconciler"
    nodes = host.run(lambda p: p.xenstore.snapshot(base))
    record = json.loads(b"".join(v for k, v in sorted(nodes.items()) if "/applied/" in k))
    bare = "sha256:" + hashlib.sha256(b"hunter2").hexdigest()
    record["vm"]["display"]["vncPassword"] = bare  # as versions before the salt recorded it
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    env = {**os.environ, "XENSTORED_PATH": str(state_dir / "xenstored.sock")}
    for argv in (["xenstore-rm", f"{base}/applied"], ["xenstore-write", f"{base}/applied", text,
                                                     f"{base}/digest", hashlib.sha256(text.encode()).hexdigest()]):
        assert subprocess.run(argv, env=env, capture_output=True, timeout=30, check=False).returncode == 0
    code, out, _ = cli("plan", str(folder), "--detailed-exitcode")
    assert code == 2 and "holds a bare hash of a secret" in out and "vncPassword" not in out, out  # read: no change
    assert cli("apply", str(folder))[0] == 0
    everything = host.run(lambda p: p.xenstore.snapshot("/"))
    assert not [k for k, v in everything.items() if bare.encode()[7:] in v]
    assert cli("plan", str(folder), "--detailed-exitcode")[0] == 0


def test_intent_of_a_vm_never_built_is_dropped_so_it_adopts_no_stranger_later(
        served: Callable[..., Any], cli: Cli, two_vms: Path, repo: Path, state_dir: Path) -> None:
    host = served()
    trap = SignalAt(host, "create", 1, signal.SIGKILL, when="instead")  # intent written, nothing built
    proc = _apply_process(repo, two_vms, state_dir, "--parallelism", "1")
    trap.pid = proc.pid
    proc.communicate(timeout=120)
    trap.restore()
    (intent,) = [k for k in host.run(lambda p: p.xenstore.snapshot(BUILDING)) if k != BUILDING]
    name = host.run(lambda p: p.xenstore.read(intent)).decode()
    (two_vms / f"{name}.yaml").unlink()  # the VM leaves the manifests before it was ever built
    code, plan, _ = cli("plan", str(two_vms), "--detailed-exitcode")
    assert code == 2 and f"~ VM {name}" in plan and "its build intent is dropped" in plan, plan
    assert "vm/" + name + "/forget" in plan
    assert cli("apply", str(two_vms))[0] == 0
    assert [k for k in host.run(lambda p: p.xenstore.snapshot(BUILDING)) if k != BUILDING] == []
    # Someone now builds a domain of that name by hand (same derived uuid): not ours.
    made = subprocess.run([sys.executable, "-m", "reconciler", "sim", "create", name, "--virt", "pv", "--memory", "64",
                           "--kernel", "/boot/vmlinuz", "--state", str(state_dir)], cwd=repo, capture_output=True,
                          text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    code, plan, _ = cli("plan", str(two_vms), "--detailed-exitcode")
    assert code == 0 and f"VM {name}" not in plan.split("No changes")[0].replace(f"'{name}'", ""), plan


def test_device_bound_by_a_killed_apply_goes_back_once_no_vm_needs_it(
        served: Callable[..., Any], cli: Cli, two_vms: Path, repo: Path, state_dir: Path) -> None:
    host = served()
    trap = SignalAt(host, "assignable_add", 1, signal.SIGKILL)  # on pciback, its VM not built
    proc = _apply_process(repo, two_vms, state_dir, "--parallelism", "1")
    trap.pid = proc.pid
    proc.communicate(timeout=120)
    trap.restore()
    assert proc.returncode == -signal.SIGKILL
    (two_vms / "web.yaml").unlink()  # the VM that wanted the NIC is gone from the manifests
    code, plan, _ = cli("plan", str(two_vms), "--detailed-exitcode")
    assert code == 2 and NIC_BDF in plan, plan
    assert cli("apply", str(two_vms))[0] == 0
    inventory = host.run(lambda p: p.pciback.inventory())
    assert next(d.driver for d in inventory if d.bdf == NIC_BDF) == "e1000e"  # not left on pciback for nothing
    assert cli("plan", str(two_vms), "--detailed-exitcode")[0] == 0


def test_a_vm_built_by_a_killed_apply_is_finished_with_its_sentinel_wait(
        served: Callable[..., Any], cli: Cli, write_manifest: Callable[[str, str], Path], repo: Path,
        state_dir: Path) -> None:
    """Killed between create and record, a VM with a bootSentinel has no record naming the
    node, so the host cannot say whether its guest booted: the apply that finishes it waits
    for the sentinel as its start would have (it used to unpause, record and exit at once,
    leaving a plan that wanted the sentinel on an embedded host where no guest ran on)."""
    folder = write_manifest("db.yaml", DB.replace("  type: db\n", "  type: db\n  bootSentinel: booted\n"))
    host = served()
    trap = SignalAt(host, "create", 1, signal.SIGKILL)
    proc = _apply_process(repo, folder, state_dir, "--parallelism", "1")
    trap.pid = proc.pid
    out, err = proc.communicate(timeout=120)
    trap.restore()
    assert proc.returncode == -signal.SIGKILL, out + err
    code, plan, err = cli("plan", str(folder), "--detailed-exitcode")
    assert code == 2 and "vm/db/wait-sentinel" in plan and '~ sentinel: "not checked" -> "written"' in plan, plan + err
    code, out, err = cli("apply", str(folder))
    assert code == 0 and "vm/db/wait-sentinel: done" in out, out + err
    _converged_without_leftovers_of(host, cli, folder, ["db"])


def _converged_without_leftovers_of(host: Any, cli: Cli, folder: Path, names: list[str]) -> None:
    code, out, err = cli("plan", str(folder), "--detailed-exitcode")
    assert code == 0 and out.startswith("No changes."), out + err
    assert sorted(d.name for d in host.run(lambda p: p.toolstack.list_domains())) == names
