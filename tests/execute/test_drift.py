"""Drift on a converged simulated host, then `apply` converges it again (level-based):
memory moved with the toolstack, a NIC unplugged, a firewall entry deleted, a PCI device
given back to its host driver; a VM removed from the manifests is shut down; a domain
the reconciler did not create is never touched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.model import VM
from reconciler.model.host import FirewallEntry
from reconciler.ports import HostPorts
from tests.execute.site import Cli, Site

NIC_BDF = "0000:00:1f.6"  # the simulated laptop's I219 Ethernet, driver e1000e

WEB = f"""\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: web}}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 512
  maxMemory: 1024
  type: web
  disks: [{{vdev: xvda, target: /srv/web.img}}]
  nics: [{{bridge: xenbr0, type: vif}}]
  pci: [{{bdf: "{NIC_BDF}"}}]
  v4vRules: ["myself -> 0:80"]
"""
DB = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: db}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 256
  type: db
  disks: [{vdev: xvda, target: /srv/db.img}]
  nics: [{bridge: xenbr0, type: vif}]
  v4vRules: ["dom-type=web -> myself:5432"]
"""

@pytest.fixture
def site(served: Callable[..., Any], cli: Cli, write_manifest: Callable[[str, str], Path], state_dir: Path) -> Site:
    write_manifest("web.yaml", WEB)
    made = Site(served(), write_manifest("db.yaml", DB), cli, state_dir)
    made.apply()
    made.assert_converged()
    return made


def test_memory_moved_by_the_toolstack_is_set_back(site: Site) -> None:
    web = site.domains()["web"].domid
    site.host.run(lambda p: p.toolstack.mem_set(web, 768))
    assert site.domains()["web"].memory_mib == 768
    out = site.apply()
    assert "vm/web/mem-set: done" in out and "\nApply complete: 1 updated, 0 failed (" in out
    assert site.domains()["web"].memory_mib == 512
    assert site.domains()["web"].domid == web  # changed live, not rebuilt
    site.assert_converged()


def test_unplugged_nic_is_plugged_again(site: Site) -> None:
    web = site.domains()["web"].domid

    async def vifs(ports: HostPorts) -> list[str]:
        device = f"/local/domain/{web}/device"
        kinds = await ports.xenstore.directory(device)  # libxl removes an empty vif/ directory
        return sorted(await ports.xenstore.directory(f"{device}/vif")) if "vif" in kinds else []

    site.host.run(lambda p: p.toolstack.detach_nic(web, 0))
    assert site.host.run(vifs) == []
    out = site.apply()
    assert "nic/web-nic0/attach: done" in out
    assert site.host.run(vifs) == ["0"]
    site.assert_converged()


def test_deleted_firewall_entry_is_inserted_again(site: Site) -> None:
    web, db = site.domains()["web"].domid, site.domains()["db"].domid
    entry = FirewallEntry(web, db, None, 5432)  # dom-type=web -> db:5432, resolved
    assert entry in site.firewall()
    site.host.run(lambda p: p.firewall.delete(entry))
    assert entry not in site.firewall()
    out = site.apply()
    assert "v4v/db-v4v-8e4c5e7b/fw-apply: done" in out
    assert entry in site.firewall()
    site.assert_converged()


def test_pci_device_given_back_to_its_host_driver_is_seized_again(site: Site) -> None:
    web = site.domains()["web"].domid

    async def take_back(ports: HostPorts) -> None:
        await ports.toolstack.detach_pci(web, NIC_BDF)
        await ports.pciback.assignable_remove(NIC_BDF, rebind=True)  # e1000e binds it again

    async def driver(ports: HostPorts) -> str | None:
        return next(d.driver for d in await ports.pciback.inventory() if d.bdf == NIC_BDF)

    site.host.run(take_back)
    assert site.host.run(driver) == "e1000e"
    out = site.apply()
    assert "pci/web-pci-0000-00-1f-6/pci-assignable-add: done" in out and "pci/web-pci-0000-00-1f-6/attach: done" in out
    assert site.host.run(driver) == "pciback"
    site.assert_converged()


def test_vm_removed_from_the_manifests_is_shut_down_with_its_firewall_entries(site: Site) -> None:
    db = site.domains()["db"].domid
    (site.folder / "db.yaml").unlink()
    out = site.apply()
    assert "vm/db/shutdown: done" in out
    # The plan's summary and apply's count say the same words: a disk is detached, never deleted.
    assert "Plan: 0 to create, 0 to change live, 0 needs restart, 1 to destroy, 1 to detach, 1 to unplug, 1 to remove." in out
    # After the last step line only the count: no line per resource repeating the step lines.
    assert out.split("\n[5/5] ", 1)[1].splitlines()[1:] == [
        "", "Apply complete: 1 destroyed, 1 detached, 1 unplugged, 1 removed, 0 failed (5 steps done)."]
    assert "deleted" not in out
    assert "db" not in site.domains() and "web" in site.domains()
    assert not [e for e in site.firewall() if db in (e.dom_in, e.dom_out)]
    site.assert_converged()


def test_domain_the_reconciler_did_not_create_is_untouched(site: Site) -> None:
    legacy = VM.model_validate({"metadata": {"name": "legacy"}, "spec": {"virt": "pv", "kernel": "/k", "memory": 128}})

    async def start(ports: HostPorts) -> int:
        domid = await ports.toolstack.create(legacy, paused=False)
        return domid

    domid = site.host.run(start)
    code, out, _ = site.cli("apply", str(site.folder))
    assert code == 0 and "Unmanaged domains (listed once, never touched): legacy" in out
    assert "legacy" not in out.split("Unmanaged domains")[0]  # no step names it
    after = site.domains()["legacy"]
    assert (after.domid, after.power, after.memory_mib) == (domid, "running", 128)
