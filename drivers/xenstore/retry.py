"""The one retry policy for transient host errors, built from a small settings value.

Input: `RetrySettings` (attempts, initial wait, max wait). Output: a tenacity
`AsyncRetrying` that retries `TransientHostError` only (EAGAIN, EBUSY, timeouts, a lost
connection) with capped exponential backoff. Used by the xenstore client for
transactions and reconnects; tests pass `NO_WAIT`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from reconciler.errors import TransientHostError


@dataclass(frozen=True)
class RetrySettings:
    """How hard to retry a transient failure."""

    attempts: int = 10  # tries in all, the first included; libxl loops on EAGAIN too
    initial_wait: float = 0.02  # seconds before the second try; doubles each time
    max_wait: float = 1.0  # seconds, cap on one wait: a restarting xenstored is back in ~1 s


NO_WAIT = RetrySettings(attempts=10, initial_wait=0.0, max_wait=0.0)


def retrying(settings: RetrySettings) -> AsyncRetrying:
    """A fresh tenacity controller: `async for attempt in retrying(s): with attempt: ...`."""
    return AsyncRetrying(
        retry=retry_if_exception_type(TransientHostError),
        stop=stop_after_attempt(settings.attempts),
        wait=wait_exponential(multiplier=settings.initial_wait, max=settings.max_wait),
        reraise=True,
    )
