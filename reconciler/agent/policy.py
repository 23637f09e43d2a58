"""The agent's policy: whether a pass may act, what it holds back, and where each resource stands.

Pure (no host access): the watch loop calls `decide(plan, observed, suspended=...)`
before it executes and `record(plan, decision, report)` after, and publishes
`conditions()` and `backoff()` in its status. Time comes from the injected `clock`
(seconds since the epoch) and jitter from the injected `rng`, so tests are exact.

Keys are `reconciler.execute.report.resource_key`: `VM/web`, `Disk/web-xvda`, and
`(host)/firewall-table` for the v4v table as a whole.

**A pass does not act** (`Decision.act` False, one-line `reason`) when the host is
suspended (`reconciler suspend`: the sentence names who, when, why, and that
`reconciler resume` lifts it), or when it would stop or destroy more VMs than allowed.
Counted: each VM change whose action is DELETE (removed from the manifests, or
`state: stopped` on a running domain: the diff shows a stop as a DELETE with
`spec.state -> stopped`) and each RESTART of a domain that runs or is paused. A RESTART
of a crashed or stopped domain is not counted: it stops nothing, and after a host-wide
crash refusing to bring the VMs back is the opposite of safe. The limit is `max_destroy`,
by default half the VMs the reconciler manages on the host (`DomainInfo.managed`),
rounded down, but at least 1: a host with one or two managed VMs must still be able to
remove or rebuild one per pass; a pass that would take down more refuses and says how to
allow it (`--max-destroy N`).

**Backoff** per resource key: after the n-th failure in a row the resource's steps are
held for `min(cap_s, base_s * 2**(n-1))` seconds with *equal jitter*: half of that
delay fixed plus a uniform random part up to the other half (so a retry never comes
sooner than half the nominal delay, and resources that failed together spread out).
A pass where the resource succeeds, or shows no change, clears it. A failing resource
holds only its own steps (and what `requires` them): the others go on.

**Drift** (what `drift="warn"` holds instead of correcting): a change on a resource
whose manifest has not changed since it was last applied. Precisely, a change is drift
when its owner (the VM of a device, the VM itself, the host for host-level changes)
 1. was seen converged or successfully applied by this Policy with the same desired
    digest as now (`reconciler.model.digest.desired_digest`: the VM's own digest of
    its public fields and devices; the total digest for the host), and
 2. if the host still holds its last-applied record (`DomainInfo.digest`), that record
    is the one the current manifests would write (`reconciler.diff.applied.applied_record`);
    a record from other manifests means someone applied something else since: a
    manifest change.
This covers fields changed behind the reconciler's back (`xl mem-set`, a detached disk,
an edited vm-data key, a stopped domain) and resources that were applied and then
vanished from the host (a destroyed domain: its record goes with it, so 1. alone
decides). A new resource, an edited spec, a removed one is a manifest change and is
never held by warn; so is a change carrying restart-only fields left pending (only an
edit of the manifest makes one). With no evidence (the first pass of an agent: nothing seen
converged yet) a change counts as a manifest change and acts: warn only ever holds
what the agent itself saw applied. Changes to secrets outside the last-applied record
do not show in the per-VM digest; they can look like drift (a documented limit).

**Conditions** per resource, Kubernetes style (`type`, `status`, `reason`, `message`,
`lastTransitionTime` in RFC 3339 UTC, moved only when `status` flips):
`Ready` (converged), `Progressing` (steps ran for it this pass), `Drifted` (this pass
found drift on it; the message names the fields), `Failed` (the host's error, reason
StepFailed, or BackingOff while held), `RestartRequired` (restart-only changes left
pending on a running VM with `updatePolicy: live`). Resources without changes in a pass
become or stay Ready. A resource that leaves both the manifests and the plan is dropped.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from reconciler.diff.applied import applied_record
from reconciler.execute.report import Report, resource_key, step_keys
from reconciler.model.common import KINDS
from reconciler.model.digest import desired_digest
from reconciler.model.observed import ObservedState
from reconciler.model.state import DesiredState
from reconciler.plan.build import Plan
from reconciler.plan.changes import HOST, Action, ResourceChange
from reconciler.plan.words import APPLIED

CONDITIONS = ("Ready", "Progressing", "Drifted", "Failed", "RestartRequired")
SHOWN_NAMES = 5  # VM names a max-destroy refusal lists
_LIVE = ("running", "paused")


def rfc3339(seconds: float) -> str:
    """`2026-12-06T07:40:00Z`: UTC, whole seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def change_key(change: ResourceChange) -> str:
    return resource_key(change.kind, change.name)


