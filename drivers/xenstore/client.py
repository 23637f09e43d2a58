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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

from drivers.xenstore import errors
from drivers.xenstore.connection import INVALID, WireConnection, socket_path
from drivers.xenstore.retry import RetrySettings, retrying
from drivers.xenstore.watch import WatchStream, covers
from drivers.xenstore.wire import PAYLOAD_MAX, Frame, Op, path_problem, split_strings, strings
from reconciler.ports import Perm, XenstoreOps

T = TypeVar("T")
_tokens = itertools.count(1)


@dataclass(frozen=True)
class ClientSettings:
    path: str | None = None  # socket; None: $XENSTORED_PATH, $XENSTORED_RUNDIR/socket, /run/xenstored/socket
    max_in_flight: int = 512  # requests outstanding at once; bounds memory on huge walks
    timeout: float | None = 30.0  # seconds to wait for one reply (None: forever)
    retry: RetrySettings = field(default_factory=RetrySettings)  # EAGAIN redo, reconnect


def check_path(path: str, *, special_ok: bool = False) -> None:
    problem = path_problem(path, special_ok=special_ok)
    if problem is not None:
        raise errors.InvalidPath(f"xenstore path {path!r} {problem}; nothing was sent", path=path)


def _reply(frame: Frame, op: int, path: str | None) -> bytes:
    name = Op(op).name
    if frame.op == Op.ERROR:
        raise errors.error_for(frame.payload.rstrip(b"\0").decode("ascii", "replace"), op=name, path=path)
    if frame.op == INVALID:
        where = f" {path}" if path else ""
        raise errors.ConnectionLost(f"connection to xenstored lost during {name}{where}; retry", path=path)
    if frame.op != op:
        raise errors.ProtocolError(f"xenstored answered {name} with message type {frame.op}")
    return frame.payload


def _resolver(fut: asyncio.Future[Frame]) -> Callable[[Frame], None]:
    def resolve(frame: Frame) -> None:
        if not fut.done():
            fut.set_result(frame)

    return resolve


class NodeCalls:
    """The node operations, over `_call`; shared by the client and its transactions."""

    async def _call(self, op: Op, payload: bytes, path: str | None) -> bytes:
        raise NotImplementedError

    async def read(self, path: str) -> bytes:
        check_path(path)
        return await self._call(Op.READ, strings(path), path)

    async def write(self, path: str, value: bytes | str) -> None:
        check_path(path)
        data = value.encode() if isinstance(value, str) else value
        await self._call(Op.WRITE, path.encode() + b"\0" + data, path)

    async def mkdir(self, path: str) -> None:
        check_path(path)
        await self._call(Op.MKDIR, strings(path), path)

    async def rm(self, path: str) -> None:
        check_path(path)
        await self._call(Op.RM, strings(path), path)

    async def exists(self, path: str) -> bool:
        try:
            await self.read(path)
        except (errors.NoEntry, errors.AccessDenied):
            return False
        return True

    async def directory(self, path: str) -> list[str]:
        """Child names; falls back to DIRECTORY_PART when the list exceeds 4096 bytes."""
        check_path(path)
        try:
            reply = await self._call(Op.DIRECTORY, strings(path), path)
        except errors.TooBig:
            return await self._directory_parts(path)
        return [n.decode() for n in split_strings(reply) if n] if reply else []

    async def _directory_parts(self, path: str) -> list[str]:
        for _restart in range(100):
            names: list[bytes] = []
            offset, gen = 0, None
            while True:
                reply = await self._call(Op.DIRECTORY_PART, strings(path, str(offset)), path)
                head, _, rest = reply.partition(b"\0")
                if gen is not None and head != gen:
                    break  # the directory changed meanwhile: start over, as libxenstore does
                gen = head
                last = rest == b"\0" or rest.endswith(b"\0\0")
                body = rest[:-1] if last else rest
                names.extend(body.split(b"\0")[:-1])
                offset += len(body)
                if last:
                    return [n.decode() for n in names]
        raise errors.Again(f"directory {path} kept changing while being listed", path=path)

    async def get_perms(self, path: str) -> list[Perm]:
        check_path(path, special_ok=True)
        reply = await self._call(Op.GET_PERMS, strings(path), path)
        try:
            return [Perm.parse(p.decode()) for p in split_strings(reply)]
        except ValueError as exc:
            raise errors.ProtocolError(f"xenstored sent bad perms for {path}: {exc}") from exc

    async def set_perms(self, path: str, perms: Sequence[Perm]) -> None:
        check_path(path, special_ok=True)
        if not perms:
            raise errors.InvalidArgument("a permission list needs at least the owner entry", path=path)
        await self._call(Op.SET_PERMS, strings(path, *(str(p) for p in perms)), path)


class ClientTransaction(NodeCalls):
    """An open transaction; its ops carry its id. Prefer `XenstoreClient.transaction`."""

    def __init__(self, client: XenstoreClient, tx_id: int, conn: WireConnection) -> None:
        self.client = client
        self.tx_id = tx_id
        self._conn = conn

    async def _call(self, op: Op, payload: bytes, path: str | None) -> bytes:
        return await self.client._request(op, payload, path, tx_id=self.tx_id, conn=self._conn)

    async def commit(self) -> None:
        """Commit; raises `errors.Again` on conflict (then redo the whole transaction)."""
        await self._call(Op.TRANSACTION_END, b"T\0", None)

    async def abort(self) -> None:
        try:
            await self._call(Op.TRANSACTION_END, b"F\0", None)
        except errors.XenstoreError:
            pass  # nothing to undo if the daemon already forgot it


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
            self.reconnects += 1
            self._reconnect_error = None
            await self._rewatch()
        except errors.XenstoreError as exc:
            self._reconnect_error = exc

    async def _rewatch(self) -> None:
        """After a reconnect: register every watch again (each then fires once)."""
        for token, streams in list(self._streams.items()):
            for stream in list(streams):
                try:
                    await self._request(Op.WATCH, strings(stream.path, token), stream.path)
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
            req_id = conn.send(op, payload, tx_id, _resolver(fut))
            try:
                async with asyncio.timeout(self.settings.timeout):
                    frame = await fut
            except TimeoutError:
                raise errors.XenstoreTimeout(f"no reply to {op.name} {path or ''} within {self.settings.timeout} s") from None
            finally:
                if not fut.done():
                    conn.forget(req_id)
        return _reply(frame, op, path)

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
        from drivers.xenstore.walk import snapshot

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
