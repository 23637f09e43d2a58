"""DesiredState: the normalized manifests the planner works from.

Pure value. Every device is a standalone resource with every default filled in (uuid,
maxMemory, maxVcpus, disk access, NIC index and MAC); nested device lists are empty.
`origins` says where each resource was written, for messages that cite file:line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from reconciler.errors import Location
from reconciler.model.common import Kind
from reconciler.model.devices import NIC, Disk, PCIPassthrough, V4VRule
from reconciler.model.vm import VM

Resource = VM | Disk | NIC | PCIPassthrough | V4VRule


@dataclass(frozen=True)
class DesiredState:
    """Resources by kind, each mapping name -> resource, sorted by name."""

    vms: Mapping[str, VM] = field(default_factory=dict)
    disks: Mapping[str, Disk] = field(default_factory=dict)
    nics: Mapping[str, NIC] = field(default_factory=dict)
    pci: Mapping[str, PCIPassthrough] = field(default_factory=dict)
    v4v_rules: Mapping[str, V4VRule] = field(default_factory=dict)
    origins: Mapping[tuple[Kind, str], Location] = field(default_factory=dict)

    def by_kind(self, kind: Kind) -> Mapping[str, Resource]:
        table: dict[Kind, Mapping[str, Resource]] = {
            "VM": self.vms,
            "Disk": self.disks,
            "NIC": self.nics,
            "PCIPassthrough": self.pci,
            "V4VRule": self.v4v_rules,
        }
        return table[kind]

    def devices_of(self, vm: str) -> list[Disk | NIC | PCIPassthrough | V4VRule]:
        """Every device resource that belongs to `vm`, in kind then name order."""
        return list(self._devices_by_vm.get(vm, ()))

    @cached_property
    def _devices_by_vm(self) -> dict[str, list[Disk | NIC | PCIPassthrough | V4VRule]]:
        """Devices by VM, built on first use: a lookup per VM must not scan every device
        (apply records 2,500 VMs of 15,000 devices)."""
        index: dict[str, list[Disk | NIC | PCIPassthrough | V4VRule]] = {}
        for table in (self.disks, self.nics, self.pci, self.v4v_rules):
            for resource in table.values():
                index.setdefault(resource.spec.vm, []).append(resource)
        return index
