"""One agent per host: a second `reconciler apply` on a host that one is applying to
fails at once naming the holder's pid; a SIGKILLed holder leaves no stale lock; lock
files planted as symlinks are refused and the file they point to stays untouched.
Real: two `python -m reconciler apply` processes (the first held inside `create` by a
`hang` fault of the simulated host's faults.yaml), SIGKILL, the files on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.cli.main import main
from tests.execute.conftest import without_host_line

WEB = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: pvh
  memory: 512
  kernel: /srv/vmlinuz
"""
HANG = "operations:\n  create: {hang: true, hang_s: 600}\n"  # apply A stays inside `create`


def _apply(folder: Path, state: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "RECONCILER_SIM_DELAY_SCALE": "0.02", "RECONCILER_RETRY_BACKOFF_S": "0"}
    env.pop("RECONCILER_HOST", None)
    return subprocess.Popen([sys.executable, "-m", "reconciler", "apply", str(folder), "--host", f"sim:{state}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _holding(proc: subprocess.Popen[str], lock: Path) -> None:
    """Wait until `proc` has taken the lock (its pid is in the file); not an assertion on time."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if lock.exists() and lock.read_text() == f"{proc.pid} reconciler apply\n":
            return
        time.sleep(0.02)
    raise AssertionError(f"apply never took {lock}: exit {proc.poll()}")


@pytest.fixture
def held(state_dir: Path, write_manifest: Callable[[str, str], Path]) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """An apply process that holds the lock of `state_dir`, stuck in the sim's `create`."""
    folder = write_manifest("web.yaml", WEB)
    (state_dir / "faults.yaml").write_text(HANG)
    first = _apply(folder, state_dir)
    try:
        _holding(first, state_dir / "agent.lock")
        yield folder, first
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate(timeout=30)


def test_a_second_apply_fails_at_once_naming_the_holder(held: tuple[Path, subprocess.Popen[str]], state_dir: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder, first = held
    second = _apply(folder, state_dir)
    out, err = second.communicate(timeout=60)
    assert (second.returncode, out) == (1, "")
    assert err == (f"reconciler: error: host sim:{state_dir} is busy: pid {first.pid} (reconciler apply) holds "
                   f"{state_dir / 'agent.lock'}; wait for it to finish\n")
    assert first.poll() is None  # the first one is still at work


def test_a_killed_holder_leaves_no_stale_lock(held: tuple[Path, subprocess.Popen[str]], state_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    folder, first = held
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    (state_dir / "faults.yaml").unlink()
    assert (state_dir / "agent.lock").read_text() == f"{first.pid} reconciler apply\n"  # the dead holder's pid is still written
    capsys.readouterr()
    code = main(["apply", str(folder), "--host", f"sim:{state_dir}"])
    out, err = capsys.readouterr()
    assert "busy" not in err and "Apply complete:" in out, (code, err)


APPLY = ["apply", "{folder}", "--host", "sim:{state}"]
SIM_LIST = ["sim", "list", "--state", "{state}"]  # sim commands take the host's lock only


@pytest.mark.parametrize(("name", "argv"), [("agent.lock", APPLY), ("host.lock", APPLY), ("host.lock", SIM_LIST)])
def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(state_dir: Path, tmp_path: Path, name: str, argv: list[str],
                                                                   write_manifest: Callable[[str, str], Path],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_manifest("web.yaml", WEB)
    target = tmp_path / "precious"
    target.write_text("precious data\n")
    os.symlink(target, state_dir / name)
    capsys.readouterr()
    code = main([a.format(folder=folder, state=state_dir) for a in argv])
    _, err = capsys.readouterr()
    err = without_host_line(err, f"sim:{state_dir}")
    assert code == 1 and "is a symlink; refusing to follow it" in err and err.count("\n") == 1, err
    assert target.read_text() == "precious data\n"
    assert (state_dir / name).is_symlink()
