"""The ordering rules hold on every run, not only the run that builds a VM; a failure
skips only what requires the failed step. Against the served simulated host through
the real CLI: a first apply fails half-way (faults.yaml), the rerun must keep the VM
paused until its devices are in, and keep dependents waiting for a sentinel not met."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.execute.test_faults import outcomes, running, vm

Cli = Callable[..., tuple[int, str, str]]


def test_a_failure_never_skips_a_vm_that_only_comes_later_by_priority(
        served: Callable[..., Any], cli: Cli, state_dir: Path, write_manifest: Callable[[str, str], Path]) -> None:
    write_manifest("db.yaml", vm("db", "  startPriority: 20\n"))
    write_manifest("mail.yaml", vm("mail"))
    folder = write_manifest("appliance.yaml", vm("appliance", "  startPriority: 5\n"))
    (state_dir / "faults.yaml").write_text("never_connect: {domains: [db]}\n")
    host = served()
    code, out, _ = cli("apply", str(folder))
    assert code == 1
    steps = outcomes(out)
    assert steps["vm/db/unpause"] == "skipped"
    for other in ("appliance", "mail"):
        assert all(o == "done" for s, o in steps.items() if s.startswith(f"vm/{other}/")), out
        assert f"VM `{other}` has been created." in out
    assert re.search(r"^Apply: \d+ done, 2 failed, 1 skipped\.$", out, re.M), out
    assert running(host) == {"appliance": "running", "db": "paused", "mail": "running"}
