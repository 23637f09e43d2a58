"""Fast model building (`reconciler.loader.models`) and the one-pass normalization that
uses it: every model it makes must be the model pydantic's public API would make, with
the same values, fields set and field order. Nothing is faked: real YAML files, loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, PrivateAttr, ValidationError

from reconciler.loader import load, normalize
from reconciler.loader.documents import to_resource
from reconciler.loader.models import direct, make, updated
from reconciler.loader.yamlsrc import Limits, parse_documents
from reconciler.model import MODELS, Disk, DiskSpec, Metadata, NICSpec

MANIFEST = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web, labels: {tier: front}}
spec:
  virt: hvm
  memory: 1Gi
  disks:
    - {target: /a.img, vdev: xvda}
    - {target: "", vdev: hdc, devtype: cdrom}
    - {name: web-named, target: /b.img, vdev: xvdb, access: ro}
  nics:
    - &base {bridge: xenbr2, mtu: 1400}
    - {<<: *base, index: 7, mac: "00:16:3e:00:00:01"}
    - {bridge: xenbr0, ethtool: {rx: off}}
  pci:
    - {match: {class: "0x0200"}, guestSlot: "0x05"}
  v4vRules:
    - "myself -> 0:80"
    - {name: web-ssh, rule: "0 -> myself:22", bidirectional: false}
---
apiVersion: xen.reconciler/v1
kind: NIC
metadata: {name: web-extra}
spec: {vm: web, bridge: xenbr0}
"""


def same(a: BaseModel, b: BaseModel) -> None:
    """Equal the way pickle and repr see them, not only by ==."""
    assert type(a) is type(b)
    assert a == b
    assert a.model_fields_set == b.model_fields_set
    assert list(a.__dict__) == list(b.__dict__)
    assert a.__pydantic_extra__ == b.__pydantic_extra__
    assert a.__pydantic_private__ == b.__pydantic_private__


def test_make_is_model_construct() -> None:
    values: dict[str, Any] = {name: field.get_default(call_default_factory=True) for name, field in NICSpec.model_fields.items() if not field.is_required()}
    values = {name: values.get(name, "web") for name in NICSpec.model_fields}
    values["index"] = 3
    built = make(NICSpec, dict(values), set(values))
    same(built, NICSpec.model_construct(**values))
    assert built.index == 3 and built.vm == "web"


def test_updated_is_model_copy() -> None:
    disk = Disk.model_validate({"metadata": {"name": "d"}, "spec": {"vm": "web", "vdev": "xvda", "target": "/a"}})
    changes = {"spec": disk.spec.model_copy(update={"access": "rw"})}
    same(updated(disk, changes), disk.model_copy(update=changes))
    same(updated(disk.spec, {"access": "ro"}), disk.spec.model_copy(update={"access": "ro"}))
    assert disk.spec.access is None  # the original is untouched


class WithPrivate(BaseModel):
    name: str = "x"
    _cache: int = PrivateAttr(default=5)


def test_other_models_fall_back_to_the_public_api() -> None:
    assert not direct(WithPrivate)
    assert all(direct(model) for model in (*MODELS.values(), Metadata, DiskSpec))
    built = make(WithPrivate, {"name": "y"}, {"name"})
    assert built._cache == 5 and built.name == "y" and built.model_fields_set == {"name"}
    copied = updated(built, {"name": "z"})
    assert copied._cache == 5 and copied.name == "z"


def entries_of(path: Path) -> list[normalize.Entry]:
    documents, problems = parse_documents(str(path), path.read_text(), Limits())
    assert not problems
    out = []
    for doc in documents:
        resource, problems = to_resource(doc)
        assert resource is not None, problems
        out.append(normalize.Entry(resource, doc))
    return out


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "web.yaml"
    path.write_text(MANIFEST)
    return path


def test_nested_devices_are_valid_standalone_models(manifest: Path) -> None:
    """Each device built without validation validates to itself as a standalone document."""
    entries, problems = normalize.normalize(entries_of(manifest))
    assert not problems
    devices = [e.resource for e in entries if e.path]
    assert len(devices) == 9
    for device in devices:
        assert type(device).model_validate(device.model_dump(by_alias=True)) == device
        same(device, type(device).model_construct(metadata=device.metadata, spec=device.spec))  # type: ignore[arg-type]
        same(device.spec, type(device.spec).model_construct(**device.spec.__dict__))  # field order too
        same(device.metadata, Metadata.model_construct(name=device.metadata.name, labels={"tier": "front"}))
    names = [e.name for e in entries]
    assert names[:4] == ["web-xvda", "web-hdc", "web-named", "web-nic0"] and names[-2:] == ["web", "web-extra"]


def test_defaults_filled(manifest: Path) -> None:
    state = load([str(manifest)]).state
    assert state is not None
    assert {n: d.spec.access for n, d in state.disks.items()} == {"web-xvda": "rw", "web-hdc": "ro", "web-named": "ro"}
    assert {n: nic.spec.index for n, nic in state.nics.items()} == {"web-extra": 3, "web-nic0": 0, "web-nic7": 7, "web-nic2": 2}
    assert state.nics["web-nic7"].spec.mac == "00:16:3e:00:00:01" and state.nics["web-nic7"].spec.mtu == 1400
    assert state.nics["web-extra"].spec.mac != "auto"
    vm = state.vms["web"].spec
    assert (vm.boot, vm.max_memory, vm.max_vcpus, vm.disks, vm.nics, vm.pci, vm.v4v_rules) == ("cd", 1024, 1, [], [], [], [])
    assert {"uuid", "boot", "max_memory", "max_vcpus", "disks", "nics", "pci", "v4v_rules"} <= vm.model_fields_set


def test_shared_fields_sets_are_never_changed(manifest: Path) -> None:
    """Nested devices of one kind share their fields sets; pydantic copies before it changes one."""
    state = load([str(manifest)]).state
    assert state is not None
    first, second = state.disks["web-xvda"], state.disks["web-hdc"]
    assert first.model_fields_set is second.model_fields_set
    assert first.spec.model_fields_set is second.spec.model_fields_set
    copied = first.model_copy(update={"spec": first.spec.model_copy(update={"access": "ro"})})
    assert copied.model_fields_set is not first.model_fields_set
    assert copied.spec.model_fields_set is not first.spec.model_fields_set
    assert first.model_fields_set == {"metadata", "spec"} and first.spec.model_fields_set == set(DiskSpec.model_fields)
    with pytest.raises(ValidationError):
        first.spec.vdev = "xvdz"  # type: ignore[misc]  # frozen: no set-and-mark either
    assert first.spec.model_fields_set == set(DiskSpec.model_fields)
