"""Every example set applied to an empty simulated host converges: exit 0, every step
done, and `plan --detailed-exitcode` then exits 0 with "No changes" (idempotence)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import with_runnable_hooks

EXAMPLES = ("examples/openxt-desktop", "examples/server-host", "manifests")  # the simulated NDVM writes its sentinel
# The hooks each example's apply runs, once each: (VM, hook, state argument).
HOOKS = {"examples/openxt-desktop": (
    ("win10", "check-igd-boot-vga", ""), ("win10", "register-switcher-slot", ""), ("win10", "notify-switcher", " running"),
    ("work-linux", "unlock-user-disks", ""), ("work-linux", "notify-switcher", " running"))}


@pytest.mark.parametrize("path", EXAMPLES)
def test_example_converges_and_plan_is_empty_after(path: str, served: Callable[..., Any],
                                                    cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    host = served()
    (tmp_path / "hooks").mkdir()
    copy = str(with_runnable_hooks(path, tmp_path / "m", tmp_path / "hooks"))  # each hook logs its call
    code, out, err = cli("apply", copy)
    assert (code, err) == (0, ""), out
    done = re.search(r"^Apply: (\d+) done, 0 failed, 0 skipped\.$", out, re.M)
    assert done and int(done.group(1)) > 0, out
    assert "` failed." not in out and "has been skipped" not in out
    code, out, _ = cli("plan", copy, "--detailed-exitcode")
    assert code == 0, f"not idempotent: plan after apply still shows changes:\n{out}"
    assert "No changes. The host matches the manifests." in out
    running = host.run(lambda ports: ports.toolstack.list_domains())
    assert running and all(d.power == "running" for d in running)
    calls = (tmp_path / "hooks" / "calls.log").read_text().splitlines() if path in HOOKS else []
    uuid = {d.name: d.uuid for d in running}
    assert sorted(calls) == sorted(f"{hook} {uuid[vm]}{state}" for vm, hook, state in HOOKS.get(path, ()))
