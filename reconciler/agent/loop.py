"""The watch loop: one level-triggered pass per trigger, for as long as the agent runs.

Stage: agent (composes the pure stages with a host's ports; `reconciler.cli.watch`
passes the ports, the file watcher and the stop event in). A pass loads the manifests
(the last good desired state stays in force when they are invalid, and nothing is ever
applied from an invalid one), observes, plans, decides (policy: suspension, the
max-destroy rail, holds), executes (the step in flight finishes when `stop` is set)
and records (status file, conditions, logs). Every pass reloads and re-observes;
triggers (`reconciler.agent.triggers`) only say when.

Logs go to the logger "reconciler.agent", one line per pass and per step.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reconciler.agent.git import GitError, GitPull, describe
from reconciler.agent.status import rfc3339, write_status
from reconciler.agent.triggers import FULL, Triggers, primary
from reconciler.errors import Diagnostic, HostError, ManifestError
from reconciler.execute.report import Report
from reconciler.execute.settings import ExecuteSettings
from reconciler.model.observed import ObservedState
from reconciler.model.state import DesiredState
from reconciler.plan.build import Plan
from reconciler.ports import HostPorts

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
    debounce_s: float = 0.5  # quiet time after a manifest change before the pass
    max_destroy: int | None = None  # None: refuse a pass stopping more than half the managed VMs
    drift: Literal["correct", "warn"] = "correct"
    git_pull: GitPull | None = None  # --git URL --branch B --interval S: fetched by the agent itself


# --- stand-ins for the parts built beside this one (policy, live observer) -------------

@dataclass(frozen=True)
class Decision:
    act: bool
    reason: str | None
    hold: Mapping[str, str]


def _keys(desired: DesiredState) -> list[str]:
    tables = (("VM", desired.vms), ("Disk", desired.disks), ("NIC", desired.nics),
              ("PCIPassthrough", desired.pci), ("V4VRule", desired.v4v_rules))
    return [f"{kind}/{name}" for kind, table in tables for name in table]


class StandInPolicy:
    """Acts on every plan; Ready/Failed conditions only; no backoff (part B replaces it)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._conditions: dict[str, list[dict[str, str]]] = {}

    def decide(self, plan: Plan, observed: ObservedState, *, suspended: str | None) -> Decision:
        if suspended:
            return Decision(False, f"suspended: {suspended}", {})
        return Decision(True, None, {})

    def record(self, plan: Plan, decision: Decision, report: Report | None) -> None:
        outcome = {f"{r.kind}/{r.name}": r.outcome for r in report.resources} if report else {}
        changed = {f"{c.kind}/{c.name}" for c in plan.diff.changes}
        now = rfc3339(self._clock())
        table: dict[str, list[dict[str, str]]] = {}
        for key in dict.fromkeys([*_keys(plan.desired), *sorted(changed)]):
            word = outcome.get(key)
            if key not in changed or word in ("created", "updated", "restarted", "deleted"):
                status, reason, message = "True", "Converged", ""
            elif word == "failed":
                status, reason, message = "False", "Failed", "a step failed"
            else:
                status, reason, message = "False", "Pending", decision.reason or "changes not applied"
            if word == "deleted":
                continue
            old = {c["type"]: c for c in self._conditions.get(key, [])}.get("Ready")
            since = old["lastTransitionTime"] if old and old["status"] == status else now
            table[key] = [{"type": "Ready", "status": status, "reason": reason, "message": message,
                           "lastTransitionTime": since}]
        self._conditions = table

    def conditions(self) -> dict[str, list[dict[str, str]]]:
        return self._conditions

    def backoff(self) -> dict[str, dict[str, object]]:
        return {}

    def next_retry(self) -> float | None:
        return None


