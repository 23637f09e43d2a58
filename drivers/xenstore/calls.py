"""Node operations of the xenstore client, shared by a connection and its transactions.

Stage: driver (xenstore). `NodeCalls` validates paths and payloads before anything is
sent, builds request payloads, and decodes replies into values or typed errors;
subclasses supply `_call` (the transport). `ClientTransaction` binds calls to a tx id.
Used by `client.XenstoreClient`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from drivers.xenstore import errors
from drivers.xenstore.connection import INVALID, WireConnection
from drivers.xenstore.wire import Frame, Op, path_problem, split_strings, strings
from reconciler.ports import Perm

if TYPE_CHECKING:
    from drivers.xenstore.client import XenstoreClient


def check_path(path: str, *, special_ok: bool = False) -> None:
    problem = path_problem(path, special_ok=special_ok)
    if problem is not None:
        raise errors.InvalidPath(f"xenstore path {path!r} {problem}; nothing was sent", path=path)


def reply_payload(frame: Frame, op: int, path: str | None) -> bytes:
    name = Op(op).name
    if frame.op == Op.ERROR:
        raise errors.error_for(frame.payload.rstrip(b"\0").decode("ascii", "replace"), op=name, path=path)
    if frame.op == INVALID:
        where = f" {path}" if path else ""
        raise errors.ConnectionLost(f"connection to xenstored lost during {name}{where}; retry", path=path)
    if frame.op != op:
        raise errors.ProtocolError(f"xenstored answered {name} with message type {frame.op}")
    return frame.payload


def resolver(fut: asyncio.Future[Frame]) -> Callable[[Frame], None]:
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
