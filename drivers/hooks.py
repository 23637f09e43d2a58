"""Run VM hooks (OpenXT's run-pre-boot & co, openxt.md 1.11) as local processes.

Stage: driver. In: an argv list, `[path, uuid]` or `[path, uuid, public-state]`, and a
timeout in seconds. Out: `reconciler.ports.HookResult` (exit status, stdout, stderr).
Used by every host, simulated or real (`open_sim`, `open_xen` pass `LocalHooks()` as
`HostPorts.hooks`): hooks are executables on the machine the reconciler runs on.
Called by `reconciler.execute.hooks`.

How a hook runs:
- exec'd directly (asyncio subprocess, never a shell), stdin `/dev/null`, cwd `/`, no
  file descriptor but 0-2, in a session and process group of its own;
- with this environment and nothing else (none of the reconciler's own, so no
  `RECONCILER_*` setting or `XENSTORED_PATH` leaks in): `ENV` below, a fixed `PATH` and
  `LC_ALL=C`, so a hook's tools print the same wherever the reconciler was started;
- for at most `timeout` seconds: then its process group gets SIGTERM, and SIGKILL
  `grace_s` seconds later (children it started go with it), and the status is
  the signal, negative (a hook that exited but left a child holding its output open
  keeps its own status);
- stdout and stderr are read as they come (a hook never blocks on a full pipe); each
  keeps its last `OUTPUT_MAX` bytes, decoded as UTF-8 (bad bytes replaced), what was
  dropped counted on a first line `[N bytes dropped]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence

from reconciler.errors import TerminalHostError
from reconciler.ports import HookResult

OUTPUT_MAX = 64 << 10  # bytes kept per stream: a hook's log lines, not a dump
ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",  # dom0 tools (xl, xenstore-*) included
    "LC_ALL": "C",
}


async def _drain(stream: asyncio.StreamReader | None, limit: int) -> str:
    """Everything `stream` gives until EOF; the last `limit` bytes kept."""
    kept, dropped = bytearray(), 0
    while stream is not None and (chunk := await stream.read(1 << 16)):
        kept += chunk
        if len(kept) > limit:
            dropped += len(kept) - limit
            del kept[:len(kept) - limit]
    text = kept.decode("utf-8", errors="replace")
    return f"[{dropped} bytes dropped]\n{text}" if dropped else text


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class LocalHooks:
    """The `HookPort` of every host: hooks as processes of this machine (module docstring)."""

    def __init__(self, *, grace_s: float = 2.0, output_max: int = OUTPUT_MAX) -> None:
        self.grace_s = grace_s  # SIGTERM -> SIGKILL: time for a hook to clean up after its timeout
        self.output_max = output_max

    async def run(self, argv: Sequence[str], *, timeout: float) -> HookResult:
        if not argv:
            raise TerminalHostError("cannot run a hook with an empty argv; the plan is malformed: run plan again")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd="/", env=dict(ENV), start_new_session=True)
        except OSError as exc:  # missing, not executable, no interpreter (ENOEXEC)...
            raise TerminalHostError(f"cannot run hook {argv[0]}: {exc.strerror or exc}; install it as an executable "
                                    "file (mode +x) or change the manifest's hook path") from exc
        out = asyncio.ensure_future(_drain(proc.stdout, self.output_max))
        err = asyncio.ensure_future(_drain(proc.stderr, self.output_max))
        waited = asyncio.ensure_future(proc.wait())
        tasks = {out, err, waited}
        try:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                await self._stop(proc.pid, waited)
                await asyncio.wait(tasks, timeout=self.grace_s)  # pipes close with the group
        except BaseException:  # cancelled (apply interrupted): the hook goes too
            _signal_group(proc.pid, signal.SIGKILL)
            raise
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()
            with contextlib.suppress(ProcessLookupError):
                await asyncio.shield(proc.wait())
        stdout = out.result() if out.done() and not out.cancelled() else ""
        stderr = err.result() if err.done() and not err.cancelled() else ""
        return HookResult(proc.returncode if proc.returncode is not None else -signal.SIGKILL, stdout, stderr)

    async def _stop(self, pgid: int, waited: asyncio.Future[int]) -> None:
        """SIGTERM to the hook's group, SIGKILL `grace_s` later to whatever of it is left."""
        _signal_group(pgid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waited), self.grace_s)
        _signal_group(pgid, signal.SIGKILL)  # children that ignored SIGTERM or outlived the leader
