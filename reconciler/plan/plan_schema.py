"""The JSON Schema of `reconciler plan --format json` (docs/plan-format.md in schema form).

Pure data: `reconciler.schema` writes it to schemas/plan.schema.json, and a test checks
every snapshot plan against it. The `reachability` items are the ones
`reconciler reach --format json` lists (`reconciler.reach.SCHEMA`), so one definition
serves both documents.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler import reach
from reconciler.plan.render_json import FORMAT_VERSION

FILENAME = "plan.schema.json"

_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_COUNT = {"type": "integer", "minimum": 0}


def _object(required: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": sorted(required), "properties": required,
            **extra}


_FIELD = _object({
    "path": _STR, "before": {}, "after": {},
    "impact": {"enum": ["live", "restart", "destructive"]}, "sensitive": {"type": "boolean"},
})
_CHANGE = _object({
    "kind": _STR, "name": _STR, "vm": _STR,
    "action": {"enum": ["create", "update", "restart", "delete", "adopt"]},
    "symbol": {"enum": ["+", "~", "-/+", "-", "<="]},
    "impact": {"enum": ["live", "restart", "destructive"]},
    "pending": {"type": "boolean"}, "reason": _STR,
    "fields": {"type": "array", "items": _FIELD},
})
_ACTION = _object({
    "id": _STR, "op": _STR, "kind": _STR, "name": _STR, "vm": _STR,
    "args": {"type": "object"}, "trigger": {"type": "null"},
})
_DEPENDENCY = _object({"before": _STR, "after": _STR, "rule": _STR, "kind": {"enum": ["requires", "orders"]}})
_ITEMS = {"anyOf": [reach.SCHEMA["properties"]["v4v"]["items"], reach.SCHEMA["properties"]["rpc"]["items"]]}
_REACHABILITY = _object(
    {
        "allowed": {"type": ["array", "null"], "items": _ITEMS,
                    "description": "v4v pairs (as reach's `v4v` items) and rpc-proxy calls (as its `rpc` items, "
                    "`allowed` true) this plan opens, sorted: pairs first; null: not compared (see notes)"},
        "denied": {"type": ["array", "null"], "items": _ITEMS,
                   "description": "what this plan closes, as `allowed` (rpc items `allowed` false, with the rule "
                   "that refuses the call once applied); null: not compared"},
        "notes": {**_STRS, "description": "a part of the policy the source cannot show, so not compared"},
    },
    description="who can reach whom that could not before, and back; empty lists when the plan runs no step",
)

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://xen-reconciler.invalid/schemas/" + FILENAME,
    "title": "reconciler plan --format json (docs/plan-format.md)",
    **_object({
        "format_version": {"const": FORMAT_VERSION},
        "observed_fingerprint": _SHA256,
        "desired_digest": _SHA256,
        "desired_vms": {"type": "array", "items": _object({"vm": _STR, "digest": _STR})},
        "summary": _object({"create": _COUNT, "change_live": _COUNT, "needs_restart": _COUNT, "destroy": _COUNT}),
        "changes": {"type": "array", "items": _CHANGE},
        "actions": {"type": "array", "items": _ACTION},
        "dependencies": {"type": "array", "items": _DEPENDENCY},
        "generations": {"type": "array", "items": _STRS},
        "unmanaged": _STRS,
        "notes": _STRS,
        "reachability": _REACHABILITY,
    }),
}
SCHEMA["properties"]["summary"]["properties"]["adopt"] = {
    **_COUNT, "description": "only when some: unmanaged domains taken over (spec.adopt), not restarted"}
SCHEMA["properties"]["preserved"] = {**_STRS, "description": "only when some: VMs left for inspection"}


def schema_text() -> str:
    """The schema as `reconciler schema` writes it (sorted keys, fixed indent)."""
    return json.dumps(SCHEMA, indent=2, sort_keys=True) + "\n"
