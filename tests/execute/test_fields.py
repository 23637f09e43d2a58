"""Every field the reconciler sets is observed back (DESIGN 7), on the simulated host:
apply, then `plan --detailed-exitcode` exits 0; change one field, the plan names exactly
that change with the step Xen allows; apply; empty again. Drift is made by hand as an
operator would (`reconciler sim link`, Xen's `xenstore-write`, in processes of their own)
and the plan names it. Covered: a NIC's MTU, promiscuous mode and ethtool settings (set
on the running interface, no unplug), relative Disk/NIC scripts (normalised as libxl
runs them), PCI option changes on a running VM (detach, then attach with the new options)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from reconciler.ports import HostPorts

if TYPE_CHECKING:
    from reconciler.model.host import NetDevice

NIC_BDF = "0000:00:1f.6"  # the simulated laptop's I219 Ethernet (class 0x0200), driver e1000e

VM = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 256
"""
NIC_SETTINGS = """\
  nics:
    - {bridge: xenbr0, type: vif, mtu: 9000, promiscuous: true, ethtool: {tso: "off", sg: "on"}}
    - {bridge: xenbr0, type: vif}
"""
SCRIPTS = """\
  disks: [{vdev: xvda, target: /srv/web.img, script: block}]
  nics: [{bridge: xenbr0, type: vif, script: vif-bridge}, {bridge: xenbr0, type: vif, script: vif-route}]
"""
PCI = """\
---
apiVersion: xen.reconciler/v1
kind: PCIPassthrough
metadata: {name: ether}
spec: {vm: web, match: {class: "0x0200"}, permissive: true}
"""

Cli = Callable[..., tuple[int, str, str]]


