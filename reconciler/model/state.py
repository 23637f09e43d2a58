"""DesiredState: the normalized manifests the planner works from.

Pure value. Every device is a standalone resource with every default filled in (uuid,
maxMemory, maxVcpus, disk access, NIC index and MAC); nested device lists are empty.
`origins` says where each resource was written, for messages that cite file:line, and
gives a VM's rpc-proxy rules their evaluation order (`rpc_rules_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from reconciler.errors import Location
from reconciler.model.common import Kind
from reconciler.model.devices import NIC, Disk, PCIPassthrough, RPCRule, V4VRule
from reconciler.model.vm import VM

Resource = VM | Disk | NIC | PCIPassthrough | V4VRule | RPCRule


@dataclass(frozen=True)
class DesiredState:
    """Resources by kind, each mapping name -> resource, sorted by name."""

    vms: Mapping[str, VM] = field(default_factory=dict)
    disks: Mapping[str, Disk] = field(default_factory=dict)
    nics: Mapping[str, NIC] = field(default_factory=dict)
    pci: Mapping[str, PCIPassthrough] = field(default_factory=dict)
    v4v_rules: Mapping[str, V4VRule] = field(default_factory=dict)
    origins: Mapping[tuple[Kind, str], Location] = field(default_factory=dict)
    rpc_rules: Mapping[str, RPCRule] = field(default_factory=dict)  # after origins: callers pass it by position
    # RPCRule name -> (file, line, column of its document, index in its VM's rpcRules or -1):
    # where it is written, as the loader saw it (origins cannot say it for an aliased item)
    rpc_order: Mapping[str, tuple[str, int, int, int]] = field(default_factory=dict)

    def by_kind(self, kind: Kind) -> Mapping[str, Resource]:
        table: dict[Kind, Mapping[str, Resource]] = {
            "VM": self.vms,
            "Disk": self.disks,
            "NIC": self.nics,
            "PCIPassthrough": self.pci,
            "V4VRule": self.v4v_rules,
            "RPCRule": self.rpc_rules,
        }
        return table[kind]

    def devices_of(self, vm: str) -> list[Disk | NIC | PCIPassthrough | V4VRule]:
        """Every device resource that belongs to `vm`, in kind then name order. RPCRules are
        not among them (they are no device of the domain's build nor a step of their own:
        `rpc_rules_of`, in evaluation order, is their accessor)."""
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

    def rpc_rules_of(self, vm: str) -> list[RPCRule]:
        """`vm`'s rpc-proxy rules in evaluation order (rpc-proxy appends them to the global
        rules; the last match wins): the order they are written, by file path, then
        document, then (nested rules) list order; for a state the loader did not make,
        by origin (file, line, column), then by name for rules with neither."""
        return list(self._rpc_by_vm.get(vm, ()))

    @cached_property
    def _rpc_by_vm(self) -> dict[str, list[RPCRule]]:
        def written(rule: RPCRule) -> tuple[int, str, int, int, int, str]:
            name = rule.metadata.name
            if name in self.rpc_order:
                return (0, *self.rpc_order[name], name)
            place = self.origins.get(("RPCRule", name))
            return (1, place.file, place.line, place.col, 0, name) if place else (2, "", 0, 0, 0, name)

        index: dict[str, list[RPCRule]] = {}
        for rule in sorted(self.rpc_rules.values(), key=written):
            index.setdefault(rule.spec.vm, []).append(rule)
        return index
