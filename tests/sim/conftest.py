"""Fixtures for the simulated host's tests.

Real: the simulated host (`SimHost`) with its xenstored and RPC on real Unix sockets in
a short temp dir, the ports from `open_sim` talking to it over those sockets, the
state files, and (in the CLI test) `python -m reconciler` and Debian's xenstore-ls as
subprocesses. Faked: nothing beyond what the simulator itself stands in for (hypervisor,
backends, guests). Delays run at `FAST` scale so the folder takes a few seconds.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.sim import open_sim
from drivers.sim.host import SimHost
from drivers.xenstore.store import CallbackWatcher
from reconciler.model import NIC, VM, Disk
from reconciler.ports import HostPorts

FAST = 0.02  # delay scale: a device connects in ~1.5 ms, libxl's 10 s timeouts become 0.2 s

Body = Callable[[HostPorts, SimHost], Awaitable[Any]]


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A short directory (Unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="sim-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sim(state_dir: Path) -> Callable[..., Any]:
    """`sim(body)` runs `await body(ports, host)` against an embedded host of `state_dir`,
    the ports connected over the real sockets; the host is closed (and saved) after."""

    def run(body: Body, *, delay_scale: float = FAST) -> Any:
        async def main() -> Any:
            host = await SimHost.open(state_dir, delay_scale=delay_scale)
            try:
                async with open_sim(state_dir) as ports:
                    return await body(ports, host)
            finally:
                await host.close()

        return asyncio.run(main())

    return run


@pytest.fixture
def vm() -> Callable[..., VM]:
    def make(name: str = "web1", **spec: Any) -> VM:
        spec.setdefault("virt", "pvh")
        spec.setdefault("memory", 512)
        if spec["virt"] != "hvm":
            spec.setdefault("kernel", "/boot/vmlinuz")
        return VM.model_validate({"metadata": {"name": name}, "spec": spec})

    return make


@pytest.fixture
def disk() -> Callable[..., Disk]:
    def make(vm: str = "web1", vdev: str = "xvda", target: str = "/srv/web1.img", **spec: Any) -> Disk:
        doc = {"metadata": {"name": f"{vm}-{vdev}"}, "spec": {"vm": vm, "vdev": vdev, "target": target, **spec}}
        return Disk.model_validate(doc)

    return make


@pytest.fixture
def nic() -> Callable[..., NIC]:
    def make(vm: str = "web1", index: int = 0, **spec: Any) -> NIC:
        spec.setdefault("mac", "00:16:3e:00:00:01")
        doc = {"metadata": {"name": f"{vm}-nic-{index}"}, "spec": {"vm": vm, "index": index, **spec}}
        return NIC.model_validate(doc)

    return make


@pytest.fixture
def recorder() -> Callable[[SimHost, str], list[tuple[str, str | None]]]:
    """`recorder(host, path)` -> a list that fills with (path, value or None when removed)
    for every change at or below `path`, read synchronously when the store fires."""

    def start(host: SimHost, path: str) -> list[tuple[str, str | None]]:
        seen: list[tuple[str, str | None]] = []

        def on_event(event: Any) -> None:
            node = host.store.peek(event.path)
            seen.append((event.path, None if node is None else node.value.decode()))

        host.store.add_watch(CallbackWatcher(on_event), path, "recorder")
        return seen

    return start
