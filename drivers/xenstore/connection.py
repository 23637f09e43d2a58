"""The client's side of one xenstored socket connection: framing and reply matching.

Stage: driver (xenstore). `send()` queues a request with a callback and returns at
once; queued frames go out in one write per event-loop turn (pipelining). The protocol
demultiplexes what comes back: replies to the callback registered under their req_id,
WATCH_EVENTs to `on_event`. Used by `client.XenstoreClient` and `walk`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from drivers.xenstore.wire import Frame, FrameReader, Op, OversizeFrame, encode

log = logging.getLogger(__name__)

INVALID = 0xFFFF  # XS_INVALID: never a real type; marks "connection lost" to callbacks
LOST = Frame(INVALID, 0, 0, b"")

ReplyCallback = Callable[[Frame], None]


def socket_path() -> str:
    """Where xenstored listens, found as libxenstore finds it."""
    explicit = os.environ.get("XENSTORED_PATH")
    if explicit:
        return explicit
    rundir = os.environ.get("XENSTORED_RUNDIR", "/run/xenstored")
    return os.path.join(rundir, "socket")


class WireConnection(asyncio.Protocol):
    """One socket. Every pending callback gets exactly one call: its reply, or `LOST`."""

    def __init__(self, on_event: Callable[[Frame], None], on_lost: Callable[[WireConnection], None]) -> None:
        self._on_event = on_event
        self._on_lost = on_lost
        self._reader = FrameReader()
        self._pending: dict[int, ReplyCallback] = {}
        self._out: list[bytes] = []
        self._next_id = 0
        self._flush_soon = False
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[None] = self._loop.create_future()  # done once closed

    @property
    def alive(self) -> bool:
        return self._transport is not None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except OversizeFrame as exc:
            log.error("xenstored sent an oversize frame (%s); dropping the connection", exc)
            self.close(abort=True)
            return
        pending = self._pending
        for frame in frames:
            if frame.op == Op.WATCH_EVENT:
                self._on_event(frame)
                continue
            callback = pending.pop(frame.req_id, None)
            if callback is None:
                log.warning("xenstored replied to unknown request id %d", frame.req_id)
            else:
                callback(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        pending, self._pending = self._pending, {}
        for callback in pending.values():
            callback(LOST)
        if not self.lost.done():
            self.lost.set_result(None)
        self._on_lost(self)

    def send(self, op: int, payload: bytes, tx_id: int, callback: ReplyCallback) -> int:
        """Queue one request; `callback` gets the reply frame (or `LOST`). Returns its req_id."""
        if self._transport is None:
            callback(LOST)
            return 0
        req_id = self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        while req_id in self._pending:
            req_id = self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        self._pending[req_id] = callback
        self._out.append(encode(op, req_id, tx_id, payload))
        if not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._flush)
        return req_id

    def forget(self, req_id: int) -> None:
        """Drop the callback of a request whose caller gave up (timeout, cancel)."""
        self._pending.pop(req_id, None)

    def _flush(self) -> None:
        self._flush_soon = False
        if self._transport is not None and self._out:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def close(self, *, abort: bool = False) -> None:
        if self._transport is None:
            return
        self._flush()
        if abort:
            self._transport.abort()
        else:
            self._transport.close()
