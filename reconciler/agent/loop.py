"""The watch loop: one level-triggered pass per trigger, for as long as the agent runs.

Stage: agent (composes the pure stages with a host's ports; `reconciler.cli.watch`
passes the ports, the file watcher and the stop event in). A pass loads the manifests
(the last good desired state stays in force when they are invalid, and nothing is ever
applied from an invalid one), observes, plans, decides (policy: suspension, the
max-destroy rail, holds), executes (the step in flight finishes when `stop` is set)
and records (status file, conditions, metrics, systemd, logs). Every pass reloads the
manifests and observes through part F's `LiveObserver` (re-reading only what xenstore
events named; the resync and SIGHUP re-read everything); triggers
(`reconciler.agent.triggers`) only say when.

Logs go to the logger "reconciler.agent", one line per pass and per step.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reconciler.agent import sdnotify
from reconciler.agent.git import GitError, GitPull, describe
from reconciler.agent.metrics import Metrics
from reconciler.agent.observer import LiveObserver
from reconciler.agent.policy import Decision, Policy
from reconciler.agent.status import rfc3339, write_status
from reconciler.agent.suspend import SUSPEND_PATH, read_suspension
from reconciler.agent.triggers import FULL, Triggers, primary
from reconciler.errors import Diagnostic, HostError, ManifestError
from reconciler.execute.report import Report
from reconciler.execute.settings import ExecuteSettings
from reconciler.model.observed import ObservedState
from reconciler.model.state import DesiredState
from reconciler.plan.build import Plan
from reconciler.ports import HostPorts, WatchStream

log = logging.getLogger("reconciler.agent")

# The file watcher the CLI builds: runs until the event is set, calling back on each change.
FileWatch = Callable[[Callable[[], None], asyncio.Event], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class AgentSettings:
    """What `reconciler watch` was asked to do. Every `*_s` is seconds."""

    paths: tuple[str, ...]
    host: str  # as named on the command line, for the status file
    status_path: Path
    execute: ExecuteSettings = field(default_factory=ExecuteSettings)
    resync_s: float = 300.0  # the safety net: a full observation at least this often
    debounce_s: float = 0.2  # quiet time after a manifest change before the pass (git pulls, editors: ms)
    max_destroy: int | None = None  # None: refuse a pass stopping more than half the managed VMs
    drift: Literal["correct", "warn"] = "correct"
    git_pull: GitPull | None = None  # --git URL --branch B --interval S: fetched by the agent itself


# --- the agent --------------------------------------------------------------------------

@dataclass
class _PassResult:
    outcome: str
    counts: dict[str, int]
    error: str | None = None


class Agent:
    """One agent on one host: `run()` until `stop` is set; then the step in flight finishes,
    the final status is written, and it returns."""

    def __init__(self, settings: AgentSettings, ports: HostPorts, stop: asyncio.Event,
                 file_watch: FileWatch | None = None, metrics: Metrics | None = None) -> None:
        self.settings, self.ports, self.stop = settings, ports, stop
        self._file_watch = file_watch
        self.metrics = metrics
        self.policy = Policy(max_destroy=settings.max_destroy, drift=settings.drift)
        self._drifted: set[str] = set()
        self.observer = LiveObserver(ports, settings.execute.retry)
        self.desired: DesiredState | None = None
        self.digest: str | None = None
        self._reported: tuple[str, ...] | None = None  # the problems last logged, so each is said once
        self._said: list[Diagnostic] = []  # this pass's problems: loading's, then planning's
        self.invalid: list[str] = []
        self.suspended: str | None = None
        self.passes = 0
        self.started = time.time()
        self.last_pass: dict[str, Any] | None = None
        self.triggers: Triggers | None = None

    async def run(self) -> None:
        self.triggers = triggers = Triggers(debounce_s=self.settings.debounce_s, resync_s=self.settings.resync_s)
        tasks: list[asyncio.Task[None]] = []
        if self._file_watch is not None:
            tasks.append(asyncio.create_task(self._file_watch(triggers.manifest_changed, self.stop), name="files"))
        try:
            await self.observer.start()
            tasks.append(asyncio.create_task(self._xenstore_events(triggers), name="xenstore"))
            suspension = await self.ports.xenstore.watch(SUSPEND_PATH, "agent-suspension")
            tasks.append(asyncio.create_task(self._suspension(suspension, triggers), name="suspension"))
            if self.settings.git_pull is not None:
                tasks.append(asyncio.create_task(self._pull(self.settings.git_pull, triggers), name="git"))
            tasks.append(asyncio.create_task(self._systemd(), name="systemd"))
            while (pending := await triggers.wait(self.stop)) is not None:
                await self.one_pass(primary(pending), full=bool(pending & FULL))
                if pending & FULL:
                    triggers.observed_fully()
                retry = self.policy.next_retry()
                triggers.retry_at(None if retry is None else asyncio.get_running_loop().time() + retry - time.time())
        finally:
            self.stop.set()  # the file watcher's thread checks it
            for task in tasks:
                if task.get_name() != "files":
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.observer.close()
            self.write_status(state="stopped")

    def reload(self) -> None:
        """SIGHUP: a pass now, manifests reloaded and the host observed whole."""
        if self.triggers is not None:
            self.triggers.fire("signal")

    async def _pull(self, pull: GitPull, triggers: Triggers) -> None:
        """Fetch every `interval` seconds; a fast-forward makes a pass (trigger `git`).
        A refused or failed fetch is logged once per message and retried next time."""
        said = ""
        while True:
            await asyncio.sleep(pull.interval)
            try:
                moved = await pull.sync()
            except GitError as exc:
                if str(exc) != said:
                    log.error("%s", exc)
                said = str(exc)
                continue
            said = ""
            if moved is not None:
                triggers.fire("git")

    async def _systemd(self) -> None:
        """WATCHDOG=1 every `watchdog_interval()` while the loop runs (only when the unit
        sets WatchdogSec=: otherwise no timer at all), STOPPING=1 once `stop` is set."""
        interval = sdnotify.watchdog_interval()
        stopping = asyncio.ensure_future(self.stop.wait())
        try:
            while not stopping.done():
                await asyncio.wait((stopping,), timeout=interval)
                if not stopping.done():
                    sdnotify.notify("WATCHDOG=1")
            sdnotify.notify("STOPPING=1")
        finally:
            stopping.cancel()

    async def _suspension(self, stream: WatchStream, triggers: Triggers) -> None:
        """`reconciler suspend`/`resume` on the host: a pass at once, so a resume acts now
        (the first event is xenstored's own, on registration)."""
        first = True
        try:
            async for _ in stream:
                if not first:
                    triggers.fire("xenstore")
                first = False
        finally:
            await stream.close()

    async def _xenstore_events(self, triggers: Triggers) -> None:
        while True:
            await self.observer.changed.wait()
            self.observer.changed.clear()
            triggers.fire("xenstore")

    # --- one pass ---

    def load(self) -> DesiredState | None:
        """The manifests as they are now, or None when invalid (their problems logged
        once, again only when they change). They become the desired state in force once
        they also plan (a dependency cycle is invalid input too)."""
        from reconciler.loader import load

        loaded = load(list(self.settings.paths))
        self._said = list(loaded.diagnostics)  # reported with planning's, once the pass has planned
        self.invalid = [str(d) for d in loaded.errors]
        return loaded.state

    def _report(self, diagnostics: list[Diagnostic]) -> None:
        diagnostics = list(dict.fromkeys(diagnostics))  # the fallback plan may find the candidate's again
        said = tuple(str(d) for d in diagnostics)
        if said == self._reported:
            return
        self._reported = said
        for diagnostic in diagnostics:
            (log.error if diagnostic.severity == "error" else log.warning)("%s", diagnostic)
        if any(d.severity == "error" for d in diagnostics):
            keep = "the last good desired state stays in force" if self.desired else "nothing is applied until they load"
            log.error("invalid manifests: %d problem(s); %s", sum(d.severity == "error" for d in diagnostics), keep)

    async def one_pass(self, trigger: str, *, full: bool) -> str:
        """Load, observe, plan, decide, execute, record; the outcome word."""
        self.passes += 1
        started, clock = time.time(), time.monotonic()
        git = await asyncio.to_thread(describe, self.settings.paths)  # the commit this pass applies
        try:
            result = await self._act(self.load(), full)
        except HostError as exc:  # the host could not be read even after retries
            result = _PassResult("failed", _counts(), f"the host could not be observed: {exc}")
        duration = time.monotonic() - clock
        self.last_pass = {"number": self.passes, "started": rfc3339(started), "trigger": trigger,
                          "outcome": result.outcome, "durationSeconds": round(duration, 6), "counts": result.counts,
                          "error": result.error,
                          "git": None if git is None else {"root": git.root, "commit": git.commit, "dirty": git.dirty}}
        self.write_status()
        self._publish(trigger, result.outcome, duration)
        c = result.counts
        line = (f"pass {self.passes} ({trigger}): {result.outcome} in {duration:.2f} s: {c['changes']} changes, "
                f"{c['done']} steps done, {c['failed']} failed, {c['skipped']} skipped, {c['held']} held")
        if git is not None:
            line += f", commit {git.commit[:12]}{' (dirty)' if git.dirty else ''}"
        fields = {"pass": self.passes, "trigger": trigger, "outcome": result.outcome, "seconds": round(duration, 3), **c}
        (log.warning if result.outcome in ("failed", "refused") else log.info)(
            "%s%s", line, f"; {result.error}" if result.error else "", extra={"fields": fields})
        return result.outcome

    def _plan(self, candidate: DesiredState | None, observed: ObservedState) -> Plan | None:
        """The plan for the manifests just loaded, or (when they are invalid) for the last
        good desired state; None before any good load, or when neither plans. Planning
        refuses a dependency cycle, and a desired VM whose name an unmanaged domain holds
        (a conflict, which the host can bring about by itself): said once, never acted on."""
        from reconciler.model.digest import desired_digest
        from reconciler.plan.build import plan_for

        if candidate is not None:
            try:
                plan = plan_for(candidate, observed, hook_timeout_s=self.settings.execute.hook_timeout_s)
            except ManifestError as exc:
                self._said.extend(exc.diagnostics)
                self.invalid = [str(d) for d in exc.diagnostics if d.severity == "error"]
            else:
                if candidate != self.desired:
                    self.desired, self.digest = candidate, desired_digest(candidate).total
                return plan
        if self.desired is None or self.desired is candidate:
            return None
        try:
            return plan_for(self.desired, observed, hook_timeout_s=self.settings.execute.hook_timeout_s)
        except ManifestError as exc:
            self._said.extend(exc.diagnostics)
            self.invalid = self.invalid or [str(d) for d in exc.diagnostics if d.severity == "error"]
            return None

    async def _act(self, candidate: DesiredState | None, full: bool) -> _PassResult:
        observed = await self.observer.observe(full=full)
        self.suspended = await read_suspension(self.ports.xenstore)
        plan = self._plan(candidate, observed)
        self._report(self._said)
        if plan is None:
            why = ("no valid manifests loaded yet: observing only" if self.desired is None
                   else "neither the manifests nor the last good desired state plan: nothing is applied")
            return _PassResult("invalid", _counts(), why)
        decision = self.policy.decide(plan, observed, suspended=self.suspended)
        counts = _counts(changes=len(plan.diff.changes), steps=len(plan.steps), held=len(decision.hold))
        if not decision.act:
            self.policy.record(plan, decision, None)
            return _PassResult("suspended" if self.suspended else "refused", counts, decision.reason)
        if not plan.steps:
            self.policy.record(plan, decision, None)
            return _PassResult("invalid" if self.invalid else "converged", counts,
                               "invalid manifests: the last good desired state is in force" if self.invalid else None)
        report = await self._execute(plan, decision)
        self.policy.record(plan, decision, report)
        return self._outcome(report, decision, counts)

    def _outcome(self, report: Report, decision: Decision, counts: dict[str, int]) -> _PassResult:
        """failed (a step failed, or a resource still backs off), interrupted (stopped with
        steps not started), changed (steps done), refused (only held steps: drift warn)."""
        counts.update(done=report.count("done"), failed=report.count("failed"), skipped=report.count("skipped"))
        held = sorted(set(decision.hold.values()))
        if report.failures:
            return _PassResult("failed", counts, "; ".join(f"{r.step.id}: {r.error}" for r in report.failures[:3]))
        if self.stop.is_set() and any(r.outcome == "skipped" and r.cause is None and not r.note for r in report.steps):
            return _PassResult("interrupted", counts, "stopped: the steps not started are left to the next agent")
        backing_off = [why for why in decision.hold.values() if why.startswith("backing off")]
        if backing_off:
            return _PassResult("failed", counts, f"{len(backing_off)} resource(s) {min(backing_off)}")
        if self.invalid:
            return _PassResult("invalid", counts, "invalid manifests: the last good desired state is in force")
        if counts["done"] == 0 and held:
            return _PassResult("refused", counts, f"{len(decision.hold)} resource(s) held: {held[0]}")
        return _PassResult("changed", counts, None)

    async def _execute(self, plan: Plan, decision: Decision) -> Report:
        from reconciler.execute import execute

        def step_done(result: Any) -> None:
            (log.info if result.outcome == "done" else log.warning)(
                "%s", result.line(), extra={"fields": {"step": result.step.id, "outcome": result.outcome}})

        return await execute(plan, self.ports, settings=self.settings.execute, on_step=step_done, stop=self.stop,
                             hold=decision.hold)

    # --- status ---

    def _publish(self, trigger: str, outcome: str, seconds: float) -> None:
        """Metrics and systemd after a pass: READY=1 after the first one."""
        conditions = self.policy.conditions()
        drifted = {key for key, table in conditions.items()
                   if any(c["type"] == "Drifted" and c["status"] == "True" for c in table)}
        if self.metrics is not None:
            self.metrics.pass_done(trigger, outcome, seconds)
            by: dict[str, int] = {}
            for table in conditions.values():
                for condition in table:
                    if condition["status"] == "True":
                        by[condition["type"]] = by.get(condition["type"], 0) + 1
            self.metrics.set_resources(by)
            self.metrics.drift_detected(len(drifted - self._drifted))
            self.metrics.set_xenstore_requests(self.observer.xenstore_requests())
        self._drifted = drifted
        ready = sum(1 for table in conditions.values() if any(c["type"] == "Ready" and c["status"] == "True"
                                                              for c in table))
        sdnotify.notify(*(["READY=1"] if self.passes == 1 else []),
                        f"STATUS=pass {self.passes} ({trigger}): {outcome}; {ready} of {len(conditions)} resources Ready")

    def status(self, state: str = "running") -> dict[str, Any]:
        agent: dict[str, Any] = {"pid": os.getpid(), "started": rfc3339(self.started), "host": self.settings.host,
                                 "paths": list(self.settings.paths), "state": state}
        if state == "stopped":
            agent["stopped"] = rfc3339(time.time())
        backoff = self.policy.backoff()
        resources: dict[str, Any] = {}
        for key, conditions in sorted(self.policy.conditions().items()):
            resources[key] = {"conditions": conditions}
            if key in backoff:
                resources[key]["backoff"] = backoff[key]
        return {"formatVersion": 1, "agent": agent, "lastPass": self.last_pass, "desiredDigest": self.digest,
                "invalid": self.invalid, "suspended": self.suspended,
                "xenstoreRequests": self.observer.xenstore_requests(), "resources": resources}

    def write_status(self, state: str = "running") -> None:
        try:
            write_status(self.settings.status_path, self.status(state))
        except OSError as exc:  # a full /run must not stop the agent; say so once per pass
            log.error("cannot write the status file %s: %s", self.settings.status_path, exc.strerror or exc)


def _counts(**given: int) -> dict[str, int]:
    counts = dict.fromkeys(("changes", "steps", "done", "failed", "skipped", "held"), 0)
    counts.update(given)
    return counts
