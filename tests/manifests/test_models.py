"""Models and normalization: units, secrets, defaults, nested devices, YAML traps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from reconciler import xenfmt
from reconciler.loader import load
from reconciler.model import VM, default_vm_uuid


def vm_doc(**spec: object) -> dict[str, object]:
    return {"apiVersion": "xen.reconciler/v1", "kind": "VM", "metadata": {"name": "web"}, "spec": {"virt": "pvh", "kernel": "/k", "memory": 512, **spec}}


@pytest.mark.parametrize(("text", "mib"), [(512, 512), ("512", 512), ("512Mi", 512), ("2Gi", 2048), (" 1Gi ", 1024)])
def test_memory_units(text: object, mib: int) -> None:
    assert VM.model_validate(vm_doc(memory=text)).spec.memory == mib


@pytest.mark.parametrize("bad", ["512MB", "1.5Gi", "-1", 0, True, 1.5, "2Ti"])
def test_memory_rejects(bad: object) -> None:
    with pytest.raises(ValidationError):
        VM.model_validate(vm_doc(memory=bad))


def test_secret_never_printed() -> None:
    vm = VM.model_validate(vm_doc(display={"type": "vnc", "vncPassword": "hunter2"}))
    assert vm.spec.display.vnc_password is not None
    assert vm.spec.display.vnc_password.get_secret_value() == "hunter2"
    for text in (repr(vm), str(vm), vm.model_dump_json(), json.dumps(vm.model_dump(mode="json"))):
        assert "hunter2" not in text
    assert vm.model_dump(mode="json")["spec"]["display"]["vnc_password"] == "(sensitive)"


def test_secret_not_echoed_in_errors(tmp_path: Path) -> None:
    f = tmp_path / "vm.yaml"
    f.write_text("apiVersion: xen.reconciler/v1\nkind: VM\nmetadata: {name: web}\nspec:\n  virt: hvm\n  memory: 1\n  display: {type: vnc, vncPassword: [s3cr3t]}\n")
    result = load([str(f)])
    assert result.state is None
    assert "s3cr3t" not in "".join(str(d) for d in result.diagnostics)


def _write(tmp_path: Path, text: str) -> str:
    f = tmp_path / "m.yaml"
    f.write_text(text)
    return str(f)


NESTED = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: hvm
  memory: 1Gi
  disks:
    - {target: /dev/vg/web, vdev: xvda}
    - {target: "", vdev: hdc, devtype: cdrom}
  nics:
    - {bridge: xenbr0}
    - {name: web-storage, mtu: 9000}
  pci:
    - {bdf: "03:00.0"}
  v4vRules:
    - myself   ->   0:80
---
apiVersion: xen.reconciler/v1
kind: NIC
metadata: {name: web-extra}
spec: {vm: web}
"""


def test_nested_devices_become_standalone_with_defaults(tmp_path: Path) -> None:
    state = load([_write(tmp_path, NESTED)]).state
    assert state is not None
    assert sorted(state.disks) == ["web-hdc", "web-xvda"]
    assert state.disks["web-xvda"].spec.access == "rw"
    assert state.disks["web-hdc"].spec.access == "ro"  # cdrom default
    assert state.vms["web"].spec.disks == []
    vm = state.vms["web"].spec
    assert vm.uuid == default_vm_uuid("web")
    assert (vm.max_memory, vm.max_vcpus, vm.boot) == (1024, 1, "cd")
    nics = {n.metadata.name: n.spec for n in state.nics.values()}
    assert {k: v.index for k, v in nics.items()} == {"web-nic0": 0, "web-storage": 1, "web-extra": 2}
    assert nics["web-storage"].mac == xenfmt.auto_mac(vm.uuid, 1)
    assert state.pci["web-pci-0000-03-00-0"].spec.bdf == "0000:03:00.0"
    assert state.v4v_rules["web-v4v-d50a8863"].spec.rule == "myself -> 0:80"  # canonical spelling
    assert str(state.origins[("Disk", "web-hdc")]).endswith("m.yaml:9:7")


def test_auto_mac_is_stable_and_locally_administered() -> None:
    mac = xenfmt.auto_mac(default_vm_uuid("web"), 0)
    assert mac == xenfmt.auto_mac(default_vm_uuid("web"), 0) != xenfmt.auto_mac(default_vm_uuid("web"), 1)
    first = int(mac.split(":")[0], 16)
    assert first & 1 == 0 and first & 2 == 2


def test_yaml_12_scalars_keep_spelling(tmp_path: Path) -> None:
    """Unquoted BDFs would be YAML 1.1 sexagesimal floats; hex ids would be ints."""
    text = NESTED.replace('{bdf: "03:00.0"}', "{bdf: 0000:03:00.0, guestSlot: 0x05}")
    state = load([_write(tmp_path, text)]).state
    assert state is not None
    assert state.pci["web-pci-0000-03-00-0"].spec.bdf == "0000:03:00.0"
    assert state.pci["web-pci-0000-03-00-0"].spec.guest_slot == 5


def test_merge_keys_and_anchors(tmp_path: Path) -> None:
    text = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: a, labels: &l {tier: web}}
spec:
  <<: &base {virt: pvh, kernel: /boot/vmlinuz, memory: 256}
  memory: 512
  xenstoreData: {vm-data/tier: web}
"""
    result = load([_write(tmp_path, text)])
    assert result.state is not None, result.diagnostics
    spec = result.state.vms["a"].spec
    assert (spec.memory, spec.kernel, spec.virt) == (512, "/boot/vmlinuz", "pvh")  # explicit key wins


def test_diagnostics_are_deterministic(tmp_path: Path) -> None:
    runs = [[str(d) for d in load(["tests/corpus/invalid"]).diagnostics] for _ in range(2)]
    assert runs[0] == runs[1] and runs[0]
