"""Faults injected into the simulated host (DIR/faults.yaml): the failed step's dependents
are skipped, independent VMs still converge, apply exits 1 and names only the root cause;
after the fault is cleared a second apply converges. Transient errors are retried, xenstore
commit conflicts (EAGAIN) by redoing the whole transaction."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.sim.direct import DirectXenstore
from drivers.xenstore import RetrySettings, Store
from reconciler.execute.ops import OPS
from reconciler.loader import load
from reconciler.execute.runtime import Runtime
from reconciler.execute.settings import ExecuteSettings
from reconciler.plan.steps import Step
from reconciler.ports import HostPorts

Cli = Callable[..., tuple[int, str, str]]

VM = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: {name}}}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 256
{extra}  disks: [{{vdev: xvda, target: /srv/{name}.img}}]
  nics: [{{bridge: xenbr0, type: vif}}]
"""


def vm(name: str, extra: str = "") -> str:
    return VM.format(name=name, extra=extra)


def outcomes(out: str) -> dict[str, str]:
    """step id -> done|failed|skipped, from the lines apply prints as steps end (`[3/9] vm/web/create: done`)."""
    return dict(re.findall(r"^\[\d+/\d+\] ([a-z0-9]+/[a-z0-9@-]+/[a-z-]+(?:@[a-z0-9-]+)?): (done|failed|skipped)", out, re.M))


