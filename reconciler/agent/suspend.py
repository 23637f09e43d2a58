"""Suspension recorded on the host: `reconciler suspend` / `resume`, read by the agent each pass.

While `SUSPEND_PATH` exists the agent observes, plans and reports but executes nothing
(its Policy refuses the pass with the sentence `read_suspension` returns). The record
lives on the host, not in the agent: it survives an agent restart, and every agent or
operator on the host sees it. The node is dom0's alone (`Perm(0, "n")`: no guest may
read or write it, a guest cannot lift it), its value one line of JSON
`{"by": "user@host", "at": "<RFC 3339 UTC>", "reason": "..."}`.

Fail safe: a node whose value cannot be read as that record is still a suspension; the
sentence says the record is unreadable and `reconciler resume` lifts it. The observer
does not read `/local/domain/0/reconciler`, so a suspended converged host still plans
"No changes". Suspending takes no agent lock: it must work while an agent holds it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable

from reconciler.errors import HostError, UsageError
from reconciler.ports import Perm, XenstoreOps, XenstorePort

SUSPEND_DIR = "/local/domain/0/reconciler"
SUSPEND_PATH = f"{SUSPEND_DIR}/suspended"
DOM0_ONLY = (Perm(0, "n"),)  # owner dom0, every other domain: no access
MAX_REASON = 1000  # characters: the record must fit one xenstore value (4,096 bytes) in any script
LIFT = "run `reconciler resume` to lift it"


def rfc3339(seconds: float) -> str:
    """`2026-12-06T07:40:00Z`: UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def who() -> str:
    """`user@hostname`, or `uid N@hostname` when the uid has no name."""
    uid = os.getuid()
    try:
        import pwd

        user = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        user = f"uid {uid}"
    return f"{user}@{socket.gethostname()}"


def _missing(exc: HostError) -> bool:
    return getattr(exc, "errno_name", None) == "ENOENT"


def describe(raw: bytes) -> str:
    """The sentence for a suspension record's value (any bytes: fail safe)."""
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
        by, at, reason = data.get("by"), data.get("at"), data.get("reason")
        if not all(isinstance(v, str) for v in (by, at, reason)):
            raise ValueError("by, at and reason must be strings")
    except ValueError:  # also UnicodeDecodeError and json.JSONDecodeError
        return f"suspended: the record at {SUSPEND_PATH} is unreadable; {LIFT}"
    because = f": {reason}" if reason else ""
    return f"suspended by {by} at {at}{because}; {LIFT}"


async def read_suspension(xs: XenstorePort) -> str | None:
    """A sentence saying who suspended the host, when and why; None when not suspended."""
    try:
        raw = await xs.read(SUSPEND_PATH)
    except HostError as exc:
        if _missing(exc):
            return None
        raise
    return describe(raw)


async def suspend(xs: XenstorePort, reason: str, *, by: str | None = None,
                  clock: Callable[[], float] = time.time) -> str:
    """Record the suspension (replacing one that is there); its sentence. A reason longer
    than MAX_REASON characters is a UsageError (a xenstore value holds 4,096 bytes)."""
    if len(reason) > MAX_REASON:
        raise UsageError(f"--reason: {len(reason)} characters; keep it to {MAX_REASON} (it is stored in xenstore)")
    value = json.dumps({"by": by or who(), "at": rfc3339(clock()), "reason": " ".join(reason.split())},
                       ensure_ascii=False, separators=(",", ":"))

    async def body(tx: XenstoreOps) -> None:
        await tx.write(SUSPEND_PATH, value)
        await tx.set_perms(SUSPEND_DIR, DOM0_ONLY)
        await tx.set_perms(SUSPEND_PATH, DOM0_ONLY)

    await xs.transaction(body)
    return describe(value.encode())


async def resume(xs: XenstorePort) -> str | None:
    """Lift the suspension; the sentence of the one lifted, None when there was none."""
    was = await read_suspension(xs)
    if was is None:
        return None
    try:
        await xs.rm(SUSPEND_PATH)
    except HostError as exc:
        if not _missing(exc):
            raise
    return was
