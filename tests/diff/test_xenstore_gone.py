"""A managed domain whose xenstore tree was removed while the hypervisor still lists it
(issue 12; observed as `DomainInfo.xenstore_gone`): rebuilt when its managed marker
survived, a conflict (nothing destroyed) when it did not. Built here from a mirror of a
converged host; real: the loader, the diff and the planner."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from reconciler.diff import diff
from reconciler.errors import Conflict
from reconciler.plan.build import build_plan
from reconciler.plan.changes import Action

VM = """
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64, state: STATE}
"""


def _treeless(make_mirror: Any, desired: Any, *, managed: bool) -> Any:
    """What the observer shows once /local/domain/<domid> is removed: the domain from
    `xl list`, no VM model, no devices."""
    observed = make_mirror(desired)
    info = dataclasses.replace(observed.domains["web"], xenstore_gone=True, managed=managed, booted=None)
    return dataclasses.replace(observed, domains={"web": info}, vms={}, disks={}, nics={}, pci={}, health={})


def test_managed_domain_without_tree_is_destroyed_and_built_again(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = load_yaml(VM.replace("STATE", "running"))
    observed = _treeless(make_mirror, desired, managed=True)
    result = diff(desired, observed)
    (change,) = result.changes
    domid = observed.domains["web"].domid
    assert (change.kind, change.name, change.action, change.impact) == ("VM", "web", Action.RESTART, "restart")
    assert change.reason == (f"its xenstore nodes are gone (domain {domid} is still listed by the hypervisor): "
                             "destroyed and built again")
    steps = {s.id: dict(s.args) for s in build_plan(result, desired, observed, fingerprint="").steps}
    assert {"vm/web/destroy", "vm/web/create"} <= set(steps)
    # No graceful shutdown to ask for, and the domain is found in `xl list`, not by its xenstore name.
    assert steps["vm/web/shutdown"] == steps["vm/web/destroy"] == {"xenstoreGone": True, "uuid": observed.domains["web"].uuid}


def test_managed_domain_without_tree_of_a_stopped_vm_is_destroyed(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = load_yaml(VM.replace("STATE", "stopped"))
    observed = _treeless(make_mirror, load_yaml(VM.replace("STATE", "running")), managed=True)
    (change,) = diff(desired, observed).changes
    assert (change.action, change.impact) == (Action.DELETE, "destructive")
    assert change.reason.endswith("destroyed (state: stopped)")


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_domain_without_tree_or_marker_is_a_conflict(load_yaml, make_mirror, state) -> None:  # type: ignore[no-untyped-def]
    desired = load_yaml(VM.replace("STATE", state))
    observed = _treeless(make_mirror, load_yaml(VM.replace("STATE", "running")), managed=False)
    with pytest.raises(Conflict) as raised:
        diff(desired, observed)
    assert "its xenstore nodes are gone" in str(raised.value) and "it is not destroyed" in str(raised.value)
