"""The JSON plan: a documented, versioned format for tools (and `apply --plan` later).

Pure: Plan -> str (indented, keys sorted, one trailing newline), byte-identical for
the same Plan. Called by `reconciler plan --format json`. Secrets print as
"(sensitive)". Layout: keys sorted, one top-level key and one list element per line.
The format, also in docs/plan-format.md:

    {
      "format_version": 2,                  # bumped on any incompatible change
      "observed_fingerprint": "<sha256 hex>",  # of the observed state planned against
      "desired_digest": "<sha256 hex>",     # of the manifests planned from (secrets scrypt'ed)
      "desired_vms": [{"vm", "digest"}],    # per VM: names what changed
      "summary": {"create": n, "change_live": n, "needs_restart": n, "destroy": n},
                                            # and "adopt": n, only when some (spec.adopt)
      "changes": [{"kind", "name", "vm", "action": "create|update|restart|delete|adopt",
                   "symbol": "+|~|-/+|-|<=", "impact": "live|restart|destructive",
                   "pending": bool, "reason": str,
                   "fields": [{"path", "before", "after", "impact", "sensitive"}]}],
      "actions": [{"id", "op", "kind", "name", "vm", "args": {...}, "trigger": null}],
      "dependencies": [{"before": id, "after": id, "rule": name, "kind": "requires|orders"}],
      "generations": [[id, ...], ...],      # the parallel schedule, in order
      "unmanaged": [domain name, ...],
      "notes": [sentence, ...],
      "reachability": {"allowed": [item] | null, "denied": [item] | null, "notes": [sentence]},
                                            # pairs and rpc calls the plan opens/closes (items as
                                            # `reconciler reach --format json`); null: not compared
      "preserved": [vm name, ...]           # only when some: crashed or rebooted, left for inspection
    }

`trigger` is always null (a starting VM's firewall is one `fw-start` step, not one
`fw-apply@<vm>` per rule naming it); it stays so the format does not change. A rule that
waits for more than 3 starting VMs names 3 and counts the rest in its `reason`
(`applied when 999 VMs start: a, b, c and 996 more`), as the text plan does.
`changes` keep the Diff's order (vm, kind, name); `actions` are sorted by id,
`dependencies` by (before, after), each generation by id. `render_json` writes the
data of `plan_to_data` (which `apply --plan` compares) straight from the Plan, one
list element per line, spelled as `json.dumps` with sorted keys spells it; a test
holds the two equal.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.model.common import NAME_PATTERN
from reconciler.model.digest import StateDigest, desired_digest
from reconciler.plan.build import Dependency, Plan
from reconciler.plan.changes import FieldChange, ResourceChange
from reconciler.plan.reachability import to_data as reachability_data
from reconciler.plan.render_text import SENSITIVE, Remembered, action_text, compact, is_sensitive, string, summary_counts
from reconciler.plan.steps import Step

_NAME = re.compile(NAME_PATTERN)
FORMAT_VERSION = 2  # 2: desired_digest and desired_vms, which `apply --plan` requires


def _field(field: FieldChange) -> dict[str, Any]:
    secret = is_sensitive(field)
    return {
        "path": field.path,
        "before": SENSITIVE if secret and field.before is not None else field.before,
        "after": SENSITIVE if secret and field.after is not None else field.after,
        "impact": field.impact,
        "sensitive": secret,
    }


def _change(change: ResourceChange) -> dict[str, Any]:
    return {
        "kind": change.kind,
        "name": change.name,
        "vm": change.vm,
        "action": change.action.name.lower(),
        "symbol": change.action.value,
        "impact": change.impact,
        "pending": change.pending,
        "reason": change.reason,
        "fields": [_field(f) for f in change.fields],
    }


def actions_data(plan: Plan) -> list[dict[str, Any]]:
    """The plan's `actions`, as `plan_to_data` has them (what `apply --plan` compares)."""
    return [
        {"id": s.id, "op": s.op, "kind": s.kind, "name": s.name, "vm": s.vm, "args": dict(s.args), "trigger": None}
        for s in plan.steps
    ]


def plan_to_data(plan: Plan) -> dict[str, Any]:
    """The plan as plain JSON-compatible data, in the documented format."""
    digest = desired_digest(plan.desired)
    return {
        "format_version": FORMAT_VERSION,
        "observed_fingerprint": plan.fingerprint,
        "desired_digest": digest.total,
        "desired_vms": digest_rows(digest),
        "summary": summary_counts(plan),
        "changes": [_change(c) for c in plan.diff.changes],
        "actions": actions_data(plan),
        "dependencies": [{"before": d.before, "after": d.after, "rule": d.rule, "kind": d.kind} for d in plan.dependencies],
        "generations": [list(g) for g in plan.generations],
        "unmanaged": list(plan.diff.unmanaged),
        "notes": list(plan.diff.notes),
        "reachability": reachability_data(plan.reachability),
        **({"preserved": list(plan.diff.preserved)} if plan.diff.preserved else {}),
    }


