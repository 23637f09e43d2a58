"""A device removed from the manifests is shown by the name it was applied under (from
the VM's last-applied record, which holds each device's vdev or index), not by the
observer's `<vm>-disk-<devid>`; only its resource line says the removal's impact. A
record without those fields (written by an older version) falls back to the observer's
name. Through the CLI, on the embedded simulated host (the fallback on the record alone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.diff.applied import Record, manifest_name
from reconciler.xenfmt import vdev_to_devid

GUEST = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: guest}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 64
  disks:
    - {vdev: xvda, target: /srv/guest-a.img}
    - {name: scratch, vdev: xvdb, target: /srv/guest-b.img}
  nics:
    - {bridge: xenbr0}
    - {backendVM: net}
---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: net}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64, providesNetworkBackend: true, updatePolicy: restart}
"""
WITHOUT = GUEST.replace("    - {name: scratch, vdev: xvdb, target: /srv/guest-b.img}\n", "").replace(
    "    - {backendVM: net}\n", "")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def plan_json(capsys: pytest.CaptureFixture[str], path: Path, host: str) -> dict[str, object]:
    code = main(["plan", str(path), "--host", host, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    return json.loads(out)  # type: ignore[no-any-return]


def applied(capsys: pytest.CaptureFixture[str], tmp_path: Path, sim_dir: Path) -> tuple[Path, str, dict[str, str]]:
    """GUEST applied; -> (manifest path, host, the names the plan gave guest's devices by kind+identity)."""
    path, host = tmp_path / "m.yaml", f"sim:{sim_dir}"
    path.write_text(GUEST)
    created = plan_json(capsys, path, host)
    names = {}
    for change in created["changes"]:  # type: ignore[attr-defined]
        fields = {f["path"]: f["after"] for f in change["fields"]}
        if change["kind"] in ("Disk", "NIC") and change["vm"] == "guest":
            names[f"{change['kind']} {fields.get('spec.vdev', fields.get('spec.index'))}"] = change["name"]
    code, out = cli(capsys, "apply", str(path), "--host", host)
    assert code == 0, out
    return path, host, names


def test_removed_devices_are_shown_by_their_manifest_names(sim_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path, host, names = applied(capsys, tmp_path, sim_dir)
    assert names["Disk xvdb"] == "scratch"
    path.write_text(WITHOUT)
    code, out = cli(capsys, "plan", str(path), "--host", host)
    assert code == 0, out
    removed = [line for line in out.splitlines() if line.startswith("  - ")]
    assert removed == [
        "  - Disk scratch [destructive]: not in the manifests: detached from the running domain (the image is kept)",
        f"  - NIC {names['NIC 1']} [live]: not in the manifests: unplugged from the running domain",
    ]
    assert "[destructive]" not in out.split(removed[0], 1)[1]  # the removal's fields are values, not impacts
    assert "guest-disk-" not in out and "guest-nic-" not in out
    code, out = cli(capsys, "apply", str(path), "--host", host)
    assert code == 0 and "disk/scratch/detach: done" in out, out
    code, out = cli(capsys, "plan", str(path), "--host", host, "--detailed-exitcode")
    assert code == 0 and "No changes." in out, out


def test_a_removed_nic_is_unplugged_before_its_backend_vm_restarts(sim_dir: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path, host, names = applied(capsys, tmp_path, sim_dir)
    path.write_text(WITHOUT.replace("memory: 64, providesNetworkBackend", "memory: 64, maxMemory: 128, providesNetworkBackend"))
    plan = plan_json(capsys, path, host)
    detach = f"nic/{names['NIC 1']}/detach"
    assert detach in {a["id"] for a in plan["actions"]}  # type: ignore[attr-defined]
    edges = {(d["before"], d["after"]) for d in plan["dependencies"]}  # type: ignore[attr-defined]
    assert (detach, "vm/net/shutdown") in edges


def test_only_a_record_with_identity_fields_names_a_removed_device() -> None:
    """Records written before they held vdev/index name nothing: the observer's name stays.
    A name the manifests now give another device of that kind is not reused."""
    devid = vdev_to_devid("xvdb")
    assert manifest_name(Record(disks={"scratch": {"discard": True}}), "Disk", devid, {}) is None
    assert manifest_name(Record(disks={"scratch": {"vdev": "xvdb"}}), "Disk", devid, {}) == "scratch"
    assert manifest_name(Record(disks={"scratch": {"vdev": "xvdb"}}), "Disk", devid, {"scratch": object()}) is None
    assert manifest_name(Record(nics={"lan": {"index": 1}}), "NIC", 1, {}) == "lan"
    assert manifest_name(None, "NIC", 1, {}) is None
    assert manifest_name(Record(pci={"nic-card": {"bdf": "00:1f.6"}}), "PCIPassthrough", "0000:00:1f.6", {}) == "nic-card"
    assert manifest_name(Record(pci={"gpu": {"match": {"class": "0x0300"}}}), "PCIPassthrough", "0000:00:02.0", {}) is None


PCI_GUEST = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: guest}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 64
  pci: [{name: nic-card, bdf: "00:1f.6"}]
---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: other}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64}
"""


def test_a_removed_pci_device_is_shown_by_its_manifest_name_and_can_move_to_another_vm(
        sim_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The record keeps each rule's bdf: a device no rule wants any more is `nic-card`, not
    the observer's `guest-pci-0`; moved to another running VM in the same edit, it is
    unplugged from its old owner before the new one claims it, and the host converges."""
    path, host = tmp_path / "m.yaml", f"sim:{sim_dir}"
    path.write_text(PCI_GUEST)
    code, out = cli(capsys, "apply", str(path), "--host", host)
    assert code == 0, out
    path.write_text(PCI_GUEST.replace('  pci: [{name: nic-card, bdf: "00:1f.6"}]\n', ""))
    code, out = cli(capsys, "plan", str(path), "--host", host)
    assert code == 0, out
    assert "  - PCIPassthrough nic-card [live]: not in the manifests: unplugged from the running domain" in out.splitlines()
    assert "guest-pci-" not in out
    path.write_text(PCI_GUEST.replace('  pci: [{name: nic-card, bdf: "00:1f.6"}]\n', "").replace(
        "memory: 64}\n", 'memory: 64, pci: [{name: moved, bdf: "0000:00:1f.6"}], updatePolicy: restart}\n'))
    plan = plan_json(capsys, path, host)
    edges = {(d["before"], d["after"]) for d in plan["dependencies"]}  # type: ignore[attr-defined]
    claims = [a["id"] for a in plan["actions"] if a["id"].startswith("pci/moved/")]  # type: ignore[attr-defined]
    assert "pci/nic-card/detach" in {a["id"] for a in plan["actions"]}  # type: ignore[attr-defined]
    assert any(("pci/nic-card/detach", claim) in edges for claim in claims), (claims, edges)
    code, out = cli(capsys, "apply", str(path), "--host", host)
    assert code == 0, out
    code, out = cli(capsys, "plan", str(path), "--host", host, "--detailed-exitcode")
    assert code == 0 and "No changes." in out, out
