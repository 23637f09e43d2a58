"""What an execution did: per step an outcome, per resource a word for people.

Pure values and pure functions. `reconciler.execute.run` produces `StepResult`s as steps
finish; `make_report(plan, results)` folds them into a `Report` whose resource outcomes
are the words of `reconciler.plan.words` (the plan summary's table: created, updated,
restarted, stopped, destroyed, detached, unplugged, released, removed; unchanged when
only restart-pending fields were left; skipped, failed). Read by the `apply` verb (its
count line and the resources not applied) and the agent's status (`agent.policy`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from reconciler.model.common import Kind
from reconciler.plan.build import Plan
from reconciler.plan.changes import HOST, TABLE_NAME, Action, ResourceChange
from reconciler.plan.steps import Step
from reconciler.plan.words import FAILED, OUTCOMES, PENDING, SKIPPED, Done, outcome

StepOutcome = Literal["done", "failed", "skipped"]
ResourceOutcome = Done  # a `done` word of `reconciler.plan.words.OUTCOMES`


@dataclass(frozen=True)
class StepResult:
    """One step's end. `error` is the host's sentence for a failed step; `cause` the id of
    the failed step a skipped one waited for (the root cause, reported once; None: apply was
interrupted before the step could start); `note` says
    what a done step did differently (e.g. a guest that ignored the shutdown request)."""

    step: Step
    outcome: StepOutcome
    seconds: float = 0.0
    attempts: int = 0
    error: str | None = None
    cause: str | None = None
    note: str | None = None

    def line(self) -> str:
        """`vm/web/create: done (0.12 s)`, as `apply` prints it when the step ends."""
        if self.outcome == "skipped":
            if self.note:  # held by the agent's policy
                return f"{self.step.id}: skipped ({self.note})"
            return f"{self.step.id}: skipped ({self.cause} failed)" if self.cause else f"{self.step.id}: not started"
        tries = f", {self.attempts} attempts" if self.attempts > 1 else ""
        text = f"{self.step.id}: {self.outcome} ({self.seconds:.2f} s{tries})"
        if self.error:
            text += f": {self.error}"
        if self.note:
            text += f"; {self.note}"
        return text


@dataclass(frozen=True)
class ResourceResult:
    """One changed resource's outcome; `why` names the steps behind a failed or skipped one."""

    kind: Kind
    name: str
    outcome: ResourceOutcome
    why: str = ""

    def line(self) -> str:
        """`VM `web`: skipped (vm/web/create failed)`, as apply lists a resource not applied."""
        return f"{self.kind} `{self.name}`: {self.outcome}" + (f" ({self.why})" if self.why else "")


@dataclass(frozen=True)
class Report:
    """Every step's result sorted by step id, every changed resource's outcome in the
    plan's change order. `ok` when nothing failed or was skipped."""

    steps: tuple[StepResult, ...]
    resources: tuple[ResourceResult, ...]

    def count(self, outcome: StepOutcome) -> int:
        return sum(1 for r in self.steps if r.outcome == outcome)

    @property
    def ok(self) -> bool:
        return all(r.outcome == "done" for r in self.steps)

    @property
    def failures(self) -> tuple[StepResult, ...]:
        """The root causes: failed steps only (their dependents are merely skipped)."""
        return tuple(r for r in self.steps if r.outcome == "failed")

    @property
    def not_applied(self) -> tuple[ResourceResult, ...]:
        """The resources that failed, or were skipped because something they need failed."""
        return tuple(r for r in self.resources if r.outcome in (FAILED.done, SKIPPED.done))

    def summary(self) -> str:
        """`Apply complete: 3 created, 1 detached, 0 failed (9 steps done).`: a count per
        resource outcome (the plan summary's words), `failed` always; `incomplete` and the
        step counts when anything failed or was skipped."""
        found = Counter(r.outcome for r in self.resources)
        parts = [o.counted(found[o.done]) for o in OUTCOMES if found[o.done] or o is FAILED]
        if not self.resources:
            parts = ["no changes"]
        done, total = self.count("done"), len(self.steps)
        if self.ok:
            steps = f" ({done} step{'s' * (done != 1)} done)" if self.steps else ""
            return f"Apply complete: {', '.join(parts)}{steps}."
        return (f"Apply incomplete: {', '.join(parts)} ({done} of {total} steps done, {self.count('failed')} failed, "
                f"{self.count('skipped')} skipped).")


