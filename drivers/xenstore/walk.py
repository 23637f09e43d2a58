"""Pipelined tree walk: read a whole xenstore subtree in about one round trip per level.

Stage: driver (xenstore), used by the observer through `XenstoreClient.snapshot`.
Input: a client and a root path. Output: {path: value} for every node at and below it.
DIRECTORY and READ go out for every known node at once (at most `max_in_flight`
outstanding), driven by reply callbacks rather than a coroutine per node. Nodes that
vanish or are unreadable mid-walk are skipped; E2BIG listings use DIRECTORY_PART.
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import partial
from typing import TYPE_CHECKING

from drivers.xenstore import errors
from drivers.xenstore.calls import check_path
from drivers.xenstore.connection import INVALID, WireConnection
from drivers.xenstore.wire import Frame, Op, split_strings, strings

if TYPE_CHECKING:
    from drivers.xenstore.client import XenstoreClient

_SKIP = (b"ENOENT\0", b"EACCES\0")  # gone or not ours to read: not part of the snapshot


class _Walk:
    def __init__(self, client: XenstoreClient, conn: WireConnection, root: str) -> None:
        self.client = client
        self.conn = conn
        self.limit = max(2, client.settings.max_in_flight)
        self.values: dict[str, bytes] = {}
        self.todo: deque[str] = deque([root])
        self.in_flight = 0
        self.side_tasks: set[asyncio.Task[None]] = set()
        self.replies = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pump(self) -> None:
        if self.done.done():
            return  # failed: let outstanding replies drain without sending more
        todo, conn = self.todo, self.conn
        while todo and self.in_flight < self.limit:
            path = todo.popleft()
            payload = strings(path)
            conn.send(Op.READ, payload, 0, partial(self.on_read, path))
            conn.send(Op.DIRECTORY, payload, 0, partial(self.on_dir, path))
            self.in_flight += 2
            self.client.requests += 2
        if not self.in_flight and not todo and not self.side_tasks:
            self.done.set_result(None)

    def fail(self, exc: errors.XenstoreError) -> None:
        if not self.done.done():
            self.done.set_exception(exc)

    def check(self, frame: Frame, op: Op, path: str) -> bool:
        """True if `frame` is a usable reply; records a fatal failure otherwise."""
        self.in_flight -= 1
        self.replies += 1
        if frame.op == op:
            return True
        if frame.op == INVALID:
            self.fail(errors.ConnectionLost(f"connection to xenstored lost while walking {path}; retry"))
        elif frame.op == Op.ERROR and frame.payload not in _SKIP and not (
            op == Op.DIRECTORY and frame.payload == b"E2BIG\0"
        ):
            name = frame.payload.rstrip(b"\0").decode("ascii", "replace")
            self.fail(errors.error_for(name, op=op.name, path=path))
        return False

    def on_read(self, path: str, frame: Frame) -> None:
        if self.check(frame, Op.READ, path):
            self.values[path] = frame.payload
        self.pump()

    def on_dir(self, path: str, frame: Frame) -> None:
        if self.check(frame, Op.DIRECTORY, path):
            self.add_children(path, [n.decode() for n in split_strings(frame.payload) if n] if frame.payload else [])
        elif frame.payload == b"E2BIG\0":
            task = asyncio.get_running_loop().create_task(self.list_big(path))
            self.side_tasks.add(task)
        self.pump()

    def add_children(self, path: str, names: list[str]) -> None:
        base = "" if path == "/" else path
        self.todo.extend(f"{base}/{name}" for name in names)

    async def list_big(self, path: str) -> None:
        try:
            self.add_children(path, await self.client.directory(path))
        except (errors.NoEntry, errors.AccessDenied):
            pass
        except errors.XenstoreError as exc:
            self.fail(exc)
        finally:
            self.side_tasks.discard(asyncio.current_task())
            self.pump()

    async def run(self) -> dict[str, bytes]:
        self.pump()
        timeout = self.client.settings.timeout
        while not self.done.done():
            before = self.replies
            await asyncio.wait([self.done], timeout=timeout)
            if not self.done.done() and self.replies == before and not self.side_tasks:
                raise errors.XenstoreTimeout(f"xenstored stopped answering for {timeout} s during a walk")
        self.done.result()
        return self.values


async def snapshot(client: XenstoreClient, root: str = "/") -> dict[str, bytes]:
    """{path: value} for `root` and everything below it (order unspecified).

    Not atomic: nodes written during the walk may be seen old or new, as with xenstore-ls.
    """
    check_path(root)
    if not root.startswith("/"):
        raise errors.InvalidPath(f"walk root {root!r} must be absolute", path=root)
    walk = _Walk(client, await client.ready(), root)
    try:
        return await walk.run()
    finally:
        for task in walk.side_tasks:
            task.cancel()