@dataclass(frozen=True)
class Decision:
    act: bool                     # False: nothing is executed this pass (suspended, max-destroy)
    reason: str | None            # one line saying why not (None when act)
    hold: Mapping[str, str] = field(default_factory=dict)  # resource key -> why its steps do not run


@dataclass
class _Pass:
    """What `decide` found on a plan, for `record` of the same plan."""

    plan: Plan
    drifted: dict[str, str]  # key -> the drifted fields as a phrase
    suspended: bool
    backing_off: set[str] = field(default_factory=set)  # keys held for their backoff


@dataclass
class _Backoff:
    failures: int
    retry_at: float
    error: str


def stopping_vms(plan: Plan, observed: ObservedState) -> list[str]:
    """The VMs this plan stops or destroys (see the module docstring), sorted."""
    out: set[str] = set()
    for change in plan.diff.changes:
        if change.kind != "VM" or change.vm == HOST:
            continue
        if change.action is Action.DELETE:
            out.add(change.name)
        elif change.action is Action.RESTART:
            info = observed.domains.get(change.name)
            if info is not None and info.power in _LIVE:
                out.add(change.name)
    return sorted(out)


def default_limit(observed: ObservedState) -> int:
    """Half the managed VMs, rounded down, at least 1."""
    managed = sum(1 for info in observed.domains.values() if info.managed)
    return max(1, managed // 2)


class Policy:
    def __init__(self, *, max_destroy: int | None = None, drift: Literal["correct", "warn"] = "correct",
                 base_s: float = 1.0, cap_s: float = 300.0, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if max_destroy is not None and max_destroy < 0:
            raise ValueError(f"max_destroy must be 0 or more, not {max_destroy}")
        self.max_destroy, self.drift = max_destroy, drift
        self.base_s, self.cap_s = base_s, cap_s
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock
        self._backoff: dict[str, _Backoff] = {}
        self._conditions: dict[str, dict[str, dict[str, str]]] = {}
        self._applied: dict[str, str] = {}  # owner (VM name or HOST) -> desired digest last seen applied
        self._digest: tuple[DesiredState, dict[str, str]] | None = None
        self._last: _Pass | None = None  # what the last decide found, for record

    # ---- decide ------------------------------------------------------------------------

    def decide(self, plan: Plan, observed: ObservedState, *, suspended: str | None) -> Decision:
        drifted = self._find_drift(plan, observed)
        self._last = found = _Pass(plan, drifted, suspended is not None)
        if suspended is not None:
            return Decision(False, f"not acting: {suspended}")
        stopping = stopping_vms(plan, observed)
        limit = self.max_destroy if self.max_destroy is not None else default_limit(observed)
        if len(stopping) > limit:
            shown = ", ".join(stopping[:SHOWN_NAMES]) + (f" and {len(stopping) - SHOWN_NAMES} more"
                                                         if len(stopping) > SHOWN_NAMES else "")
            where = "--max-destroy" if self.max_destroy is not None else "the default, half the managed VMs"
            return Decision(False, f"refused: this pass would stop or destroy {len(stopping)} VMs ({shown}), more "
                                   f"than the {limit} allowed ({where}); check the manifests, or run with "
                                   f"--max-destroy {len(stopping)} to let it")
        now, hold = self.clock(), {}
        for change in plan.diff.changes:
            key = change_key(change)
            backoff = self._backoff.get(key)
            if backoff is not None and backoff.retry_at > now:
                found.backing_off.add(key)
                hold[key] = (f"backing off until {rfc3339(backoff.retry_at)} after {backoff.failures} "
                             f"failure{'s' if backoff.failures != 1 else ''}")
            elif self.drift == "warn" and key in drifted:
                hold[key] = f"drift: warn ({drifted[key]}; the manifest did not change since it was applied)"
        return Decision(True, None, hold)

    def _digests(self, desired: DesiredState) -> dict[str, str]:
        """Owner -> desired digest (per VM; the total for HOST), computed once per DesiredState."""
        if self._digest is None or self._digest[0] is not desired:
            made = desired_digest(desired)
            self._digest = (desired, {**made.vms, HOST: made.total})
        return self._digest[1]

    def _find_drift(self, plan: Plan, observed: ObservedState) -> dict[str, str]:
        """Key -> the drifted fields as a phrase, for every change that is drift."""
        digests = self._digests(plan.desired)
        same: dict[str, bool] = {}
        out: dict[str, str] = {}
        for change in plan.diff.changes:
            owner = change.vm
            if owner not in same:
                same[owner] = self._unchanged_since_applied(owner, digests, plan.desired, observed)
            if same[owner] and not change.pending:  # restart-only fields pending: the manifest's edit
                out[change_key(change)] = _what(change)
        return out

    def _unchanged_since_applied(self, owner: str, digests: Mapping[str, str], desired: DesiredState,
                                 observed: ObservedState) -> bool:
        want = digests.get(owner)
        if want is None or self._applied.get(owner) != want:
            return False  # not in the manifests, never seen applied, or edited since
        if owner == HOST:
            return True
        info = observed.domains.get(owner)
        if info is None or info.digest is None:
            return True  # vanished (or its record with it): applied, then gone
        try:
            return applied_record(desired, owner)[1] == info.digest.strip().lower()
        except KeyError:
            return False

    # ---- record ------------------------------------------------------------------------

    def record(self, plan: Plan, decision: Decision, report: Report | None) -> None:
        now = self.clock()
        found = self._last if self._last is not None and self._last.plan is plan else _Pass(plan, {}, False)
        outcomes = {resource_key(r.kind, r.name): r.outcome for r in report.resources} if report else {}
        errors: dict[str, str] = {}
        ran: set[str] = set()
        if report is not None:
            owner_key = {step.id: keys[-1] for step, keys in step_keys(plan)}
            for result in report.steps:
                key = owner_key.get(result.step.id, resource_key(result.step.kind, result.step.name))
                if result.outcome == "done":
                    ran.add(key)
                elif result.outcome == "failed" and key not in errors:
                    errors[key] = result.error or "failed"
        changes: dict[str, ResourceChange] = {}
        for change in plan.diff.changes:
            changes.setdefault(change_key(change), change)
        applied_ok: dict[str, bool] = {}
        for key, change in changes.items():
            ok = self._record_change(key, change, now, decision, found, outcomes.get(key), errors.get(key),
                                     key in ran)
            applied_ok[change.vm] = applied_ok.get(change.vm, True) and ok
        desired_keys = {resource_key(kind, name) for kind in KINDS for name in plan.desired.by_kind(kind)}
        for key in sorted(desired_keys - set(changes)):
            self._backoff.pop(key, None)
            self._converged(key, now)
        for key in list(self._conditions):
            if key not in desired_keys and key not in changes:
                del self._conditions[key]
                self._backoff.pop(key, None)
        # What the manifests now say counts as applied for every owner with nothing left to do.
        digests = self._digests(plan.desired)
        for owner, want in digests.items():
            if applied_ok.get(owner, True):
                self._applied[owner] = want
        for owner in list(self._applied):
            if owner not in digests:
                del self._applied[owner]

    def _record_change(self, key: str, change: ResourceChange, now: float, decision: Decision, found: _Pass,
                       outcome: str | None, error: str | None, ran: bool) -> bool:
        """Move one changed resource's conditions and backoff; whether it is now as applied
        as the manifests ask (done, or only restart-only fields left pending)."""
        held, drift = decision.hold.get(key), found.drifted.get(key)
        pending = change.pending
        self._set(key, "Drifted", drift is not None, "Drift" if drift else "NoDrift",
                  f"changed on the host: {drift}" if drift else "", now)
        self._set(key, "RestartRequired", pending, "RestartPending" if pending else "NoRestartPending",
                  change.reason if pending else "", now)
        self._set(key, "Progressing", ran, "StepsRan" if ran else "Idle",
                  f"{outcome} this pass" if ran and outcome else "", now)
        if "Failed" not in self._conditions[key]:
            self._set(key, "Failed", False, "NoFailure", "", now)
        if not decision.act:
            why = decision.reason or "not acting"
            self._set(key, "Ready", False, "Suspended" if found.suspended else "Refused", why, now)
            return False
        if outcome == "failed":
            backoff = self._fail(key, error or "failed", now)
            self._set(key, "Failed", True, "StepFailed", backoff.error, now)
            self._set(key, "Ready", False, "StepFailed", backoff.error, now)
            return False
        if held is not None:
            backoff_now = self._backoff.get(key)
            if key in found.backing_off and backoff_now is not None:
                self._set(key, "Failed", True, "BackingOff", f"{held}: {backoff_now.error}", now)
                self._set(key, "Ready", False, "BackingOff", held, now)
            else:
                self._set(key, "Ready", False, "Drift" if drift else "Held", held, now)
            return False
        if outcome == "skipped":
            self._set(key, "Ready", False, "DependencyNotReady",
                      "skipped: a step it requires failed or was held, or the pass was interrupted", now)
            return False
        # done, or unchanged (restart-only fields pending: nothing to run): its failures are over.
        self._backoff.pop(key, None)
        self._set(key, "Failed", False, "NoFailure", "", now)
        if pending:
            self._set(key, "Ready", False, "RestartPending", change.reason, now)
        else:
            self._set(key, "Ready", True, "Applied" if outcome in APPLIED else "Converged", "", now)
        return True

    def _converged(self, key: str, now: float) -> None:
        self._set(key, "Ready", True, "Converged", "the host matches the manifests", now)
        self._set(key, "Progressing", False, "Idle", "", now)
        self._set(key, "Drifted", False, "NoDrift", "", now)
        self._set(key, "Failed", False, "NoFailure", "", now)
        self._set(key, "RestartRequired", False, "NoRestartPending", "", now)

    def _fail(self, key: str, error: str, now: float) -> _Backoff:
        previous = self._backoff.get(key)
        failures = previous.failures + 1 if previous is not None else 1
        made = _Backoff(failures, now + self.delay(failures), error)
        self._backoff[key] = made
        return made

    def delay(self, failures: int) -> float:
        """The hold after the `failures`-th failure in a row: equal jitter on the capped exponential."""
        nominal = self.cap_s if failures - 1 >= 64 else min(self.cap_s, self.base_s * 2 ** (failures - 1))
        return nominal / 2 + self.rng.uniform(0, nominal / 2)

    def _set(self, key: str, kind: str, status: bool, reason: str, message: str, now: float) -> None:
        table = self._conditions.setdefault(key, {})
        word = "True" if status else "False"
        old = table.get(kind)
        since = old["lastTransitionTime"] if old is not None and old["status"] == word else rfc3339(now)
        table[kind] = {"type": kind, "status": word, "reason": reason, "message": message, "lastTransitionTime": since}

    # ---- read --------------------------------------------------------------------------

    def conditions(self) -> dict[str, list[dict[str, str]]]:
        """Key -> its conditions in the order Ready, Progressing, Drifted, Failed, RestartRequired."""
        return {key: [dict(table[kind]) for kind in CONDITIONS if kind in table]
                for key, table in sorted(self._conditions.items())}

    def backoff(self) -> dict[str, dict[str, object]]:
        return {key: {"failures": b.failures, "retryAt": rfc3339(b.retry_at)}
                for key, b in sorted(self._backoff.items())}

    def next_retry(self) -> float | None:
        """The earliest backoff end still ahead (None when none is): when a retry pass is due."""
        now = self.clock()
        ahead = [b.retry_at for b in self._backoff.values() if b.retry_at > now]
        return min(ahead) if ahead else None


def _what(change: ResourceChange) -> str:
    """The drifted fields as a phrase: `spec.memory (1024 on the host, 512 in the manifest)`,
    or that the resource is gone from the host."""
    if change.action is Action.CREATE:
        return f"{change.kind} {change.name} is gone from the host"
    parts = [f.path + ("" if f.sensitive else f" ({_short(f.before)} on the host, {_short(f.after)} in the manifest)")
             for f in change.fields[:5]]
    more = f" and {len(change.fields) - 5} more" if len(change.fields) > 5 else ""
    return (", ".join(parts) + more) or change.reason or f"{change.kind} {change.name} differs"


def _short(value: object) -> str:
    text = "unset" if value is None else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
