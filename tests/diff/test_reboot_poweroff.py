"""A rebooted or powered-off VM (issue 13): domains are built with `xl create -e`, so no
xl monitor acts on a guest's reboot or power-off; its domain stays shut down with reason
reboot (`xl list` `---sr-`, observed power `rebooted`) or poweroff (`---s--`, `shutdown`)
and the reconciler carries out `lifecycle.onReboot` / `onPoweroff`. Built here: a mirror
of a converged host whose VM's domain shows that power; real: the loader, the diff, the
planner and the text and JSON renderers."""

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
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64, state: STATE, lifecycle: {onReboot: ACTION, onCrash: preserve}}
"""


def _load(load_yaml: Any, action: str, state: str = "running") -> Any:
    return load_yaml(VM.replace("ACTION", action).replace("STATE", state))


def _rebooted(make_mirror: Any, running: Any) -> Any:
    observed = make_mirror(running)
    info = dataclasses.replace(observed.domains["web"], power="rebooted")
    return dataclasses.replace(observed, domains={**observed.domains, "web": info})


@pytest.mark.parametrize(("action", "says"), [
    ("restart", "rebooted; lifecycle.onReboot restart: destroyed and built again"),
    ("rename-restart", "rebooted; lifecycle.onReboot rename-restart: destroyed and built again"),
    ("coredump-restart", "rebooted; lifecycle.onReboot coredump-restart: destroyed and built again (no core is dumped"),
    ("destroy", "rebooted; lifecycle.onReboot destroy: the domain is destroyed, and built again as state is"),
])
@pytest.mark.parametrize("state", ["running", "paused"])
def test_rebooted_vm_is_rebuilt_unless_preserved(load_yaml, make_mirror, action, says, state) -> None:  # type: ignore[no-untyped-def]
    desired = _load(load_yaml, action, state)
    observed = _rebooted(make_mirror, _load(load_yaml, action))
    result = diff(desired, observed)
    (change,) = result.changes
    assert (change.kind, change.name, change.action, change.impact) == ("VM", "web", Action.RESTART, "restart")
    assert change.reason.startswith(says)
    assert [(f.path, f.before, f.after) for f in change.fields] == [("spec.state", "rebooted", state)]
    assert result.preserved == ()
    plan = build_plan(result, desired, observed, fingerprint="")
    ids = [s.id for s in plan.steps]
    # The restart path: destroyed, built and recorded again (marker and last-applied record).
    assert {"vm/web/destroy", "vm/web/create", "vm/web/record"} <= set(ids)
    assert ("vm/web/unpause" in ids) == (state == "running")
    assert f"-/+ VM web [restart]: {says}" in render_text(plan)


def test_preserved_reboot_is_left_and_said(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = _load(load_yaml, "preserve")
    result = diff(desired, _rebooted(make_mirror, desired))
    assert (result.changes, result.preserved, result.rebooted) == ((), ("web",), ("web",))
    plan = build_plan(result, desired, _rebooted(make_mirror, desired), fingerprint="")
    assert (plan.has_changes, plan.differs, plan.steps) == (False, True, ())
    assert render_text(plan).endswith("Nothing to apply, but the host does not match: VM web rebooted and is preserved "
                                      "for inspection (lifecycle.onReboot: preserve).\n")
    assert json.loads(render_json(plan))["preserved"] == ["web"]


@pytest.mark.parametrize("action", ["restart", "destroy"])
def test_rebooted_domain_of_a_stopped_vm_is_destroyed(load_yaml, make_mirror, action) -> None:  # type: ignore[no-untyped-def]
    desired = _load(load_yaml, action, "stopped")
    result = diff(desired, _rebooted(make_mirror, _load(load_yaml, action)))
    (change,) = result.changes
    assert (change.action, change.reason) == (Action.DELETE, f"rebooted; lifecycle.onReboot {action}: the domain is "
                                                             "destroyed (state: stopped)")
    preserved = _load(load_yaml, "preserve", "stopped")
    assert diff(preserved, _rebooted(make_mirror, _load(load_yaml, "preserve"))).changes == ()


POWEROFF = """
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64, state: STATE, lifecycle: {onPoweroff: ACTION}}
"""


def _off(load_yaml: Any, action: str, state: str = "running") -> Any:
    return load_yaml(POWEROFF.replace("ACTION", action).replace("STATE", state))


def _powered_off(make_mirror: Any, running: Any) -> Any:
    observed = make_mirror(running)
    info = dataclasses.replace(observed.domains["web"], power="shutdown")
    return dataclasses.replace(observed, domains={**observed.domains, "web": info})


@pytest.mark.parametrize(("action", "says"), [
    ("destroy", "powered off; lifecycle.onPoweroff destroy: the domain is destroyed, and built again as state is running"),
    ("preserve", "powered off; lifecycle.onPoweroff preserve: the domain is destroyed, and built again as state is running"),
    ("restart", "powered off; lifecycle.onPoweroff restart: destroyed and built again"),
])
def test_powered_off_vm_that_should_run_is_built_again(load_yaml, make_mirror, action, says) -> None:  # type: ignore[no-untyped-def]
    """The manifest declares the state: a guest powering itself off is drift, whatever
    onPoweroff says (it only decides what becomes of the domain until the reconciler acts)."""
    desired = _off(load_yaml, action)
    observed = _powered_off(make_mirror, desired)
    result = diff(desired, observed)
    (change,) = result.changes
    assert (change.action, change.reason, result.preserved) == (Action.RESTART, says, ())
    ids = {s.id for s in build_plan(result, desired, observed, fingerprint="").steps}
    assert {"vm/web/destroy", "vm/web/create", "vm/web/record", "vm/web/unpause"} <= ids


def test_powered_off_domain_of_a_stopped_vm_is_destroyed_unless_preserved(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    """No xl monitor destroys it (`xl create -e`): the reconciler does, as onPoweroff says."""
    result = diff(_off(load_yaml, "destroy", "stopped"), _powered_off(make_mirror, _off(load_yaml, "destroy")))
    (change,) = result.changes
    assert (change.action, change.reason) == (Action.DELETE, "powered off; lifecycle.onPoweroff destroy: the domain is "
                                                             "destroyed (state: stopped)")
    assert diff(_off(load_yaml, "preserve", "stopped"), _powered_off(make_mirror, _off(load_yaml, "preserve"))).changes == ()
