"""Watch streams of the xenstore client: one async iterator of events per watch.

Stage: driver (xenstore). The client's reader puts each WATCH_EVENT into the stream(s)
whose path covers it; callers `async for event in stream`. An event path already queued
and not yet consumed is not queued twice, so a slow consumer costs memory per distinct
path, not per event (watches only say "re-read", as in xenstore itself).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from reconciler.ports import WatchEvent


def covers(wpath: str, epath: str) -> bool:
    """Whether an event at `epath` belongs to a watch on `wpath` (itself or below)."""
    return epath == wpath or wpath == "/" or epath.startswith(wpath + "/")


class WatchStream:
    """Events of one registered watch. Iterate it; `close()` unwatches and ends it."""

    def __init__(self, path: str, token: str, unwatch: Callable[[WatchStream], Awaitable[None]]) -> None:
        self.path = path
        self.token = token
        self._unwatch = unwatch
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._wakeup = asyncio.Event()
        self.closed = False

    def put(self, epath: str) -> None:
        if self.closed or epath in self._queued:
            return
        self._queued.add(epath)
        self._queue.append(epath)
        self._wakeup.set()

    def end(self) -> None:
        """No more events (unwatched or the client closed); iteration stops when drained."""
        self.closed = True
        self._wakeup.set()

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> WatchEvent:
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        epath = self._queue.popleft()
        self._queued.discard(epath)
        return WatchEvent(epath, self.token)

    async def get(self, timeout: float | None = None) -> WatchEvent:
        """The next event; TimeoutError if none arrives within `timeout` seconds."""
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    def pending(self) -> list[str]:
        """Event paths queued and not yet consumed (for tests and diagnostics)."""
        return list(self._queue)

    async def close(self) -> None:
        try:
            if not self.closed:
                await self._unwatch(self)
        finally:
            self.end()
