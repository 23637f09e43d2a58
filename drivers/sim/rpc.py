"""JSON-lines RPC between the simulated host process and its clients, on DIR/host.sock.

Stage: simulated host (transport). One request per line, `{"id", "op", "args"}`;
one reply per line, `{"id", "result"}` or `{"id", "error": {"type", "message"}}`,
in any order (requests run concurrently: an attach waiting for its backend does not
hold up a `list`). Error types map back onto the project's exception tree, so the
client raises exactly what the host raised. Used by `host` (server) and `client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from reconciler.errors import ReconcilerError, StateFileError, TerminalHostError, TransientHostError, UsageError

log = logging.getLogger(__name__)
LINE_LIMIT = 16 * 1024 * 1024  # bytes in one request or reply; a VM model is a few KiB
Handler = Callable[[str, dict[str, Any]], Awaitable[Any]]
_ERRORS: dict[str, type[ReconcilerError]] = {
    "transient": TransientHostError, "terminal": TerminalHostError, "usage": UsageError, "state": StateFileError,
}


def _error_type(exc: BaseException) -> str:
    for name, cls in _ERRORS.items():
        if isinstance(exc, cls):
            return name
    return "terminal"


class RpcServer:
    def __init__(self, path: Path, handler: Handler) -> None:
        self.path, self.handler = path, handler
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen; a stale socket file is replaced (the caller holds the directory's lock)."""
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, str(self.path), limit=LINE_LIMIT)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                task = asyncio.get_running_loop().create_task(self._answer(line, writer))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        except (ConnectionError, ValueError) as exc:  # ValueError: a line over LINE_LIMIT
            log.warning("dropping host client: %s", exc)
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        req_id: Any = None
        try:
            request = json.loads(line)
            req_id = request["id"]
            reply: dict[str, Any] = {"id": req_id, "result": await self.handler(str(request["op"]), dict(request.get("args", {})))}
        except ReconcilerError as exc:
            reply = {"id": req_id, "error": {"type": _error_type(exc), "message": str(exc)}}
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"id": req_id, "error": {"type": "terminal", "message": f"bad request to the simulated host: {exc}"}}
        if not writer.is_closing():
            writer.write(json.dumps(reply).encode() + b"\n")


class RpcClient:
    """One connection to the host; `call` may be used concurrently."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, path: Path, timeout: float) -> RpcClient:
        client = cls(path, timeout)
        try:
            reader, client._writer = await asyncio.open_unix_connection(str(path), limit=LINE_LIMIT)
        except OSError as exc:
            raise TransientHostError(f"cannot reach the simulated host at {path} ({exc.strerror or exc}); "
                                     "is `reconciler sim serve` still running?") from exc
        client._reader_task = asyncio.get_running_loop().create_task(client._read(reader))
        return client

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                reply = json.loads(line)
                future = self._pending.pop(reply.get("id"), None)
                if future is None or future.done():
                    continue
                if "error" in reply:
                    error = reply["error"]
                    future.set_exception(_ERRORS.get(error.get("type"), TerminalHostError)(error.get("message", "")))
                else:
                    future.set_result(reply.get("result"))
        except (ConnectionError, ValueError):
            pass
        finally:
            lost = TransientHostError(f"lost the connection to the simulated host at {self.path}; retry")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(lost)
            self._pending.clear()

    async def call(self, op: str, **args: Any) -> Any:
        if self._writer is None or self._writer.is_closing() or self._reader_task is None or self._reader_task.done():
            raise TransientHostError(f"not connected to the simulated host at {self.path}; retry")
        req_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        self._writer.write(json.dumps({"id": req_id, "op": op, "args": args}).encode() + b"\n")
        try:
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise TransientHostError(f"the simulated host did not answer {op} within {self.timeout:g} s") from None
        finally:
            self._pending.pop(req_id, None)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)
