"""Fixtures for the executor and `reconciler apply`.

Real: the simulated host (`SimHost`: hypervisor table, libxl-like toolstack, backends
moving through XenbusStates, pciback, v4v firewall, faults.yaml) served on real Unix
sockets from a background thread, as `reconciler sim serve` would; `reconciler apply` and
`plan` run through the real CLI entry point and reach that host over the sockets; the
manifests on disk and the examples of the repository. The simulated guests write their
`bootSentinel` node themselves once running (unless faults.yaml lists them as `silent`).
Delays run at `FAST` scale; retries never sleep (env, below).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.sim import open_sim
from drivers.sim.host import SimHost
from reconciler.cli.main import main
from reconciler.ports import HostPorts

FAST = 0.02  # a backend connects in ~1.5 ms; libxl's 10 s attach timeout becomes 0.2 s


class ServedHost:
    """A simulated host served from its own thread and event loop. `run(coro_fn)` runs
    `await coro_fn(ports)` on that loop (ports over the real sockets) and returns its result."""

    # The served host's own log records (e.g. "dropping host client" after a SIGKILLed
    # apply) stay out of the in-process CLI's stderr, as they would in a separate `sim serve`
    # process; pytest's log capture sees them all the same (its handler is added here).
    QUIET = ("drivers.sim", "drivers.xenstore.server")

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self._capture = [h for h in logging.getLogger().handlers if type(h).__name__ == "LogCaptureHandler"]
        for name in self.QUIET:
            logger = logging.getLogger(name)
            logger.propagate = False
            for handler in self._capture:
                logger.addHandler(handler)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sim-host", daemon=True)
        self.thread.start()
        self.host: SimHost = self._call(SimHost.open(state_dir, delay_scale=FAST))
        self._ports_cm = open_sim(state_dir)
        self.ports: HostPorts = self._call(self._ports_cm.__aenter__())

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def run(self, body: Callable[[HostPorts], Coroutine[Any, Any, Any]]) -> Any:
        return self._call(body(self.ports))

    def close(self) -> None:
        async def stop() -> None:
            await self._ports_cm.__aexit__(None, None, None)
            await self.host.close()

        try:
            self._call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()
            for name in self.QUIET:
                logger = logging.getLogger(name)
                logger.propagate = True
                for handler in self._capture:
                    logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries without sleeping and short timeouts, through the documented environment."""
    monkeypatch.setenv("RECONCILER_RETRY_BACKOFF_S", "0")
    monkeypatch.setenv("RECONCILER_SENTINEL_TIMEOUT_S", "3")
    monkeypatch.setenv("RECONCILER_SHUTDOWN_TIMEOUT_S", "1")
    monkeypatch.delenv("RECONCILER_HOST", raising=False)
    monkeypatch.delenv("RECONCILER_PARALLELISM", raising=False)


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A short directory (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ex-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def served(state_dir: Path) -> Iterator[Callable[..., ServedHost]]:
    """`served()` starts the host of `state_dir` (once)."""
    hosts: list[ServedHost] = []

    def start() -> ServedHost:
        hosts.append(ServedHost(state_dir))
        return hosts[-1]

    yield start
    for host in hosts:
        host.close()


@pytest.fixture
def cli(repo: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """`cli("apply", "manifests")` -> (exit code, stdout, stderr), against the sim of
    `state_dir`, run from the repository root through the real entry point. A verb that
    opens the host names it first on stderr (DESIGN 6); that line is checked and left
    out of the stderr returned."""

    def run(verb: str, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([verb, *args, "--host", f"sim:{state_dir}"])
        out, err = capsys.readouterr()
        return code, out, without_host_line(err, f"sim:{state_dir}")

    return run


def without_host_line(err: str, host: str) -> str:
    """stderr without its first line when that line names `host` (`host: sim:DIR (...)`)."""
    first, _, rest = err.partition("\n")
    return rest if first.startswith(f"host: {host} (") else err


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[[str, str], Path]:
    """`write_manifest("web.yaml", text)` -> a file in a fresh manifests directory."""
    folder = tmp_path / "manifests"
    folder.mkdir()

    def write(name: str, text: str) -> Path:
        path = folder / name
        path.write_text(text)
        return folder

    return write
