"""The JSON plan: a documented, versioned format for tools (and `apply --plan` later).

Pure: Plan -> str (indented, keys sorted, one trailing newline), byte-identical for
the same Plan. Called by `reconciler plan --format json`. Secrets print as
"(sensitive)". The format, also in docs/plan-format.md:

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


def render_json(plan: Plan) -> str:
    return json.dumps(plan_to_data(plan), indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"
