"""rpc-proxy entries in plans: a VM's RPCRules in force when it starts (one `rpc-set` between
its build and its unpause), changed live while it runs, removed when it stops (`rpc-clear`
after its destroy); entries of uuids the reconciler does not manage never touched; a
source that cannot show the policy (a dump) planned without rpc steps, with a note.

Real: the loader (manifests from YAML text), the diff, the planner and the renderers.
Built here: the observed host, a `mirror` of the manifests (tests/diff/conftest.py) with
the rpc-proxy policy each test gives.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from reconciler.diff.rpc import DUMP_NOTE, desired_entry, vm_uuid
from reconciler.loader import load_or_raise
from reconciler.model import DesiredState, ObservedState
from reconciler.model.host import RpcPolicy, RpcVmPolicy
from reconciler.model.observed import DomainInfo
from reconciler.plan.build import Plan, plan_for
from reconciler.plan.render_json import render_json
from reconciler.plan.render_text import render_text
from tests.diff.conftest import mirror

WEB_UUID = "00000000-0000-0000-0000-00000000000a"
DB_UUID = "00000000-0000-0000-0000-00000000000b"
FOREIGN = "00000000-0000-0000-0000-0000000000ff"  # no manifest, no managed domain: not ours
WEB = f"""\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: web}}
spec:
  uuid: {WEB_UUID}
  virt: pv
  kernel: /boot/vmlinuz
  memory: 256
  state: STATE
  properties: {{usb-control: true}}
  rpcRules:
    - allow destination com.citrix.xenclient.xenmgr interface org.freedesktop.DBus.Properties member Get
    - rule: deny destination com.citrix.xenclient.usbdaemon
      name: web-no-usb
---
apiVersion: xen.reconciler/v1
kind: RPCRule
metadata: {{name: web-usb-if-allowed}}
spec:
  vm: web
  rule: allow destination com.citrix.xenclient.usbdaemon if-boolean usb-control true
"""
DB = f"""\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: db}}
spec:
  uuid: {DB_UUID}
  virt: pv
  kernel: /boot/vmlinuz
  memory: 128
