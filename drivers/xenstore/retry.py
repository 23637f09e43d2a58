"""The xenstore client's retry numbers, for the reconciler's one retry policy.

Input: `RetrySettings` (attempts, initial wait, max wait: a xenstore EAGAIN clears in
milliseconds, so more tries and shorter waits than a toolstack call). Output: the
tenacity controller of `reconciler.retry`, which retries `TransientHostError` only
(EAGAIN, EBUSY, timeouts, a lost connection) with capped exponential backoff. Used by
the xenstore client for transactions and reconnects; tests pass `NO_WAIT`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenacity import AsyncRetrying

from reconciler.retry import RetryPolicy
from reconciler.retry import retrying as policy_retrying


@dataclass(frozen=True)
class RetrySettings:
    """How hard to retry a transient failure."""

    attempts: int = 10  # tries in all, the first included; libxl loops on EAGAIN too
    initial_wait: float = 0.02  # seconds before the second try; doubles each time
    max_wait: float = 1.0  # seconds, cap on one wait: a restarting xenstored is back in ~1 s


NO_WAIT = RetrySettings(attempts=10, initial_wait=0.0, max_wait=0.0)


def retrying(settings: RetrySettings) -> AsyncRetrying:
    """A fresh tenacity controller: `async for attempt in retrying(s): with attempt: ...`,
    the reconciler's one policy (`reconciler.retry`) with this client's numbers."""
    return policy_retrying(RetryPolicy(settings.attempts, settings.initial_wait, settings.max_wait))
