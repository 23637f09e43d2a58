"""Layering (STYLE.md point 13): pure stages import no drivers, subprocess or watchfiles;
only `reconciler.cli` composes drivers. Walks the import statements of every module."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "reconciler"
FORBIDDEN = ("drivers", "subprocess", "watchfiles", "asyncio.subprocess")
# The agent's git module runs the local `git` program (never the host): issue 12, part E.
ALLOWED = {Path("agent/git.py"): {"subprocess"}}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_pure_stages_import_no_host_access() -> None:
    checked = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "cli":
            continue
        checked += 1
        bad = sorted(
            m
            for m in imports(path) - ALLOWED.get(rel, set())
            if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)
        )
        assert not bad, f"reconciler/{rel} imports {bad}; only reconciler/cli may touch drivers"
    assert checked >= 10


def test_walker_sees_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import subprocess\nfrom drivers.xenstore import client\n")
    assert {"subprocess", "drivers.xenstore"} <= imports(bad)
