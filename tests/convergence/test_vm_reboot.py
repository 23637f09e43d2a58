"""A guest that rebooted, through the real CLI on a host served by `reconciler sim
serve` (issue 13). Domains are built as with `xl create -e`: no xl monitor rebuilds a
rebooting guest behind the reconciler (libxl's destroy would take /vm/<uuid>, and with it
the managed marker and record). `reconciler sim reboot NAME` reboots a running guest in
a process of its own, and a `reboot` request through Xen's own `xenstore-write` does the
same: the domain stays shut down with reason reboot. Then `plan --detailed-exitcode`
exits 2 and names the reboot, `apply` rebuilds it (new domid, managed, its record
written again), and `plan` says "No changes"."""

from __future__ import annotations

import pytest

from tests.convergence.conftest import Site, reconciler

SET = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 64
  lifecycle: {onReboot: ACTION}
  nics: [{bridge: xenbr0}]
  xenstoreData: {vm-data/role: web}
---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: bystander}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64}
"""


def _clean(site: Site) -> None:
    plan = site.plan()
    assert (plan.returncode, "No changes." in plan.stdout) == (0, True), plan.stdout + plan.stderr


@pytest.mark.parametrize("how", ["sim-reboot", "xenstore-request"])
def test_reboot_is_planned_and_rebuilt_with_its_marker(how: str) -> None:
    site = Site(SET.replace("ACTION", "restart"))
    try:
        assert site.apply().returncode == 0
        before = site.served.observe()["domains"]["web"]
        if how == "sim-reboot":
            site.served.sim("reboot", "web")
        else:  # what `xl reboot` writes; the guest acknowledges, then shuts down to reboot
            site.served.xs("xenstore-write", f"/local/domain/{before['domid']}/control/shutdown", "reboot")
            for _ in range(600):
                if "rebooted" in site.served.sim("list"):
                    break
        listing = site.served.sim("list")
        assert any(line.split()[0] == "web" and line.split()[-1] == "rebooted" for line in listing.splitlines()[1:]), listing
        seen = site.served.observe()["domains"]["web"]
        assert (seen["domid"], seen["power"], seen["managed"]) == (before["domid"], "rebooted", True)
        plan = site.plan()
        assert plan.returncode == 2, plan.stdout + plan.stderr
        assert "-/+ VM web [restart]: rebooted; lifecycle.onReboot restart: destroyed and built again" in plan.stdout, plan.stdout
        assert "bystander" not in plan.stdout
        applied = site.apply()
        assert applied.returncode == 0, applied.stdout + applied.stderr
        after = site.served.observe()["domains"]["web"]
        assert after["domid"] != before["domid"] and after["power"] == "running"
        assert after["managed"] is True and after["digest"] == before["digest"]  # marker and record written again
        _clean(site)
    finally:
        site.close()


def test_preserved_reboot_is_left_until_destroyed() -> None:
    site = Site(SET.replace("ACTION", "preserve"))
    try:
        assert site.apply().returncode == 0
        site.served.sim("reboot", "web")
        plan = site.plan()
        assert plan.returncode == 2 and "Steps" not in plan.stdout, plan.stdout + plan.stderr
        assert plan.stdout.endswith("Nothing to apply, but the host does not match: VM web rebooted and is preserved "
                                    "for inspection (lifecycle.onReboot: preserve).\n"), plan.stdout
        site.served.sim("destroy", "web")  # the operator is done with it
        assert site.apply().returncode == 0
        _clean(site)
    finally:
        site.close()


def test_reboot_of_a_guest_that_is_not_running_is_refused() -> None:
    site = Site(SET.replace("ACTION", "restart"))
    try:
        assert site.apply().returncode == 0
        site.served.sim("reboot", "web")
        again = reconciler("sim", "reboot", "web", "--state", str(site.served.state))
        assert again.returncode == 1 and "only a running guest can reboot itself" in again.stderr, again.stderr
        assert again.stderr.count("\n") == 1 and "Traceback" not in again.stderr
    finally:
        site.close()


def test_powered_off_guest_is_built_again_whatever_on_poweroff_says() -> None:
    """A guest powered off through Xen's own `xenstore-write control/shutdown poweroff`
    with `onPoweroff: preserve`: the domain stays shut down; the manifest says running,
    so the plan names the power-off and apply builds the VM again."""
    site = Site(SET.replace("onReboot: ACTION", "onPoweroff: preserve"))
    try:
        assert site.apply().returncode == 0
        before = site.served.observe()["domains"]["web"]
        site.served.xs("xenstore-write", f"/local/domain/{before['domid']}/control/shutdown", "poweroff")
        for _ in range(600):
            if site.served.observe()["domains"]["web"]["power"] == "shutdown":
                break
        assert site.served.observe()["domains"]["web"]["power"] == "shutdown"
        plan = site.plan()
        assert plan.returncode == 2, plan.stdout + plan.stderr
        assert ("-/+ VM web [restart]: powered off; lifecycle.onPoweroff preserve: the domain is destroyed, and built "
                "again as state is running") in plan.stdout, plan.stdout
        assert site.apply().returncode == 0
        assert site.served.observe()["domains"]["web"]["domid"] != before["domid"]
        _clean(site)
    finally:
        site.close()
