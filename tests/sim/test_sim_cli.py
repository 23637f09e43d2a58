"""The issue's "Done when", end to end with real processes: `reconciler sim serve`, then
`reconciler sim create` with disks and NICs, Debian's `xenstore-ls -f` showing libxl's
layout, SIGTERM (exit 0), and a second run still seeing the domain. Plus the small
toolstack sub-commands and their one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.model import default_vm_uuid
from reconciler.xenfmt import auto_mac

XENSTORE_LS = "/usr/bin/xenstore-ls"  # Debian xenstore-utils


def _env(state_dir: Path) -> dict[str, str]:
    return {**os.environ, "RECONCILER_SIM_DELAY_SCALE": "0.02", "XENSTORED_PATH": str(state_dir / "xenstored.sock")}


def _cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "sim", *args, "--state", str(state_dir)],
                          env=_env(state_dir), capture_output=True, text=True, timeout=60)


def _serve(state_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "sim", "serve", "--state", str(state_dir)],
                            env=_env(state_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]  # printed once both sockets listen
    assert lines[-1] == f"export XENSTORED_PATH={state_dir / 'xenstored.sock'}\n", lines
    return proc


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def test_done_when_serve_create_xenstore_ls_sigterm_and_rerun(state_dir: Path) -> None:
    serve = _serve(state_dir)
    try:
        made = _cli(state_dir, "create", "web1", "--virt", "pvh", "--memory", "1024", "--kernel", "/boot/vmlinuz",
                    "--disk", "/srv/web1.img,xvda", "--disk", "/srv/data.qcow2,xvdb,qcow2", "--nic", "xenbr0",
                    "--nic", "xenbr1,00:16:3e:aa:bb:cc")
        assert (made.returncode, made.stdout, made.stderr) == (0, "created web1 as domain 1\n", "")
        dump = subprocess.run([XENSTORE_LS, "-f"], env=_env(state_dir), capture_output=True, text=True, timeout=30)
        assert dump.returncode == 0, dump.stderr
        lines = set(dump.stdout.splitlines())
    finally:
        err = _stop(serve)
    assert "saved" in err
    vbd, qdisk, vif = ("/local/domain/0/backend/vbd/1/51712", "/local/domain/0/backend/qdisk/1/51728",
                       "/local/domain/0/backend/vif/1")
    expected = {
        f'{vbd}/state = "4"', f'{vbd}/hotplug-status = "connected"', f'{vbd}/params = "/srv/web1.img"',
        f'{vbd}/frontend = "/local/domain/1/device/vbd/51712"', f'{vbd}/dev = "xvda"', f'{vbd}/type = "phy"',
        f'{qdisk}/state = "4"', f'{qdisk}/params = "qcow2:/srv/data.qcow2"',
        f'{vif}/0/state = "4"', f'{vif}/0/hotplug-status = "connected"', f'{vif}/0/bridge = "xenbr0"',
        f'{vif}/0/mac = "{auto_mac(default_vm_uuid("web1"), 0)}"', f'{vif}/1/mac = "00:16:3e:aa:bb:cc"',
        f'{vif}/1/bridge = "xenbr1"',
        f'/local/domain/1/device/vbd/51712/backend = "{vbd}"', '/local/domain/1/device/vbd/51712/state = "4"',
        '/local/domain/1/device/vif/0/state = "4"', '/local/domain/1/name = "web1"',
        '/local/domain/1/memory/static-max = "1048576"', '/local/domain/1/memory/target = "1048576"',
        f'/libxl/1/device/vbd/51712/backend = "{vbd}"', '/libxl/1/device/vbd/51712/params = "/srv/web1.img"',
        f'/libxl/1/device/vif/0/backend = "{vif}/0"', '/libxl/1/type = "pvh"',
        f'/vm/{default_vm_uuid("web1")}/name = "web1"',
    }
    assert expected - lines == set()

    # A second run, without `serve`, embeds the host and still sees the domain.
    listed = _cli(state_dir, "list")
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].split() == ["web1", "1", "1024", "1", "running"]
    serve = _serve(state_dir)  # and a restarted `serve` resumes it too
    try:
        again = subprocess.run([XENSTORE_LS, "-f", "/local/domain/1"], env=_env(state_dir),
                               capture_output=True, text=True, timeout=30)
        assert '/local/domain/1/name = "web1"' in again.stdout.splitlines()
    finally:
        _stop(serve)


def test_sim_subcommands_and_one_line_errors(state_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECONCILER_SIM_DELAY_SCALE", "0.02")

    def sim(*args: str) -> tuple[int, str, str]:
        code = main(["sim", *args, "--state", str(state_dir)])
        out, err = capsys.readouterr()
        return code, out, err

    assert sim("create", "db", "--virt", "pv", "--memory", "256", "--kernel", "/k", "--paused") == \
        (0, "created db as domain 1 (paused)\n", "")
    assert sim("list")[1].splitlines()[1].split() == ["db", "1", "256", "1", "paused"]
    assert sim("unpause", "db")[0] == 0
    assert sim("pause", "db")[1] == "db: pause done\n"
    assert sim("unpause", "db")[0] == 0
    assert sim("shutdown", "db")[1] == "db: shutdown done\n"
    assert sim("list")[1].splitlines()[1:] == []
    pci = sim("pci")[1].splitlines()
    assert pci[0].split() == ["BDF", "Class", "Vendor:Device", "Driver"]
    assert "0000:00:02.0  0x0300  8086:9b41      i915" in pci and pci[1:] == sorted(pci[1:])
    assert sim("fw")[1] == "  1  --dom-in 0 --dom-out 0 -j ACCEPT\n  2  -j REJECT\n"
    for args, message in [
        (("destroy", "ghost"), "no domain named 'ghost'"),
        (("create", "x", "--virt", "pv", "--memory", "64", "--disk", "only-one-part"), "--disk only-one-part: expected"),
        (("create", "Bad_Name", "--virt", "hvm", "--memory", "64"), "domain 'Bad_Name': metadata.name"),
        (("create", "x", "--virt", "pv", "--memory", "64", "--kernel", "/k", "--pci", "0000:09:00.0"), "no PCI device 0000:09:00.0"),
    ]:
        code, out, err = sim(*args)
        assert (code, out) == (1, "") and err.startswith("reconciler: error: ") and message in err
        assert err.count("\n") == 1, err
    assert sim("list")[1].splitlines()[1:] == []  # the failed create was destroyed again
