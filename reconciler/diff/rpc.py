"""RPCRule changes: each managed VM's rpc-proxy entry, put in force when it starts, changed
live while it runs, removed when it stops.

Pure. Called by `reconciler.diff.diff` after the VM part has filled `ctx.starting`,
`ctx.stopping` and `ctx.kept`. A VM that runs once the plan is applied (desired running or
paused, built or kept by this plan) wants the entry `desired_entry` gives (its RPCRules in
evaluation order, its manifest `properties`; none when it has neither); every other VM the
reconciler manages wants none. What differs from `observed.rpc.vms[uuid]` becomes:
- one RPCRule change per rule resource put in force (`+`, "in force when <vm> starts", or
  live on a VM that runs) or taken out (`-`, "removed when <vm> stops");
- one `<vm>-rpc-entry` change for the rest of the entry: rules no RPCRule of the VM holds,
  a new evaluation order, the `if-boolean` properties.
The planner turns all of a VM's changes into one `rpc-set` or `rpc-clear` step. Entries of
uuids no desired VM, no managed domain and no mark of the reconciler's
(`reconciler.model.host.RPC_ENTRIES`) holds are never touched (the reconciler does not
know them). A source that cannot show the policy (`observed.rpc` None: a captured dump)
gives no change and a note.
"""

from __future__ import annotations

from reconciler.diff.context import LIVE_POWER, Context
from reconciler.model.common import default_vm_uuid
from reconciler.model.devices import RPCRule
from reconciler.model.host import RpcVmPolicy
from reconciler.model.state import DesiredState
from reconciler.plan.changes import Action, FieldChange, ResourceChange

ENTRY_SUFFIX = "-rpc-entry"  # `<vm>-rpc-entry`: a VM's entry as a whole (no manifest names a rule so by default)
DUMP_NOTE = ("the rpc-proxy policy is not in this source (a captured dump, or a host without an rpc-proxy "
             "driver): rpc-proxy rules are neither compared nor put in force")


def vm_uuid(desired: DesiredState, vm: str) -> str:
    """The uuid rpc-proxy keys desired VM `vm`'s entry by."""
    return desired.vms[vm].spec.uuid or default_vm_uuid(vm)


def desired_entry(desired: DesiredState, vm: str) -> RpcVmPolicy | None:
    """The entry desired VM `vm` has while it runs: its rules' canonical text in evaluation
    order and its properties sorted by name; None when it has neither."""
    rules = tuple(rule.spec.rule for rule in desired.rpc_rules_of(vm))
    properties = tuple(sorted(desired.vms[vm].spec.properties.items()))
    return RpcVmPolicy(rules, properties) if rules or properties else None


def _have(entry: RpcVmPolicy | None) -> RpcVmPolicy | None:
    """An observed entry, an empty one counted as none (a VM with nothing has no entry)."""
    return entry if entry is not None and (entry.rules or entry.properties) else None


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _rest(name: str, want: RpcVmPolicy | None, have: RpcVmPolicy | None, named: set[str],
          why: str) -> ResourceChange | None:
    """The `<vm>-rpc-entry` change: what differs besides the rule resources with a line of
    their own (`named`: their texts)."""
    want_rules, have_rules = want.rules if want else (), have.rules if have else ()
    want_props, have_props = dict(want.properties if want else ()), dict(have.properties if have else ())
    stale = [text for text in have_rules if text not in want_rules and text not in named]
    reordered = [t for t in have_rules if t in want_rules] != [t for t in want_rules if t in have_rules]
    fields: list[FieldChange] = []
    parts: list[str] = []
    if stale or reordered:
        fields.append(FieldChange("rules", list(have_rules) or None, list(want_rules) or None, "live"))
        if stale and want is not None:
            parts.append(f"{_plural(len(stale), 'rule')} no RPCRule of {name} says go")
        if reordered:
            parts.append("its rules in a new evaluation order (the last match decides)")
    if want_props != have_props:
        fields.append(FieldChange("properties", have_props or None, want_props or None, "live"))
        if want is not None:
            parts.append("new if-boolean properties" if have_props else "its if-boolean properties")
    if not fields:
        return None
    action = Action.DELETE if want is None else Action.UPDATE if have is not None else Action.CREATE
    reason = f"{', '.join(parts)}: {why}" if parts else why
    return ResourceChange("RPCRule", name + ENTRY_SUFFIX, name, action, "live", tuple(fields), reason)


def _changes(ctx: Context, name: str, want: RpcVmPolicy | None, have: RpcVmPolicy | None) -> list[ResourceChange]:
    rules: list[RPCRule] = ctx.desired.rpc_rules_of(name) if name in ctx.desired.vms else []
    have_rules = have.rules if have else ()
    out: list[ResourceChange] = []
    named: set[str] = set()
    if want is not None:
        why = f"in force when {name} starts" if name in ctx.starting else f"in force now, {name} is up (rpc-proxy reloads)"
        for rule in rules:
            if rule.spec.rule not in have_rules:
                field = FieldChange("spec.rule", None, rule.spec.rule, "live")
                out.append(ResourceChange("RPCRule", rule.metadata.name, name, Action.CREATE, "live", (field,), why))
    else:
        why = f"removed when {name} stops" if name in ctx.stopping else f"removed: {name} does not run"
        for rule in rules:
            if rule.spec.rule in have_rules:
                named.add(rule.spec.rule)
                field = FieldChange("spec.rule", rule.spec.rule, None, "live")
                out.append(ResourceChange("RPCRule", rule.metadata.name, name, Action.DELETE, "live", (field,), why))
    rest = _rest(name, want, have, named, why)
    return out + ([rest] if rest is not None else [])


def rpc_changes(ctx: Context) -> list[ResourceChange]:
    """Every managed VM's entry that differs from the one it should have."""
    policy = ctx.observed.rpc
    if policy is None:
        if ctx.desired.rpc_rules or any(vm.spec.properties for vm in ctx.desired.vms.values()):
            ctx.notes.append(DUMP_NOTE)
        return []
    preserved = set(ctx.preserved)
    out: list[ResourceChange] = []
    seen: set[str] = set()
    for name, vm in ctx.desired.vms.items():
        uuid = vm_uuid(ctx.desired, name)
        seen.add(uuid)
        info = ctx.observed.domains.get(name)
        if name in preserved or (info is not None and not info.managed and name not in ctx.starting):
            continue  # left for inspection, or a domain that is not ours (a conflict): untouched
        runs = vm.spec.state in LIVE_POWER and (name in ctx.starting or name in ctx.kept)
        want = desired_entry(ctx.desired, name) if runs else None
        have = _have(policy.vms.get(uuid))
        if want != have:
            out += _changes(ctx, name, want, have)
    for name, info in ctx.observed.domains.items():
        # Managed domains no manifest describes any more (stopped by this plan): their entry goes.
        if info.managed and name not in ctx.desired.vms and info.uuid and info.uuid not in seen:
            seen.add(info.uuid)
            have = _have(policy.vms.get(info.uuid))
            if have is not None:
                out += _changes(ctx, name, None, have)
    for uuid, name in ctx.observed.rpc_owned.items():
        # Entries this reconciler set (its mark says so) for a VM no manifest and no domain
        # holds any more: an apply stopped between that VM's destroy and its rpc-clear.
        if uuid not in seen and name not in ctx.desired.vms and name not in ctx.observed.domains:
            have = _have(policy.vms.get(uuid))
            if have is not None:
                out += _changes(ctx, name, None, have)
    return out
