"""The step table: each kind of change -> the ordered host steps, with their args."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.model import PCIPassthrough
from reconciler.plan.build import Plan
from reconciler.plan.changes import HOST, Action, FieldChange

if TYPE_CHECKING:
    from conftest import Builder


def ops(plan: Plan, prefix: str) -> list[str]:
    """The ops of one resource's steps, in the order step_order edges chain them."""
    ids = [s.id for s in plan.steps if s.id.startswith(prefix)]
    chained = {(d.before, d.after) for d in plan.dependencies if d.rule == "step_order"}
    first = [i for i in ids if not any((o, i) in chained for o in ids)]
    assert len(first) == 1, f"{prefix}: one chain expected, heads {first}"
    out, current = [first[0]], first[0]
    while nxt := [i for i in ids if (current, i) in chained]:
        current = nxt[0]
        out.append(current)
    return [i.split("/")[2] for i in out]


def args(plan: Plan, sid: str) -> dict[str, object]:
    return dict(next(s for s in plan.steps if s.id == sid).args)


def test_vm_create_builds_paused_records_unpauses_and_waits_for_the_sentinel(build: Builder) -> None:
    build.vm("net", bootSentinel="booted")
    build.change("VM", "net", "net", Action.CREATE)
    plan = build.plan()
    assert ops(plan, "vm/net/") == ["create", "record", "unpause", "wait-sentinel"]
    assert args(plan, "vm/net/wait-sentinel") == {"node": "booted"}


def test_vm_create_paused_is_never_unpaused(build: Builder) -> None:
    build.vm("held", state="paused", bootSentinel="booted")
    build.change("VM", "held", "held", Action.CREATE)
    assert ops(build.plan(), "vm/held/") == ["create", "record"]


def test_vm_delete_shuts_down_then_destroys(build: Builder) -> None:
    build.running("old", 3)
    build.change("VM", "old", "old", Action.DELETE)
    assert ops(build.plan(), "vm/old/") == ["shutdown", "destroy"]


def test_vm_restart_rebuilds_with_every_device_and_reapplies_its_rules(build: Builder) -> None:
    build.vm("web")
    build.disk("web-root", "web")
    build.nic("web-eth", "web")
    build.rule("web-rpc", "web", "myself -> 0:80")
    build.running("web", 4)
    build.change("VM", "web", "web", Action.RESTART, FieldChange("spec.kernel", "/a", "/k", "restart"))
    plan = build.plan()
    assert ops(plan, "vm/web/") == ["shutdown", "destroy", "create", "record", "unpause"]
    # The disk and NIC are in the new domain's build (its create), as xl builds; no attach.
    assert {s.id for s in plan.steps if s.kind != "VM"} == {"v4v/web-firewall/fw-start"}


def test_vm_update_maps_live_fields_to_their_xl_steps(build: Builder) -> None:
    build.vm("web", memory=512, vcpus=2, maxVcpus=4, state="paused", xenstoreData={"vm-data/a": "1"})
    build.running("web", 4)
    build.change("VM", "web", "web", Action.UPDATE,
                 FieldChange("spec.memory", 256, 512, "live"), FieldChange("spec.vcpus", 1, 2, "live"),
                 FieldChange("spec.xenstoreData.vm-data/a", None, "1", "live"), FieldChange("spec.state", "running", "paused", "live"))
    plan = build.plan()
    assert ops(plan, "vm/web/") == ["mem-set", "vcpu-set", "xenstore-write", "pause", "record"]
    assert args(plan, "vm/web/mem-set") == {"memory": 512}
    assert args(plan, "vm/web/vcpu-set") == {"vcpus": 2}
    assert args(plan, "vm/web/xenstore-write") == {"data": {"vm-data/a": "1"}}


def test_pending_restart_fields_get_no_step_and_no_record(build: Builder) -> None:
    build.vm("web", memory=512)
    build.running("web", 4)
    build.change("VM", "web", "web", Action.UPDATE, FieldChange("spec.memory", 256, 512, "live"),
                 FieldChange("spec.kernel", "/old", "/k", "restart"), pending=True)
    plan = build.plan()
    assert [s.id for s in plan.steps] == ["vm/web/mem-set"]


def test_only_pending_fields_means_no_host_step_at_all(build: Builder) -> None:
    build.vm("web")
    build.running("web", 4)
    build.change("VM", "web", "web", Action.UPDATE, FieldChange("spec.kernel", "/old", "/k", "restart"), pending=True)
    plan = build.plan()
    assert plan.steps == () and plan.generations == () and plan.has_changes


