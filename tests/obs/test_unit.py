"""The shipped systemd unit: systemd's own verifier accepts it without a warning, its
exposure stays low, and its ExecStart is a command line the reconciler accepts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.agent.metrics import parse_addr
from reconciler.cli.hosts import parse_host
from reconciler.cli.main import build_parser
from reconciler.logs import FORMATS
from tests.obs.conftest import REPO

UNIT = REPO / "contrib" / "xen-reconciler.service"
# `watch`'s options (ISSUE12 / DESIGN section 6), until the verb itself parses them.
WATCH_OPTIONS = {"--host", "--resync", "--debounce", "--log-format", "--metrics", "--max-destroy", "--drift",
                 "--git", "--branch", "--interval"}
analyze = shutil.which("systemd-analyze")


def service() -> dict[str, list[str]]:
    """[Service] key -> every value given (ReadWritePaths= appears twice)."""
    keys: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif line and not line.startswith("#") and section == "Service":
            key, _, value = line.partition("=")
            keys.setdefault(key, []).append(value)
    return keys


def test_exec_start_is_a_watch_command_line_the_reconciler_accepts() -> None:
    argv = shlex.split(service()["ExecStart"][0])
    assert argv[0] == "/usr/bin/reconciler" and argv[1] == "watch"
    options = dict(zip(argv[3::2], argv[4::2], strict=True))  # watch PATH, then --flag VALUE pairs
    assert argv[2].startswith("/etc/xen-reconciler/") and set(options) <= WATCH_OPTIONS
    assert parse_host(options["--host"]).kind == "xen"
    assert parse_addr(options["--metrics"]) == ("127.0.0.1", 9150)  # loopback only
    assert options["--log-format"] in FORMATS
    if _has_watch():
        build_parser().parse_args(argv[1:])  # the real parser, once `watch` is a verb


def _has_watch() -> bool:
    try:
        build_parser().parse_args(["watch", "--help"])
    except SystemExit as exc:
        return exc.code == 0
    return False


def test_the_agent_is_notify_with_a_watchdog_and_keeps_guests_on_stop() -> None:
    keys = service()
    assert keys["Type"] == ["notify"] and keys["NotifyAccess"] == ["main"]
    assert int(keys["WatchdogSec"][0]) > 0 and keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert keys["KillMode"] == ["process"]  # the per-domain xl and device models survive a restart
    assert keys["RuntimeDirectory"] == ["xen-reconciler"]  # where the lock and status file live
    paths = " ".join(keys["ReadWritePaths"]).split()
    assert "-/run/xenstored" in paths and "-/var/lib/xen" in paths
    assert keys["ProtectSystem"] == ["strict"] and keys["ProtectKernelTunables"] == ["no"]  # pciback in sysfs


@pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")
def test_systemd_verifies_the_unit_without_a_warning(tmp_path: Path) -> None:
    # ExecStart must name an executable: the installed console script stands in for
    # /usr/bin/reconciler; the units it depends on are stubs.
    script = shutil.which("reconciler") or str(Path(REPO / ".venv/bin/reconciler"))
    (tmp_path / UNIT.name).write_text(UNIT.read_text().replace("/usr/bin/reconciler", script))
    for stub in ("xenstored", "xen-init-dom0"):
        (tmp_path / f"{stub}.service").write_text("[Service]\nExecStart=/bin/true\n")
    env = {"PATH": "/usr/bin:/bin", "SYSTEMD_UNIT_PATH": f"{tmp_path}:", "SYSTEMD_LOG_COLOR": "0"}
    assert analyze is not None
    done = subprocess.run([analyze, "verify", str(tmp_path / UNIT.name)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    # The verifier itself: an unknown key is a warning it prints.
    (tmp_path / UNIT.name).write_text((tmp_path / UNIT.name).read_text() + "\n[Service]\nProtectEverything=yes\n")
    done = subprocess.run([analyze, "verify", str(tmp_path / UNIT.name)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert "ProtectEverything" in done.stderr


@pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed")
def test_exposure_stays_low() -> None:
    assert analyze is not None
    done = subprocess.run([analyze, "security", "--offline=true", "--threshold=50", str(UNIT)],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={"PATH": "/usr/bin:/bin", "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_COLORS": "0"})
    # exit 0: the overall exposure is 5.0 or lower (4.8 with systemd 252; a bare root service: 9.6)
    assert done.returncode == 0, done.stdout + done.stderr
