"""JSON Schemas generated from the manifest models: one per kind plus one for any document,
the schema of the agent's status file (`reconciler.agent.status`) and that of
`reconciler reach --format json` (`reconciler.reach`) and of `reconciler plan --format json`
(`reconciler.plan.plan_schema`).

Pure: models -> {filename: text}. The text is deterministic (sorted keys, fixed indent),
so `reconciler schema --check` and a test can detect drift byte for byte. Editors use
`document.schema.json` through a `# yaml-language-server: $schema=...` line.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler import reach
from reconciler.agent import status as agent_status
from reconciler.model import KINDS, MODELS
from reconciler.plan import plan_schema

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://xen-reconciler.invalid/schemas/"


def filename(kind: str) -> str:
    return f"{kind.lower()}.schema.json"


def kind_schema(kind: str) -> dict[str, Any]:
    schema = MODELS[kind].model_json_schema(by_alias=True, mode="validation")
    return {"$schema": DRAFT, "$id": BASE_ID + filename(kind), **schema}


def document_schema() -> dict[str, Any]:
    """Any manifest document: dispatches on `kind` so editors report the kind's own errors."""
    defs: dict[str, Any] = {}
    branches = []
    for kind in KINDS:
        schema = MODELS[kind].model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[kind] = schema
        branches.append({"if": {"properties": {"kind": {"const": kind}}}, "then": {"$ref": f"#/$defs/{kind}"}})
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + "document.schema.json",
        "title": "xen.reconciler/v1 manifest document",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {"kind": {"enum": list(KINDS)}, "apiVersion": {"const": "xen.reconciler/v1"}},
        "allOf": branches,
        "$defs": defs,
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def all_schemas() -> dict[str, str]:
    files = {filename(kind): render(kind_schema(kind)) for kind in KINDS}
    files["document.schema.json"] = render(document_schema())
    files[agent_status.FILENAME] = agent_status.schema_text()
    files[reach.SCHEMA_FILENAME] = reach.schema_text()
    files[plan_schema.FILENAME] = plan_schema.schema_text()
    return files
