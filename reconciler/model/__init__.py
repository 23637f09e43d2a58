"""The manifest models (DESIGN.md section 4): one pydantic model per kind, plus DesiredState.

Pure value types shared by the loader (manifests), the observer (host) and the planner.
"""

from reconciler.model.common import API_VERSION, KINDS, Kind, Metadata, default_vm_uuid
from reconciler.model.devices import (
    NIC,
    Disk,
    DiskSpec,
    NICSpec,
    PCIPassthrough,
    PCISpec,
    PciMatch,
    RPCRule,
    RPCRuleSpec,
    V4VRule,
    V4VRuleSpec,
)
from reconciler.model.state import DesiredState, Resource
from reconciler.model.observed import DeviceHealth, DomainInfo, ObservedState
from reconciler.model.vm import VM, VMSpec

MODELS: dict[str, type[Resource]] = {
    "VM": VM,
    "Disk": Disk,
    "NIC": NIC,
    "PCIPassthrough": PCIPassthrough,
    "V4VRule": V4VRule,
    "RPCRule": RPCRule,
}

__all__ = [
    "API_VERSION",
    "KINDS",
    "MODELS",
    "NIC",
    "VM",
    "DesiredState",
    "Disk",
    "DiskSpec",
    "Kind",
    "Metadata",
    "NICSpec",
    "PCIPassthrough",
    "PCISpec",
    "PciMatch",
    "Resource",
    "RPCRule",
    "RPCRuleSpec",
    "V4VRule",
    "V4VRuleSpec",
    "VMSpec",
    "default_vm_uuid",
    "DeviceHealth",
    "DomainInfo",
    "ObservedState",
]
