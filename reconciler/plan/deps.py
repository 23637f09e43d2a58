"""Who needs whom: VM start dependencies and which VMs v4v rules name, indexed once.

Pure. `Index(desired, observed)` is built once per plan by `reconciler.plan.build` so the
edge rules look things up in constant time (a plan for 5,000 VMs must not scan every
device per VM). Dependencies come from the manifests (`dependsOn`, a NIC's or disk's
`backendVM`); for a managed domain removed from the manifests, from what the host shows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from reconciler.diff import firewall
from reconciler.model.observed import ObservedState
from reconciler.model.state import DesiredState


class Index:
    """Lookups the edge rules need, computed once."""

    def __init__(self, desired: DesiredState, observed: ObservedState) -> None:
        self.desired = desired
        self.observed = observed
        self._needs = _needs(desired, observed)
        self._rules: firewall.RuleIndex | None = None

    def needs(self, vm: str) -> frozenset[str]:
        """The VMs that must run before `vm` starts (and stop after it)."""
        return self._needs.get(vm, frozenset())

    def fw_touched(self, vm: str) -> bool:
        """Does desired VM `vm`'s start resolve firewall entries (it owns a rule, or a
        rule names it)? By index: the rules are not walked per VM."""
        if self._rules is None:
            self._rules = firewall.RuleIndex(self.desired)
        return self._rules.touches(vm)


def _needs(desired: DesiredState, observed: ObservedState) -> Mapping[str, frozenset[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for name, vm in desired.vms.items():
        found[name].update(vm.spec.depends_on)
    for table in (desired.disks, desired.nics):
        for device in table.values():
            if device.spec.backend_vm:
                found[device.spec.vm].add(device.spec.backend_vm)
    for table in (observed.disks, observed.nics):  # removed VMs: what the host shows
        for device in table.values():
            owner = device.spec.vm
            if device.spec.backend_vm and owner not in desired.vms:
                found[owner].add(device.spec.backend_vm)
    return {vm: frozenset(needed) for vm, needed in found.items()}
