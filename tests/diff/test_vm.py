"""VM rules: live fields, restart-only fields and updatePolicy, power, stop, rebuild,
adoption, and the last-applied record for fields the host cannot show."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from reconciler.diff import diff
from reconciler.errors import Conflict
from reconciler.model import ObservedState
from reconciler.plan.changes import Action

WEB = """
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: pvh
  memory: 1024
  maxMemory: 2048
  vcpus: 2
  maxVcpus: 4
  kernel: /boot/vmlinuz
  updatePolicy: POLICY
  state: STATE
  hooks: {preBoot: /usr/libexec/pre}
  display: {type: vnc, vncPassword: s3cret-pw}
  xenstoreData: {vm-data/role: web}
"""


def web(load_yaml: Any, policy: str = "live", state: str = "running") -> Any:
    return load_yaml(WEB.replace("POLICY", policy).replace("STATE", state))


def with_vm(observed: ObservedState, name: str, **spec: object) -> ObservedState:
    vm = observed.vms[name]
    return dataclasses.replace(observed, vms={**observed.vms, name: vm.model_copy(update={"spec": vm.spec.model_copy(update=spec)})})


def with_domain(observed: ObservedState, name: str, **info: object) -> ObservedState:
    return dataclasses.replace(observed, domains={**observed.domains, name: dataclasses.replace(observed.domains[name], **info)})


def fields(change: Any) -> list[tuple[str, object, object, str]]:
    return [(f.path, f.before, f.after, f.impact) for f in change.fields]


@pytest.mark.parametrize(("spec", "path", "before", "after"), [
    ({"memory": 1536}, "spec.memory", 1536, 1024),
    ({"vcpus": 3}, "spec.vcpus", 3, 2),
])
def test_live_fields_within_the_maximum(load_yaml, make_mirror, spec, path, before, after) -> None:  # type: ignore[no-untyped-def]
    desired = web(load_yaml)
    (change,) = diff(desired, with_vm(make_mirror(desired), "web", **spec)).changes
    assert (change.action, change.impact, change.pending) == (Action.UPDATE, "live", False)
    assert fields(change) == [(path, before, after, "live")]


@pytest.mark.parametrize(("spec", "path"), [
    ({"memory": 512, "max_memory": 512}, "spec.memory"),
    ({"vcpus": 1, "max_vcpus": 1}, "spec.vcpus"),
])
def test_past_the_running_maximum_needs_a_restart(load_yaml, make_mirror, spec, path) -> None:  # type: ignore[no-untyped-def]
    desired = web(load_yaml)
    (change,) = diff(desired, with_vm(make_mirror(desired), "web", **spec)).changes
    assert {f.path: f.impact for f in change.fields}[path] == "restart"
    assert (change.action, change.pending) == (Action.UPDATE, True)


@pytest.mark.parametrize(("policy", "action", "pending"), [("live", Action.UPDATE, True), ("restart", Action.RESTART, False)])
def test_restart_only_field_follows_update_policy(load_yaml, make_mirror, policy, action, pending) -> None:  # type: ignore[no-untyped-def]
    desired = web(load_yaml, policy)
    observed = with_vm(make_mirror(desired), "web", virt="hvm", memory=1536)
    (change,) = diff(desired, observed).changes
    assert (change.action, change.impact, change.pending) == (action, "restart", pending)
    assert {f.path: f.impact for f in change.fields} == {"spec.virt": "restart", "spec.memory": "live"}


@pytest.mark.parametrize(("want", "have"), [("paused", "running"), ("running", "paused")])
def test_pause_and_unpause_are_live(load_yaml, make_mirror, want, have) -> None:  # type: ignore[no-untyped-def]
    desired = web(load_yaml, state=want)
    (change,) = diff(desired, with_domain(make_mirror(desired), "web", power=have)).changes
    assert (change.action, change.impact) == (Action.UPDATE, "live")
    assert fields(change) == [("spec.state", have, want, "live")]


@pytest.mark.parametrize(("power", "booted", "want"), [
    ("running", False, [("sentinel", "not written", "written", "live")]),
    ("paused", False, [("spec.state", "paused", "running", "live"), ("sentinel", "not written", "written", "live")]),
    ("running", True, []),
    ("paused", True, [("spec.state", "paused", "running", "live")]),
    ("running", None, []),  # no sentinel recorded: nothing known to wait for
])
def test_a_sentinel_never_written_is_a_change(load_yaml, make_mirror, power, booted, want) -> None:  # type: ignore[no-untyped-def]
    desired = load_yaml(WEB.replace("POLICY", "live").replace("STATE", "running") + "  bootSentinel: booted\n")
    changes = diff(desired, with_domain(make_mirror(desired), "web", power=power, booted=booted)).changes
    assert [f for c in changes for f in fields(c)] == want
    if want and power == "running":
        assert "has not written 'booted'" in changes[0].reason


def test_desired_stopped_stops_a_running_vm(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    running = web(load_yaml)
    (change,) = diff(web(load_yaml, state="stopped"), make_mirror(running)).changes
    assert (change.kind, change.action, change.impact) == ("VM", Action.DELETE, "destructive")
    assert "stop" in change.reason


def test_desired_stopped_and_absent_is_nothing(load_yaml) -> None:  # type: ignore[no-untyped-def]
    assert diff(web(load_yaml, state="stopped"), ObservedState()).changes == ()


@pytest.mark.parametrize("power", ["crashed", "stopped"])
def test_dead_domain_is_rebuilt(load_yaml, make_mirror, power) -> None:  # type: ignore[no-untyped-def]
    desired = web(load_yaml)
    (change,) = diff(desired, with_domain(make_mirror(desired), "web", power=power)).changes
    assert (change.action, change.impact) == (Action.RESTART, "restart")
    assert fields(change) == [("spec.state", power, "running", "restart")]


def test_unmanaged_domain_with_a_manifest_name_is_a_conflict(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = web(load_yaml)
    observed = with_vm(with_domain(make_mirror(desired), "web", managed=False), "web", memory=1536)
    with pytest.raises(Conflict) as raised:
        diff(desired, observed)
    (found,) = raised.value.diagnostics
    domid = observed.domains["web"].domid
    assert found.severity == "error" and found.message.startswith(f"VM 'web': domain {domid} ('web') holds its name")
    assert "not made by the reconciler" in found.message and "set spec.adopt: true" in found.message


def test_unmanaged_domain_with_a_manifest_uuid_is_a_conflict(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = web(load_yaml)
    mirror = make_mirror(desired)
    stranger = dataclasses.replace(mirror.domains["web"], name="legacy", domid=77, managed=False)
    observed = dataclasses.replace(mirror, domains={"legacy": stranger})
    with pytest.raises(Conflict) as raised:
        diff(desired, observed)
    assert [d.message.split(" but ")[0] for d in raised.value.diagnostics] == [
        f"VM 'web': domain 77 ('legacy') holds its uuid {desired.vms['web'].spec.uuid}"]


def test_record_fields_compare_with_the_last_applied_record(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    old = web(load_yaml)
    new = load_yaml(WEB.replace("POLICY", "live").replace("STATE", "running").replace("/usr/libexec/pre", "/usr/libexec/pre2"))
    (change,) = diff(new, make_mirror(old)).changes
    assert fields(change) == [("spec.hooks.preBoot", "/usr/libexec/pre", "/usr/libexec/pre2", "live")]


def test_without_a_record_unseen_fields_are_not_compared(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    old = web(load_yaml)
    new = load_yaml(WEB.replace("POLICY", "restart").replace("STATE", "running").replace("/usr/libexec/pre", "/x"))
    observed = with_domain(make_mirror(old), "web", applied=None, digest=None)
    assert diff(new, observed).changes == ()


def test_record_that_fails_its_digest_is_not_used(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    old = web(load_yaml)
    new = load_yaml(WEB.replace("POLICY", "live").replace("STATE", "running").replace("/usr/libexec/pre", "/x"))
    observed = with_domain(make_mirror(old), "web", digest="0" * 64)
    result = diff(new, observed)
    assert result.changes == ()
    assert any("digest" in n for n in result.notes)


@pytest.mark.parametrize("applied", ["{not json", '{"version": 1, "vm": []}', '{"version": 7, "vm": {}}'])
def test_unreadable_record_is_a_note(load_yaml, make_mirror, applied) -> None:  # type: ignore[no-untyped-def]
    desired = web(load_yaml)
    result = diff(desired, with_domain(make_mirror(desired), "web", applied=applied, digest=None))
    assert result.changes == ()
    assert any("unreadable" in n for n in result.notes)


def test_secret_change_is_sensitive_and_never_shown(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    old = web(load_yaml)
    new = load_yaml(WEB.replace("POLICY", "live").replace("STATE", "running").replace("s3cret-pw", "n3w-pw"))
    (change,) = diff(new, make_mirror(old)).changes
    (field,) = change.fields
    assert (field.path, field.before, field.after, field.sensitive) == ("spec.display.vncPassword", "(sensitive)", "(sensitive)", True)
    assert (change.action, change.pending) == (Action.UPDATE, True)  # display needs a restart
    assert "s3cret" not in repr(change) and "n3w" not in repr(change)


def test_kernel_of_pv_is_compared_with_the_host(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = load_yaml(WEB.replace("pvh", "pv").replace("POLICY", "live").replace("STATE", "running"))
    observed = make_mirror(desired)
    assert "kernel" in observed.vms["web"].spec.model_fields_set
    (change,) = diff(desired, with_vm(observed, "web", kernel="/boot/old")).changes
    assert fields(change) == [("spec.kernel", "/boot/old", "/boot/vmlinuz", "restart")]


def test_missing_vm_model_compares_only_the_record(load_yaml, make_mirror) -> None:  # type: ignore[no-untyped-def]
    desired = web(load_yaml)
    observed = make_mirror(desired)
    result = diff(desired, dataclasses.replace(observed, vms={}))
    assert result.changes == ()
    assert any("no readable memory" in n for n in result.notes)
