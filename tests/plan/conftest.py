"""Fixtures for the planner tests. What is real: the manifest models, the loader on the
examples, the diff, the observer on the three captured dumps, the renderers and the CLI
entry point. What is hand-built: small DesiredStates and Diffs for the rule tests
(`build` fixture), so each rule is tested on exactly the changes it reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from reconciler.errors import Location
from reconciler.model import NIC, VM, DesiredState, Disk, Kind, ObservedState, PCIPassthrough, V4VRule
from reconciler.model.observed import DomainInfo
from reconciler.plan.build import Plan, build_plan
from reconciler.plan.changes import Action, Diff, FieldChange, ResourceChange

KIND_ORDER = ("VM", "Disk", "NIC", "PCIPassthrough", "V4VRule")


@dataclass
class Builder:
    """Collects resources and changes, then builds the plan. `observed_*` tables model
    what the host shows (devices named `<vm>-disk-<devid>` and so on)."""

    vms: dict[str, VM] = field(default_factory=dict)
    disks: dict[str, Disk] = field(default_factory=dict)
    nics: dict[str, NIC] = field(default_factory=dict)
    pci: dict[str, PCIPassthrough] = field(default_factory=dict)
    rules: dict[str, V4VRule] = field(default_factory=dict)
    observed_vms: dict[str, VM] = field(default_factory=dict)
    observed_disks: dict[str, Disk] = field(default_factory=dict)
    observed_nics: dict[str, NIC] = field(default_factory=dict)
    observed_pci: dict[str, PCIPassthrough] = field(default_factory=dict)
    domains: dict[str, DomainInfo] = field(default_factory=dict)
    changes: list[ResourceChange] = field(default_factory=list)

    def vm(self, name: str, **spec: Any) -> VM:
        model = VM.model_validate({"metadata": {"name": name}, "spec": {"virt": "pv", "memory": 256, "kernel": "/k", **spec}})
        self.vms[name] = model
        return model

    def disk(self, name: str, vm: str, vdev: str = "xvda", table: dict[str, Disk] | None = None, **spec: Any) -> Disk:
        model = Disk.model_validate({"metadata": {"name": name}, "spec": {"vm": vm, "target": f"/img/{name}", "vdev": vdev, **spec}})
        (self.disks if table is None else table)[name] = model
        return model

    def nic(self, name: str, vm: str, index: int = 0, table: dict[str, NIC] | None = None, **spec: Any) -> NIC:
        model = NIC.model_validate({"metadata": {"name": name}, "spec": {"vm": vm, "index": index, **spec}})
        (self.nics if table is None else table)[name] = model
        return model

    def pci_rule(self, name: str, vm: str, bdf: str, table: dict[str, PCIPassthrough] | None = None, **spec: Any) -> PCIPassthrough:
        model = PCIPassthrough.model_validate({"metadata": {"name": name}, "spec": {"vm": vm, "bdf": bdf, **spec}})
        (self.pci if table is None else table)[name] = model
        return model

    def rule(self, name: str, vm: str, text: str) -> V4VRule:
        model = V4VRule.model_validate({"metadata": {"name": name}, "spec": {"vm": vm, "rule": text}})
        self.rules[name] = model
        return model

    def running(self, name: str, domid: int, **spec: Any) -> None:
        """A managed domain the host shows running."""
        self.domains[name] = DomainInfo(name, domid, None, managed=True)
        self.observed_vms[name] = VM.model_validate({"metadata": {"name": name}, "spec": {"virt": "pv", "memory": 256, **spec}})

    def change(self, kind: Kind, name: str, vm: str, action: Action, *fields: FieldChange, pending: bool = False) -> None:
        impact = "destructive" if action is Action.DELETE and kind in ("VM", "Disk") else "live"
        self.changes.append(ResourceChange(kind, name, vm, action, impact, tuple(fields), "test", pending))  # type: ignore[arg-type]

    def desired(self) -> DesiredState:
        origins = {(kind, name): Location(f"{kind.lower()}s.yaml", i + 1, 7)
                   for kind, table in (("VM", self.vms), ("Disk", self.disks), ("NIC", self.nics),
                                       ("PCIPassthrough", self.pci), ("V4VRule", self.rules))
                   for i, name in enumerate(sorted(table))}
        return DesiredState(dict(sorted(self.vms.items())), dict(sorted(self.disks.items())), dict(sorted(self.nics.items())),
                            dict(sorted(self.pci.items())), dict(sorted(self.rules.items())), origins)  # type: ignore[arg-type]

    def observed(self) -> ObservedState:
        return ObservedState(vms=self.observed_vms, disks=self.observed_disks, nics=self.observed_nics,
                             pci=self.observed_pci, domains=self.domains)

    def plan(self) -> Plan:
        changes = sorted(self.changes, key=lambda c: (c.vm, KIND_ORDER.index(c.kind), c.name))
        return build_plan(Diff(tuple(changes)), self.desired(), self.observed(), fingerprint="0" * 64)

    def create_all(self) -> None:
        """Every desired VM and device is new (an empty host), as the diff says it."""
        for table in (self.vms, self.disks, self.nics, self.pci, self.rules):
            for name, model in table.items():
                vm = name if isinstance(model, VM) else model.spec.vm
                self.change(model.kind, name, vm, Action.CREATE)  # type: ignore[arg-type]


@pytest.fixture
def build() -> Builder:
    return Builder()


@pytest.fixture
def new_builder() -> Callable[[], Builder]:
    """For hypothesis tests, which must not share one function-scoped fixture value."""
    return Builder
