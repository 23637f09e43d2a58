"""Execute a Plan against a host: the plan's DAG, at most N steps at once, failures isolated.

Touches the host through `reconciler.ports.HostPorts` only (no drivers: the CLI passes
the ports in). `execute(plan, ports, settings=...)` starts a step as soon as every step
it depends on is done (no generation barriers), runs it through the op table
(`reconciler.execute.ops.OPS`) under the one retry policy, and when a step fails marks
every step that `requires` it, transitively, skipped: only the root cause carries an
error. Independent steps go on, and so do steps an `orders` edge (a priority
tie-break) only placed after a failed or skipped one. Called by `reconciler apply`
(and the watch loop).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Mapping

from reconciler.errors import HostError
from reconciler.execute.ops import CHANGES_DOMAINS, OPS
from reconciler.execute.report import Report, StepResult, make_report, step_keys
from reconciler.execute.runtime import Runtime
from reconciler.execute.settings import ExecuteSettings
from reconciler.plan.build import Plan
from reconciler.plan.steps import Step
from reconciler.ports import HostPorts
from reconciler.retry import retrying

OnStep = Callable[[StepResult], None]


async def run_step(rt: Runtime, step: Step) -> StepResult:
    """One step under the retry policy: done, or failed with the host's last sentence.
    Only HostErrors fail a step; anything else is a bug and propagates."""
    started, tries, done = time.monotonic(), 0, False
    try:
        async for attempt in retrying(rt.settings.retry):
            with attempt:
                tries = attempt.retry_state.attempt_number
                note = await OPS[step.op](rt, step, tries > 1)
        done = True
    except HostError as exc:
        return StepResult(step, "failed", time.monotonic() - started, tries, error=str(exc) or type(exc).__name__)
    finally:
        if step.op in CHANGES_DOMAINS and not done:  # failed or cancelled: what it did is unknown
            rt.domains_changed()
    return StepResult(step, "done", time.monotonic() - started, tries, note=note)


class _Schedule:
    """The bookkeeping of one run: what waits for how many steps, what may start next.
    Ready steps start VM by VM (the VMs in the order their first step's generation
    places them, then by name), within a VM by generation, then id: so equal runs
    start steps alike, and a VM that started goes on before the next one starts. Taking
    every VM's steps generation by generation instead would leave the work that must
    run one at a time (firewall changes) for the end of the run, with nothing beside it."""

    def __init__(self, plan: Plan) -> None:
        self.graph = plan.graph
        generation = {sid: n for n, sids in enumerate(plan.generations) for sid in sids}
        vm_of = {step.id: step.vm for step in plan.steps}
        first: dict[str, int] = {}
        for sid, n in generation.items():  # in generation order: the first seen is the earliest
            first.setdefault(vm_of.get(sid, ""), n)
        order = {vm: n for n, vm in enumerate(sorted(first, key=lambda vm: (first[vm], vm)))}
        self.rank = {sid: (order[vm_of.get(sid, "")], n) for sid, n in generation.items()}
        self.waiting = {sid: self.graph.in_degree(sid) for sid in self.graph.nodes}
        self.ready: list[tuple[tuple[int, int], str]] = [(self.rank[s], s) for s, n in self.waiting.items() if n == 0]
        heapq.heapify(self.ready)
        self.settled: set[str] = set()

    def pop(self) -> str:
        return heapq.heappop(self.ready)[1]

    def succeeded(self, sid: str) -> None:
        self.settled.add(sid)
        self._release(sid)

    def _release(self, sid: str) -> None:
        """`sid` is settled: what waits for it waits for one step fewer."""
        for after in sorted(self.graph.successors(sid)):
            self.waiting[after] -= 1
            if self.waiting[after] == 0 and after not in self.settled:
                heapq.heappush(self.ready, (self.rank[after], after))

    def failed(self, sid: str) -> list[str]:
        """Settle `sid` and every step that requires it, transitively; the newly skipped,
        sorted. Steps they only order (`orders` edges) are released as if they were done."""
        self.settled.add(sid)
        skipped: set[str] = set()
        pending = [sid]
        while pending:
            for after, data in self.graph.succ[pending.pop()].items():
                if data.get("kind", "requires") == "requires" and after not in self.settled and after not in skipped:
                    skipped.add(after)
                    pending.append(after)
        self.settled.update(skipped)
        for gone in [sid, *sorted(skipped)]:
            self._release(gone)
        return sorted(skipped)

    def hold(self, sid: str) -> list[str]:
        """Settle held `sid` before it starts and what requires it, as `failed` does; the
        newly skipped. The ready queue keeps only steps that are still to run."""
        skipped = self.failed(sid)
        self.ready = [item for item in self.ready if item[1] not in self.settled]
        heapq.heapify(self.ready)
        return skipped


def _held(plan: Plan, hold: Mapping[str, str]) -> dict[str, str]:
    """Step id -> why it is held: its own resource's key or (for a device a VM restart
    re-attaches) its VM's is in `hold`."""
    out: dict[str, str] = {}
    for step, keys in step_keys(plan):
        why = next((hold[key] for key in keys if key in hold), None)
        if why is not None:
            out[step.id] = why
    return out


async def execute(plan: Plan, ports: HostPorts, *, settings: ExecuteSettings,
                  on_step: OnStep | None = None, stop: asyncio.Event | None = None,
                  hold: Mapping[str, str] | None = None) -> Report:
    """Carry out `plan` on the host behind `ports`; `on_step` sees each result as it ends.
    Once `stop` is set (SIGINT/SIGTERM) no step starts: the running ones finish and are
    reported, every step not started is reported skipped with no cause. The steps of the
    resources `hold` names (resource key -> why, from the agent's Policy) never start:
    each is reported skipped with the note `held: <why>`, and every step that `requires`
    it skipped with it as the cause; independent steps run."""
    rt = Runtime(ports, plan.desired, settings, leaving=frozenset(s.name for s in plan.steps if s.op == "destroy"))
    steps = {s.id: s for s in plan.steps}
    schedule, results = _Schedule(plan), []
    running: dict[asyncio.Task[StepResult], str] = {}

    def emit(result: StepResult) -> None:
        results.append(result)
        if on_step is not None:
            on_step(result)

    for sid, why in sorted(_held(plan, hold).items()) if hold else ():
        if sid in schedule.settled:
            continue  # already skipped: it requires a held step
        emit(StepResult(steps[sid], "skipped", note=f"held: {why}"))
        for skipped in schedule.hold(sid):
            emit(StepResult(steps[skipped], "skipped", cause=sid, note=f"held: requires {sid} ({why})"))
    if steps:
        await rt.domains()  # the domids of the VMs that already run (a read: retried)
    try:
        while (schedule.ready and not _set(stop)) or running:
            while schedule.ready and len(running) < settings.parallelism and not _set(stop):
                sid = schedule.pop()
                running[asyncio.create_task(run_step(rt, steps[sid]), name=sid)] = sid
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(finished, key=lambda t: running[t]):
                sid = running.pop(task)
                result = task.result()
                emit(result)
                if result.outcome == "done":
                    schedule.succeeded(sid)
                else:
                    for skipped in schedule.failed(sid):
                        emit(StepResult(steps[skipped], "skipped", cause=sid))
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    if _set(stop):
        for sid in sorted(set(steps) - schedule.settled):
            emit(StepResult(steps[sid], "skipped"))  # no cause: never started
    return make_report(plan, results)


def _set(stop: asyncio.Event | None) -> bool:
    return stop is not None and stop.is_set()
