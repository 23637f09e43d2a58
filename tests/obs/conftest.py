"""Fixtures for observability: logs, metrics, sd_notify, apply progress, the systemd unit.

Real: the `reconciler` CLI in processes of its own, the embedded simulated host of a
temporary state directory, an HTTP server scraped over TCP, Unix datagram sockets,
pseudo-terminals. Faked: nothing (simulated delays 50x shorter, retries without sleeps).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {
    "RECONCILER_SIM_DELAY_SCALE": "0.02",
    "RECONCILER_RETRY_BACKOFF_S": "0",
    "RECONCILER_SENTINEL_TIMEOUT_S": "5",
    "RECONCILER_SHUTDOWN_TIMEOUT_S": "2",
}
SECRET = "hunter2-very-secret"
WEB = f"""\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: web}}
spec:
  virt: hvm
  memory: 512
  maxMemory: 1024
  display: {{type: vnc, vncPassword: {SECRET}}}
  disks: [{{vdev: hda, target: /srv/web.img}}]
"""
DB = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: db}
spec:
  virt: pvh
  memory: 256
  kernel: /boot/vmlinuz
"""

Run = Callable[..., subprocess.CompletedProcess[str]]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "NOTIFY_", "WATCHDOG_"))}
    return {**env, **ENV}


@pytest.fixture
def state() -> Iterator[Path]:
    """A short state directory for the embedded simulated host (socket paths <= 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="obs-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "web.yaml").write_text(WEB)
    (folder / "db.yaml").write_text(DB)
    return folder


@pytest.fixture
def reconciler() -> Run:
    """`reconciler(*argv)` -> the finished process (text, stdout and stderr apart)."""

    def run(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "reconciler", *argv], cwd=REPO, env=environment(),
                              capture_output=True, text=True, timeout=timeout, check=False)

    return run