def test_pending_device_change_is_reported_not_replugged(build: Builder) -> None:
    build.vm("web")
    build.running("web", 4)
    build.disk("web-disk-51728", "web", vdev="xvdb", table=build.observed_disks)
    build.change("NIC", "web-nic-0", "web", Action.UPDATE, FieldChange("spec.type", "vif", "ioemu", "restart"), pending=True)
    plan = build.plan()
    assert plan.steps == () and plan.has_changes


def test_disk_delete_detaches_by_the_vdev_the_host_shows(build: Builder) -> None:
    build.vm("web")
    build.running("web", 4)
    build.disk("web-disk-51728", "web", vdev="xvdb", table=build.observed_disks)
    build.change("Disk", "web-disk-51728", "web", Action.DELETE)
    plan = build.plan()
    assert [s.id for s in plan.steps] == ["disk/web-disk-51728/detach"]
    assert args(plan, "disk/web-disk-51728/detach") == {"vdev": "xvdb"}


def test_disk_and_nic_updates_are_detach_then_attach(build: Builder) -> None:
    build.vm("web")
    build.running("web", 4)
    build.disk("web-root", "web", format="qcow2")
    build.nic("web-eth", "web", index=1, bridge="xenbr1", mtu=9000)
    build.change("Disk", "web-root", "web", Action.UPDATE, FieldChange("spec.format", "raw", "qcow2", "destructive"))
    build.change("NIC", "web-eth", "web", Action.UPDATE, FieldChange("spec.bridge", "xenbr0", "xenbr1", "live"),
                 FieldChange("spec.mtu", 1500, 9000, "live"))
    plan = build.plan()
    assert ops(plan, "disk/web-root/") == ["detach", "attach"]
    assert ops(plan, "nic/web-eth/") == ["detach", "attach"]
    assert args(plan, "nic/web-eth/detach") == {"index": 1}


def test_nic_interface_settings_alone_are_set_in_place(build: Builder) -> None:
    build.vm("web")
    build.running("web", 4)
    build.nic("web-eth", "web", index=1, mtu=9000, promiscuous=True, ethtool={"tso": "off"})
    build.change("NIC", "web-eth", "web", Action.UPDATE, FieldChange("spec.mtu", 1500, 9000, "live"),
                 FieldChange("spec.promiscuous", False, True, "live"), FieldChange("spec.ethtool.tso", "on", "off", "live"))
    plan = build.plan()
    assert ops(plan, "nic/web-eth/") == ["set"]  # no unplug: the guest keeps its link
    assert args(plan, "nic/web-eth/set") == {"index": 1, "mtu": 9000, "promiscuous": True, "ethtool": {"tso": "off"}}


def test_a_pci_option_change_detaches_the_rules_devices_by_address(build: Builder) -> None:
    # The observed device at backend index 0 is named like the nested rule `web-pci-0`
    # but is another device; a match rule names no bdf at all.
    build.vm("web")
    build.running("web", 4)
    build.pci_rule("web-pci-0", "web", "0000:00:02.0", table=build.observed_pci)
    build.pci_rule("web-pci-1", "web", "0000:00:1f.6", table=build.observed_pci)
    build.pci_rule("web-pci-0", "web", "0000:00:1f.6", permissive=True)
    build.change("PCIPassthrough", "web-pci-0", "web", Action.UPDATE, FieldChange("spec.permissive", False, True, "live"))
    plan = build.plan()
    assert ops(plan, "pci/web-pci-0/") == ["detach", "pci-assignable-add", "attach"]
    assert args(plan, "pci/web-pci-0/detach") == {"devices": ["0000:00:1f.6"]}


def test_pci_create_binds_to_pciback_and_the_build_takes_it(build: Builder) -> None:
    build.vm("gpu")
    build.pci_rule("gpu-igd", "gpu", "0000:00:02.0")
    build.create_all()
    plan = build.plan()
    assert ops(plan, "pci/gpu-igd/") == ["pci-assignable-add"]  # no attach: in the build (xl.cfg pci=)
    assert args(plan, "pci/gpu-igd/pci-assignable-add") == {"devices": ["0000:00:02.0"]}
    assert args(plan, "vm/gpu/create") == {}  # a bdf rule needs no address in the step


