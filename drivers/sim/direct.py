"""XenstorePort straight onto an in-process simulated xenstored, without the socket.

Stage: driver (simulated host). `open_sim` hands this to the core when it embeds the
host in the calling process: the same `Store` (permissions, transactions with EAGAIN,
watches) that the socket server exposes, minus the wire. Why: client and server in one
event loop share one CPU, and a 1,000-VM host (about 110k nodes) took 6.5 s to walk
over the socket against 0.1 s in process. A `sim serve` in another process is always
reached through the real wire protocol (`drivers.xenstore.client`).

`requests` counts each store operation as the wire requests `XenstoreClient` would send
for it, so the agent's request metric means the same embedded and served: one per node
operation, watch, unwatch, transaction start and commit/abort; a snapshot of N nodes
2N (the walk's READ and DIRECTORY per node).
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


class _Counter:
    """Requests a wire client would have sent (shared by a port and its transactions)."""

    def __init__(self) -> None:
        self.requests = 0


class _Ops:
    """The async node operations over any NodeOps (the store or one transaction)."""

    def __init__(self, ops: NodeOps, counter: _Counter) -> None:
        self._ops = ops
        self._counter = counter

    async def read(self, path: str) -> bytes:
        self._counter.requests += 1
        return self._ops.read(path, DOM0)

    async def write(self, path: str, value: bytes | str) -> None:
        self._counter.requests += 1
        self._ops.write(path, value, DOM0)

    async def mkdir(self, path: str) -> None:
        self._counter.requests += 1
        self._ops.mkdir(path, DOM0)

    async def rm(self, path: str) -> None:
        self._counter.requests += 1
        self._ops.rm(path, DOM0)

    async def directory(self, path: str) -> list[str]:
        self._counter.requests += 1
        return self._ops.directory(path, DOM0)

    async def get_perms(self, path: str) -> list[Perm]:
        self._counter.requests += 1
        return self._ops.get_perms(path, DOM0)

    async def set_perms(self, path: str, perms: Sequence[Perm]) -> None:
        self._counter.requests += 1
        self._ops.set_perms(path, perms, DOM0)


class _Stream:
    """One watch: events queue up until iterated; the first fires at registration."""

    def __init__(self, store: Store, path: str, token: str, counter: _Counter) -> None:
        self.path, self.token, self._store, self._counter = path, token, store, counter
        counter.requests += 1  # XS_WATCH
        self._queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self._owner = CallbackWatcher(self._queue.put_nowait)
        store.add_watch(self._owner, path, token)
        self._queue.put_nowait(WatchEvent(path, token))  # xenstored fires once on registration

    async def __aiter__(self) -> AsyncIterator[WatchEvent]:
        while True:
            yield await self._queue.get()

    async def close(self) -> None:
        self._counter.requests += 1  # XS_UNWATCH
        self._store.remove_watches(self._owner)


class DirectXenstore(_Ops):
    """`reconciler.ports.XenstorePort` on a Store in this process, as dom0."""

    def __init__(self, store: Store, retry: RetrySettings | None = None) -> None:
        super().__init__(store, _Counter())
        self._store = store
        self._retry = retry or RetrySettings()  # the wire client's numbers, so both retry alike

    @property
    def requests(self) -> int:
        """Requests a wire client would have sent so far (see the module docstring)."""
        return self._counter.requests

    async def snapshot(self, path: str = "/") -> dict[str, bytes]:
        """Every node at and below `path` (dom0 may read everything); a subtree is
        walked through its nodes' children, so it costs its size, not the store's."""
        if path == "/":
            values = self._store.values()
            self._counter.requests += 2 * len(values)
            return values
        try:
            self._store.lookup(path, DOM0)  # ENOENT as the wire client raises it
        finally:
            self._counter.requests += 2  # the walk's READ and DIRECTORY of the root
        out: dict[str, bytes] = {}
        pending = [path.rstrip("/") or "/"]
        while pending:
            here = pending.pop()
            node = self._store.peek(here)
            if node is None:
                continue
            out[here] = node.value
            pending += [f"{here}/{child}" for child in node.children]
        self._counter.requests += 2 * (len(out) - 1)
        return out

    async def watch(self, path: str, token: str | None = None) -> _Stream:
        return _Stream(self._store, path, token or f"direct-{next(_tokens)}", self._counter)

    async def transaction(self, body: Callable[[XenstoreOps], Awaitable[T]]) -> T:
        """Run `body(tx)` and commit; on EAGAIN the whole body runs again (reading
        afresh), under the one retry policy, as `XenstoreClient.transaction` does.
        Other errors abort and propagate at once."""
        async for attempt in retrying(self._retry):
            with attempt:
                tx = self._store.transaction(DOM0)
                self._counter.requests += 2  # XS_TRANSACTION_START, then XS_TRANSACTION_END
                try:
                    result = await body(_Ops(tx, self._counter))
                except BaseException:
                    tx.abort()
                    raise
                self._store.client_commit(tx)
        return result

    async def get_domain_path(self, domid: int) -> str:
        self._counter.requests += 1
        return f"/local/domain/{domid}"

    async def close(self) -> None:
        return None
