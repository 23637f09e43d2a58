"""Helpers of the brownfield proofs (issue 16): a host whose domains another toolstack
built, `reconciler import` run on it, and the checks that the plan of the imported
manifests only adopts.

Real: the CLI in processes of its own, Xen's own `xenstore-rm` on the served xenstored
(forgetting the reconciler's markers the way an operator with another toolstack would
leave them: not there), `reconciler sim create` (xl create) and `sim list` (xl list).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.convergence.conftest import Served

REPO = Path(__file__).resolve().parents[2]

LIST_ROW = re.compile(r"^(\S+)\s+(\d+)\s+\d+\s+\d+\s+\S+$")  # "web    1   256     1  running"


def domids(listing: str) -> dict[str, int]:
    """`sim list` (xl list) output -> {name: domid}; the header row is skipped."""
    found: dict[str, int] = {}
    for line in listing.splitlines()[1:]:
        row = LIST_ROW.match(line.strip())
        assert row is not None, f"unexpected `sim list` row {line!r}"
        found[row.group(1)] = int(row.group(2))
    return found


def reconciler(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`reconciler ARGV...` in a process of its own, from the repository root (with the
    environment of the caller: the convergence folder's, or a plain one for dumps)."""
    return subprocess.run([sys.executable, "-m", "reconciler", *argv], cwd=REPO, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout, check=False)


def forget_markers(served: Served) -> list[str]:
    """`xenstore-rm /vm/<uuid>/reconciler` for every domain the reconciler manages, as
    if another toolstack had built them (it writes no marker and no last-applied record).
    -> the names forgotten, sorted."""
    observed = served.observe()
    names = sorted(name for name, dom in observed["domains"].items() if dom["managed"])
    for name in names:
        served.xs("xenstore-rm", f"/vm/{observed['domains'][name]['uuid']}/reconciler")
    after = served.observe()["domains"]
    assert [name for name in names if after[name]["managed"]] == [], "a marker survived xenstore-rm"
    return names


def import_to(out: Path, *source: str) -> list[str]:
    """`reconciler import SOURCE... --out OUT` exits 0 and its files validate.
    -> the file names written, sorted."""
    done = reconciler("import", *source, "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    files = sorted(p.name for p in out.glob("*.yaml"))
    if files:
        valid = reconciler("validate", str(out))
        assert valid.returncode == 0, valid.stdout + valid.stderr
    return files


def plan_json(manifests: Path, *source: str) -> dict[str, Any]:
    done = reconciler("plan", str(manifests), *source, "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    plan: dict[str, Any] = json.loads(done.stdout)
    return plan


def not_adopt(plan: dict[str, Any]) -> list[str]:
    """Every planned change that is not a bare adoption, one line each: a change whose
    action is not `adopt`, or an adoption with field changes. Empty when the plan only
    takes over domains as they run."""
    found: list[str] = []
    for change in plan["changes"]:
        what = f"{change['action']} {change['kind']} {change['name']}: {change.get('reason', '')}"
        if change["action"] != "adopt":
            found.append(what)
        for field in change.get("fields") or []:
            found.append(f"{what}: {field['path']}: {field.get('before')!r} -> {field.get('after')!r}")
    return found


def adopted(plan: dict[str, Any]) -> list[str]:
    """The VM names the plan adopts, sorted."""
    return sorted(c["name"] for c in plan["changes"] if c["action"] == "adopt" and c["kind"] == "VM")


def text_change_lines(text: str) -> list[str]:
    """The change lines of a text plan (`  <= VM web [live]: ...`, `  + Disk ...`): the
    lines under a `# ...` heading indented by two spaces (field lines are indented more)."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("  ") and not line.startswith("   ") and line.strip()[:1] in "+~-<" and " " in line.strip():
            lines.append(line.strip())
    return lines
