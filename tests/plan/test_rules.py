"""One test per edge rule: the edge exists, carries the rule's name, and the schedule
honours it. Plus the cycle error, worded the same on every run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from reconciler.errors import ManifestError
from reconciler.plan.build import Plan
from reconciler.plan.changes import Action, FieldChange

if TYPE_CHECKING:
    from conftest import Builder


def edge(plan: Plan, before: str, after: str) -> str | None:
    """The rule of the edge before -> after, None if there is none."""
    return next((d.rule for d in plan.dependencies if (d.before, d.after) == (before, after)), None)


def stage(plan: Plan, sid: str) -> int:
    return next(i for i, generation in enumerate(plan.generations) if sid in generation)


def test_pci_on_pciback_before_build(build: Builder) -> None:
    build.vm("gpu")
    build.pci_rule("gpu-igd", "gpu", "0000:00:02.0")
    build.create_all()
    plan = build.plan()
    assert edge(plan, "pci/gpu-igd/pci-assignable-add", "vm/gpu/create") == "pci_on_pciback_before_build"
    assert not [s.id for s in plan.steps if s.op == "attach"]  # built with the domain (xl.cfg pci=)


def test_a_new_vms_devices_are_in_its_build_and_its_rules_go_in_before_unpause(build: Builder) -> None:
    build.vm("web")
    build.disk("web-root", "web")
    build.nic("web-eth", "web")
    build.rule("web-rpc", "web", "myself -> 0:80")
    build.create_all()
    plan = build.plan()
    # As xl builds: the disk and NIC are in the create (xl.cfg disk=, vif=), nothing is hot-plugged.
    assert [s.id for s in plan.steps if s.kind in ("Disk", "NIC")] == []
    # The new VM's rules go in with its start's one batch.
    assert edge(plan, "vm/web/create", "v4v/web-firewall/fw-start") == "firewall_after_build"
    assert edge(plan, "v4v/web-firewall/fw-start", "vm/web/unpause") == "firewall_before_unpause"
    assert stage(plan, "vm/web/create") < stage(plan, "v4v/web-firewall/fw-start") < stage(plan, "vm/web/unpause")
    assert not [s for s in plan.steps if s.op == "fw-apply"]


def test_other_vms_rules_naming_a_starting_vm_are_applied_when_it_starts(build: Builder) -> None:
    build.vm("ui")
    build.vm("net", type="ndvm")
    build.running("ui", 2)
    build.rule("ui-to-net", "ui", "myself -> dom-type=ndvm:5555")
    build.change("VM", "net", "net", Action.CREATE)
    build.change("V4VRule", "ui-to-net", "ui", Action.UPDATE, FieldChange("entries", [], None, "live"))
    plan = build.plan()
    # net owns no rule, but ui's names it: net's start has a firewall step, between its
    # build and its unpause, which inserts ui's entries naming net (xenmgr's delta).
    assert edge(plan, "vm/net/create", "v4v/net-firewall/fw-start") == "firewall_after_build"
    assert edge(plan, "v4v/net-firewall/fw-start", "vm/net/unpause") == "firewall_before_unpause"
    assert {s.id for s in plan.steps if s.kind == "V4VRule"} == {"v4v/net-firewall/fw-start", "v4v/ui-to-net/fw-apply"}


def test_rule_of_a_backend_naming_its_dependents_makes_no_cycle(build: Builder) -> None:
    build.vm("net", providesNetworkBackend=True, bootSentinel="booted")
    build.vm("guest")
    build.nic("guest-eth", "guest", backendVM="net")
    build.rule("net-guests", "net", "myself -> dom-type=svm")
    build.create_all()
    plan = build.plan()  # net's rule names guest, which waits for net: no cycle
    assert stage(plan, "vm/net/wait-sentinel") < stage(plan, "vm/guest/create") < stage(plan, "v4v/guest-firewall/fw-start")


def test_backend_up_and_its_sentinel_written_before_dependents_start(build: Builder) -> None:
    build.vm("net", providesNetworkBackend=True, bootSentinel="booted")
    build.vm("db")
    build.vm("web", dependsOn=["db"])
    build.nic("web-eth", "web", backendVM="net")
    build.create_all()
    plan = build.plan()
    assert edge(plan, "vm/net/wait-sentinel", "vm/web/create") == "backends_up_before_dependents"
    assert edge(plan, "vm/db/unpause", "vm/web/create") == "backends_up_before_dependents"


def test_hotplug_onto_a_running_vm_waits_for_a_starting_backend(build: Builder) -> None:
    build.vm("net", providesNetworkBackend=True, bootSentinel="booted")
    build.vm("web")
    build.nic("web-eth", "web", backendVM="net")
    build.running("web", 5)
    build.change("VM", "net", "net", Action.CREATE)
    build.change("NIC", "web-eth", "web", Action.CREATE)
    plan = build.plan()
    assert edge(plan, "vm/net/wait-sentinel", "nic/web-eth/attach") == "backends_up_before_dependents"


def test_removed_vm_detaches_between_shutdown_and_destroy_and_stops_before_its_backend(build: Builder) -> None:
    build.running("net", 2, providesNetworkBackend=True)
    build.running("web", 3)
    build.disk("web-disk-51712", "web", table=build.observed_disks)
    build.nic("web-nic-0", "web", backendVM="net", table=build.observed_nics)
    for vm in ("net", "web"):
        build.change("VM", vm, vm, Action.DELETE)
    build.change("Disk", "web-disk-51712", "web", Action.DELETE)
    build.change("NIC", "web-nic-0", "web", Action.DELETE)
    build.change("V4VRule", "web-firewall-stale", "web", Action.DELETE, FieldChange("entries", ["--dom-in 3 -j ACCEPT"], None, "live"))
    plan = build.plan()
    assert edge(plan, "vm/web/shutdown", "disk/web-disk-51712/detach") == "shutdown_before_detach"
    assert edge(plan, "disk/web-disk-51712/detach", "vm/web/destroy") == "detach_before_destroy"
    assert edge(plan, "nic/web-nic-0/detach", "vm/web/destroy") == "detach_before_destroy"
    assert edge(plan, "vm/web/destroy", "vm/net/shutdown") == "dependents_stop_first"
    assert edge(plan, "vm/web/destroy", "v4v/web-firewall-stale/fw-remove") == "firewall_removed_after_stop"


def test_restart_of_backend_and_dependent_stops_dependent_first_and_starts_it_last(build: Builder) -> None:
    build.vm("net", providesNetworkBackend=True)
    build.vm("web")
    build.nic("web-eth", "web", backendVM="net")
    for vm in ("net", "web"):
        build.running(vm, 2 if vm == "net" else 3)
        build.change("VM", vm, vm, Action.RESTART, FieldChange("spec.kernel", "/a", "/k", "restart"))
    plan = build.plan()
    order = [stage(plan, f"vm/{vm}/{op}") for vm, op in
             (("web", "shutdown"), ("web", "destroy"), ("net", "shutdown"), ("net", "destroy"), ("net", "create"),
              ("net", "unpause"), ("web", "create"), ("web", "unpause"))]
    assert order == sorted(order) and len(set(order)) == len(order)


def test_pci_device_released_by_its_old_owner_before_another_vm_claims_it(build: Builder) -> None:
    build.running("old", 3)
    build.pci_rule("old-pci-0", "old", "0000:00:02.0", table=build.observed_pci)
    build.vm("new")
    build.pci_rule("new-gpu", "new", "0000:00:02.0")
    build.change("VM", "old", "old", Action.DELETE)
    build.change("PCIPassthrough", "old-pci-0", "old", Action.DELETE)
    build.change("VM", "new", "new", Action.CREATE)
    build.change("PCIPassthrough", "new-gpu", "new", Action.CREATE)
    plan = build.plan()
    assert edge(plan, "pci/old-pci-0/detach", "pci/new-gpu/pci-assignable-add") == "pci_released_before_reuse"


def test_a_vm_left_paused_is_unpaused_only_after_its_devices_and_rules(build: Builder) -> None:
    # A rerun after failed attaches: win10 runs paused, its disk, NIC and rule are missing.
    build.vm("win10")
    build.disk("win10-system", "win10")
    build.nic("win10-wired", "win10")
    build.rule("win10-rpc", "win10", "myself -> 0:80")
    build.running("win10", 4)
    build.change("VM", "win10", "win10", Action.UPDATE, FieldChange("spec.state", "paused", "running", "live"))
    for kind, name in (("Disk", "win10-system"), ("NIC", "win10-wired")):
        build.change(kind, name, "win10", Action.CREATE)  # type: ignore[arg-type]
    build.change("V4VRule", "win10-rpc", "win10", Action.UPDATE, FieldChange("entries", [], ["x"], "live"))
    plan = build.plan()
    for device in ("disk/win10-system/attach", "nic/win10-wired/attach"):
        assert edge(plan, device, "vm/win10/unpause") == "devices_before_unpause"
    assert edge(plan, "v4v/win10-rpc/fw-apply", "vm/win10/unpause") == "firewall_before_unpause"
    assert stage(plan, "nic/win10-wired/attach") < stage(plan, "vm/win10/unpause")


def test_dependents_wait_for_a_sentinel_not_met_on_an_earlier_run(build: Builder) -> None:
    build.vm("net", providesNetworkBackend=True, bootSentinel="booted")
    build.vm("app", dependsOn=["net"])
    build.vm("web")
    build.nic("web-eth", "web", backendVM="net")
    build.vm("paused", dependsOn=["net"])
    build.running("net", 2)
    build.running("web", 3)
    build.running("paused", 5)
    build.change("VM", "net", "net", Action.UPDATE, FieldChange("sentinel", "not written", "written", "live"))
    build.change("VM", "app", "app", Action.CREATE)
    build.change("NIC", "web-eth", "web", Action.CREATE)
    build.change("VM", "paused", "paused", Action.UPDATE, FieldChange("spec.state", "paused", "running", "live"))
    plan = build.plan()
    assert edge(plan, "vm/net/record", "vm/net/wait-sentinel") == "step_order"
    assert next(s for s in plan.steps if s.id == "vm/net/wait-sentinel").args == (("node", "booted"),)
    assert edge(plan, "vm/net/wait-sentinel", "vm/app/create") == "backends_up_before_dependents"
    assert edge(plan, "vm/net/wait-sentinel", "nic/web-eth/attach") == "backends_up_before_dependents"
    assert edge(plan, "vm/net/wait-sentinel", "vm/paused/unpause") == "backends_up_before_dependents"


def test_start_priority_orders_independent_vms_highest_first(build: Builder) -> None:
    build.vm("ndvm", startPriority=10, bootSentinel="booted")
    build.vm("uivm", startPriority=9)
    build.vm("user")
    build.create_all()
    plan = build.plan()
    assert edge(plan, "vm/ndvm/wait-sentinel", "vm/uivm/create") == "start_priority_tiebreak"
    assert edge(plan, "vm/uivm/unpause", "vm/user/create") == "start_priority_tiebreak"
    assert edge(plan, "vm/ndvm/wait-sentinel", "vm/user/create") is None  # implied through uivm
    # A priority only orders: a failed ndvm never skips uivm (STYLE 21).
    kinds = {(d.before, d.after): d.kind for d in plan.dependencies}
    assert kinds[("vm/ndvm/wait-sentinel", "vm/uivm/create")] == "orders"
    assert kinds[("vm/ndvm/create", "vm/ndvm/record")] == "requires"
    assert {d.kind for d in plan.dependencies if not d.rule.endswith("_tiebreak")} == {"requires"}


def test_priority_never_fights_a_dependency_and_a_dependency_inherits_priority(build: Builder) -> None:
    build.vm("a", startPriority=10, dependsOn=["b"])
    build.vm("b")
    build.vm("c", startPriority=5)
    build.create_all()
    plan = build.plan()  # a needs b: b runs as early as a wants to; c (5) after both
    assert stage(plan, "vm/b/unpause") < stage(plan, "vm/a/create") < stage(plan, "vm/a/unpause") < stage(plan, "vm/c/create")


def test_shutdown_priority_orders_stops_highest_first(build: Builder) -> None:
    build.vm("ndvm", state="stopped", shutdownPriority=-15)
    build.vm("uivm", state="stopped", shutdownPriority=-5)
    for vm in ("ndvm", "uivm"):
        build.running(vm, 2 if vm == "ndvm" else 3)
        build.change("VM", vm, vm, Action.DELETE)
    plan = build.plan()
    assert edge(plan, "vm/uivm/destroy", "vm/ndvm/shutdown") == "shutdown_priority_tiebreak"


def test_a_cycle_names_its_resources_and_their_lines_the_same_way_every_time(build: Builder) -> None:
    build.vm("a", dependsOn=["b"])
    build.vm("b", dependsOn=["a"])
    build.create_all()
    messages = set()
    for _ in range(3):
        with pytest.raises(ManifestError) as caught:
            build.plan()
        messages.add(str(caught.value))
    assert messages == {
        "vms.yaml:1:7: error: dependency cycle in the plan: vm/a/create -> vm/a/record (step_order), "
        "vm/a/record -> vm/a/unpause (step_order), vm/a/unpause -> vm/b/create (backends_up_before_dependents), "
        "vm/b/create -> vm/b/record (step_order), vm/b/record -> vm/b/unpause (step_order), "
        "vm/b/unpause -> vm/a/create (backends_up_before_dependents); resources: VM a at vms.yaml:1, "
        "VM b at vms.yaml:2; break one of these dependencies"
    }


def test_pci_device_removed_under_its_applied_name_is_released_before_another_vm_claims_it(build: Builder) -> None:
    """A removed device is named as it was applied (`old-gpu`), not as the observer names it
    (`old-pci-0`): its detach finds the device by the address it carries, and the release
    still comes before the next owner's claim."""
    build.running("old", 3)
    build.pci_rule("old-pci-0", "old", "0000:00:02.0", table=build.observed_pci)
    build.vm("new")
    build.pci_rule("new-gpu", "new", "0000:00:02.0")
    build.change("PCIPassthrough", "old-gpu", "old", Action.DELETE, FieldChange("spec.bdf", "0000:00:02.0", None, "live"))
    build.change("VM", "new", "new", Action.CREATE)
    build.change("PCIPassthrough", "new-gpu", "new", Action.CREATE)
    plan = build.plan()
    detach = next(s for s in plan.steps if s.id == "pci/old-gpu/detach")
    assert dict(detach.args)["devices"] == ["0000:00:02.0"]
    assert edge(plan, "pci/old-gpu/detach", "pci/new-gpu/pci-assignable-add") == "pci_released_before_reuse"
