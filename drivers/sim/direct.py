"""XenstorePort straight onto an in-process simulated xenstored, without the socket.

Stage: driver (simulated host). `open_sim` hands this to the core when it embeds the
host in the calling process: the same `Store` (permissions, transactions with EAGAIN,
watches) that the socket server exposes, minus the wire. Why: client and server in one
event loop share one CPU, and a 1,000-VM host (about 110k nodes) took 6.5 s to walk
over the socket against 0.1 s in process. A `sim serve` in another process is always
reached through the real wire protocol (`drivers.xenstore.client`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from drivers.xenstore.nodes import DOM0, NodeOps
from drivers.xenstore.retry import RetrySettings, retrying
from drivers.xenstore.store import CallbackWatcher, Store
from reconciler.ports import Perm, WatchEvent, XenstoreOps

T = TypeVar("T")
_tokens = itertools.count(1)


class _Ops:
    """The async node operations over any NodeOps (the store or one transaction)."""

    def __init__(self, ops: NodeOps) -> None:
        self._ops = ops

    async def read(self, path: str) -> bytes:
        return self._ops.read(path, DOM0)

    async def write(self, path: str, value: bytes | str) -> None:
        self._ops.write(path, value, DOM0)

    async def mkdir(self, path: str) -> None:
        self._ops.mkdir(path, DOM0)

    async def rm(self, path: str) -> None:
        self._ops.rm(path, DOM0)

    async def directory(self, path: str) -> list[str]:
        return self._ops.directory(path, DOM0)

    async def get_perms(self, path: str) -> list[Perm]:
        return self._ops.get_perms(path, DOM0)

    async def set_perms(self, path: str, perms: Sequence[Perm]) -> None:
        self._ops.set_perms(path, perms, DOM0)


class _Stream:
    """One watch: events queue up until iterated; the first fires at registration."""

    def __init__(self, store: Store, path: str, token: str) -> None:
        self.path, self.token, self._store = path, token, store
        self._queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self._owner = CallbackWatcher(self._queue.put_nowait)
        store.add_watch(self._owner, path, token)
        self._queue.put_nowait(WatchEvent(path, token))  # xenstored fires once on registration

    async def __aiter__(self) -> AsyncIterator[WatchEvent]:
        while True:
            yield await self._queue.get()

    async def close(self) -> None:
        self._store.remove_watches(self._owner)


class DirectXenstore(_Ops):
    """`reconciler.ports.XenstorePort` on a Store in this process, as dom0."""

    def __init__(self, store: Store, retry: RetrySettings | None = None) -> None:
        super().__init__(store)
        self._store = store
        self._retry = retry or RetrySettings()  # the wire client's numbers, so both retry alike

    async def snapshot(self, path: str = "/") -> dict[str, bytes]:
        """Every node at and below `path` (dom0 may read everything)."""
        values = self._store.values()
        if path == "/":
            return values
        self._store.lookup(path, DOM0)  # ENOENT as the wire client raises it
        prefix = path.rstrip("/") + "/"
        return {p: value for p, value in values.items() if p == path or p.startswith(prefix)}

    async def watch(self, path: str, token: str | None = None) -> _Stream:
        return _Stream(self._store, path, token or f"direct-{next(_tokens)}")

    async def transaction(self, body: Callable[[XenstoreOps], Awaitable[T]]) -> T:
        """Run `body(tx)` and commit; on EAGAIN the whole body runs again (reading
        afresh), under the one retry policy, as `XenstoreClient.transaction` does.
        Other errors abort and propagate at once."""
        async for attempt in retrying(self._retry):
            with attempt:
                tx = self._store.transaction(DOM0)
                try:
                    result = await body(_Ops(tx))
                except BaseException:
                    tx.abort()
                    raise
                self._store.client_commit(tx)
        return result

    async def get_domain_path(self, domid: int) -> str:
        return f"/local/domain/{domid}"

    async def close(self) -> None:
        return None
