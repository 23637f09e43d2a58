"""After libxl's transaction: backend state moves, hotplug scripts, detach (xen.md 2.3, 2.8).

Pure functions: a device's identity in, data out. `backend_progress` gives the
timed `Step`s that backends, hotplug scripts and the guest's frontend perform, for
the simulator to play asynchronously (and to fault-inject: drop a step and the
device never connects). `device_remove` / `device_destroy` are libxl's own detach
transactions. Re-exported by `drivers.sim.layout`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from drivers.sim.devices import device_paths
from drivers.sim.ops import Op
from reconciler.xenfmt import XenbusState

__all__ = ["Actor", "Step", "backend_progress", "device_destroy", "device_remove"]

Actor = Literal["backend", "hotplug", "frontend", "xenconsoled", "toolstack"]


@dataclass(frozen=True)
class Step:
    """One asynchronous move: `after_ms` after the previous step, `actor` writes `ops`."""

    after_ms: int
    actor: Actor
    ops: tuple[Op, ...]
    why: str


def _state(path: str, value: XenbusState) -> Op:
    return Op("write", f"{path}/state", str(int(value)))


def device_remove(
    domid: int,
    kind: str,
    devid: int,
    *,
    backend_state: int | None,
    backend_domid: int = 0,
    backend_kind: str | None = None,
    force: bool = False,
) -> list[Op]:
    """libxl's first detach transaction (`libxl__initiate_device_remove`).

    `backend_state` is what libxl reads from the backend (None: backend gone, only
    cleanup remains). Unless already Closed it writes `online=0` and `state=5`;
    `force` also deletes the frontend directory at once.
    """
    fe, be, _ = device_paths(domid, kind, devid, backend_domid, backend_kind)
    ops = [Op("rm_tidy", fe)] if force else []
    if backend_state is not None and backend_state != XenbusState.CLOSED:
        ops += [Op("write", f"{be}/online", "0"), _state(be, XenbusState.CLOSING)]
    return ops


def device_destroy(
    domid: int, kind: str, devid: int, *, backend_domid: int = 0, backend_kind: str | None = None
) -> list[Op]:
    """`libxl__device_destroy`: frontend, backend and the /libxl copy go, empty parents too."""
    fe, be, lx = device_paths(domid, kind, devid, backend_domid, backend_kind)
    return [Op("rm_tidy", fe), Op("rm_tidy", be), Op("rm_tidy", lx)]


def _connect_steps(fe: str, be: str, hotplug: tuple[Op, ...], by_qemu: bool) -> list[Step]:
    backend: Actor = "backend"
    init_wait = (_state(be, XenbusState.INIT_WAIT),)
    steps = [Step(10, backend, init_wait, "driver probed; waits for the hotplug script")]
    if hotplug:
        who = "QEMU reports its backend ready" if by_qemu else "the hotplug script ran"
        steps.append(Step(30, "hotplug", hotplug, who))
    fe_ready, be_up = _state(fe, XenbusState.INITIALISED), _state(be, XenbusState.CONNECTED)
    steps += [
        Step(10, "frontend", (fe_ready,), "guest driver set up its rings"),
        Step(10, backend, (be_up,), "backend connected to the rings"),
        Step(5, "frontend", (_state(fe, XenbusState.CONNECTED),), "guest sees it connected"),
    ]
    return steps


def _add_steps(
    kind: str, fe: str, be: str, backend_kind: str, physical_device: str, loop: str | None
) -> list[Step]:
    connected = Op("write", f"{be}/hotplug-status", "connected")
    if kind == "console":
        tty = (Op("write", f"{fe}/tty", "/dev/pts/0"),)
        return [Step(20, "xenconsoled", tty, "xenconsoled opened a pty; state stays 1")]
    if kind == "vbd" and backend_kind == "vbd":
        # The block script attaches image files to a loop device (`node`).
        looped = (Op("write", f"{be}/node", loop),) if loop else ()
        path = (Op("write", f"{be}/physical-device-path", loop),) if loop else ()
        hotplug = (*looped, Op("write", f"{be}/physical-device", physical_device), *path, connected)
        return _connect_steps(fe, be, hotplug, by_qemu=False)
    if kind == "pci":  # pciback runs no hotplug script; per-device keys are not modelled
        return _connect_steps(fe, be, (), by_qemu=False)
    return _connect_steps(fe, be, (connected,), by_qemu=backend_kind == "qdisk")


def _remove_steps(kind: str, fe: str, be: str, lx: str) -> list[Step]:
    if kind == "console":  # destroyed synchronously, no state handshake
        cleanup = (Op("rm_tidy", fe), Op("rm_tidy", be), Op("rm_tidy", lx))
        return [Step(0, "toolstack", cleanup, "console removed")]
    return [
        Step(10, "frontend", (_state(fe, XenbusState.CLOSING),), "guest driver sees Closing"),
        Step(10, "backend", (_state(be, XenbusState.CLOSED),), "backend released the device"),
        Step(5, "frontend", (_state(fe, XenbusState.CLOSED),), "guest driver closed"),
        Step(20, "hotplug", (Op("rm", f"{be}/hotplug-status"),), "hotplug script ran `remove`"),
        Step(0, "toolstack", (Op("rm_tidy", fe), Op("rm_tidy", be), Op("rm_tidy", lx)),
             "libxl__device_destroy after state 6"),
    ]


def backend_progress(
    phase: Literal["add", "remove"],
    domid: int,
    kind: str,
    devid: int,
    *,
    backend_domid: int = 0,
    backend_kind: str | None = None,
    physical_device: str = "7:0",
    loop_device: str | None = "/dev/loop0",
) -> list[Step]:
    """The timed moves after libxl's add or remove transaction (reference 2.8).

    add, vbd/vif: backend 1 -> 2, hotplug writes `hotplug-status=connected` (the
    block script also `physical-device` and, for image files, the loop device
    `node`, as `7:0` and `/dev/loop0` in the rpi4 dump), frontend 3, backend 4,
    frontend 4. qdisk: the same moves made by QEMU.
    console: xenconsoled fills `tty`, state stays 1. remove: frontend 5, backend 6,
    frontend 6, hotplug `remove`, then libxl deletes all three directories.
    """
    fe, be, lx = device_paths(domid, kind, devid, backend_domid, backend_kind)
    if phase == "add":
        return _add_steps(kind, fe, be, backend_kind or kind, physical_device, loop_device)
    return _remove_steps(kind, fe, be, lx)