class StandInObserver:
    """A full `observe_host` per pass; `changed` on @introduceDomain/@releaseDomain
    (part F's LiveObserver replaces it, with the managed domains' nodes watched too)."""

    WATCHED = ("@introduceDomain", "@releaseDomain")

    def __init__(self, ports: HostPorts, retry: Any) -> None:
        self._ports, self._retry = ports, retry
        self.changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> ObservedState:
        for path in self.WATCHED:
            stream = await self._ports.xenstore.watch(path, f"agent{path}")
            self._tasks.append(asyncio.create_task(self._follow(stream), name=f"watch {path}"))
        return await self.observe(full=True)

    async def _follow(self, stream: Any) -> None:
        first = True
        try:
            async for _ in stream:
                if not first:  # xenstored fires every watch once when it is registered
                    self.changed.set()
                first = False
        finally:
            await stream.close()

    async def observe(self, *, full: bool = False) -> ObservedState:
        from reconciler.observe.host import observe_host

        return await observe_host(self._ports, self._retry)

    def xenstore_requests(self) -> int:
        return 0

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def _read_suspension(ports: HostPorts) -> str | None:
    return None  # stand-in: part B reads /local/domain/0/reconciler/suspended


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
                 file_watch: FileWatch | None = None) -> None:
        self.settings, self.ports, self.stop = settings, ports, stop
        self._file_watch = file_watch
        self.policy = StandInPolicy()
        self.observer = StandInObserver(ports, settings.execute.retry)
        self.desired: DesiredState | None = None
        self.digest: str | None = None
        self._reported: tuple[str, ...] | None = None  # the problems last logged, so each is said once
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
            if self.settings.git_pull is not None:
                tasks.append(asyncio.create_task(self._pull(self.settings.git_pull, triggers), name="git"))
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
        self._report(loaded.diagnostics)
        self.invalid = [str(d) for d in loaded.errors]
        return loaded.state

    def _report(self, diagnostics: list[Diagnostic]) -> None:
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
        c = result.counts
        line = (f"pass {self.passes} ({trigger}): {result.outcome} in {duration:.2f} s: {c['changes']} changes, "
                f"{c['done']} steps done, {c['failed']} failed, {c['skipped']} skipped, {c['held']} held")
        if git is not None:
            line += f", commit {git.commit[:12]}{' (dirty)' if git.dirty else ''}"
        (log.warning if result.outcome in ("failed", "refused") else log.info)(
            "%s%s", line, f"; {result.error}" if result.error else "")
        return result.outcome

    def _plan(self, candidate: DesiredState | None, observed: ObservedState) -> Plan | None:
        """The plan for the manifests just loaded, or (when they are invalid) for the last
        good desired state; None before any good load."""
        from reconciler.model.digest import desired_digest
        from reconciler.plan.build import plan_for

        if candidate is not None:
            try:
                plan = plan_for(candidate, observed)
            except ManifestError as exc:  # a dependency cycle: invalid input, never acted on
                self._report(exc.diagnostics)
                self.invalid = [str(d) for d in exc.diagnostics if d.severity == "error"]
            else:
                if candidate != self.desired:
                    self.desired, self.digest = candidate, desired_digest(candidate).total
                return plan
        return None if self.desired is None else plan_for(self.desired, observed)

    async def _act(self, candidate: DesiredState | None, full: bool) -> _PassResult:
        observed = await self.observer.observe(full=full)
        self.suspended = await _read_suspension(self.ports)
        plan = self._plan(candidate, observed)
        if plan is None:
            return _PassResult("invalid", _counts(), "no valid manifests loaded yet: observing only")
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
        counts.update(done=report.count("done"), failed=report.count("failed"), skipped=report.count("skipped"))
        if self.stop.is_set() and any(r.outcome == "skipped" and r.cause is None for r in report.steps):
            return _PassResult("interrupted", counts, "stopped: the steps not started are left to the next agent")
        if not report.ok:
            return _PassResult("failed", counts, "; ".join(f"{r.step.id}: {r.error}" for r in report.failures[:3]))
        return _PassResult("invalid" if self.invalid else "changed", counts, None)

    async def _execute(self, plan: Plan, decision: Decision) -> Report:
        from reconciler.execute import execute

        def step_done(result: Any) -> None:
            (log.info if result.outcome == "done" else log.warning)("%s", result.line())

        return await execute(plan, self.ports, settings=self.settings.execute, on_step=step_done, stop=self.stop)

    # --- status ---

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
