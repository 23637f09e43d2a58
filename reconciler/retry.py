"""The one retry policy for transient host errors: a small frozen value -> tenacity.

Pure values; the waiting happens in the caller's loop. `retrying(policy)` is what
execute wraps around every step, observe around every read of the host, and the
xenstore driver around its transactions and reconnects: only `TransientHostError`
(EAGAIN, busy, a timeout, a lost connection) is retried, `attempts` tries in all, with
capped exponential backoff; the last error is re-raised as itself, so the caller
reports the host's own sentence. Tests pass `initial_backoff_s=0` and never sleep.
Where the numbers come from for a run (flag > environment > default) is decided in
`reconciler.execute.settings.resolve_settings`, once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_none

from reconciler.errors import TransientHostError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry one host call. Every `*_s` is seconds."""

    attempts: int = 5  # tries in all, the first included
    initial_backoff_s: float = 0.2  # first pause between tries; doubles each time
    max_backoff_s: float = 5.0  # cap: xenstore EAGAIN and a busy toolstack clear in well under this


def retrying(policy: RetryPolicy) -> AsyncRetrying:
    """A fresh tenacity controller: `async for attempt in retrying(p): with attempt: ...`."""
    wait = (wait_exponential(multiplier=policy.initial_backoff_s, max=policy.max_backoff_s)
            if policy.initial_backoff_s > 0 else wait_none())
    return AsyncRetrying(
        retry=retry_if_exception_type(TransientHostError),
        stop=stop_after_attempt(policy.attempts),
        wait=wait,
        reraise=True,
    )


async def retried(policy: RetryPolicy, call: Callable[[], Awaitable[T]]) -> T:
    """`await call()` under the policy: a read of the host that a transient error may
    interrupt and that is safe to repeat."""
    async for attempt in retrying(policy):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
