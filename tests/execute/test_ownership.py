"""What the reconciler manages it owns whole (DESIGN 7): drift in the `vm-data/` subtree,
in the v4v firewall table and in the pciback bindings it made is seen by `plan` and
undone by `apply`. Each drift is made the way an operator would: Xen's own
`xenstore-write`/`xenstore-rm` against the served host's xenstored socket, and
`reconciler sim fw|pci|destroy` (viptables, pciback, `xl destroy`) in processes of their
own; what those cannot say (a copy of one entry, an entry moved below the REJECT) goes
through the firewall port."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.model.host import FirewallEntry
from reconciler.ports import HostPorts
from tests.execute.site import Cli, Site

NIC_BDF = "0000:00:1f.6"  # the simulated laptop's I219 Ethernet, driver e1000e
USB_BDF = "0000:00:14.0"  # xHCI, driver xhci_hcd
WIFI_BDF = "0000:02:00.0"  # AX200, driver iwlwifi
AUDIO_BDF = "0000:00:1f.3"  # HD audio, driver snd_hda_intel
REJECT = FirewallEntry(target="REJECT")
DOM0 = FirewallEntry(0, 0)

WEB = f"""\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: web}}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 256
  type: web
  xenstoreData: {{vm-data/a: "1", vm-data/b: "2", vm-data/nested/c: "3"}}
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
  memory: 128
  type: db
  v4vRules: ["dom-type=web -> myself:5432", "myself -> 0:9000"]
"""
USBVM = f"""\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: usbvm}}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 128
  state: stopped
