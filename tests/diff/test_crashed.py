"""A crashed VM per its `lifecycle.onCrash` (issue 12): built here, a mirror of a converged
host whose VM's domain shows `crashed` (what `xl list` says; the observer maps it);
real: the loader, the diff, the planner and the text and JSON renderers."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from reconciler.diff import diff
from reconciler.plan.build import build_plan
from reconciler.plan.changes import Action
from reconciler.plan.render_json import render_json
from reconciler.plan.render_text import render_text

VM = """
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64, state: STATE, lifecycle: {onCrash: ACTION}}
"""


def _crashed(make_mirror: Any, desired: Any, running: Any) -> Any:
    observed = make_mirror(running)
    info = dataclasses.replace(observed.domains["web"], power="crashed")
    return dataclasses.replace(observed, domains={**observed.domains, "web": info})


def _load(load_yaml: Any, action: str, state: str = "running") -> Any:
    return load_yaml(VM.replace("ACTION", action).replace("STATE", state))


@pytest.mark.parametrize(("action", "says"), [
    ("restart", "crashed; lifecycle.onCrash restart: destroyed and built again"),
    ("rename-restart", "crashed; lifecycle.onCrash rename-restart: destroyed and built again"),
    ("coredump-restart", "crashed; lifecycle.onCrash coredump-restart: destroyed and built again (no core is dumped"),
    ("destroy", "crashed; lifecycle.onCrash destroy: the crashed domain is destroyed, and built again as state is"),
    ("coredump-destroy", "crashed; lifecycle.onCrash coredump-destroy: the crashed domain is destroyed, and built again"),
])
@pytest.mark.parametrize("state", ["running", "paused"])
def test_crashed_vm_is_rebuilt_unless_preserved(load_yaml, make_mirror, action, says, state) -> None:  # type: ignore[no-untyped-def]
    desired = _load(load_yaml, action, state)
    observed = _crashed(make_mirror, desired, _load(load_yaml, action))
    result = diff(desired, observed)
    (change,) = result.changes
    assert (change.kind, change.name, change.action, change.impact) == ("VM", "web", Action.RESTART, "restart")
    assert change.reason.startswith(says)
    assert [(f.path, f.before, f.after) for f in change.fields] == [("spec.state", "crashed", state)]
    assert result.preserved == ()
    plan = build_plan(result, desired, observed, fingerprint="")
    ids = [s.id for s in plan.steps]
    assert {"vm/web/destroy", "vm/web/create"} <= set(ids)
    assert ("vm/web/unpause" in ids) == (state == "running")


def test_preserved_crash_is_left_and_said_not_no_changes(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = _load(load_yaml, "preserve")
    observed = _crashed(make_mirror, desired, desired)
    result = diff(desired, observed)
    assert (result.changes, result.preserved) == ((), ("web",))
    plan = build_plan(result, desired, observed, fingerprint="")
    assert (plan.has_changes, plan.differs, plan.steps) == (False, True, ())
    text = render_text(plan)
    assert "No changes" not in text
    assert text.endswith("Nothing to apply, but the host does not match: VM web crashed and is preserved for inspection "
                         "(lifecycle.onCrash: preserve).\n")
    assert "Left as it is: VM web crashed" in text
    assert json.loads(render_json(plan))["preserved"] == ["web"]


def test_no_crash_no_preserved_key(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = _load(load_yaml, "preserve")
    plan = build_plan(diff(desired, make_mirror(desired)), desired, make_mirror(desired), fingerprint="")
    assert not plan.differs and "preserved" not in json.loads(render_json(plan))
    assert render_text(plan).endswith("No changes. The host matches the manifests.\n")


@pytest.mark.parametrize(("action", "expected"), [("destroy", [(Action.DELETE, "destructive")]), ("restart", [(Action.DELETE, "destructive")]),
                                                  ("preserve", [])])
def test_crashed_domain_of_a_stopped_vm(load_yaml, make_mirror, action, expected) -> None:  # type: ignore[no-untyped-def]
    desired = _load(load_yaml, action, "stopped")
    observed = _crashed(make_mirror, desired, _load(load_yaml, action))
    result = diff(desired, observed)
    assert [(c.action, c.impact) for c in result.changes] == expected
    assert result.preserved == ()


def test_preserved_crash_in_the_markdown_plan(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    """The pull-request comment says it as the text plan does: no table (nothing to
    apply), the summary line, and the `Left as it is` line shown, not collapsed."""
    from reconciler.plan.render_markdown import render_markdown

    desired = _load(load_yaml, "preserve")
    observed = _crashed(make_mirror, desired, desired)
    plan = build_plan(diff(desired, observed), desired, observed, fingerprint="0" * 64)
    text, md = render_text(plan), render_markdown(plan)
    assert "| Action |" not in md and "<details>" not in md
    (left,) = [line for line in text.splitlines() if line.startswith("Left as it is: VM web crashed")]
    assert f"```text\n{left}\n```" in md
    assert "**Nothing to apply, but the host does not match: VM web crashed and is preserved for inspection " \
           "\\(lifecycle.onCrash: preserve\\).**" in md
