"""`apply`'s progress: `[n/N]` before each step line, and a live counter on a terminal.

`Progress(total)` wraps the step lines `apply` prints as steps end (`on_step`): n is the
steps ended so far (done, failed or skipped), N the steps in the plan, so the last line
reads `[N/N]`. When stdout and stderr are terminals and TERM is not `dumb`, one more line
on stderr is rewritten in place (`\\r`, erased before each step line and at the end):

    [3/10] 2 done, 1 failed, 2 running, 5 left

Never in CI logs or pipes (not a terminal): there the step lines are the whole story.
"Running" counts the asyncio tasks `execute` names after the plan's step ids. A log line
(`-v`) erases the counter first; the next refresh draws it again below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Collection
from typing import TextIO

from reconciler.execute.report import StepResult

REFRESH_S = 0.2  # the live line follows starts and ends 5 times a second: enough for eyes
ERASE = "\r\x1b[K"  # carriage return, erase to the end of the line (VT100; every terminal)


def live_terminal(out: TextIO | None = None, err: TextIO | None = None) -> bool:
    """Is there a person watching: stdout and stderr terminals, TERM not `dumb`?"""
    out, err = out or sys.stdout, err or sys.stderr
    return out.isatty() and err.isatty() and os.environ.get("TERM", "dumb") != "dumb"


class Progress:
    """The step lines with `[n/N]`, and the live counter when `live`."""

    def __init__(self, step_ids: Collection[str], *, live: bool) -> None:
        self.ids, self.total, self.live = frozenset(step_ids), len(step_ids), live
        self.ended: dict[str, int] = {"done": 0, "failed": 0, "skipped": 0}
        self._shown = False

    @property
    def count(self) -> int:
        return sum(self.ended.values())

    def step(self, result: StepResult) -> None:
        """One step ended: its line on stdout, numbered, then the counter again."""
        self.ended[result.outcome] += 1
        self._erase()
        print(f"[{self.count}/{self.total}] {result.line()}", flush=True)
        self._draw()

    def counter(self) -> str:
        """`[3/10] 2 done, 1 failed, 2 running, 5 left` (skipped only when some were)."""
        running = self._running()
        parts = [f"{self.ended['done']} done", f"{self.ended['failed']} failed"]
        if self.ended["skipped"]:
            parts.append(f"{self.ended['skipped']} skipped")
        parts += [f"{running} running", f"{max(self.total - self.count - running, 0)} left"]
        return f"[{self.count}/{self.total}] " + ", ".join(parts)

    def _running(self) -> int:
        try:
            tasks = asyncio.all_tasks()
        except RuntimeError:  # no running loop
            return 0
        return sum(1 for task in tasks if task.get_name() in self.ids)

    def _draw(self) -> None:
        if self.live:
            sys.stderr.write(ERASE + self.counter())
            sys.stderr.flush()
            self._shown = True

    def _erase(self) -> None:
        if self._shown:
            sys.stderr.write(ERASE)
            sys.stderr.flush()
            self._shown = False

    @contextlib.asynccontextmanager
    async def shown(self) -> AsyncIterator[Progress]:
        """While inside: the live counter is drawn and refreshed; erased on the way out."""
        ticker = asyncio.create_task(self._tick()) if self.live else None
        handlers = logging.getLogger().handlers if self.live else []
        for handler in handlers:  # a log line (-v) starts on an erased line; the next tick redraws
            handler.addFilter(self._before_log)
        try:
            yield self
        finally:
            for handler in handlers:
                handler.removeFilter(self._before_log)
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            self._erase()

    def _before_log(self, record: logging.LogRecord) -> bool:
        self._erase()
        return True

    async def _tick(self) -> None:
        while True:
            self._draw()
            await asyncio.sleep(REFRESH_S)
