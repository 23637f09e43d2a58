"""sd_notify over a real Unix datagram socket (a path and the abstract namespace), and
the watchdog interval as sd_watchdog_enabled(3) defines it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.agent.sdnotify import notify, watchdog_interval
from tests.obs.conftest import REPO


@pytest.fixture
def receiver() -> Iterator[tuple[socket.socket, Path]]:
    folder = Path(tempfile.mkdtemp(prefix="sdn-"))
    path = folder / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    yield sock, path
    sock.close()
    path.unlink()
    folder.rmdir()


def test_fields_arrive_in_one_datagram(receiver: tuple[socket.socket, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    assert notify("READY=1", "STATUS=converged: 3 VMs")
    assert sock.recv(4096) == b"READY=1\nSTATUS=converged: 3 VMs"
    assert notify("STATUS=bad file x\nREADY=1")  # a newline cannot forge a second assignment
    assert sock.recv(4096) == b"STATUS=bad file x READY=1"


def test_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"reconciler-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_from_another_process(receiver: tuple[socket.socket, Path]) -> None:
    # As systemd sees it: a separate process, its environment given by the service manager.
    sock, path = receiver
    env = {**os.environ, "NOTIFY_SOCKET": str(path)}
    code = "from reconciler.agent.sdnotify import notify; raise SystemExit(0 if notify('STOPPING=1') else 3)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, timeout=60).returncode == 0
    assert sock.recv(4096) == b"STOPPING=1"


@pytest.mark.parametrize("value", [None, "", "relative/path", "vsock:2:1234", "@"])
def test_no_usable_socket_is_false(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert notify("READY=1") is False


def test_nobody_listening_is_false(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert notify("READY=1") is False


@pytest.mark.parametrize(("usec", "pid", "expected"), [
    ("20000000", None, 10.0), ("20000000", "self", 10.0), ("1000", None, 0.0005),
    ("20000000", "1", None), ("20000000", "x", None), (None, None, None), ("0", None, None), ("-5", None, None),
    ("abc", None, None), ("", "self", None),
])
def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None,
                           expected: float | None) -> None:
    for key, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    assert watchdog_interval() == expected