class Site:
    def __init__(self, host: Any, folder: Path, cli: Cli, state: Path) -> None:
        self.host, self.folder, self.cli, self.state = host, folder, cli, state

    def edit(self, old: str, new: str) -> None:
        path = self.folder / "web.yaml"
        text = path.read_text()
        assert text.count(old) == 1, old
        path.write_text(text.replace(old, new))

    def plan(self, code: int) -> str:
        got, out, err = self.cli("plan", str(self.folder), "--detailed-exitcode")
        assert got == code, out + err
        return out

    def apply(self) -> str:
        code, out, err = self.cli("apply", str(self.folder))
        assert code == 0 and "failed" not in out.split("Apply:")[-1].replace("0 failed", ""), out + err
        return out

    def converged(self) -> None:
        assert "No changes." in self.plan(0)

    def changes(self) -> tuple[list[str], list[str]]:
        """(the change lines `~ ...`, the step ids) of the current plan, which must have changes."""
        out = self.plan(2)
        fields = [line.strip() for line in out.splitlines() if re.match(r"\s+[~+-] spec\.", line)]
        steps = re.findall(r"(?:nic|disk|pci|vm|v4v)/[\w.-]+/[\w-]+", out.split("Steps,")[1])
        return fields, sorted(steps)

    def interfaces(self) -> dict[str, NetDevice]:
        listed: list[NetDevice] = self.host.run(lambda p: p.netdev.list())
        return {d.name: d for d in listed}

    def domid(self) -> int:
        return next(d.domid for d in self.host.run(lambda p: p.toolstack.list_domains()) if d.name == "web")

    def read(self, path: str) -> str:
        async def read(ports: HostPorts) -> bytes:
            return await ports.xenstore.read(path)
        value: bytes = self.host.run(read)
        return value.decode()

    def sim(self, *argv: str) -> None:
        """`reconciler sim ... --state DIR` in a process of its own, against the served host."""
        done = subprocess.run([sys.executable, "-m", "reconciler", "sim", *argv, "--state", str(self.state)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr

    def xs(self, *argv: str) -> None:
        env = {**os.environ, "XENSTORED_PATH": str(self.state / "xenstored.sock")}
        done = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr


@pytest.fixture
def make_site(served: Callable[..., Any], cli: Cli, write_manifest: Callable[[str, str], Path],
              state_dir: Path) -> Callable[[str], Site]:
    """`make_site(devices)`: VM `web` with `devices` applied; the plan after it must be empty."""

    def make(devices: str) -> Site:
        made = Site(served(), write_manifest("web.yaml", VM + devices), cli, state_dir)
        made.apply()
        made.converged()
        return made

    return make


@pytest.fixture
def nic_site(make_site: Callable[[str], Site]) -> Site:
    return make_site(NIC_SETTINGS)


@pytest.fixture
def script_site(make_site: Callable[[str], Site]) -> Site:
    return make_site(SCRIPTS)


@pytest.fixture
def pci_site(make_site: Callable[[str], Site]) -> Site:
    return make_site(PCI)


# ---- the vif interface: MTU, promiscuous mode, ethtool ----------------------------------


def test_nic_interface_settings_reach_the_host_and_converge(nic_site: Site) -> None:
    vif = nic_site.interfaces()[f"vif{nic_site.domid()}.0"]
    assert (vif.mtu, vif.promiscuous, vif.ethtool["tso"], vif.ethtool["sg"]) == (9000, True, "off", "on")
    other = nic_site.interfaces()[f"vif{nic_site.domid()}.1"]
    assert (other.mtu, other.promiscuous) == (1500, False)


@pytest.mark.parametrize(("old", "new", "field"), [
    ("mtu: 9000", "mtu: 1400", "~ spec.mtu: 9000 -> 1400"),
    ("promiscuous: true", "promiscuous: false", "~ spec.promiscuous: true -> false"),
    ('tso: "off"', 'tso: "on"', '~ spec.ethtool.tso: "off" -> "on"'),
])
def test_a_nic_interface_setting_change_is_one_live_set_step(nic_site: Site, old: str, new: str, field: str) -> None:
    nic_site.edit(old, new)
    assert nic_site.changes() == ([field], ["nic/web-nic0/set"])  # no detach: the guest keeps its link
    backend = nic_site.read(f"/local/domain/{nic_site.domid()}/device/vif/0/backend")
    out = nic_site.apply()
    assert "nic/web-nic0/set: done" in out and "/detach" not in out
    assert nic_site.read(f"/local/domain/{nic_site.domid()}/device/vif/0/backend") == backend
    nic_site.converged()


def test_interface_drift_by_hand_is_seen_and_undone(nic_site: Site) -> None:
    vif = f"vif{nic_site.domid()}.0"
    nic_site.sim("link", vif, "--mtu", "1280", "--promisc", "off", "--offload", "tso=on", "--offload", "gso=off")
    fields, steps = nic_site.changes()
    # gso is not in the manifest: the host's to choose, not drift.
    assert fields == ["~ spec.mtu: 1280 -> 9000", "~ spec.promiscuous: false -> true", '~ spec.ethtool.tso: "on" -> "off"']
    assert steps == ["nic/web-nic0/set"]
    nic_site.apply()
    nic_site.converged()
    vif_now = nic_site.interfaces()[vif]
    assert (vif_now.mtu, vif_now.promiscuous, vif_now.ethtool["tso"], vif_now.ethtool["gso"]) == (9000, True, "off", "off")


def test_a_replugged_nic_gets_its_interface_settings_again(nic_site: Site) -> None:
    nic_site.edit("bridge: xenbr0, type: vif, mtu: 9000", "bridge: xenbr1, type: vif, mtu: 9000")
    fields, steps = nic_site.changes()
    assert fields == ['~ spec.bridge: "xenbr0" -> "xenbr1"']
    assert steps == ["nic/web-nic0/attach", "nic/web-nic0/detach"]
    nic_site.apply()
    nic_site.converged()
    vif = nic_site.interfaces()[f"vif{nic_site.domid()}.0"]
    assert (vif.mtu, vif.promiscuous, vif.ethtool["tso"]) == (9000, True, "off")


# ---- scripts -------------------------------------------------------------------------------


def test_relative_scripts_are_shown_and_compared_as_libxl_runs_them(script_site: Site) -> None:
    script_site.edit("script: vif-route", "script: vif-nat")
    fields, steps = script_site.changes()
    assert fields == ['~ spec.script: "/etc/xen/scripts/vif-route" -> "/etc/xen/scripts/vif-nat"']
    assert steps == ["nic/web-nic1/attach", "nic/web-nic1/detach"]
    script_site.apply()
    script_site.converged()


def test_a_script_changed_behind_our_back_is_drift(script_site: Site) -> None:
    script_site.xs("xenstore-write", f"/local/domain/0/backend/vif/{script_site.domid()}/1/script", "/etc/xen/scripts/vif-nat")
    fields, _ = script_site.changes()
    assert fields == ['~ spec.script: "/etc/xen/scripts/vif-nat" -> "/etc/xen/scripts/vif-route"']
    script_site.apply()
    script_site.converged()


# ---- PCI options on a running VM -------------------------------------------------------------


@pytest.mark.parametrize(("old", "new", "field"), [
    ("permissive: true}", "permissive: false}", "~ spec.permissive: true -> false"),
    ("permissive: true}", "permissive: true, guestSlot: '0x05'}", "+ spec.guestSlot = 5"),
    ("permissive: true}", "permissive: true, msitranslate: true}", "~ spec.msitranslate: false -> true"),
    ("permissive: true}", "permissive: true, powerMgmt: true}", "~ spec.powerMgmt: false -> true"),
])
def test_a_pci_option_change_is_detach_then_attach(pci_site: Site, old: str, new: str, field: str) -> None:
    pci_site.edit(old, new)
    assert pci_site.changes() == ([field], ["pci/ether/attach", "pci/ether/detach", "pci/ether/pci-assignable-add"])
    pci_site.apply()
    pci_site.converged()


def test_pci_options_changed_behind_our_back_are_drift(pci_site: Site) -> None:
    opts = f"/local/domain/0/backend/pci/{pci_site.domid()}/0/opts-0"
    pci_site.xs("xenstore-write", opts, pci_site.read(opts).replace("permissive=1", "permissive=0"))
    fields, _ = pci_site.changes()
    assert fields == ["~ spec.permissive: false -> true"]
    pci_site.apply()
    pci_site.converged()
    assert "permissive=1" in pci_site.read(opts)


def test_the_simulated_host_refuses_a_device_assigned_elsewhere(pci_site: Site) -> None:
    domid = pci_site.domid()

    async def attach_twice(ports: HostPorts) -> str:
        try:
            await ports.toolstack.attach_pci(domid, NIC_BDF)
        except Exception as exc:  # noqa: BLE001 - the message is what is checked
            return str(exc)
        return "attached"

    assert "already assigned" in pci_site.host.run(attach_twice)


def test_interface_settings_persist_with_the_host(cli: Cli, write_manifest: Callable[[str, str], Path],
                                                  state_dir: Path) -> None:
    # No `sim serve`: apply and `sim link` each embed the host and save it on exit; plan
    # reads the saved state (the read-only view), which must show the interfaces as left.
    folder = write_manifest("web.yaml", VM + NIC_SETTINGS)
    code, out, err = cli("apply", str(folder))
    assert code == 0, out + err
    code, out, err = cli("plan", str(folder), "--detailed-exitcode")
    assert code == 0 and "No changes." in out, out + err
    done = subprocess.run([sys.executable, "-m", "reconciler", "sim", "link", "vif1.0", "--mtu", "1280", "--state",
                           str(state_dir)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    code, out, err = cli("plan", str(folder), "--detailed-exitcode")
    assert code == 2 and "~ spec.mtu: 1280 -> 9000" in out, out + err
