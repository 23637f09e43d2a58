"""Fixtures for the xenstore driver and the simulated xenstored.

Real: the simulated xenstored (`XenstoreServer` over a `Store`) listening on real Unix
sockets in a temp dir, our asyncio client speaking the wire protocol to it, and Debian's
xenstore-utils plus Xen's test-xenstore run as subprocesses (argv lists) against it via
XENSTORED_PATH. Faked: the hypervisor and guest ring connections. An unprivileged guest
is stood in for by a second socket whose clients the server treats as domain 5.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from drivers.xenstore import NO_WAIT, ClientSettings, Store, XenstoreClient, XenstoreServer

T = TypeVar("T")
GUEST = 5  # the domain id of the unprivileged socket
TOOLS_DIR = "/usr/bin"
TEST_XENSTORE = "/usr/lib/xen-4.17/bin/test-xenstore"


@dataclass
class Env:
    """One simulated xenstored: dom0 socket `path`, guest socket `guest_path` (domain GUEST)."""

    store: Store
    path: Path
    guest_path: Path
    clients: list[XenstoreClient] = field(default_factory=list)
    servers: list[XenstoreServer] = field(default_factory=list)

    async def client(self, *, guest: bool = False, **settings: Any) -> XenstoreClient:
        settings.setdefault("retry", NO_WAIT)
        path = self.guest_path if guest else self.path
        client = await XenstoreClient.connect(ClientSettings(path=str(path), **settings))
        self.clients.append(client)
        return client

    async def start(self) -> None:
        self.servers = [XenstoreServer(self.store, self.path), XenstoreServer(self.store, self.guest_path, domid=GUEST)]
        for server in self.servers:
            await server.start()

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()


class ServerThread:
    """The simulated xenstored in a background thread, for tests that drive it with
    blocking subprocesses. Touch the store only through `call`."""

    def __init__(self, sock_dir: Path) -> None:
        self.env = Env(Store(), sock_dir / "xs.sock", sock_dir / "guest.sock")
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.env.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.env.stop()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "simulated xenstored did not start"

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the server's loop thread and return its result."""
        assert self._loop is not None

        async def wrapped() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result(10)

    @property
    def store(self) -> Store:
        return self.env.store

    def tool(self, name: str, *args: str, guest: bool = False, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        """Run a Xen tool against this daemon (argv list, no shell)."""
        path = self.env.guest_path if guest else self.env.path
        exe = name if name.startswith("/") else os.path.join(TOOLS_DIR, name)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "XENSTORED_PATH": str(path)}
        return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)



@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short temp dir: AF_UNIX socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="xs", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


Runner = Callable[[Callable[[Env], Awaitable[Any]]], Any]


@pytest.fixture
def run(sock_dir: Path) -> Runner:
    """`run(scenario)`: start the servers in a fresh event loop, await `scenario(env)`,
    then close every client and server so no socket outlives the loop."""

    def runner(scenario: Callable[[Env], Awaitable[T]]) -> T:
        async def main() -> T:
            env = Env(Store(), sock_dir / "xs.sock", sock_dir / "guest.sock")
            await env.start()
            try:
                return await asyncio.wait_for(scenario(env), 20)
            finally:
                for client in env.clients:
                    await client.close()
                await env.stop()

        return asyncio.run(main())

    return runner


def require_tool(path: str, package: str) -> None:
    """Xen's own tools are the proof these tests exist for: a missing one fails the test
    (never a skip that would let CI pass without the proof)."""
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: install Debian's {package} (scripts/test installs it)")


@pytest.fixture
def test_xenstore() -> str:
    """Path of Xen's own xenstore test suite (xen-utils-4.17)."""
    require_tool(TEST_XENSTORE, "xen-utils-4.17")
    return TEST_XENSTORE


@pytest.fixture
def xsd(sock_dir: Path) -> Iterator[ServerThread]:
    require_tool(os.path.join(TOOLS_DIR, "xenstore-ls"), "xenstore-utils")
    server = ServerThread(sock_dir)
    server.start()
    yield server
    server.stop()
