"""A crashed VM per its `lifecycle.onCrash` (issue 12), through the real CLI on a host
served by `reconciler sim serve`: `reconciler sim crash NAME` crashes a running guest in
a process of its own, either handled (the toolstack applies onCrash as xl's domain-death
handling does) or `--unhandled` (the crashed domain stays, as before xl acts or with no
xl watching it). Then `plan --detailed-exitcode` exits 2 and names the VM, `apply` exits
0, and `plan` says "No changes" (for `preserve`: once the operator destroyed the domain
left for inspection)."""

from __future__ import annotations

import pytest

from tests.convergence.conftest import Site

SET = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 64
  lifecycle: {onCrash: ACTION}
  nics: [{bridge: xenbr0}]
  xenstoreData: {vm-data/role: web}
---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: bystander}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64}
"""
KINDS = ["destroy", "restart", "preserve", "rename-restart", "coredump-destroy", "coredump-restart"]


def _converges(site: Site) -> None:
    applied = site.apply()
    assert applied.returncode == 0, applied.stdout + applied.stderr
    plan = site.plan()
    assert (plan.returncode, "No changes." in plan.stdout) == (0, True), plan.stdout + plan.stderr
    assert "bystander" not in plan.stdout.replace("Unmanaged", "")  # never touched


@pytest.mark.parametrize("action", KINDS)
def test_unhandled_crash_is_planned_per_on_crash_and_converges(action: str) -> None:
    site = Site(SET.replace("ACTION", action))
    try:
        assert site.apply().returncode == 0
        site.served.sim("crash", "web", "--unhandled")
        plan = site.plan()
        assert plan.returncode == 2, plan.stdout + plan.stderr
        if action == "preserve":
            assert "No changes" not in plan.stdout and "Steps" not in plan.stdout, plan.stdout
            assert plan.stdout.endswith("Nothing to apply, but the host does not match: VM web crashed and is preserved "
                                        "for inspection (lifecycle.onCrash: preserve).\n"), plan.stdout
            applied = site.apply()
            assert applied.returncode == 0, applied.stdout + applied.stderr
            assert site.plan().returncode == 2  # still left for inspection
            assert "web" in site.served.sim("list") and "crashed" in site.served.sim("list")
            site.served.sim("destroy", "web")  # the operator is done with it
        else:
            assert f"-/+ VM web [restart]: crashed; lifecycle.onCrash {action}: " in plan.stdout, plan.stdout
        _converges(site)
    finally:
        site.close()


@pytest.mark.parametrize("action", KINDS)
def test_handled_crash_converges(action: str) -> None:
    site = Site(SET.replace("ACTION", action))
    try:
        assert site.apply().returncode == 0
        site.served.sim("crash", "web")
        listing = site.served.sim("list")
        plan = site.plan()
        assert plan.returncode == 2, plan.stdout + plan.stderr
        if action == "preserve":
            assert "VM web crashed and is preserved for inspection" in plan.stdout, plan.stdout
            site.served.sim("destroy", "web")
        else:
            assert "+ VM web [live]: not on the host: created and started" in plan.stdout, listing + plan.stdout
            if action == "rename-restart":  # xl keeps the crashed domain, renamed, with a new uuid: not ours
                assert "Unmanaged domains (listed once, never touched): web-" in plan.stdout, plan.stdout
        applied = site.apply()
        assert applied.returncode == 0, applied.stdout + applied.stderr
        plan = site.plan()
        assert (plan.returncode, "No changes." in plan.stdout) == (0, True), plan.stdout + plan.stderr
    finally:
        site.close()


def test_crash_of_a_dead_or_unknown_domain_is_refused() -> None:
    from tests.convergence.conftest import reconciler

    site = Site(SET.replace("ACTION", "preserve"))
    try:
        assert site.apply().returncode == 0
        site.served.sim("crash", "web")
        again = reconciler("sim", "crash", "web", "--state", str(site.served.state))
        assert again.returncode == 1 and "only a live domain can crash" in again.stderr, again.stderr
        assert "Traceback" not in again.stderr
        unknown = reconciler("sim", "crash", "nobody", "--state", str(site.served.state))
        assert unknown.returncode == 1 and "no domain named 'nobody'" in unknown.stderr, unknown.stderr
    finally:
        site.close()


NDVM = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: net}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64, providesNetworkBackend: true, lifecycle: {onCrash: restart}}
---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: guest}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 64
  nics: [{backendVM: net}]
  disks: [{target: /img/guest.img, vdev: xvda, backendVM: net}]
"""


@pytest.mark.parametrize("how", [(), ("--unhandled",)])
def test_crashed_backend_vm_comes_back_and_its_guests_devices_are_replugged(how: tuple[str, ...]) -> None:
    site = Site(NDVM)
    try:
        assert site.apply().returncode == 0
        site.served.sim("crash", "net", *how)
        plan = site.plan()
        assert plan.returncode == 2, plan.stdout + plan.stderr
        for name in ("NIC guest-nic0", "Disk guest-xvda"):
            assert f"~ {name} [" in plan.stdout and "backend VM net restarted: re-plugged" in plan.stdout, plan.stdout
        if how:  # still crashed: unplugged before net's stop, plugged after its start
            lines = plan.stdout.splitlines()
            stage = {step: n for n, line in enumerate(lines) for step in line.split(". ", 1)[-1].split(", ")}
            assert stage["nic/guest-nic0/detach"] < stage["vm/net/shutdown"] < stage["vm/net/create"] < stage["nic/guest-nic0/attach"]
        applied = site.apply()
        assert applied.returncode == 0, applied.stdout + applied.stderr
        plan = site.plan()
        assert (plan.returncode, "No changes." in plan.stdout) == (0, True), plan.stdout + plan.stderr
        assert "guest" in site.served.sim("list")
    finally:
        site.close()
