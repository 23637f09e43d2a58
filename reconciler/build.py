"""The devices a VM is built with (DESIGN section 5: build as xl builds): pure.

In: the desired state, a VM name, and the host addresses the plan or the run resolved
for PCIPassthrough match rules. Out: a `Build` (disks by devid, NICs by index, PCI
assignments by address), what `ToolstackPort.create` puts in the domain at build time
(the xl driver renders it as `disk=`, `vif=`, `pci=` in the xl.cfg). Called by the
executor's `create` and by the xl.cfg renderers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler import xenfmt
from reconciler.model.devices import NIC, Disk, PCIPassthrough
from reconciler.model.host import Build, PciAssignment
from reconciler.model.state import DesiredState


def build_of(desired: DesiredState, vm: str, pci: Mapping[str, Sequence[str]] | None = None) -> Build:
    """The Build of desired VM `vm`. `pci` maps a PCIPassthrough rule name to the host
    addresses it resolved to; a rule with `bdf` needs no entry (an entry, when given,
    wins), a match rule without one is left out: the caller decides if that is an error."""
    resolved = pci or {}
    devices = desired.devices_of(vm)  # indexed: a plan of thousands of VMs builds each in O(its devices)
    disks = sorted((d for d in devices if isinstance(d, Disk)), key=lambda d: xenfmt.vdev_to_devid(d.spec.vdev))
    nics = sorted((n for n in devices if isinstance(n, NIC)),
                  key=lambda n: (n.spec.index if n.spec.index is not None else -1, n.metadata.name))
    assigned: dict[str, PciAssignment] = {}
    for rule in sorted((p for p in devices if isinstance(p, PCIPassthrough)), key=lambda p: p.metadata.name):
        name, spec = rule.metadata.name, rule.spec
        addresses = list(resolved[name]) if name in resolved else ([spec.bdf] if spec.bdf else [])
        for bdf in addresses:
            key = str(xenfmt.parse_bdf(bdf))
            assigned.setdefault(key, PciAssignment(key, permissive=spec.permissive, msitranslate=spec.msitranslate,
                                                   power_mgmt=spec.power_mgmt, guest_slot=spec.guest_slot))
    return Build(tuple(disks), tuple(nics), tuple(assigned[b] for b in sorted(assigned)))
