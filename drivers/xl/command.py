"""Run one host tool (`xl`, `viptables`) as an asyncio subprocess and map its failures.

Stage: driver plumbing. In: an argv list (never a shell), a timeout in seconds and the
secrets to scrub from messages. Out: the tool's stdout, or `TransientHostError` /
`TerminalHostError` naming the command (argv[0..1]) and the tool's last stderr line.
Called by `drivers.xl.toolstack` and `drivers.viptables`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Sequence

from reconciler.errors import HostError, TerminalHostError, TransientHostError

REDACTED = "(sensitive)"

# Messages a retry may fix: a device or lock still held, the hypervisor or xenstore
# asking to try again, a hotplug script that timed out.
_TRANSIENT = re.compile(
    r"resource busy|device or resource busy|\bEBUSY\b|\bEAGAIN\b|try again|"
    r"temporarily unavailable|timed out|timeout",
    re.IGNORECASE,
)


def command_name(argv: Sequence[str]) -> str:
    """`xl create` for `/usr/sbin/xl create -p /tmp/x.cfg`: what a message should name."""
    return " ".join([os.path.basename(argv[0]), *argv[1:2]])


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret (and its xl.cfg-escaped spelling) replaced by `(sensitive)`."""
    for secret in secrets:
        if not secret:
            continue
        escaped = secret.replace("\\", "\\\\").replace('"', '\\"')
        for spelling in {escaped, secret}:
            text = text.replace(spelling, REDACTED)
    return text


def last_line(data: bytes) -> str:
    """The last non-blank line of a tool's output, or '' when it printed nothing."""
    lines = [line.strip() for line in data.decode("utf-8", errors="replace").splitlines()]
    return next((line for line in reversed(lines) if line), "")


def failure(argv: Sequence[str], status: int, stderr: bytes, stdout: bytes,
            secrets: Sequence[str] = ()) -> HostError:
    """The error for a non-zero exit: transient when the message says busy/try again."""
    message = redact(last_line(stderr) or last_line(stdout), secrets) or "(no message)"
    kind = TransientHostError if _TRANSIENT.search(message) else TerminalHostError
    return kind(f"`{command_name(argv)}` failed (exit status {status}): {message}")


async def run_tool(argv: Sequence[str], *, timeout: float, secrets: Sequence[str] = ()) -> str:
    """Run `argv`, wait at most `timeout` seconds, return its stdout as text.

    The tool runs in its own session, so a timeout or a cancellation kills it together
    with the children it started (xl's bootloader or hotplug scripts).
    """
    what = command_name(argv)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise TerminalHostError(
            f"`{what}`: {argv[0]} not found; install it or configure the executable's path"
        ) from exc
    except PermissionError as exc:
        raise TerminalHostError(f"`{what}`: {argv[0]} is not executable for this user; run as root") from exc
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError as exc:
        await _kill(proc)
        raise TransientHostError(f"`{what}` did not finish within {timeout:g} s and was killed") from exc
    except BaseException:
        await _kill(proc)
        raise
    if proc.returncode != 0:
        raise failure(argv, proc.returncode or 0, stderr, stdout, secrets)
    return stdout.decode("utf-8", errors="replace")


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill the tool's whole process group (it leads its own session) and reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await proc.wait()
