"""The JSON plan: a documented, versioned format for tools (and `apply --plan` later).

Pure: Plan -> str (indented, keys sorted, one trailing newline), byte-identical for
the same Plan. Called by `reconciler plan --format json`. Secrets print as
"(sensitive)". Layout: keys sorted, one top-level key and one list element per line.
The format, also in docs/plan-format.md:

    {
      "format_version": 1,                  # bumped on any incompatible change
      "observed_fingerprint": "<sha256 hex>",  # of the observed state planned against
      "summary": {"create": n, "change_live": n, "needs_restart": n, "destroy": n},
      "changes": [{"kind", "name", "vm", "action": "create|update|restart|delete",
                   "symbol": "+|~|-/+|-", "impact": "live|restart|destructive",
                   "pending": bool, "reason": str,
                   "fields": [{"path", "before", "after", "impact", "sensitive"}]}],
      "actions": [{"id", "op", "kind", "name", "vm", "args": {...}, "trigger": vm|null}],
      "dependencies": [{"before": id, "after": id, "rule": name}],
      "generations": [[id, ...], ...],      # the parallel schedule, in order
      "unmanaged": [domain name, ...],
      "notes": [sentence, ...]
    }

`changes` keep the Diff's order (vm, kind, name); `actions` are sorted by id,
`dependencies` by (before, after), each generation by id.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.plan.build import Plan
from reconciler.plan.changes import FieldChange, ResourceChange
from reconciler.plan.render_text import SENSITIVE, is_sensitive, summary_counts

FORMAT_VERSION = 1


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


def plan_to_data(plan: Plan) -> dict[str, Any]:
    """The plan as plain JSON-compatible data, in the documented format."""
    return {
        "format_version": FORMAT_VERSION,
        "observed_fingerprint": plan.fingerprint,
        "summary": summary_counts(plan),
        "changes": [_change(c) for c in plan.diff.changes],
        "actions": [
            {"id": s.id, "op": s.op, "kind": s.kind, "name": s.name, "vm": s.vm, "args": dict(s.args), "trigger": s.trigger}
            for s in plan.steps
        ],
        "dependencies": [{"before": d.before, "after": d.after, "rule": d.rule} for d in plan.dependencies],
        "generations": [list(g) for g in plan.generations],
        "unmanaged": list(plan.diff.unmanaged),
        "notes": list(plan.diff.notes),
    }


def _compact(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "), default=str)


def render_json(plan: Plan) -> str:
    """Keys sorted, one top-level key per line and one list element per line (each
    element compact): diffs of two plans read line by line, and the C encoder keeps a
    5,000-VM plan fast (`indent=` would fall back to the pure-Python encoder)."""
    lines = ["{"]
    data = plan_to_data(plan)
    for number, key in enumerate(sorted(data)):
        comma = "," if number < len(data) - 1 else ""
        value = data[key]
        if isinstance(value, list) and value:
            lines.append(f'  "{key}": [')
            lines += [f"    {_compact(item)}{',' if i < len(value) - 1 else ''}" for i, item in enumerate(value)]
            lines.append(f"  ]{comma}")
        else:
            lines.append(f'  "{key}": {_compact(value)}{comma}')
    return "\n".join(lines) + "\n}\n"
