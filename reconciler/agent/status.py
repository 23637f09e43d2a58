"""The agent's status file: what the last pass did and where every resource stands.

Written by the watch loop (`reconciler.agent.loop`) after every pass, atomically, where
`reconciler status` (another process) reads it: sim:DIR -> DIR/agent-status.json, xen ->
/run/xen-reconciler/status.json (the CLI decides, `reconciler.cli.hostlock.status_path`).
Pure apart from `write_status`/`read_status`: the document is plain JSON data, `SCHEMA`
is its JSON Schema (checked into schemas/ by `reconciler schema`), `render_text` the
operator's view. Times are RFC 3339 UTC; resource keys are `Kind/name`.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reconciler.atomic import write_text_atomic

FORMAT_VERSION = 1
FILENAME = "status.schema.json"
TRIGGERS = ("start", "signal", "git", "manifest", "xenstore", "retry", "resync")  # naming priority
OUTCOMES = ("converged", "changed", "failed", "invalid", "refused", "suspended", "interrupted")
CONDITIONS = ("Ready", "Progressing", "Drifted", "Failed", "RestartRequired")
READ_MAX_BYTES = 64 << 20  # a 2,000-VM host's status is a few MiB


def rfc3339(when: float) -> str:
    """`2026-12-06T08:00:00.123Z` for a time.time() value."""
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_TIME = {"type": "string", "format": "date-time"}
_TEXT_OR_NULL = {"type": ["string", "null"]}
_CONDITION = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "status", "reason", "message", "lastTransitionTime"],
    "properties": {
        "type": {"enum": list(CONDITIONS)},
        "status": {"enum": ["True", "False", "Unknown"]},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "lastTransitionTime": _TIME,
    },
}
_PASS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["number", "started", "trigger", "outcome", "durationSeconds", "counts", "error"],
    "properties": {
        "number": {"type": "integer", "minimum": 1},
        "started": _TIME,
        "trigger": {"enum": list(TRIGGERS)},
        "outcome": {"enum": list(OUTCOMES)},
        "durationSeconds": {"type": "number", "minimum": 0},
        "counts": {
            "type": "object",
            "additionalProperties": False,
            "required": ["changes", "steps", "done", "failed", "skipped", "held"],
            "properties": {k: {"type": "integer", "minimum": 0}
                           for k in ("changes", "steps", "done", "failed", "skipped", "held")},
        },
        "error": _TEXT_OR_NULL,
        "git": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "required": ["root", "commit", "dirty"],
            "properties": {"root": {"type": "string"}, "commit": {"type": "string"}, "dirty": {"type": "boolean"}},
        },
    },
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://xen-reconciler.invalid/schemas/" + FILENAME,
    "title": "reconciler watch: the agent's status file (reconciler status --format json)",
    "type": "object",
    "additionalProperties": False,
    "required": ["formatVersion", "agent", "lastPass", "desiredDigest", "invalid", "suspended", "xenstoreRequests",
                 "resources"],
    "properties": {
        "formatVersion": {"const": FORMAT_VERSION},
        "agent": {
            "type": "object",
            "additionalProperties": False,
            "required": ["pid", "started", "host", "paths", "state"],
            "properties": {
                "pid": {"type": "integer", "minimum": 1},
                "started": _TIME,
                "host": {"type": "string"},
                "paths": {"type": "array", "items": {"type": "string"}},
                "state": {"enum": ["running", "stopped"]},
                "stopped": _TIME,
            },
        },
        "lastPass": {"oneOf": [{"type": "null"}, _PASS]},
        "desiredDigest": {**_TEXT_OR_NULL, "description": "sha256 of the last good desired state; null before one"},
        "invalid": {"type": "array", "items": {"type": "string"},
                    "description": "the problems of the manifests as last read (file:line:col: ...); empty when valid"},
        "suspended": {**_TEXT_OR_NULL, "description": "why actions are paused (reconciler suspend); null when not"},
        "xenstoreRequests": {"type": "integer", "minimum": 0,
                             "description": "xenstore requests the agent sent since it started, as of its last pass"},
        "resources": {
            "type": "object",
            "propertyNames": {"pattern": "^[^/]+/.+$"},
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "required": ["conditions"],
                "properties": {
                    "conditions": {"type": "array", "items": _CONDITION},
                    "backoff": {
                        "type": "object",
                        "required": ["failures", "retryAt"],
                        "properties": {"failures": {"type": "integer", "minimum": 1}, "retryAt": _TIME},
                    },
                },
            },
        },
    },
}


def schema_text() -> str:
    """The schema as `reconciler schema` writes it (sorted keys, fixed indent)."""
    return json.dumps(SCHEMA, indent=2, sort_keys=True) + "\n"


def write_status(path: Path, document: dict[str, Any]) -> None:
    """Replace the status file atomically (0644: operators and monitoring read it). Compact:
    json's C encoder serves only indent=None, and an indented 200-VM status took 0.25 s
    of every pass (`reconciler status --format json` prints it indented)."""
    write_text_atomic(str(path), json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n")


def read_status(path: Path) -> dict[str, Any] | None:
    """The status document, or None when no agent has written one; ValueError when the
    file is not a status document of this format (the message says what it is instead)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(READ_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(raw) > READ_MAX_BYTES:
        raise ValueError(f"over {READ_MAX_BYTES >> 20} MiB, not a status file")
    data = json.loads(raw.decode("utf-8"))
    if not isinstance(data, dict) or data.get("formatVersion") != FORMAT_VERSION:
        raise ValueError(f"not a status file of format version {FORMAT_VERSION}")
    return data


def _agent_line(document: dict[str, Any], alive: bool) -> str:
    agent = document["agent"]
    if agent["state"] == "stopped":
        how = f"stopped {agent.get('stopped', '')}".rstrip()
    elif alive:
        how = f"running since {agent['started']}"
    else:
        how = f"gone (started {agent['started']}; it did not stop cleanly)"
    return f"host: {agent['host']} (agent pid {agent['pid']}, {how})"


def _pass_line(last: dict[str, Any] | None) -> str:
    if last is None:
        return "last pass: none yet"
    counts = last["counts"]
    text = (f"last pass: #{last['number']} at {last['started']}, trigger {last['trigger']}: {last['outcome']} "
            f"in {last['durationSeconds']:.2f} s ({counts['changes']} changes, {counts['done']} steps done, "
            f"{counts['failed']} failed, {counts['skipped']} skipped, {counts['held']} held)")
    git = last.get("git")
    if git:
        text += f", commit {git['commit'][:12]}{' (dirty)' if git['dirty'] else ''}"
    if last["error"]:
        text += f"\n  {last['error']}"
    return text


def _resource_line(key: str, entry: dict[str, Any]) -> str | None:
    """`VM/web: Failed (StepFailed): message; backing off (3 failures), retry at ...`, or
    None when the resource is Ready."""
    conditions = {c["type"]: c for c in entry["conditions"]}
    ready = conditions.get("Ready")
    if ready is not None and ready["status"] == "True":
        return None
    shown = [c for c in entry["conditions"] if c["type"] != "Ready" and c["status"] == "True"] or ([ready] if ready else [])
    parts = [f"{c['type'] if c['type'] != 'Ready' else 'not Ready'} ({c['reason']}): {c['message']}".rstrip(": ")
             for c in shown]
    text = f"{key}: {'; '.join(parts) or 'no conditions yet'}"
    backoff = entry.get("backoff")
    if backoff and "backing off" not in text:
        text += f"; backing off ({backoff['failures']} failures), retry at {backoff['retryAt']}"
    return text


def render_text(document: dict[str, Any], *, alive: bool = True) -> str:
    """A header (agent, last pass, desired state, invalid input, suspension), then one
    line per resource not Ready, or `all N resources Ready`. `alive`: whether the agent
    pid still runs (the caller checks; this stays pure)."""
    lines = [_agent_line(document, alive), _pass_line(document["lastPass"])]
    digest = document["desiredDigest"]
    lines.append(f"desired state: sha256 {digest[:16]}" if digest else "desired state: none loaded yet (nothing is applied)")
    if document["invalid"]:
        keep = "the last good desired state stays in force" if digest else "nothing is applied until they load"
        lines.append(f"invalid manifests ({keep}):")
        lines.extend(f"  {problem}" for problem in document["invalid"])
    if document["suspended"]:
        lines.append(f"suspended: {document['suspended']}")
    resources: dict[str, Any] = document["resources"]
    waiting = [line for key in sorted(resources) if (line := _resource_line(key, resources[key])) is not None]
    lines.extend(waiting or [f"all {len(resources)} resources Ready"])
    return "\n".join(lines) + "\n"


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists (a status file outlives a SIGKILLed agent)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
