"""Normalization: validated resources -> one canonical form with every default filled.

Pure. Nested devices become standalone resources named `<vm>-<list>-<index>` (list in
lower case: disks, nics, pci, v4vrules); VM uuid, maxMemory, maxVcpus and hvm boot order
get their defaults; disks get their access mode; NICs their index (position among the
VM's NICs: nested first, then standalone in file order) and, for `mac: auto`, the
deterministic MAC. Called by `reconciler.loader.load` before the checks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from reconciler import xenfmt
from reconciler.loader.locate import Path
from reconciler.loader.yamlsrc import Document
from reconciler.model import VM, Disk, DiskSpec, Metadata, NIC, NICSpec, PCIPassthrough, PCISpec, Resource, V4VRule, V4VRuleSpec, VMSpec, default_vm_uuid
from reconciler.model.devices import DiskFields, NICFields, PCIFields, V4VFields

NAME_MAX = 63

# (VM spec field, list name in default names, standalone model, its spec, nested fields)
NESTED: tuple[tuple[str, str, type[BaseModel], type[BaseModel], type[BaseModel]], ...] = (
    ("disks", "disks", Disk, DiskSpec, DiskFields),
    ("nics", "nics", NIC, NICSpec, NICFields),
    ("pci", "pci", PCIPassthrough, PCISpec, PCIFields),
    ("v4v_rules", "v4vrules", V4VRule, V4VRuleSpec, V4VFields),
)


@dataclass(frozen=True)
class Entry:
    """A resource and where it was written: its document and the path inside it."""

    resource: Resource
    document: Document
    path: Path = ()

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def name(self) -> str:
        return self.resource.metadata.name


def expand_nested(entries: list[Entry]) -> tuple[list[Entry], list[tuple[Entry, str]]]:
    """Split every VM's nested device lists into standalone entries."""
    out: list[Entry] = []
    problems: list[tuple[Entry, str]] = []
    for entry in entries:
        resource = entry.resource
        if not isinstance(resource, VM):
            out.append(entry)
            continue
        spec = resource.spec
        vm_name = resource.metadata.name
        for field, list_name, model, spec_model, fields in NESTED:
            for index, item in enumerate(getattr(spec, field)):
                name = item.name or f"{vm_name}-{list_name}-{index}"
                path = (*entry.path, "spec", VMSpec.model_fields[field].alias or field, index)
                values: dict[str, Any] = {k: getattr(item, k) for k in fields.model_fields}
                device = model.model_construct(
                    metadata=Metadata.model_construct(name=name, labels=dict(resource.metadata.labels)),
                    spec=spec_model.model_construct(vm=vm_name, **values),
                )
                child = Entry(device, entry.document, path)  # type: ignore[arg-type]
                if len(name) > NAME_MAX:
                    problems.append((child, f"default name {name!r} is longer than {NAME_MAX} characters; give the item a name"))
                out.append(child)
        cleared = spec.model_copy(update={"disks": [], "nics": [], "pci": [], "v4v_rules": []})
        out.append(replace(entry, resource=resource.model_copy(update={"spec": cleared})))
    return out, problems


def fill_defaults(entries: list[Entry]) -> list[Entry]:
    """Defaults that depend on other fields or other resources."""
    vms = {e.name: e.resource for e in entries if isinstance(e.resource, VM)}
    uuids = {name: vm.spec.uuid or default_vm_uuid(name) for name, vm in vms.items()}
    nic_position = _nic_positions(entries)
    out: list[Entry] = []
    for entry in entries:
        resource = entry.resource
        if isinstance(resource, VM):
            resource = _vm_defaults(resource, uuids[resource.metadata.name])
        elif isinstance(resource, Disk) and resource.spec.access is None:
            access = "ro" if resource.spec.devtype == "cdrom" else "rw"
            resource = resource.model_copy(update={"spec": resource.spec.model_copy(update={"access": access})})
        elif isinstance(resource, NIC):
            resource = _nic_defaults(resource, nic_position[id(entry)], uuids.get(resource.spec.vm))
        out.append(replace(entry, resource=resource))
    return out


def _nic_positions(entries: list[Entry]) -> dict[int, int]:
    """Each NIC entry's position among its VM's NICs: nested ones first, in list order,
    then standalone ones in file order."""
    nics = [e for e in entries if isinstance(e.resource, NIC)]
    ordered = [e for e in nics if e.path] + [e for e in nics if not e.path]
    seen: dict[str, int] = {}
    positions: dict[int, int] = {}
    for entry in ordered:
        vm = entry.resource.spec.vm  # type: ignore[union-attr]
        positions[id(entry)] = seen.get(vm, 0)
        seen[vm] = positions[id(entry)] + 1
    return positions


def _vm_defaults(vm: VM, uuid: str) -> VM:
    spec = vm.spec
    update: dict[str, Any] = {"uuid": uuid}
    if spec.max_memory is None:
        update["max_memory"] = spec.memory
    if spec.max_vcpus is None:
        update["max_vcpus"] = max(spec.vcpus, 1)
    if spec.virt == "hvm" and spec.boot is None:
        update["boot"] = "cd"
    return vm.model_copy(update={"spec": spec.model_copy(update=update)})


def _nic_defaults(nic: NIC, position: int, vm_uuid: str | None) -> NIC:
    spec = nic.spec
    index = position if spec.index is None else spec.index
    update: dict[str, Any] = {"index": index}
    if spec.mac == "auto" and vm_uuid is not None:
        update["mac"] = xenfmt.auto_mac(vm_uuid, index)
    return nic.model_copy(update={"spec": spec.model_copy(update=update)})
