"""The simulated host saves on change, never by polling (issue 11): idle, `sim serve`
encodes and writes nothing; a change made through the host RPC, Xen's own xenstore
tools or a guest acting on its own is on disk without a clean stop, so it survives a
SIGKILL. Real `sim serve` processes, Xen's xenstore-write/-read, the host's own RPC for
its save counters (`host_status`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.sim import open_sim
from drivers.sim.host import STATUS_OP, SimHost
from drivers.sim.rpc import RpcClient

IDLE_S = 2.5  # longer than the one-second poll the host used to save by


def _env(state_dir: Path) -> dict[str, str]:
    return {**os.environ, "RECONCILER_SIM_DELAY_SCALE": "0.02", "XENSTORED_PATH": str(state_dir / "xenstored.sock")}


def _serve(state_dir: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "sim", "serve", "--state", str(state_dir)],
                            env=_env(state_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]  # printed once both sockets listen
    assert lines[-1].startswith("export XENSTORED_PATH="), lines
    return proc


def _run(state_dir: Path, *argv: str) -> str:
    if argv[0].startswith("/"):
        cmd = list(argv)  # one of Xen's tools
    else:
        cmd = [sys.executable, "-m", "reconciler", "sim", *argv, "--state", str(state_dir)]
    done = subprocess.run(cmd, env=_env(state_dir), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _status(state_dir: Path) -> dict[str, int]:
    async def ask() -> dict[str, int]:
        client = await RpcClient.connect(state_dir / "host.sock", 10)
        try:
            answer: dict[str, int] = await client.call(STATUS_OP)
            return answer
        finally:
            await client.close()

    return asyncio.run(ask())


def _wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def _host_doc(state_dir: Path) -> Any:
    return json.loads((state_dir / "host.json").read_text())


def test_idle_sim_serve_saves_nothing_and_a_saved_change_survives_sigkill(state_dir: Path) -> None:
    serve = _serve(state_dir)
    try:
        _run(state_dir, "fw", "--insert", "1", "--dom-in 3 --dom-out 0 -j ACCEPT")
        _run(state_dir, "/usr/bin/xenstore-write", "/kept", "across-a-kill")
        _wait_for(lambda: {"dom_in": 3, "dom_out": 0, "port_in": None, "port_out": None, "target": "ACCEPT"}
                  in _host_doc(state_dir)["firewall"], "host.json to hold the inserted entry")
        _wait_for(lambda: b'"/kept"' in (state_dir / "xenstore.json").read_bytes(), "xenstore.json to hold /kept")
        before = _status(state_dir)
        files = {f: os.stat(state_dir / f) for f in ("host.json", "xenstore.json")}
        time.sleep(IDLE_S)
        after = _status(state_dir)
        assert after == before, "an idle host encoded or wrote its state"
        assert {f: (s.st_ino, s.st_mtime_ns) for f, s in files.items()} == {
            f: (os.stat(state_dir / f).st_ino, os.stat(state_dir / f).st_mtime_ns) for f in files}
    finally:
        serve.send_signal(signal.SIGKILL)  # no clean stop: nothing is saved on the way out
        serve.communicate(timeout=30)
    assert serve.returncode == -signal.SIGKILL
    assert _run(state_dir, "fw").splitlines()[0] == "  1  --dom-in 3 --dom-out 0 -j ACCEPT"  # embeds the host
    serve = _serve(state_dir)
    try:
        assert _run(state_dir, "/usr/bin/xenstore-read", "/kept") == "across-a-kill\n"
    finally:
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=30)
    assert serve.returncode == 0, err


def test_a_guest_that_powers_off_on_its_own_is_saved_without_a_stop(state_dir: Path, vm: Any) -> None:
    """`xenstore-write control/shutdown poweroff` to a guest kept on power-off: the guest
    acknowledges, then its domain stops. That power state lives in host.json only, and
    reaches it without any toolstack call or clean stop. At real timings (the guest stops
    200 ms after the request), so no other change's save happens to carry it."""

    async def body() -> tuple[str, str]:
        host = await SimHost.open(state_dir, delay_scale=1.0)
        try:
            async with open_sim(state_dir) as ports:
                domid = await ports.toolstack.create(vm(lifecycle={"onPoweroff": "preserve"}), paused=False)
                await ports.xenstore.write(f"/local/domain/{domid}/control/shutdown", "poweroff")
                deadline = time.monotonic() + 30
                while [d["power"] for d in _host_doc(state_dir)["hypervisor"]["domains"]] != ["shutdown"]:
                    assert time.monotonic() < deadline, "host.json never showed the guest shut down"
                    await asyncio.sleep(0.02)
                return host.core.domains.get(domid).power, _host_doc(state_dir)["hypervisor"]["domains"][0]["name"]
        finally:
            await host.close()

    assert asyncio.run(body()) == ("shutdown", "web1")
