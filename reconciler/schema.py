"""JSON Schemas generated from the manifest models: one per kind plus one for any document,
the schema of the agent's status file (`reconciler.agent.status`) and that of
`reconciler reach --format json` (`reconciler.reach`) and of `reconciler plan --format json`
(`reconciler.plan.plan_schema`).

Pure: models -> {filename: text}. The text is deterministic (sorted keys, fixed indent),
so `reconciler schema --check` and a test can detect drift byte for byte. Editors use
`document.schema.json` mapped by glob (`yaml.schemas`) or through a per-document
`# yaml-language-server: $schema=...` line; tests/editor proves it with the real
yaml-language-server. The schemas accept at least what `reconciler validate` accepts,
read as a YAML 1.2 editor reads it (`editor_schema`; hex in `model.devices`).
"""

from __future__ import annotations

import json
from typing import Any

from reconciler import reach
from reconciler.agent import status as agent_status
from reconciler.model import KINDS, MODELS
from reconciler.model import devices
from reconciler.model.common import PATTERN_WORDS
from reconciler.model.vm import XS_RELATIVE
from reconciler.plan import plan_schema

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://xen-reconciler.invalid/schemas/"


def filename(kind: str) -> str:
    return f"{kind.lower()}.schema.json"


# YAML 1.1 booleans (what our loader, PyYAML's resolver, reads as true/false) that a YAML 1.2
# editor reads as strings: `discard: yes` is valid to `validate`, so the editor must accept it.
YAML11_BOOLEANS = ["yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"]


# What a pattern means, in the words `validate` uses: yaml-language-server shows
# `patternErrorMessage` instead of the bare regular expression.
PATTERN_MESSAGES: dict[str, str] = {
    **{pattern: f"expected {words}" for pattern, words in PATTERN_WORDS.items()},
    devices.MAC_PATTERN: "expected a unicast MAC address xx:xx:xx:xx:xx:xx (hex, first octet even) or auto",
    devices.VDEV_PATTERN: "expected xvdX[N], hdX[N] (X a-d) or sdX[N] (X a-p), e.g. xvda or hdc",
    devices.BDF_PATTERN: "expected a PCI address DDDD:BB:SS.F or BB:SS.F in hex, e.g. 0000:03:00.0",
    devices.RATE_PATTERN: "expected <N>[G|M|K](B|b)/s[@<N>[ms|us|s]], e.g. 10Mb/s or 1MB/s@20ms",
    devices.GUEST_SLOT_PATTERN: "expected a hex slot like '0x05' (0x00-0x1f)",
    devices.HEX_OR_ANY_PATTERN: "expected 0x-hex like '0x8086' or 'any' (PCI ids are hex)",
    devices.V4V_PATTERN: "expected 'CLIENT -> SERVER', e.g. 'myself -> dom-type=ndvm:5555'",
    devices.RPC_PATTERN: "expected a rule starting with allow or deny",
    XS_RELATIVE: "expected a xenstore node name: A-Z a-z 0-9 - _ @ and /, relative",
    "^vm-data/" + XS_RELATIVE[1:]: "expected a key under vm-data/ (A-Z a-z 0-9 - _ @ and /)",
    "^/": "expected an absolute path",
    r"^[A-Za-z0-9_.-]{1,15}$": "expected an interface name of 1-15 letters, digits, '_', '.' or '-'",
    r"^[A-Za-z0-9_-]+$": "expected letters, digits, '_' or '-', e.g. e1000",
}


def editor_schema(schema: Any) -> Any:
    """`schema` as an editor needs it (a new value): every `{"type": "boolean"}` also accepts
    the YAML 1.1 words, every pattern says what it means (`patternErrorMessage`), and a map
    whose keys have a pattern refuses other keys, as the validator does."""
    if isinstance(schema, list):
        return [editor_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: editor_schema(value) for key, value in schema.items()}
    if out.get("type") == "boolean":
        del out["type"]
        out["anyOf"] = [{"type": "boolean"}, {"enum": YAML11_BOOLEANS}]
    if "patternProperties" in out and "properties" not in out:  # xenstoreData: other keys are errors
        out.setdefault("additionalProperties", False)
    if isinstance(out.get("pattern"), str) and out["pattern"] in PATTERN_MESSAGES:
        out["patternErrorMessage"] = PATTERN_MESSAGES[out["pattern"]]
    return out


def kind_schema(kind: str) -> dict[str, Any]:
    schema = editor_schema(MODELS[kind].model_json_schema(by_alias=True, mode="validation"))
    return {"$schema": DRAFT, "$id": BASE_ID + filename(kind), **schema}


def document_schema() -> dict[str, Any]:
    """Any manifest document: dispatches on `kind` so editors report the kind's own errors."""
    defs: dict[str, Any] = {}
    branches = []
    for kind in KINDS:
        schema = editor_schema(
            MODELS[kind].model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}"))
        defs.update(schema.pop("$defs", {}))
        defs[kind] = schema
        branches.append({"if": {"properties": {"kind": {"const": kind}}}, "then": {"$ref": f"#/$defs/{kind}"}})
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + "document.schema.json",
        "title": "xen.reconciler/v1 manifest document",
        "description": "One document of a manifest file: a VM, Disk, NIC, PCIPassthrough, V4VRule or RPCRule.",
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