def test_the_create_step_carries_the_addresses_match_rules_resolved_to(build: Builder) -> None:
    build.vm("gpu")
    build.vm("net", state="running")
    build.pci_rule("gpu-igd", "gpu", "0000:00:02.0")
    build.pci["gpu-display"] = PCIPassthrough.model_validate(
        {"metadata": {"name": "gpu-display"}, "spec": {"vm": "gpu", "match": {"class": "0x0300"}}})
    build.pci["net-wifi"] = PCIPassthrough.model_validate(
        {"metadata": {"name": "net-wifi"}, "spec": {"vm": "net", "match": {"class": "0x0280"}, "seize": False}})
    build.change("VM", "gpu", "gpu", Action.CREATE)
    build.change("PCIPassthrough", "gpu-display", "gpu", Action.CREATE, FieldChange("devices", None, ["0000:01:00.0"], "live"))
    build.change("PCIPassthrough", "gpu-igd", "gpu", Action.CREATE)
    build.change("VM", "net", "net", Action.CREATE)
    build.change("PCIPassthrough", "net-wifi", "net", Action.CREATE)  # from a dump: unresolved
    plan = build.plan()
    assert args(plan, "vm/gpu/create") == {"pci": {"gpu-display": ["0000:01:00.0"]}}
    assert args(plan, "vm/net/create") == {}  # the create resolves it against the host then
    assert [s.id for s in plan.steps if s.kind == "PCIPassthrough"] == [
        "pci/gpu-display/pci-assignable-add", "pci/gpu-igd/pci-assignable-add"]  # seize: false binds nothing


def test_greedy_rule_of_a_stopped_vm_is_only_rebound(build: Builder) -> None:
    build.vm("net", state="stopped")
    build.pci_rule("net-eth", "net", "0000:03:00.0", greedy=True)
    build.change("PCIPassthrough", "net-eth", "net", Action.UPDATE, FieldChange("driver[0000:03:00.0]", "e1000e", "pciback", "live"))
    plan = build.plan()
    assert [s.id for s in plan.steps] == ["pci/net-eth/pci-assignable-add"]
    assert args(plan, "pci/net-eth/pci-assignable-add") == {"devices": ["0000:03:00.0"]}


def test_v4v_rules_apply_and_stale_entries_are_removed(build: Builder) -> None:
    build.vm("web")
    build.running("web", 4)
    build.rule("web-rpc", "web", "myself -> 0:80")
    entries = ["--dom-in 4 --dom-out 0 --port-out 80 -j ACCEPT"]
    build.change("V4VRule", "web-rpc", "web", Action.UPDATE, FieldChange("entries", [], entries, "live"))
    build.change("V4VRule", "web-firewall-stale", "web", Action.DELETE, FieldChange("entries", ["--dom-in 4 -j ACCEPT"], None, "live"))
    plan = build.plan()
    assert [s.id for s in plan.steps] == ["v4v/web-firewall-stale/fw-remove", "v4v/web-rpc/fw-apply"]
    assert args(plan, "v4v/web-firewall-stale/fw-remove") == {"entries": ["--dom-in 4 -j ACCEPT"]}


def test_seize_false_never_binds_to_pciback(build: Builder) -> None:
    build.vm("net")
    build.pci_rule("net-wifi", "net", "0000:02:00.0", seize=False)
    build.pci_rule("net-usb", "net", "0000:00:14.0", seize=False, greedy=True)  # greedy binds regardless
    build.create_all()
    plan = build.plan()
    assert ops(plan, "pci/net-usb/") == ["pci-assignable-add"]  # a new VM: built with both
    assert not [s for s in plan.steps if s.name == "net-wifi"]
    kept = type(build)()  # onto a VM that runs: hot-plugged
    kept.vm("net")
    kept.running("net", 3)
    kept.pci_rule("net-wifi", "net", "0000:02:00.0", seize=False)
    kept.pci_rule("net-usb", "net", "0000:00:14.0", seize=False, greedy=True)
    kept.change("PCIPassthrough", "net-usb", "net", Action.CREATE)
    kept.change("PCIPassthrough", "net-wifi", "net", Action.CREATE)
    plan = kept.plan()
    assert ops(plan, "pci/net-wifi/") == ["attach"]
    assert ops(plan, "pci/net-usb/") == ["pci-assignable-add", "attach"]


def test_host_changes_table_and_release(build: Builder) -> None:
    build.change("V4VRule", "firewall-table", HOST, Action.UPDATE, FieldChange("entries", ["-j ACCEPT"], None, "live"),
                 FieldChange("default", None, "-j REJECT, last", "live"))
    build.change("PCIPassthrough", "pciback-0000-00-14-0", HOST, Action.DELETE,
                 FieldChange("driver[0000:00:14.0]", "pciback", "xhci_hcd", "live"))
    plan = build.plan()
    assert args(plan, "v4v/firewall-table/fw-table") == {"default": True, "entries": ["-j ACCEPT"]}
    assert args(plan, "pci/pciback-0000-00-14-0/pci-assignable-remove") == {"devices": ["0000:00:14.0"]}