---
apiVersion: xen.reconciler/v1
kind: PCIPassthrough
metadata: {{name: usb}}
spec: {{vm: usbvm, bdf: "{USB_BDF}", greedy: true}}
"""

@pytest.fixture
def site(served: Callable[..., Any], cli: Cli, write_manifest: Callable[[str, str], Path], state_dir: Path) -> Site:
    write_manifest("web.yaml", WEB)
    write_manifest("usbvm.yaml", USBVM)
    made = Site(served(), write_manifest("db.yaml", DB), cli, state_dir)
    made.apply()
    made.assert_converged()
    return made


# ---- vm-data/ ------------------------------------------------------------------------


def test_tampered_removed_and_extra_vm_data_keys_are_set_back(site: Site) -> None:
    base = f"/local/domain/{site.domid('web')}/vm-data"
    site.xs("xenstore-write", f"{base}/a", "tampered", f"{base}/extra", "x")
    site.xs("xenstore-rm", f"{base}/b")
    site.drifted("spec.xenstoreData.vm-data/a", "spec.xenstoreData.vm-data/b", "spec.xenstoreData.vm-data/extra")
    out = site.apply()
    assert "vm/web/xenstore-write: done" in out
    assert site.vm_data("web") == {"a": b"1", "b": b"2", "nested/c": b"3"}
    site.assert_converged()


def test_key_removed_from_the_manifest_is_removed_from_xenstore(site: Site) -> None:
    (site.folder / "web.yaml").write_text(WEB.replace('vm-data/b: "2", ', ""))
    site.drifted("- spec.xenstoreData.vm-data/b")
    site.apply()
    assert site.vm_data("web") == {"a": b"1", "nested/c": b"3"}
    site.assert_converged()


# ---- the v4v firewall table ----------------------------------------------------------


def test_foreign_accept_on_top_and_removed_default_reject_are_undone(site: Site) -> None:
    site.sim("fw", "--insert", "1", "-j ACCEPT")  # viptables -I 1 -j ACCEPT: everything open
    site.sim("fw", "--delete", "-j REJECT")
    site.drifted("-j ACCEPT", "-j REJECT")
    site.apply()
    table = site.firewall()
    assert FirewallEntry() not in table and table[-2:] == [DOM0, REJECT] and table.count(REJECT) == 1
    site.assert_converged()


def test_a_bare_table_gets_the_baseline_and_a_foreign_open_all_goes(site: Site) -> None:
    """v4v without xenmgr: no REJECT, no dom0<->dom0 ACCEPT, and an open-all entry."""
    site.sim("fw", "--delete", "-j REJECT")
    site.sim("fw", "--delete", "--dom-in 0 --dom-out 0 -j ACCEPT")
    site.sim("fw", "--append", "-j ACCEPT")
    out = site.drifted("+ baseline = \"--dom-in 0 --dom-out 0 -j ACCEPT\"", "xenmgr's dom0<->dom0 ACCEPT goes in before it")
    assert "the default REJECT is missing: v4v is open" in out
    site.apply()
    table = site.firewall()
    assert FirewallEntry() not in table and table[-2:] == [DOM0, REJECT] and table.count(REJECT) == 1
    site.assert_converged()


def test_entry_appended_after_the_default_reject_is_drift(site: Site) -> None:
    web = site.domid("web")
    entry = FirewallEntry(web, 0, None, 80)  # derived (myself -> 0:80), but shadowed below REJECT

    async def tamper(ports: HostPorts) -> None:
        await ports.firewall.delete(entry)
        await ports.firewall.insert(entry, len(await ports.firewall.list()) + 1)

    site.host.run(tamper)
    site.drifted("-j REJECT")
    site.apply()
    table = site.firewall()
    assert table[-1] == REJECT and table.count(entry) == 1 and table.index(entry) < table.index(REJECT)
    site.assert_converged()


def test_duplicate_entry_is_removed(site: Site) -> None:
    entry = FirewallEntry(site.domid("web"), site.domid("db"), None, 5432)
    site.host.run(lambda p: p.firewall.insert(entry, 1))
    assert site.firewall().count(entry) == 2
    site.drifted(str(entry))
    site.apply()
    assert site.firewall().count(entry) == 1
    site.assert_converged()


def test_entries_of_a_destroyed_domain_are_removed(site: Site) -> None:
    db = site.domid("db")
    site.sim("destroy", "db")  # xl destroy: viptables is not told
    assert any(db in (e.dom_in, e.dom_out) for e in site.firewall())
    site.drifted(f"--dom-in {db} --dom-out 0 --port-out 9000")  # no live domain is named in it
    site.apply()
    assert not any(db in (e.dom_in, e.dom_out) for e in site.firewall()), site.firewall()
    site.assert_converged()


# ---- pciback bindings ----------------------------------------------------------------


def test_removed_greedy_rule_releases_its_device_and_only_its_own(site: Site) -> None:
    assert site.driver(USB_BDF) == "pciback"
    site.sim("pci", "--bind", AUDIO_BDF)  # an operator's own binding
    (site.folder / "usbvm.yaml").write_text(USBVM.split("---")[0])
    out = site.drifted(USB_BDF)
    assert AUDIO_BDF not in out
    out = site.apply()
    assert "pci-assignable-remove: done" in out
    assert site.driver(USB_BDF) == "xhci_hcd" and site.driver(AUDIO_BDF) == "pciback"
    site.assert_converged()


def test_vm_removed_from_the_manifests_gives_its_device_back(site: Site) -> None:
    assert site.driver(NIC_BDF) == "pciback"
    (site.folder / "web.yaml").unlink()
    site.drifted(NIC_BDF)
    site.apply()
    assert site.driver(NIC_BDF) == "e1000e"
    site.assert_converged()


def test_stopped_vm_gives_back_a_device_its_rule_does_not_hold_greedily(site: Site) -> None:
    (site.folder / "web.yaml").write_text(WEB.replace("  type: web\n", "  type: web\n  state: stopped\n"))
    site.drifted(NIC_BDF, "vm/web/shutdown")
    site.apply()
    assert site.driver(NIC_BDF) == "e1000e"
    site.assert_converged()


# ---- seize: false --------------------------------------------------------------------


WIFI_VM = f"""\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: wifi}}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 128
  pci: [{{bdf: "{WIFI_BDF}", seize: false}}]
"""


def test_seize_false_never_binds_and_the_start_fails_naming_the_device(site: Site) -> None:
    (site.folder / "wifi.yaml").write_text(WIFI_VM)
    code, out, err = site.cli("apply", str(site.folder))
    assert code == 1
    assert WIFI_BDF in out + err and "seize: false" in out + err
    assert site.driver(WIFI_BDF) == "iwlwifi"


def test_seize_false_uses_a_device_the_operator_made_assignable_and_keeps_it_bound(site: Site) -> None:
    site.sim("pci", "--bind", WIFI_BDF)  # xl pci-assignable-add by hand
    (site.folder / "wifi.yaml").write_text(WIFI_VM)
    out = site.apply()
    assert "vm/wifi/create: done" in out and "pci-assignable-add" not in out  # seize: false binds nothing
    site.assert_converged()
    (site.folder / "wifi.yaml").unlink()
    site.apply()
    assert site.driver(WIFI_BDF) == "pciback"  # not the reconciler's binding: never released
    site.assert_converged()
