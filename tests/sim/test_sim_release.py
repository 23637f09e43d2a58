"""@releaseDomain as C xenstored fires it (check_domains on VIRQ_DOM_EXC): once when a
domain shuts down or crashes, and again when it is destroyed. Seen by Xen's own
`xenstore-watch` against `reconciler sim serve`: a crash no toolstack handles and a
poweroff kept by `onPoweroff: preserve` each fire it while the domain stays listed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sim.test_sim_cli import _cli, _env, _serve, _stop

XENSTORE_WATCH = "/usr/bin/xenstore-watch"  # Debian xenstore-utils
XENSTORE_WRITE = "/usr/bin/xenstore-write"
MANIFESTS = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: crashy}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64}
---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: keeper}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 64
  lifecycle: {onPoweroff: preserve}
"""


@pytest.fixture
def host(state_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """A served host running `crashy` and `keeper`, applied from manifests."""
    serve = _serve(state_dir)
    try:
        (tmp_path / "vms.yaml").write_text(MANIFESTS)
        done = subprocess.run([sys.executable, "-m", "reconciler", "apply", str(tmp_path), "--host", f"sim:{state_dir}"],
                              env=_env(state_dir), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        yield state_dir
    finally:
        _stop(serve)


def _listed(state_dir: Path) -> dict[str, list[str]]:
    done = _cli(state_dir, "list")
    assert done.returncode == 0, done.stderr
    return {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines()[1:] if line.strip()}


def _watch_release(state_dir: Path, events: int) -> subprocess.Popen[str]:
    """`xenstore-watch -n EVENTS @releaseDomain`, once its registration event is out."""
    proc = subprocess.Popen([XENSTORE_WATCH, "-n", str(events), "@releaseDomain"], env=_env(state_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().split() == ["@releaseDomain"]  # xenstored fires a new watch once
    return proc


def _rest(proc: subprocess.Popen[str]) -> list[str]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return [line.split()[0] for line in out.splitlines()]


def test_an_unhandled_crash_fires_release_domain_and_the_destroy_fires_it_again(host: Path) -> None:
    for step, power in ((("crash", "crashy", "--unhandled"), "crashed"), (("destroy", "crashy"), None)):
        watch = _watch_release(host, 2)
        try:
            assert _cli(host, *step).returncode == 0
            assert _rest(watch) == ["@releaseDomain"]
        finally:
            watch.kill()
            watch.wait()
        # after the crash still listed: the event is the crash's, not a destroy's
        assert _listed(host).get("crashy", [None])[-1] == power


def test_a_preserved_poweroff_requested_with_xenstore_write_fires_release_domain(host: Path) -> None:
    domid = _listed(host)["keeper"][0]
    watch = _watch_release(host, 2)
    try:
        done = subprocess.run([XENSTORE_WRITE, f"/local/domain/{domid}/control/shutdown", "poweroff"],
                              env=_env(host), capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert _rest(watch) == ["@releaseDomain"]
    finally:
        watch.kill()
        watch.wait()
    assert _listed(host)["keeper"][-1] == "shutdown"  # preserved: no destroy fired it
