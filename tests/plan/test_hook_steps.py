"""Hook steps in plans: where each VM hook runs in a start, a stop, a restart and a
removal, and what the text plan says about it (DESIGN 4, openxt.md 1.11)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.model.observed import DomainInfo
from reconciler.plan.changes import Action, FieldChange
from reconciler.plan.render_text import render_text
from tests.plan.test_steps import args, ops

if TYPE_CHECKING:
    from conftest import Builder

UUID = "00000000-0000-0000-0000-0000000000aa"
HOOKS = {"preBoot": "/h/pre", "postCreate": "/h/post", "onStateChange": "/h/state", "preDelete": "/h/del"}


def test_a_restart_says_stopped_then_runs_the_start_hooks_in_order(build: Builder) -> None:
    build.vm("web", uuid=UUID, hooks=HOOKS)
    build.running("web", 4)
    build.change("VM", "web", "web", Action.RESTART, FieldChange("spec.kernel", "/a", "/k", "restart"))
    plan = build.plan()
    # No preDelete: the VM stays in the manifests.
    assert ops(plan, "vm/web/") == ["shutdown", "destroy", "on-stopped", "pre-boot", "create", "record", "post-create",
                                    "unpause", "on-running"]
    assert args(plan, "vm/web/pre-boot") == {"argv": ["/h/pre", UUID], "hook": "preBoot", "timeout": 30.0}
    assert args(plan, "vm/web/on-stopped")["argv"] == ["/h/state", UUID, "stopped"]


def test_a_vm_built_paused_says_paused_and_a_stopped_one_stopped(build: Builder) -> None:
    build.vm("held", uuid=UUID, state="paused", hooks=HOOKS)
    build.change("VM", "held", "held", Action.CREATE)
    assert ops(build.plan(), "vm/held/") == ["pre-boot", "create", "record", "post-create", "on-paused"]
    other = type(build)()
    other.vm("off", uuid=UUID, state="stopped", hooks=HOOKS)
    other.running("off", 3)
    other.change("VM", "off", "off", Action.DELETE)
    assert ops(other.plan(), "vm/off/") == ["shutdown", "destroy", "on-stopped"]


def test_a_removed_vm_runs_the_pre_delete_hook_its_record_names(build: Builder) -> None:
    record = '{"version":1,"vm":{"hooks":{"preDelete":"/h/del","onStateChange":null}},"disks":{},"nics":{},"pci":{}}'
    build.running("gone", 3)
    build.domains["gone"] = DomainInfo("gone", 3, UUID, managed=True, applied=record)
    build.change("VM", "gone", "gone", Action.DELETE)
    plan = build.plan()
    assert ops(plan, "vm/gone/") == ["pre-delete", "shutdown", "destroy"]
    assert args(plan, "vm/gone/pre-delete")["argv"] == ["/h/del", UUID]
    assert ('  hook vm/gone/pre-delete: preDelete runs ["/h/del", "00000000-0000-0000-0000-0000000000aa"] (timeout 30 s) '
            "before the VM removed from the manifests is shut down (path from its last-applied record); a failure "
            "keeps it") in render_text(plan).splitlines()


def test_pre_boot_waits_for_what_the_vm_needs_and_comes_before_pciback(build: Builder) -> None:
    build.vm("net", bootSentinel="booted")
    build.vm("web", uuid=UUID, dependsOn=["net"], hooks={"preBoot": "/h/pre"})
    build.pci_rule("web-gpu", "web", "0000:00:02.0")
    build.create_all()
    edges = {(d.before, d.after): d.rule for d in build.plan().dependencies}
    assert edges[("vm/net/wait-sentinel", "vm/web/pre-boot")] == "pre_boot_after_needs"
    assert edges[("vm/web/pre-boot", "pci/web-gpu/pci-assignable-add")] == "pre_boot_before_pciback"


def test_the_timeout_the_plan_gets_is_on_each_hook_line(build: Builder) -> None:
    from reconciler.plan.build import build_plan
    from reconciler.plan.changes import Diff

    build.vm("web", uuid=UUID, hooks={"onStateChange": "/h/state"})
    build.change("VM", "web", "web", Action.CREATE)
    plan = build_plan(Diff(tuple(build.changes)), build.desired(), build.observed(), fingerprint="0" * 64,
                      hook_timeout_s=2.5)
    assert ('  hook vm/web/on-running: onStateChange runs ["/h/state", "00000000-0000-0000-0000-0000000000aa", '
            '"running"] (timeout 2.5 s) once the VM runs; a failure is logged and the apply goes on'
            ) in render_text(plan).splitlines()
