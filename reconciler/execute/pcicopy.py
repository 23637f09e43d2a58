"""The host's PCI inventory during one execution: read once, kept current with the run's own binds.

Pure bookkeeping plus one port read (the caller passes it in). Built by
`reconciler.execute.runtime.Runtime` (its `pci`); used by the PCI ops in
`reconciler.execute.devices`. Binding a device (`xl pci-assignable-add`) takes a driver
call per device; many VMs' steps bind at once, so nothing here is locked across a call:

- `devices(read)` lists the inventory the first time (concurrent callers share that one
  read) and answers from the copy afterwards. A bind or unbind that completes while the
  read is in flight is replayed on what the read returns, so the copy never forgets it.
- `claim(bdfs)` decides and reserves in one synchronous step (no await: no other step
  runs in between): which addresses this step changes, or the in-flight changes of other
  steps it must wait for first. A reserved address is never claimed twice, so two rules
  naming one device never bind it twice.
- `settled(bdf, driver)` records a change that completed; `failed(bdfs)` one whose
  outcome is unknown (the call may have happened, its answer lost): the copy is dropped
  and listed again on next use, and the steps waiting on those addresses decide again.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from reconciler import xenfmt
from reconciler.model.host import HostPciDevice


def canonical(bdf: str) -> str:
    """`bdf` as the inventory spells it (DDDD:BB:SS.F), else as given."""
    try:
        return str(xenfmt.parse_bdf(bdf))
    except ValueError:
        return bdf


class PciCopy:
    def __init__(self) -> None:
        self._devices: dict[str, HostPciDevice] | None = None  # canonical bdf -> device, as last read + our changes
        self._read_lock = asyncio.Lock()  # one inventory read at a time: the others wait for its answer
        self._changes: list[tuple[str, str | None]] = []  # (bdf, driver) this run settled, in order
        self._epoch = 0  # bumped by `failed`: a read begun before it may be stale
        self._busy: dict[str, asyncio.Future[bool]] = {}  # bdf -> the change in flight (True once it settled)

    async def devices(self, read: Callable[[], Awaitable[list[HostPciDevice]]]) -> dict[str, HostPciDevice]:
        """The inventory by canonical address: listed once, then this run's copy."""
        async with self._read_lock:
            while self._devices is None:
                epoch, seen = self._epoch, len(self._changes)
                listed = {canonical(d.bdf): d for d in await read()}
                if epoch != self._epoch:
                    continue  # a change failed while listing: its outcome may be missing, list again
                for bdf, driver in self._changes[seen:]:
                    _set_driver(listed, bdf, driver)
                self._devices = listed
            return self._devices

    def claim(self, bdfs: list[str], wanted: Callable[[HostPciDevice | None], bool]) -> tuple[list[str], list[asyncio.Future[bool]]]:
        """Reserve the addresses of `bdfs` that `wanted` says need a change (given their
        device in the copy, None if the host has none), unless another step is changing
        one of `bdfs` now: then reserve nothing and return the changes to wait for.
        Call after `devices()`; synchronous, so deciding and reserving are one unit."""
        assert self._devices is not None, "claim() before devices()"
        waits = [self._busy[b] for b in dict.fromkeys(canonical(b) for b in bdfs) if b in self._busy]
        if waits:
            return [], waits
        first: dict[str, str] = {}  # one claim per device, however spelled
        for bdf in bdfs:
            first.setdefault(canonical(bdf), bdf)
        mine = [b for key, b in first.items() if wanted(self._devices.get(key))]
        for bdf in mine:
            self._busy[canonical(bdf)] = asyncio.get_running_loop().create_future()
        return mine, []

    def settled(self, bdf: str, driver: str | None) -> None:
        """The claimed change of `bdf` completed: the device is now bound to `driver`."""
        key = canonical(bdf)
        self._changes.append((key, driver))
        if self._devices is not None:
            _set_driver(self._devices, key, driver)
        future = self._busy.pop(key, None)
        if future is not None and not future.done():
            future.set_result(True)

    def failed(self, bdfs: list[str]) -> None:
        """The claimed changes of `bdfs` ended in an error: list the inventory again."""
        self._devices = None
        self._epoch += 1
        for bdf in bdfs:
            future = self._busy.pop(canonical(bdf), None)
            if future is not None and not future.done():
                future.set_result(False)


def _set_driver(devices: dict[str, HostPciDevice], bdf: str, driver: str | None) -> None:
    if bdf in devices:
        devices[bdf] = dataclasses.replace(devices[bdf], driver=driver)