def failed_section(out: str) -> list[str]:
    block = out.split("\nFailed:\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip().split(":", 1)[0] for line in block.splitlines()]


def not_applied(out: str) -> list[str]:
    block = out.split("\nNot applied:\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


def running(host: Any) -> dict[str, str]:
    return {d.name: d.power for d in host.run(lambda p: p.toolstack.list_domains())}


@pytest.fixture
def two_vms(write_manifest: Callable[[str, str], Path]) -> Path:
    write_manifest("web.yaml", vm("web", '  pci: [{bdf: "0000:00:1f.6"}]\n'))
    return write_manifest("db.yaml", vm("db"))


def test_error_on_one_op_skips_its_dependents_and_the_rest_converges(
        served: Callable[..., Any], cli: Cli, state_dir: Path, two_vms: Path) -> None:
    faults = state_dir / "faults.yaml"
    faults.write_text("operations:\n  assignable_add: {error_rate: 1.0}\n")
    host = served()
    code, out, _ = cli("apply", str(two_vms))
    assert code == 1
    steps = outcomes(out)
    assert steps["pci/web-pci-0000-00-1f-6/pci-assignable-add"] == "failed" and "5 attempts" in out  # retried, then given up
    assert steps["vm/web/create"] == "skipped" and steps["vm/web/unpause"] == "skipped"
    assert "vm/web/create: skipped (pci/web-pci-0000-00-1f-6/pci-assignable-add failed)" in out
    assert {s for s, o in steps.items() if s.startswith("vm/db/")} and all(
        o == "done" for s, o in steps.items() if s.startswith("vm/db/"))
    assert failed_section(out) == ["pci/web-pci-0000-00-1f-6/pci-assignable-add"]  # only the root cause
    # The resources not applied, each with the step behind it; db, done, is only counted.
    listed = not_applied(out)
    assert "PCIPassthrough `web-pci-0000-00-1f-6`: failed (step pci/web-pci-0000-00-1f-6/pci-assignable-add)" in listed
    assert "VM `web`: skipped (pci/web-pci-0000-00-1f-6/pci-assignable-add failed)" in listed  # its devices too, never db's
    assert all(re.fullmatch(r"\w+ `web[^`]*`: skipped \(pci/web-pci-0000-00-1f-6/pci-assignable-add failed\)", line)
               for line in listed if "failed (step" not in line), listed
    assert re.search(r"^Apply incomplete: \d+ created, 1 failed, \d+ skipped \(\d+ of \d+ steps done, 1 failed, \d+ skipped\)\.$",
                     out, re.M), out
    assert running(host) == {"db": "running"}  # web is not built without its PCI device

    faults.unlink()
    code, out, _ = cli("apply", str(two_vms))
    assert code == 0, out
    assert running(host) == {"db": "running", "web": "running"}
    code, out, _ = cli("plan", str(two_vms), "--detailed-exitcode")
    assert code == 0, out


def test_backend_that_never_connects_fails_the_create_and_clearing_it_converges(
        served: Callable[..., Any], cli: Cli, state_dir: Path, two_vms: Path) -> None:
    faults = state_dir / "faults.yaml"
    faults.write_text("never_connect: {domains: [db]}\n")
    host = served()
    code, out, _ = cli("apply", str(two_vms))
    assert code == 1
    steps = outcomes(out)
    # The devices are built with the domain: xl destroys a domain whose device did not come up.
    assert steps["vm/db/create"] == "failed" and steps["vm/db/unpause"] == "skipped"
    assert steps["vm/web/unpause"] == "done"
    assert failed_section(out) == ["vm/db/create"]
    assert "did not connect" in out  # the host's own sentence is the error
    assert running(host) == {"web": "running"}

    faults.unlink()
    code, out, _ = cli("apply", str(two_vms))
    assert code == 0, out
    assert running(host) == {"db": "running", "web": "running"}
    assert cli("plan", str(two_vms), "--detailed-exitcode")[0] == 0


def test_transient_errors_are_retried_until_they_pass(served: Callable[..., Any], cli: Cli, state_dir: Path,
                                                      two_vms: Path) -> None:
    # seed 2: no create fails twice in a row in its first 12 calls, and the first one fails
    (state_dir / "faults.yaml").write_text("seed: 2\noperations:\n  create: {error_rate: 0.5}\n")
    served()
    code, out, _ = cli("apply", str(two_vms))
    assert code == 0, out
    assert re.search(r"^\[\d+/\d+\] vm/\S+/create: done \(\d+\.\d+ s, [2-5] attempts\)$", out, re.M), out
    assert cli("plan", str(two_vms), "--detailed-exitcode")[0] == 0


def test_a_sentinel_never_written_skips_the_vms_that_wait_for_it(
        served: Callable[..., Any], cli: Cli, monkeypatch: pytest.MonkeyPatch, state_dir: Path,
        write_manifest: Callable[[str, str], Path]) -> None:
    monkeypatch.setenv("RECONCILER_SENTINEL_TIMEOUT_S", "0.3")
    write_manifest("svc.yaml", vm("svc", "  bootSentinel: booted\n"))
    write_manifest("app.yaml", vm("app", "  dependsOn: [svc]\n"))
    folder = write_manifest("other.yaml", vm("other"))
    (state_dir / "faults.yaml").write_text("silent: [svc]\n")  # the guest never writes `booted`
    host = served()
    code, out, _ = cli("apply", str(folder))
    assert code == 1
    steps = outcomes(out)
    assert steps["vm/svc/wait-sentinel"] == "failed"
    assert all(steps[s] == "skipped" for s in steps if "/app" in s) and steps["vm/app/create"] == "skipped"
    assert failed_section(out) == ["vm/svc/wait-sentinel"]
    assert "did not write /local/domain/" in out and "within 0.3 s" in out
    assert running(host) == {"other": "running", "svc": "running"}


def test_xenstore_commits_that_conflict_are_redone_and_apply_converges(
        served: Callable[..., Any], cli: Cli, state_dir: Path, write_manifest: Callable[[str, str], Path]) -> None:
    """Half of all xenstore commits answer EAGAIN (faults.yaml `xenstore_transaction_end`):
    intent, vm-data and record transactions are redone whole, apply converges at once;
    drift written by Xen's own tools (which redo their own transactions) is set back."""
    folder = write_manifest("web.yaml", vm("web", '  xenstoreData: {vm-data/a: "1", vm-data/b: "2"}\n'))
    write_manifest("db.yaml", vm("db", '  xenstoreData: {vm-data/c: "3"}\n'))
    (state_dir / "faults.yaml").write_text("seed: 3\noperations:\n  xenstore_transaction_end: {error_rate: 0.5}\n")
    host = served()
    code, out, err = cli("apply", str(folder))
    assert code == 0, out + err
    assert cli("plan", str(folder), "--detailed-exitcode")[0] == 0
    injected = host.host.core.faults.injected().get("xenstore_transaction_end", 0)
    assert injected > 0  # conflicts really happened, and no step saw them
    domid = next(d.domid for d in running_domains(host) if d.name == "web")
    base = f"/local/domain/{domid}/vm-data"
    env = {**os.environ, "XENSTORED_PATH": str(state_dir / "xenstored.sock")}
    for argv in (["xenstore-write", f"{base}/a", "tampered", f"{base}/extra", "x"], ["xenstore-rm", f"{base}/b"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
    assert cli("plan", str(folder), "--detailed-exitcode")[0] == 2
    code, out, err = cli("apply", str(folder))
    assert code == 0 and "vm/web/xenstore-write: done" in out, out + err
    assert host.run(lambda p: p.xenstore.snapshot(base)) == {base: b"", f"{base}/a": b"1", f"{base}/b": b"2"}
    assert cli("plan", str(folder), "--detailed-exitcode")[0] == 0
    assert host.host.core.faults.injected()["xenstore_transaction_end"] > injected


def running_domains(host: Any) -> list[Any]:
    listed: list[Any] = host.run(lambda p: p.toolstack.list_domains())
    return listed


def test_vm_data_sync_reads_inside_its_transaction(write_manifest: Callable[[str, str], Path]) -> None:
    """Another writer adds a vm-data key while the xenstore-write step's transaction is
    open: the commit conflicts and the redone body, reading again, removes that key too
    (deciding from a read taken before the transaction would leave it)."""
    folder = write_manifest("web.yaml", vm("web", '  xenstoreData: {vm-data/a: "1"}\n'))
    desired = load([str(folder)]).state
    assert desired is not None
    store = Store()
    store.write("/local/domain/7/vm-data/a", "tampered")
    late = iter([True])

    def other_writer() -> bool:
        if next(late, False):
            store.write("/local/domain/7/vm-data/late", "x")  # gets in before the commit
        return False  # no injected fault: the conflict, if any, is real

    store.commit_fault = other_writer
    ports = HostPorts("t", DirectXenstore(store, RetrySettings(attempts=3, initial_wait=0.0, max_wait=0.0)),
                      None, None, None)  # type: ignore[arg-type]
    rt = Runtime(ports, desired, ExecuteSettings(), domids={"web": 7})
    step = Step("vm/web/xenstore-write", "xenstore-write", "VM", "web", "web", (("data", {"vm-data/a": "1"}),))
    asyncio.run(OPS["xenstore-write"](rt, step, False))
    assert {p: v for p, v in store.values().items() if "/vm-data/" in p} == {"/local/domain/7/vm-data/a": b"1"}