def digest_rows(digest: StateDigest) -> list[dict[str, str]]:
    """`desired_vms`: one row per VM, sorted by name."""
    return [{"digest": value, "vm": vm} for vm, value in sorted(digest.vms.items())]


def digest_from_data(data: dict[str, Any]) -> StateDigest:
    """The StateDigest a saved plan carries (ValueError if malformed)."""
    total, rows = data.get("desired_digest"), data.get("desired_vms")
    if not isinstance(total, str) or not isinstance(rows, list):
        raise ValueError("no desired_digest/desired_vms")
    vms: dict[str, str] = {}
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("digest"), str) or not _NAME.fullmatch(str(row.get("vm"))):
            raise ValueError("a desired_vms row is not {vm: <VM name>, digest}")
        vms[row["vm"]] = row["digest"]
    return StateDigest(total, vms)


# Each element is written from the plan's values with its keys in sorted order; str
# fields are spelled by `string`, other values by `compact`. A 1,000-VM plan has 30k
# fields but few distinct ones (every disk's `spec.discard`...): a field's text is
# made once per rendering (`Remembered`).


def _field_json(field: FieldChange) -> str:
    secret = is_sensitive(field)
    before = SENSITIVE if secret and field.before is not None else field.before
    after = SENSITIVE if secret and field.after is not None else field.after
    return (f'{{"after": {compact(after)}, "before": {compact(before)}, "impact": {string(field.impact)}, '
            f'"path": {string(field.path)}, "sensitive": {compact(secret)}}}')


def _change_json(change: ResourceChange, seen: Remembered) -> str:
    fields = ", ".join([seen.get(f, _field_json) for f in change.fields])
    symbol, _, action = action_text(change.action)
    return (f'{{"action": {string(action)}, "fields": [{fields}], '
            f'"impact": {string(change.impact)}, "kind": {string(change.kind)}, "name": {string(change.name)}, '
            f'"pending": {compact(change.pending)}, "reason": {string(change.reason)}, '
            f'"symbol": {string(symbol)}, "vm": {string(change.vm)}}}')


def _action_json(step: Step) -> str:
    return (f'{{"args": {compact(dict(step.args)) if step.args else "{}"}, "id": {string(step.id)}, '
            f'"kind": {string(step.kind)}, "name": {string(step.name)}, "op": {string(step.op)}, '
            f'"trigger": null, "vm": {string(step.vm)}}}')


def _dependency_json(dependency: Dependency) -> str:
    return (f'{{"after": {string(dependency.after)}, "before": {string(dependency.before)}, '
            f'"kind": {string(dependency.kind)}, "rule": {string(dependency.rule)}}}')


def render_json(plan: Plan) -> str:
    """Keys sorted, one top-level key per line and one list element per line (each
    element compact): diffs of two plans read line by line. Each element is written
    from the plan's values (keys in sorted order), so the encoder is set up only for
    nested values, not 30k times for a 1,000-VM plan."""
    seen = Remembered()
    digest = desired_digest(plan.desired)
    data: dict[str, str | list[str]] = {
        "format_version": compact(FORMAT_VERSION),
        "observed_fingerprint": compact(plan.fingerprint),
        "desired_digest": compact(digest.total),
        "desired_vms": [compact(row) for row in digest_rows(digest)],
        "summary": compact(summary_counts(plan)),
        "changes": [_change_json(c, seen) for c in plan.diff.changes],
        "actions": [_action_json(s) for s in plan.steps],
        "dependencies": [_dependency_json(d) for d in plan.dependencies],
        "generations": [compact(list(g)) for g in plan.generations],
        "unmanaged": [compact(name) for name in plan.diff.unmanaged],
        "notes": [compact(note) for note in plan.diff.notes],
        "reachability": compact(reachability_data(plan.reachability)),
    }
    if plan.diff.preserved:
        data["preserved"] = [compact(name) for name in plan.diff.preserved]
    lines = ["{"]
    for number, key in enumerate(sorted(data)):
        comma = "," if number < len(data) - 1 else ""
        value = data[key]
        if isinstance(value, list) and value:
            lines.append(f'  "{key}": [')
            lines += [f"    {item}{',' if i < len(value) - 1 else ''}" for i, item in enumerate(value)]
            lines.append(f"  ]{comma}")
        else:
            lines.append(f'  "{key}": {"[]" if isinstance(value, list) else value}{comma}')
    return "\n".join(lines) + "\n}\n"
