"""Asyncio xenstore client: the XenstorePort for a real or simulated xenstored.

Stage: driver (xenstore). Called by observe/execute through `reconciler.ports.XenstorePort`.
Requests are pipelined on one socket (`connection.WireConnection`), replies matched by
req_id; watches arrive as `WatchStream`s; `transaction(body)` retries on EAGAIN; a daemon
restart is survived (reconnect, watches re-registered, requests outside transactions
re-sent, transactions redone by `transaction`).

Why not pyxs (selectel/pyxs, the one packaged Python client): it is synchronous (a
thread per monitor), sends one request at a time (no pipelining, so a walk costs two
round trips per node), its op table stops at SET_TARGET (no RESET_WATCHES, no
DIRECTORY_PART fallback on E2BIG), it has no reconnect, and its path check applies
the absolute-path limit to relative paths. So this package speaks the protocol itself.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from drivers.xenstore import errors
from drivers.xenstore.calls import ClientTransaction, NodeCalls, check_path, reply_payload, resolver
from drivers.xenstore.connection import WireConnection, socket_path
from drivers.xenstore.retry import RetrySettings, retrying
from drivers.xenstore.walk import snapshot
from drivers.xenstore.watch import WatchStream, covers
from drivers.xenstore.wire import PAYLOAD_MAX, Frame, Op, split_strings, strings
from reconciler.ports import XenstoreOps, XenstorePort

T = TypeVar("T")
_tokens = itertools.count(1)


@dataclass(frozen=True)
class ClientSettings:
    path: str | None = None  # socket; None: $XENSTORED_PATH, $XENSTORED_RUNDIR/socket, /run/xenstored/socket
    max_in_flight: int = 512  # requests outstanding at once; bounds memory on huge walks
    timeout: float | None = 30.0  # seconds to wait for one reply (None: forever)
    retry: RetrySettings = field(default_factory=RetrySettings)  # EAGAIN redo, reconnect


class XenstoreClient(NodeCalls):
    """One connection to xenstored. Use `async with await XenstoreClient.connect() as xs:`."""

    def __init__(self, settings: ClientSettings | None = None) -> None:
        self.settings = settings or ClientSettings()
        self.path = self.settings.path or socket_path()
        self._conn: WireConnection | None = None
        self._slots = asyncio.Semaphore(self.settings.max_in_flight)
        self._streams: dict[str, list[WatchStream]] = {}
        self._closed = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._reconnect_error: errors.XenstoreError | None = None
        self.reconnects = 0
        # Every request frame sent on the wire (watch events are not requests): the
        # agent's "xenstore requests sent" metric. A snapshot's pipelined READ and
        # DIRECTORY frames count too (walk.py adds them).
        self.requests = 0

    @classmethod
    async def connect(cls, settings: ClientSettings | None = None) -> XenstoreClient:
        client = cls(settings)
        await client._connect()
        return client

    async def __aenter__(self) -> XenstoreClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- connection ---------------------------------------------------------------

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_unix_connection(lambda: WireConnection(self._on_event, self._on_lost), self.path)
        except OSError as exc:
            raise errors.DaemonUnavailable(
                f"cannot connect to xenstored at {self.path} ({exc.strerror or exc}); "
                "start it, or point XENSTORED_PATH at its socket"
            ) from exc
        self._conn = conn

    async def ready(self) -> WireConnection:
        """The live connection, reconnecting first if the daemon went away."""
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        if self._closed:
            raise errors.ConnectionLost("the xenstore client is closed")
        self._start_reconnect()
        assert self._reconnect_task is not None
        await asyncio.shield(self._reconnect_task)
        if self._conn is None:
            raise self._reconnect_error or errors.DaemonUnavailable(f"xenstored at {self.path} is gone")
        return self._conn

    def _start_reconnect(self) -> None:
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            async for attempt in retrying(self.settings.retry):
                with attempt:
                    await self._connect()
                    assert self._conn is not None
                    await self._rewatch(self._conn)  # if the daemon dies again: next attempt
            self.reconnects += 1
            self._reconnect_error = None
        except errors.XenstoreError as exc:
            self._reconnect_error = exc

    async def _rewatch(self, conn: WireConnection) -> None:
        """After a reconnect: register every watch again (each then fires once)."""
        for token, streams in list(self._streams.items()):
            for stream in list(streams):
                try:
                    await self._request(Op.WATCH, strings(stream.path, token), stream.path, conn=conn)
                except errors.AlreadyExists:
                    pass

    def _on_lost(self, conn: WireConnection) -> None:
        if conn is self._conn:
            self._conn = None
            if self._streams and not self._closed:
                self._start_reconnect()  # so watchers hear from the daemon again unprompted

    async def close(self) -> None:
        self._closed = True
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
            await asyncio.gather(self._reconnect_task, return_exceptions=True)
        for streams in self._streams.values():
            for stream in streams:
                stream.end()
        self._streams.clear()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            await conn.lost

    # -- requests -----------------------------------------------------------------

    async def _request(
        self, op: Op, payload: bytes, path: str | None, *, tx_id: int = 0, conn: WireConnection | None = None
    ) -> bytes:
        if len(payload) > PAYLOAD_MAX:
            raise errors.PayloadTooLarge(
                f"{op.name} {path or ''} needs {len(payload)} payload bytes, over xenstore's 4096-byte limit",
                path=path,
            )
        async with self._slots:
            if conn is None:
                conn = await self.ready()
            elif not conn.alive:
                raise errors.ConnectionLost("the transaction's connection was lost; redo it", path=path)
            fut: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
            self.requests += 1
            req_id = conn.send(op, payload, tx_id, resolver(fut))
            try:
                async with asyncio.timeout(self.settings.timeout):
                    frame = await fut
            except TimeoutError:
                raise errors.XenstoreTimeout(f"no reply to {op.name} {path or ''} within {self.settings.timeout} s") from None
            finally:
                if not fut.done():
                    conn.forget(req_id)
        return reply_payload(frame, op, path)

    async def _call(self, op: Op, payload: bytes, path: str | None) -> bytes:
        """A request outside any transaction. If the daemon drops the connection
        meanwhile, it is sent again once reconnected: node ops converge to the same
        state when repeated, which is all a level-triggered caller needs."""
        for _ in range(max(0, self.settings.retry.attempts - 1)):
            try:
                return await self._request(op, payload, path)
            except errors.ConnectionLost:
                if self._closed:
                    raise
        return await self._request(op, payload, path)

    async def get_domain_path(self, domid: int) -> str:
        return (await self._call(Op.GET_DOMAIN_PATH, strings(str(domid)), None)).rstrip(b"\0").decode()

    async def is_domain_introduced(self, domid: int) -> bool:
        return await self._call(Op.IS_DOMAIN_INTRODUCED, strings(str(domid)), None) == b"T\0"

    async def introduce_domain(self, domid: int, gfn: int = 0, port: int = 0) -> None:
        await self._call(Op.INTRODUCE, strings(str(domid), str(gfn), str(port)), None)

    async def release_domain(self, domid: int) -> None:
        await self._call(Op.RELEASE, strings(str(domid)), None)

    async def control(self, command: str, *args: str) -> str:
        """An XS_CONTROL command (what xenstore-control sends); the daemon's text reply."""
        return (await self._call(Op.CONTROL, strings(command, *args), None)).rstrip(b"\0").decode()

    async def snapshot(self, path: str = "/") -> dict[str, bytes]:
        """Every node at and below `path` with its value, pipelined (see `walk`)."""
        return await snapshot(self, path)

    # -- transactions -------------------------------------------------------------

    async def begin(self) -> ClientTransaction:
        conn = await self.ready()
        reply = await self._request(Op.TRANSACTION_START, b"\0", None, conn=conn)
        return ClientTransaction(self, int(reply.rstrip(b"\0")), conn)

    async def transaction(self, body: Callable[[XenstoreOps], Awaitable[T]]) -> T:
        """Run `body(tx)` in a transaction and commit; on EAGAIN (or a lost connection)
        the whole body runs again, per `settings.retry`. Other errors abort and propagate."""
        async for attempt in retrying(self.settings.retry):
            with attempt:
                tx = await self.begin()
                try:
                    result = await body(tx)
                except BaseException:
                    await tx.abort()
                    raise
                await tx.commit()
        return result

    # -- watches ------------------------------------------------------------------

    async def watch(self, path: str, token: str | None = None) -> WatchStream:
        """Register a watch; the stream yields its first event at once, as xenstored fires it."""
        check_path(path, special_ok=True)
        token = token or f"reconciler-{next(_tokens)}"
        stream = WatchStream(path, token, self._drop_stream)
        self._streams.setdefault(token, []).append(stream)
        try:
            await self._call(Op.WATCH, strings(path, token), path)
        except BaseException:
            self._forget_stream(stream)
            raise
        return stream

    async def unwatch(self, path: str, token: str) -> None:
        for stream in [s for s in self._streams.get(token, []) if s.path == path]:
            self._forget_stream(stream)
        await self._call(Op.UNWATCH, strings(path, token), path)

    async def reset_watches(self) -> None:
        """Drop every watch (and transaction) this connection has, on both sides."""
        await self._call(Op.RESET_WATCHES, b"\0", None)
        for stream in [s for streams in self._streams.values() for s in streams]:
            self._forget_stream(stream)

    async def _drop_stream(self, stream: WatchStream) -> None:
        self._forget_stream(stream)
        if self._conn is not None and self._conn.alive:
            try:
                await self._call(Op.UNWATCH, strings(stream.path, stream.token), stream.path)
            except errors.NoEntry:
                pass

    def _forget_stream(self, stream: WatchStream) -> None:
        streams = self._streams.get(stream.token, [])
        if stream in streams:
            streams.remove(stream)
            if not streams:
                del self._streams[stream.token]
        stream.end()

    def _on_event(self, frame: Frame) -> None:
        try:
            epath, token = (p.decode() for p in split_strings(frame.payload)[:2])
        except (ValueError, UnicodeDecodeError):
            return
        for stream in self._streams.get(token, ()):
            if covers(stream.path, epath):
                stream.put(epath)


if TYPE_CHECKING:

    def _implements_the_port(client: XenstoreClient) -> XenstorePort:
        return client  # mypy proves XenstoreClient structurally satisfies the port
