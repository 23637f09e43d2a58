"""Backend drivers, hotplug scripts and guest frontends of the simulated host, as tasks.

Stage: simulated host. After libxl's add or remove transaction, `Backends.start` plays
the device's timed `Step`s (`drivers.sim.progress`) into the store asynchronously, as
real backends do: frontend steps wait while the domain is paused (a paused guest runs
no driver), a step whose directory is gone is dropped (the device was destroyed), and
a `never_connect` fault stalls the device in InitWait (the hotplug script never ends).
`resume()` restarts devices a previous run left half-way, from what the store shows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from drivers.sim.domains import Domain, DomainTable
from drivers.sim.faults import Faults
from drivers.sim.layout import Step, backend_progress, device_paths
from drivers.sim.player import play, shows
from drivers.sim.settings import HostSettings
from drivers.xenstore.store import Store
from reconciler.errors import TerminalHostError

log = logging.getLogger(__name__)
Phase = Literal["add", "remove"]
_FRONTEND_KIND = {"vbd": "vbd", "qdisk": "vbd", "vbd3": "vbd", "vif": "vif", "console": "console", "pci": "pci"}


@dataclass(frozen=True)
class DeviceRef:
    domid: int
    kind: str  # frontend kind: vbd, vif, console, pci
    devid: int
    backend_domid: int = 0
    backend_kind: str | None = None  # qdisk for a QEMU disk; None: same as kind

    @property
    def paths(self) -> tuple[str, str, str]:
        return device_paths(self.domid, self.kind, self.devid, self.backend_domid, self.backend_kind)


class DeviceJob:
    """One device's pending moves; `attached()` is what libxl's add waits for."""

    def __init__(self, ref: DeviceRef, phase: Phase, steps: Sequence[Step], start: int) -> None:
        self.ref, self.phase, self.steps, self.start = ref, phase, tuple(steps), start
        _, back, _ = ref.paths
        hotplug = [i for i, s in enumerate(self.steps) if s.actor in ("hotplug", "xenconsoled")]
        connect = [i for i, s in enumerate(self.steps) if any(o.path == f"{back}/state" and o.value == "4" for o in s.ops)]
        self.ready_at = hotplug[0] if hotplug else 0
        self.connected_at = connect[0] if connect else self.ready_at
        self.played = start - 1
        self.gone = False
        self.stalled = False
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return self.played >= len(self.steps) - 1

    async def attached(self, domain: Domain) -> None:
        """Until hotplug is done and, for a running guest, the backend is Connected."""
        while True:
            if self.gone:
                raise TerminalHostError(f"device {self.ref.kind}/{self.ref.devid} of domain {self.ref.domid} was removed while attaching")
            if self.played >= self.connected_at or (self.played >= self.ready_at and not domain.awake.is_set()):
                return
            self.changed.clear()
            await self.changed.wait()

    async def finished_wait(self) -> None:
        while not self.finished and not self.gone:
            self.changed.clear()
            await self.changed.wait()


class Backends:
    def __init__(self, store: Store, domains: DomainTable, settings: HostSettings, faults: Callable[[], Faults]) -> None:
        self.store, self.domains, self.settings, self._faults = store, domains, settings, faults
        self.jobs: dict[str, DeviceJob] = {}

    def start(self, ref: DeviceRef, phase: Phase, steps: Sequence[Step] | None = None, *, start: int = 0,
              guest_gone: bool = False) -> DeviceJob:
        """Play `steps` (default: `backend_progress`) from index `start`; replaces a running job."""
        if steps is None:
            steps = backend_progress(phase, ref.domid, ref.kind, ref.devid, backend_domid=ref.backend_domid,
                                     backend_kind=ref.backend_kind)
        _, back, _ = ref.paths
        self.cancel(back)
        job = DeviceJob(ref, phase, steps, start)
        domain = self.domains.domains.get(ref.domid)
        name = domain.name if domain else ""
        stall = phase == "add" and ref.kind != "console" and self._faults().never_connects(ref.backend_kind or ref.kind, name)
        job.task = asyncio.get_running_loop().create_task(self._run(job, stall_at=1 if stall else None, guest_gone=guest_gone))
        self.jobs[back] = job
        return job

    def cancel(self, back: str) -> None:
        job = self.jobs.pop(back, None)
        if job is not None and job.task is not None:
            job.task.cancel()

    async def _run(self, job: DeviceJob, *, stall_at: int | None, guest_gone: bool) -> None:
        front, back, _ = job.ref.paths
        try:
            for index in range(job.start, len(job.steps)):
                step = job.steps[index]
                if index == stall_at:
                    job.stalled = True  # the hotplug script hangs: the device stays in InitWait
                    return
                await asyncio.sleep(self.settings.ms(step.after_ms))
                if step.actor == "frontend":
                    domain = self.domains.domains.get(job.ref.domid)
                    if guest_gone or domain is None:
                        job.played = index
                        continue
                    await domain.awake.wait()
                home = front if step.actor in ("frontend", "xenconsoled") else back
                if step.actor != "toolstack" and self.store.peek(home) is None:
                    job.gone = True
                    return
                play(self.store, step.ops)
                job.played = index
                job.changed.set()
        finally:
            job.changed.set()
            if self.jobs.get(back) is job and (job.finished or job.gone):
                del self.jobs[back]

    async def settle(self, timeout: float) -> None:
        """Let pending moves finish for up to `timeout` seconds; cancel what is left."""
        tasks = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def resume(self) -> int:
        """Restart every device the store shows half-way (add or remove); how many."""
        count = 0
        for back_dom in _children(self.store, "/local/domain"):
            base = f"/local/domain/{back_dom}/backend"
            for bkind in _children(self.store, base):
                kind = _FRONTEND_KIND.get(bkind)
                for domid in _children(self.store, f"{base}/{bkind}") if kind else []:
                    for devid in _children(self.store, f"{base}/{bkind}/{domid}"):
                        if domid.isdigit() and devid.isdigit() and back_dom.isdigit():
                            ref = DeviceRef(int(domid), kind or bkind, int(devid), int(back_dom), bkind)
                            count += self._resume_one(ref)
        return count

    def _resume_one(self, ref: DeviceRef) -> int:
        front, back, _ = ref.paths
        online = self.store.peek(f"{back}/online")
        phase: Phase = "remove" if online is not None and online.value == b"0" else "add"
        if phase == "add" and ref.kind != "console" and _value(self.store, f"{front}/state") == b"4":
            return 0  # settled: an add ends with the frontend seeing Connected (progress._connect_steps)
        steps = backend_progress(phase, ref.domid, ref.kind, ref.devid, backend_domid=ref.backend_domid,
                                 backend_kind=ref.backend_kind)
        start = next((i + 1 for i in reversed(range(len(steps))) if all(shows(self.store, o) for o in steps[i].ops)), 0)
        if start >= len(steps):
            return 0
        log.info("resuming %s of %s at step %d", phase, back, start)
        self.start(ref, phase, steps, start=start)
        return 1


def _value(store: Store, path: str) -> bytes | None:
    node = store.peek(path)
    return node.value if node is not None else None


def _children(store: Store, path: str) -> tuple[str, ...]:
    node = store.peek(path)
    return node.children if node is not None else ()