"""
GET = "allow destination com.citrix.xenclient.xenmgr interface org.freedesktop.DBus.Properties member Get"
NO_USB = "deny destination com.citrix.xenclient.usbdaemon"
USB_IF = "allow destination com.citrix.xenclient.usbdaemon if-boolean usb-control true"


def load(tmp_path: Path, state: str = "running", extra: str = "") -> DesiredState:
    path = tmp_path / f"web-{state}.yaml"
    path.write_text(WEB.replace("STATE", state) + ("---\n" + extra if extra else ""))
    return load_or_raise([str(path)])


def entry(*rules: str, **properties: bool) -> RpcVmPolicy:
    return RpcVmPolicy(rules, tuple(sorted((k.replace("_", "-"), v) for k, v in properties.items())))


def host(observed: ObservedState, vms: dict[str, RpcVmPolicy] | None) -> ObservedState:
    return dataclasses.replace(observed, rpc=None if vms is None else RpcPolicy("deny all\n", dict(sorted(vms.items()))))


def lines(plan: Plan) -> list[str]:
    return [line for line in render_text(plan).splitlines() if "RPCRule" in line]


def step(plan: Plan, sid: str) -> dict[str, object]:
    return dict(next(s for s in plan.steps if s.id == sid).args)


def edges(plan: Plan, sid: str) -> set[tuple[str, str, str]]:
    return {(d.before, d.after, d.rule) for d in plan.dependencies if sid in (d.before, d.after)}


def test_the_desired_entry_is_the_rules_in_the_order_written_and_the_properties(tmp_path: Path) -> None:
    desired = load(tmp_path)
    assert desired_entry(desired, "web") == entry(GET, NO_USB, USB_IF, usb_control=True)
    assert vm_uuid(desired, "web") == WEB_UUID


def test_a_new_vm_gets_its_entry_between_build_and_unpause_one_line_per_rule(tmp_path: Path) -> None:
    desired = load(tmp_path)
    plan = plan_for(desired, host(ObservedState(), {}))
    names = {r.metadata.name for r in desired.rpc_rules.values()}
    assert lines(plan) == sorted([
        *(f"  + RPCRule {n} [live]: in force when web starts" for n in names),
        "  + RPCRule web-rpc-entry [live]: its if-boolean properties: in force when web starts",
    ])
    # One step for the VM's whole entry, however many rules: rules in evaluation order.
    rpc_steps = [s.id for s in plan.steps if s.kind == "RPCRule"]
    assert rpc_steps == ["rpc/web-rpc/rpc-set"]
    assert step(plan, "rpc/web-rpc/rpc-set") == {"uuid": WEB_UUID, "rules": [GET, NO_USB, USB_IF],
                                                 "properties": {"usb-control": True}}
    assert edges(plan, "rpc/web-rpc/rpc-set") == {("vm/web/create", "rpc/web-rpc/rpc-set", "rpc_after_build"),
                                                  ("rpc/web-rpc/rpc-set", "vm/web/unpause", "rpc_before_unpause")}
    data = json.loads(render_json(plan))
    entry_change = next(c for c in data["changes"] if c["name"] == "web-rpc-entry")
    assert (entry_change["kind"], entry_change["action"]) == ("RPCRule", "create")
    assert {"op": "rpc-set", "kind": "RPCRule", "name": "web-rpc", "vm": "web"}.items() <= next(
        a for a in data["actions"] if a["id"] == "rpc/web-rpc/rpc-set").items()


def test_a_paused_vm_gets_its_entry_too(tmp_path: Path) -> None:
    plan = plan_for(load(tmp_path, "paused"), host(ObservedState(), {}))
    assert "rpc/web-rpc/rpc-set" in {s.id for s in plan.steps}


def test_a_converged_host_plans_nothing(tmp_path: Path) -> None:
    desired = load(tmp_path)
    observed = host(mirror(desired), {WEB_UUID: entry(GET, NO_USB, USB_IF, usb_control=True)})
    assert not plan_for(desired, observed).has_changes


def test_a_dump_gets_no_rpc_step_and_a_note(tmp_path: Path) -> None:
    desired = load(tmp_path)
    new = plan_for(desired, host(ObservedState(), None))
    assert [s.id for s in new.steps if s.kind == "RPCRule"] == [] and lines(new) == []
    assert DUMP_NOTE in new.diff.notes
    kept = plan_for(desired, host(mirror(desired), None))
    assert not kept.has_changes and DUMP_NOTE in kept.diff.notes


def test_a_rule_added_to_a_running_vm_is_put_in_force_live(tmp_path: Path) -> None:
    desired = load(tmp_path)
    plan = plan_for(desired, host(mirror(desired), {WEB_UUID: entry(GET, USB_IF, usb_control=True)}))
    assert lines(plan) == ["  + RPCRule web-no-usb [live]: in force now, web is up (rpc-proxy reloads)"]
    assert [s.id for s in plan.steps] == ["rpc/web-rpc/rpc-set"]  # no VM step: live, no restart
    assert step(plan, "rpc/web-rpc/rpc-set")["rules"] == [GET, NO_USB, USB_IF]


def test_what_no_rpcrule_says_order_and_properties_are_the_entry_line(tmp_path: Path) -> None:
    desired = load(tmp_path)
    stale = plan_for(desired, host(mirror(desired), {WEB_UUID: entry(GET, NO_USB, "allow all", USB_IF)}))
    assert lines(stale) == ["  ~ RPCRule web-rpc-entry [live]: 1 rule no RPCRule of web says go, "
                            "its if-boolean properties: in force now, web is up (rpc-proxy reloads)"]
    text = render_text(stale)
    assert '      + properties = {"usb-control": true}' in text
    assert '"allow all", ' in text  # the rules before -> after, on the entry's line
    moved = plan_for(desired, host(mirror(desired), {WEB_UUID: entry(NO_USB, GET, USB_IF, usb_control=False)}))
    assert lines(moved) == ["  ~ RPCRule web-rpc-entry [live]: its rules in a new evaluation order (the last match "
                            "decides), new if-boolean properties: in force now, web is up (rpc-proxy reloads)"]
    assert [s.id for s in moved.steps] == ["rpc/web-rpc/rpc-set"]


def test_a_vm_that_stops_loses_its_entry_after_its_destroy(tmp_path: Path) -> None:
    running = load(tmp_path)
    observed = host(mirror(running), {WEB_UUID: entry(GET, NO_USB, USB_IF, usb_control=True)})
    plan = plan_for(load(tmp_path, "stopped"), observed)
    names = sorted(r.metadata.name for r in running.rpc_rules.values())
    assert lines(plan) == sorted([*(f"  - RPCRule {n} [live]: removed when web stops" for n in names),
                                  "  - RPCRule web-rpc-entry [live]: removed when web stops"])
    assert step(plan, "rpc/web-rpc/rpc-clear") == {"uuid": WEB_UUID}
    assert ("vm/web/destroy", "rpc/web-rpc/rpc-clear", "rpc_removed_after_stop") in edges(plan, "rpc/web-rpc/rpc-clear")


def test_a_vm_removed_from_the_manifests_loses_its_entry_by_its_domain_uuid(tmp_path: Path) -> None:
    running = load(tmp_path)
    observed = host(mirror(running), {WEB_UUID: entry(GET, usb_control=True)})
    path = tmp_path / "db.yaml"
    path.write_text(DB)
    plan = plan_for(load_or_raise([str(path)]), observed)
    assert "  - RPCRule web-rpc-entry [live]: removed when web stops" in lines(plan)
    assert step(plan, "rpc/web-rpc/rpc-clear") == {"uuid": WEB_UUID}
    assert ("vm/web/destroy", "rpc/web-rpc/rpc-clear", "rpc_removed_after_stop") in edges(plan, "rpc/web-rpc/rpc-clear")


def test_an_entry_left_by_an_interrupted_stop_is_cleared(tmp_path: Path) -> None:
    stopped = load(tmp_path, "stopped")
    get = next(r.metadata.name for r in stopped.rpc_rules.values() if r.spec.rule == GET)
    plan = plan_for(stopped, host(mirror(stopped), {WEB_UUID: entry(GET, "allow all")}))
    assert lines(plan) == [f"  - RPCRule {get} [live]: removed: web does not run",
                           "  - RPCRule web-rpc-entry [live]: removed: web does not run"]
    assert [s.id for s in plan.steps] == ["rpc/web-rpc/rpc-clear"]


def test_entries_the_reconciler_does_not_manage_are_never_touched(tmp_path: Path) -> None:
    desired = load(tmp_path)
    observed = host(mirror(desired), {WEB_UUID: entry(GET, NO_USB, USB_IF, usb_control=True),
                                      FOREIGN: entry("allow all"), DB_UUID: entry("allow all")})
    # An unmanaged domain (no marker) holds DB_UUID: listed, never touched.
    observed = dataclasses.replace(observed, domains={**observed.domains, "other": DomainInfo("other", 40, DB_UUID)})
    plan = plan_for(desired, observed)
    assert not plan.has_changes and plan.diff.unmanaged == ("other",)


def test_a_restart_sets_the_entry_again_before_the_new_domain_runs(tmp_path: Path) -> None:
    desired = load(tmp_path)
    observed = host(mirror(desired), {WEB_UUID: entry(GET, NO_USB, USB_IF, usb_control=True)})
    crashed = dataclasses.replace(observed.domains["web"], power="crashed")
    plan = plan_for(desired, dataclasses.replace(observed, domains={**observed.domains, "web": crashed}))
    assert lines(plan) == []  # the entry is as it should be: no RPCRule line
    assert {("vm/web/create", "rpc/web-rpc/rpc-set", "rpc_after_build"),
            ("rpc/web-rpc/rpc-set", "vm/web/unpause", "rpc_before_unpause")} <= edges(plan, "rpc/web-rpc/rpc-set")


def test_a_vm_an_interrupted_apply_left_paused_gets_its_entry_before_its_unpause(tmp_path: Path) -> None:
    desired = load(tmp_path)
    observed = host(mirror(desired), {})
    paused = dataclasses.replace(observed.domains["web"], power="paused")
    plan = plan_for(desired, dataclasses.replace(observed, domains={**observed.domains, "web": paused}))
    assert ("rpc/web-rpc/rpc-set", "vm/web/unpause", "rpc_before_unpause") in edges(plan, "rpc/web-rpc/rpc-set")
