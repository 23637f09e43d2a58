"""The simulated xenstored's socket side: an asyncio Unix-socket server over a `Store`.

Stage: simulated host. Input: framed requests from any number of clients (Xen's tools,
our client), pipelined. Output: replies in request order plus WATCH_EVENTs. Used by
`reconciler sim serve`, the simulated host (in-process: `async with XenstoreServer(store,
path): ...`) and the tests. Hostile input drops only the offending connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from collections import deque
from pathlib import Path
from types import TracebackType

from drivers.xenstore import errors, ops
from drivers.xenstore.nodes import Caller
from drivers.xenstore.store import Store
from drivers.xenstore.txn import Transaction
from drivers.xenstore.wire import ERROR_NAMES, PAYLOAD_MAX, Frame, FrameReader, Op, OversizeFrame, encode, strings

log = logging.getLogger(__name__)
SLICE = 64  # requests of one connection handled per event-loop turn; then other clients get theirs


class Connection(asyncio.Protocol):
    """One client. Replies and events queue in `out` and are written once per batch of
    requests; identical watch events still queued (not yet written) are coalesced.
    A client that pipelines thousands of requests has them handled SLICE at a time, its
    socket not read meanwhile, so another client's request waits one slice, not the lot
    (as the C daemon serves its connections in turn)."""

    def __init__(self, server: XenstoreServer) -> None:
        self.server = server
        self.store = server.store
        self._caller = Caller(server.domid)
        self.prefix = f"/local/domain/{server.domid}"
        self.transactions: dict[int, Transaction] = {}
        self.after_reply: list[tuple[str, str]] = []
        self._reader = FrameReader()
        self._backlog: deque[Frame] = deque()
        self._draining = False
        self._out: list[bytes] = []
        self._queued_events: set[tuple[str, str]] = set()
        self._transport: asyncio.Transport | None = None
        self._paused = False
        self._flush_soon = False
        self._loop = asyncio.get_running_loop()

    @property
    def caller(self) -> Caller:
        return self._caller

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except OversizeFrame as exc:
            log.warning("dropping xenstore client: %s", exc)
            self.abort()
            return
        self._backlog.extend(frames)
        if not self._draining:
            self._drain()

    def _drain(self) -> None:
        """Handle up to SLICE queued requests; the rest at the loop's next turn (or, if
        the client stopped reading its replies, once it reads again: resume_writing)."""
        backlog = self._backlog
        handled = 0
        while backlog and handled < SLICE and self._transport is not None and not self._paused:
            self.handle(backlog.popleft())
            handled += 1
        self.flush()
        if self._transport is None:
            backlog.clear()
        if backlog:
            if not self._draining:
                self._draining = True
                assert self._transport is not None
                self._transport.pause_reading()
            if not self._paused:
                self._loop.call_soon(self._drain)
        elif self._draining:
            self._draining = False
            if self._transport is not None and not self._paused:
                self._transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.store.remove_watches(self)
        self.transactions.clear()
        self.server.connections.discard(self)
        self._transport = None

    def pause_writing(self) -> None:
        # The client is not reading: stop reading its requests too, so memory stays bounded.
        self._paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self._transport is not None and not self._draining:
            self._transport.resume_reading()
        self.flush()
        if self._backlog:
            self._loop.call_soon(self._drain)

    # -- requests and events ----------------------------------------------------

    def handle(self, frame: Frame) -> None:
        self.server.requests += 1
        handler = ops.HANDLERS.get(frame.op)
        try:
            if handler is None:
                raise errors.NotSupported(f"message type {frame.op} is not supported")
            payload = handler(self, frame)
            if len(payload) > PAYLOAD_MAX:
                raise errors.TooBig("reply exceeds 4096 bytes")
            self._out.append(encode(frame.op, frame.req_id, frame.tx_id, payload))
        except errors.XenstoreError as exc:
            name = exc.errno_name if exc.errno_name in ERROR_NAMES else "EIO"
            self._out.append(encode(Op.ERROR, frame.req_id, frame.tx_id, strings(name)))
        while self.after_reply:
            self.deliver(*self.after_reply.pop(0))

    def deliver(self, path: str, token: str) -> None:
        """Queue a WATCH_EVENT (called by the store for this connection's watches)."""
        if self._transport is None:
            return
        if not path.startswith("@"):
            key = (path, token)
            if key in self._queued_events:
                return
            self._queued_events.add(key)
        self._out.append(encode(Op.WATCH_EVENT, 0, 0, strings(path, token)))
        if not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_soon = False
        if self._paused or not self._out or self._transport is None:
            return
        self._transport.write(b"".join(self._out))
        self._out.clear()
        self._queued_events.clear()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        if self._transport is not None:
            self.flush()
            self._transport.close()


def socket_answers(path: Path) -> bool:
    """Whether a live server accepts connections on `path` (a stale socket file does not)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class XenstoreServer:
    """Serves `store` on the Unix socket `path`; every client acts as domain `domid`
    (0 = privileged, as for the real socket; another id to test permissions)."""

    def __init__(self, store: Store, path: str | os.PathLike[str], *, domid: int = 0) -> None:
        self.store = store
        self.path = Path(path)
        self.domid = domid
        self.connections: set[Connection] = set()
        self.requests = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen. A stale socket file left by a dead daemon is replaced; a live one is not."""
        if self.path.exists() and stat.S_ISSOCK(self.path.stat().st_mode):
            if socket_answers(self.path):
                raise errors.AlreadyConnected(f"another xenstored is serving {self.path}; stop it first")
            self.path.unlink()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: Connection(self), str(self.path))

    async def stop(self) -> None:
        """Stop listening, close every client connection, remove the socket file."""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self.connections):
            conn.close()
        await self._server.wait_closed()
        self._server = None
        await asyncio.sleep(0)  # let connection_lost callbacks run
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    async def __aenter__(self) -> XenstoreServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
