"""The diff: DesiredState x ObservedState -> Diff (per resource, per field, with impact).

Pure: values in, a value out; nothing here reads the host. Called by the planner
(`reconciler.plan`) and the `plan`/`apply` verbs. Which fields are compared with what,
and what changing each costs (live / restart / destructive), is the one table in
`reconciler.diff.fields`; VM rules are in `vm`, device matching in `devices` and
`pci`, v4v firewall entries in `rules` (resolver: `firewall`), rpc-proxy entries in
`rpc`, the last-applied record in `applied`. Changes are sorted by (vm, kind in KINDS order, name). A desired VM whose
name or uuid an unmanaged domain holds raises `Conflict` (DESIGN 7: never adopted silently),
unless it says `adopt: true`: that domain is then diffed as managed, its VM change an ADOPT.
A crashed domain follows its VM's `lifecycle.onCrash` (`vm`; `preserve` lands in
`Diff.preserved`); the disks and NICs a gone or restarting backend VM served are
re-plugged (`devices.replug_changes`, OXT-1011).
"""

from __future__ import annotations

from reconciler.diff.context import Context, build_context
from reconciler.diff.devices import replug_changes
from reconciler.diff.pci import greedy_changes, missing_devices, release_changes, unseized_notes
from reconciler.diff.rpc import rpc_changes
from reconciler.diff.rules import rule_changes
from reconciler.diff.vm import vm_changes
from reconciler.errors import Conflict, Diagnostic, Location, ManifestError
from reconciler.model.common import KINDS
from reconciler.model.observed import ObservedState
from reconciler.model.state import DesiredState
from reconciler.plan.changes import Diff, ResourceChange

__all__ = ["diff"]


_KIND_ORDER = {kind: number for number, kind in enumerate(KINDS)}


def _order(change: ResourceChange) -> tuple[str, int, str]:
    return change.vm, _KIND_ORDER[change.kind], change.name


def _conflict(ctx: Context) -> Conflict:
    """Every conflict, each at its VM's manifest line."""
    where = ctx.desired.origins
    return Conflict([Diagnostic(where.get(("VM", vm)) or Location("<manifests>"), "error", text)
                     for vm, text in ctx.conflicts])


def diff(desired: DesiredState, observed: ObservedState) -> Diff:
    """Every change that takes `observed` to `desired`, deterministic for equal inputs."""
    ctx = build_context(desired, observed)
    if missing := missing_devices(ctx):  # a PCI address the host lacks: refused before anything is planned
        raise ManifestError(missing)
    changes, unmanaged = vm_changes(ctx)
    changes = replug_changes(ctx, changes)
    changes += greedy_changes(ctx)
    changes += release_changes(ctx, changes)
    ctx.notes += unseized_notes(ctx)
    changes += rule_changes(ctx)
    changes += rpc_changes(ctx)
    if ctx.conflicts:
        raise _conflict(ctx)
    return Diff(tuple(sorted(changes, key=_order)), tuple(unmanaged), tuple(sorted(set(ctx.notes))),
                tuple(sorted(ctx.preserved)), tuple(sorted(ctx.preserved_reboots)))