def _owner(plan: Plan) -> dict[tuple[Kind, str], tuple[Kind, str]]:
    """Step resource -> the changed resource it reports under: itself, or (for the
    devices a VM restart re-attaches without a change of their own) its VM."""
    changed = {(c.kind, c.name) for c in plan.diff.changes}
    out: dict[tuple[Kind, str], tuple[Kind, str]] = {}
    for step in plan.steps:
        key = (step.kind, step.name)
        out[key] = key if key in changed else ("VM", step.vm)
    return out


def resource_key(kind: Kind, name: str) -> str:
    """`VM/web`, `Disk/web-xvda`: the key of a resource in the agent's status, backoff
    and holds; the v4v table as a whole (no manifest's) is `(host)/firewall-table`."""
    return f"{HOST}/{name}" if kind == "V4VRule" and name == TABLE_NAME else f"{kind}/{name}"


def step_keys(plan: Plan) -> list[tuple[Step, tuple[str, ...]]]:
    """Each step with the resource keys it reports under: its own, and (for a device a
    VM restart re-attaches without a change of its own) its VM's after it; a VM's create
    also those of the new devices it builds the domain with, before its own."""
    owner = _owner(plan)
    built: dict[str, list[str]] = {}  # VM -> the new devices its create builds it with
    for change in plan.diff.changes:
        if change.kind in ("Disk", "NIC", "PCIPassthrough") and change.action is Action.CREATE:
            built.setdefault(change.vm, []).append(resource_key(change.kind, change.name))
    out = []
    for step in plan.steps:
        own = (step.kind, step.name)
        keys = [resource_key(*own)]
        if owner.get(own, own) != own:
            keys.append(resource_key(*owner[own]))
        if step.op == "create":  # a hold on a device the build takes holds the build; the VM's key stays last
            keys[:0] = built.get(step.vm, [])
        out.append((step, tuple(keys)))
    return out


def _mark(result: StepResult) -> tuple[StepOutcome, str]:
    """A step's outcome and what to say of a resource it leaves undone: the failed step,
    or why a skipped one did not run."""
    if result.outcome == "failed":
        return "failed", f"step {result.step.id}"
    if result.outcome == "skipped":
        return "skipped", result.note or (f"{result.cause} failed" if result.cause else "not started")
    return "done", ""


def _built(create: StepResult) -> tuple[StepOutcome, str]:
    """A new device built with its VM: created with the VM's create step, skipped when
    that did not run or failed (the create is the root cause, reported once)."""
    if create.outcome == "failed":
        return "skipped", f"{create.step.id} failed"
    return _mark(create)


def _result(change: ResourceChange, marks: set[tuple[StepOutcome, str]]) -> ResourceResult:
    for bad in (FAILED, SKIPPED):
        why = sorted(text for got, text in marks if got == bad.done)
        if why:
            return ResourceResult(change.kind, change.name, bad.done, ", ".join(why))
    word = outcome(change).done if marks else PENDING.done  # no step: restart-only fields pending
    return ResourceResult(change.kind, change.name, word)


def make_report(plan: Plan, results: Iterable[StepResult]) -> Report:
    by_id = {r.step.id: r for r in results}
    owner = _owner(plan)
    seen: dict[tuple[Kind, str], set[tuple[StepOutcome, str]]] = {}
    for result in by_id.values():
        key = owner.get((result.step.kind, result.step.name), (result.step.kind, result.step.name))
        seen.setdefault(key, set()).add(_mark(result))
    # A starting VM's rules go in with its start's one firewall step (`fw-start`).
    starts = {r.step.vm: _mark(r) for r in by_id.values() if r.step.op == "fw-start"}
    # A VM's RPCRule changes are its one rpc-proxy step (`rpc-set` or `rpc-clear`).
    rpc = {r.step.vm: _mark(r) for r in by_id.values() if r.step.op in ("rpc-set", "rpc-clear")}
    # A VM's new disks, NICs and PCI devices are built with it (its create step).
    builds = {r.step.vm: _built(r) for r in by_id.values() if r.step.op == "create"}
    resources = []
    for change in plan.diff.changes:
        marks = seen.get((change.kind, change.name), set())
        if change.kind == "V4VRule" and change.vm in starts:
            marks = marks | {starts[change.vm]}
        elif change.kind == "RPCRule" and change.vm in rpc:
            marks = marks | {rpc[change.vm]}
        elif change.kind != "VM" and change.action is Action.CREATE and change.vm in builds:
            marks = marks | {builds[change.vm]}
        resources.append(_result(change, marks))
    return Report(tuple(by_id[k] for k in sorted(by_id)), tuple(resources))
