"""What an execution did: per step an outcome, per resource a word for people.

Pure values and pure functions. `reconciler.execute.run` produces `StepResult`s as steps
finish; `make_report(plan, results)` folds them into a `Report` whose resource outcomes
complete "VM `web1` has been ..." (created, updated, restarted, deleted, unchanged,
skipped, failed). Read by the `apply` verb (and the watch loop's status).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from reconciler.model.common import Kind
from reconciler.plan.build import Plan
from reconciler.plan.changes import HOST, TABLE_NAME, Action
from reconciler.plan.steps import Step

StepOutcome = Literal["done", "failed", "skipped"]
ResourceOutcome = Literal["created", "updated", "restarted", "deleted", "unchanged", "skipped", "failed"]

_DONE_WORD: Mapping[Action, ResourceOutcome] = {
    Action.CREATE: "created",
    Action.UPDATE: "updated",
    Action.RESTART: "restarted",
    Action.DELETE: "deleted",
}


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
    kind: Kind
    name: str
    outcome: ResourceOutcome

    def sentence(self) -> str:
        """`VM `web` has been created.`; a failure is the resource's own: `VM `web` failed.`"""
        done = "failed" if self.outcome == "failed" else f"has been {self.outcome}"
        return f"{self.kind} `{self.name}` {done}."


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

    def summary(self) -> str:
        return f"Apply: {self.count('done')} done, {self.count('failed')} failed, {self.count('skipped')} skipped."


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


def make_report(plan: Plan, results: Iterable[StepResult]) -> Report:
    by_id = {r.step.id: r for r in results}
    owner = _owner(plan)
    seen: dict[tuple[Kind, str], set[StepOutcome]] = {}
    for result in by_id.values():
        key = owner.get((result.step.kind, result.step.name), (result.step.kind, result.step.name))
        seen.setdefault(key, set()).add(result.outcome)
    # A starting VM's rules go in with its start's one firewall step (`fw-start`).
    starts = {r.step.vm: r.outcome for r in by_id.values() if r.step.op == "fw-start"}
    # A VM's RPCRule changes are its one rpc-proxy step (`rpc-set` or `rpc-clear`).
    rpc = {r.step.vm: r.outcome for r in by_id.values() if r.step.op in ("rpc-set", "rpc-clear")}
    # A VM's new disks, NICs and PCI devices are built with it: created with its create
    # step, skipped when it did not run or failed (the create is the root cause, reported once).
    builds: dict[str, StepOutcome] = {r.step.vm: "done" if r.outcome == "done" else "skipped"
                                      for r in by_id.values() if r.step.op == "create"}
    resources = []
    for change in plan.diff.changes:
        outcomes = seen.get((change.kind, change.name), set())
        if change.kind == "V4VRule" and change.vm in starts:
            outcomes = outcomes | {starts[change.vm]}
        elif change.kind == "RPCRule" and change.vm in rpc:
            outcomes = outcomes | {rpc[change.vm]}
        elif change.kind != "VM" and change.action is Action.CREATE and change.vm in builds:
            outcomes = outcomes | {builds[change.vm]}
        word: ResourceOutcome
        if "failed" in outcomes:
            word = "failed"
        elif "skipped" in outcomes:
            word = "skipped"
        elif not outcomes:
            word = "unchanged"  # restart-only fields pending: nothing ran
        else:
            word = _DONE_WORD[change.action]
        resources.append(ResourceResult(change.kind, change.name, word))
    return Report(tuple(by_id[k] for k in sorted(by_id)), tuple(resources))
