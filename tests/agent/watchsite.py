"""What the agent tests drive: `reconciler watch` in a process of its own on a simulated
host it embeds (`--host sim:DIR`), and what an operator does beside it.

Real: the agent process, its signals (SIGTERM, SIGHUP), manifest files edited on disk
(in place and by temp-file-and-rename, as editors do), `reconciler status|plan|apply|sim`
in processes of their own (they reach the agent's embedded host through DIR/host.sock),
Xen's own `xenstore-*` tools on DIR/xenstored.sock. Faked: nothing; simulated delays run
50x faster and retries do not sleep (ENV). Waiting is polling `reconciler status
--format json` until a condition holds, with a generous timeout: never a timed assertion.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ENV = {
    "RECONCILER_SIM_DELAY_SCALE": "0.02",
    "RECONCILER_RETRY_BACKOFF_S": "0",
    "RECONCILER_SENTINEL_TIMEOUT_S": "5",
    "RECONCILER_SHUTDOWN_TIMEOUT_S": "2",
    "PYTHONUNBUFFERED": "1",
}
WAIT_S = 120.0


def vm(name: str, memory: int = 512, *, extra: str = "") -> str:
    return (f"apiVersion: xen.reconciler/v1\nkind: VM\nmetadata: {{name: {name}}}\n"
            f"spec:\n  virt: pvh\n  memory: {memory}\n  maxMemory: 2048\n  kernel: /srv/vmlinuz\n{extra}")


def settled(status: dict[str, Any]) -> bool:
    """The last pass left the host as the manifests say: nothing to do, or all of it done
    (a pass that changed the host is not followed by one that only confirms it)."""
    last = status["lastPass"]
    return bool(last["outcome"] == "converged" or (last["outcome"] == "changed" and last["counts"]["failed"] == 0))


def _env() -> dict[str, str]:
    env = {**os.environ, **ENV}
    for key in ("RECONCILER_HOST", "RECONCILER_PARALLELISM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    return env


def reconciler(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *argv], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


class Agent:
    """One `reconciler watch` process and the files it watches (`folder`), on host `state`."""

    def __init__(self, manifests: dict[str, str], *flags: str, state: Path | None = None,
                 folder: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.env = env or {}
        self.folder = folder or Path(tempfile.mkdtemp(prefix="ag-m-"))
        self.state = state or Path(tempfile.mkdtemp(prefix="ag-"))  # short: Unix socket paths
        for name, text in manifests.items():
            (self.folder / name).write_text(text)
        self.flags = flags
        self.proc: subprocess.Popen[str] | None = None
        self.stderr_path = self.state.parent / f"{self.state.name}.stderr"

    @property
    def host(self) -> str:
        return f"sim:{self.state}"

    def start(self, *paths: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "reconciler", "watch", *(paths or [str(self.folder)]), "--host", self.host,
                "--debounce", "0.2", *self.flags]
        with open(self.stderr_path, "a") as err:
            self.proc = subprocess.Popen(argv, cwd=REPO, env={**_env(), **self.env}, stdout=subprocess.DEVNULL, stderr=err, text=True)
        return self.proc

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def status(self) -> dict[str, Any] | None:
        done = reconciler("status", "--host", self.host, "--format", "json")
        assert done.returncode == 0, done.stderr
        found: dict[str, Any] | None = json.loads(done.stdout)
        return found

    def wait(self, holds: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """Poll the status until `holds(status)`; fail (with the agent's stderr) after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the agent exited {self.proc.returncode} waiting for {what}:\n{self.stderr}")
            last = self.status()
            if last is not None and last["lastPass"] is not None and holds(last):
                return last
            time.sleep(0.1)
        raise AssertionError(f"never {what}; last status {json.dumps(last)[:2000]}\nstderr:\n{self.stderr[-4000:]}")

    def wait_pass(self, after: int, what: str, holds: Callable[[dict[str, Any]], bool] = lambda s: True) -> dict[str, Any]:
        """The status of the first pass numbered above `after` for which `holds`."""
        return self.wait(lambda s: s["lastPass"]["number"] > after and holds(s), what)

    def converged(self, after: int = 0) -> dict[str, Any]:
        return self.wait_pass(after, "converged", settled)

    def edit(self, name: str, text: str) -> None:
        """As an editor saves: write a temp file beside it, then rename it over."""
        tmp = self.folder / f".{name}.swp"
        tmp.write_text(text)
        os.replace(tmp, self.folder / name)

    def sim(self, *argv: str) -> str:
        done = reconciler("sim", *argv, "--state", str(self.state))
        assert done.returncode == 0, done.stderr
        return done.stdout

    def names(self) -> list[str]:
        """Domain names as `sim list` shows them (duplicates included), dom0 left out."""
        return sorted(line.split()[0] for line in self.sim("list").splitlines()[1:]
                      if line.strip() and line.split()[0] != "Domain-0")

    def xs(self, *argv: str) -> str:
        env = {**os.environ, "XENSTORED_PATH": str(self.state / "xenstored.sock")}
        done = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, f"{argv}: {done.stderr}"
        return done.stdout

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> int:
        """SIGTERM, and the exit status (the test fails if it takes more than WAIT_S)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=WAIT_S)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)
        self.stderr_path.unlink(missing_ok=True)
