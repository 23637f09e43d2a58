"""What wakes the agent: the pending triggers of the next pass, and when it may start.

Used by the watch loop (`reconciler.agent.loop`). Sources call `fire(name)` (xenstore,
signal, git, retry) or `manifest_changed()` (file events, debounced); `wait()` sleeps
until a pass is due and returns the triggers it answers. Level-triggered: a pass does
the whole job whatever woke it, so triggers that pile up during a pass make one pass
after it, not one each. Only two timers exist, and only while armed: the periodic
resync and the earliest backoff retry; with nothing changing the agent sleeps.

Debounce: a manifest change starts a quiet period of `debounce_s` that every further
change restarts (a `git pull` of 40 files, an editor's temp-file-and-rename), capped at
`MAX_DEBOUNCE_FACTOR` times it so a file rewritten without pause still gets its pass.
While a manifest change settles no pass starts at all, not even for a xenstore event:
a half-written file that happens to parse must never be acted on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from reconciler.agent.status import TRIGGERS

MAX_DEBOUNCE_FACTOR = 10
# Triggers that ask for a full observation: the resync is the safety net of the
# incremental observer, and SIGHUP means "reload everything now". (The first pass needs
# none: the observer's start() has just walked the whole host.)
FULL = frozenset({"resync", "signal"})


def primary(pending: set[str] | frozenset[str]) -> str:
    """The trigger a pass is named after when several woke it (status and metrics)."""
    return next(name for name in TRIGGERS if name in pending)


class Triggers:
    """Pending triggers, the resync timer and the retry timer of one agent.
    `clock` is the event loop's monotonic time (tests may pass their own)."""

    def __init__(self, *, debounce_s: float, resync_s: float, clock: Callable[[], float] | None = None) -> None:
        self.debounce_s, self.resync_s = debounce_s, resync_s
        self._clock = clock or asyncio.get_running_loop().time
        self._pending: set[str] = {"start"}
        self._wake = asyncio.Event()
        self._wake.set()
        self._settle_from: float | None = None  # first manifest change not yet answered
        self._settle_last = 0.0                 # the latest one
        self._resync_at = self._clock() + resync_s
        self._retry_at: float | None = None

    def fire(self, name: str) -> None:
        assert name in TRIGGERS, name
        self._pending.add(name)
        self._wake.set()

    def manifest_changed(self) -> None:
        now = self._clock()
        if self._settle_from is None:
            self._settle_from = now
        self._settle_last = now
        self._wake.set()

    def retry_at(self, when: float | None) -> None:
        """Arm (or clear) the retry timer: loop time of the earliest backoff end."""
        self._retry_at = when
        self._wake.set()

    def observed_fully(self) -> None:
        """A full observation just ran: the next resync is `resync_s` from now."""
        self._resync_at = self._clock() + self.resync_s

    def _settled_at(self) -> float | None:
        if self._settle_from is None:
            return None
        return min(self._settle_last + self.debounce_s, self._settle_from + MAX_DEBOUNCE_FACTOR * self.debounce_s)

    def _due(self, now: float) -> float | None:
        """Seconds to sleep before the next check; None when a pass is due now."""
        settled = self._settled_at()
        if settled is not None:
            if now < settled:
                return settled - now
            self._settle_from = None
            self._pending.add("manifest")
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            self._pending.add("retry")
        if now >= self._resync_at:
            self._pending.add("resync")
        if self._pending:
            return None
        wake = min(t for t in (self._resync_at, self._retry_at) if t is not None)
        return wake - now

    async def wait(self, stop: asyncio.Event) -> frozenset[str] | None:
        """The triggers of the next pass once one is due; None once `stop` is set."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()
                sleep = self._due(self._clock())
                if sleep is None:
                    pending, self._pending = frozenset(self._pending), set()
                    return pending
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait((woken, stopping), timeout=sleep, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
            return None
        finally:
            stopping.cancel()
