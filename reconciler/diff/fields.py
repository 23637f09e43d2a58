"""The field table: for every VM/Disk/NIC/PCI spec field, can the host show it, what
does changing it cost, and why (the Xen reason). Plus the pure helpers that turn specs
into comparable flat `{path: value}` maps.

Pure. Read by `reconciler.diff.vm`, `reconciler.diff.devices` and
`reconciler.diff.applied` (which records every field the host cannot show).

`seen` says where the current value comes from:
- `host`: the observer always determines it; an unset observed field means the
  default is what runs (libxl omits `mtu` 1500, a dom0 backend has no `backendVM`).
- `if-shown`: compared with the host when the observer set it, else with the
  last-applied record (PV kernel paths live in `/vm/<uuid>/image`, PVH/HVM ones nowhere).
- `record`: the host cannot show it; compared with the last-applied record only.
- `identity`: how devices are matched (vdev, NIC index, PCI address); never a change.
"""

from __future__ import annotations

import functools
import hashlib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, SecretStr

from reconciler.model.common import SECRET_FIELDS, Kind
from reconciler.plan.changes import Impact

Seen = Literal["host", "if-shown", "record", "identity"]
SENSITIVE = "(sensitive)"


@dataclass(frozen=True)
class FieldRule:
    seen: Seen
    impact: Impact
    why: str


def _r(seen: Seen, impact: Impact, why: str) -> FieldRule:
    return FieldRule(seen, impact, why)


# Keys are the camelCase spec field names of DESIGN.md section 4.
VM_FIELDS: dict[str, FieldRule] = {
    "uuid": _r("host", "restart", "the uuid (/vm/<uuid>) is given to the domain when it is built"),
    "type": _r("record", "live", "a reconciler tag: only v4v dom-type= matching reads it, and the firewall changes live"),
    "virt": _r("host", "restart", "the domain builder fixes PV, PVH or HVM when the domain is created"),
    "state": _r("host", "live", "xl pause/unpause switch running<->paused; stop is a VM delete, start a create"),
    "memory": _r("host", "live", "xl mem-set moves the balloon target within static-max (maxMemory)"),
    "maxMemory": _r("host", "restart", "static-max is fixed when the domain is built"),
    "vcpus": _r("host", "live", "xl vcpu-set onlines or offlines vCPUs within max_vcpus"),
    "maxVcpus": _r("host", "restart", "max_vcpus is fixed when the domain is built"),
    "kernel": _r("if-shown", "restart", "the domain builder loads the kernel only at boot"),
    "ramdisk": _r("if-shown", "restart", "the domain builder loads the ramdisk only at boot"),
    "cmdline": _r("if-shown", "restart", "the kernel reads its command line only at boot"),
    "bootloader": _r("record", "restart", "pygrub runs only when the domain is built"),
    "boot": _r("record", "restart", "hvmloader reads the boot order at power-on"),
    "hvm": _r("record", "restart", "HVM platform flags are set when the domain and its device model are built"),
    "display": _r("record", "restart", "the device model's VNC/SDL console is configured when qemu starts"),
    "serial": _r("record", "restart", "the device model's serial port is configured when qemu starts"),
    "stubdom": _r("record", "restart", "the stub domain is built together with the HVM domain"),
    "flaskLabel": _r("record", "restart", "the FLASK label (seclabel) is given at domain creation"),
    "lifecycle": _r("record", "restart", "libxl keeps on_poweroff/on_reboot/on_crash from the config the domain was built with"),
    "power": _r("record", "live", "the toolstack reads the S3/S4 policy when the host sleeps, not the domain"),
    "startPriority": _r("record", "live", "only orders plans; nothing on the host holds it"),
    "shutdownPriority": _r("record", "live", "only orders plans; nothing on the host holds it"),
    "providesNetworkBackend": _r("record", "live", "a manifest check for backendVM; nothing on the host holds it"),
    "dependsOn": _r("record", "live", "only adds start-order edges to plans"),
    "bootSentinel": _r("record", "live", "read by the reconciler when dependents start"),
    "xenstoreData": _r("host", "live", "the reconciler owns the domain's whole vm-data/ subtree: keys are written and removed live"),
    "hooks": _r("record", "live", "run by the reconciler on the next lifecycle event"),
    "updatePolicy": _r("record", "live", "the reconciler's own policy; nothing on the host holds it"),
}

DISK_FIELDS: dict[str, FieldRule] = {
    "vdev": _r("identity", "destructive", "the guest sees the disk at this vdev: a new vdev is another disk"),
    "target": _r("host", "destructive", "blkback opens params once: a new target needs detach + attach"),
    "format": _r("host", "destructive", "the backend (blkback/qdisk) is chosen by format at attach"),
    "access": _r("host", "destructive", "the backend mode w/r is fixed at attach"),
    "devtype": _r("if-shown", "destructive", "disk vs cdrom is the frontend's device-type, fixed at attach"),
    "backendVM": _r("host", "destructive", "the backend domain serves the device from attach to detach"),
    "script": _r("host", "destructive", "the hotplug script runs only at attach"),
    "discard": _r("if-shown", "destructive", "discard-enable is negotiated when the frontend connects"),
}

NIC_FIELDS: dict[str, FieldRule] = {
    "index": _r("identity", "live", "the vif devid: the guest's ethN order"),
    "mac": _r("if-shown", "live", "netback reads the MAC at attach: detach + attach"),
    "bridge": _r("if-shown", "live", "vif-bridge adds the vif to the bridge at attach: detach + attach"),
    "backendVM": _r("host", "live", "the backend domain serves the vif from attach to detach: detach + attach"),
    "model": _r("record", "restart", "the emulated NIC model is fixed when qemu starts"),
    "type": _r("if-shown", "restart", "ioemu NICs are emulated by qemu, which is configured when it starts"),
    "mtu": _r("host", "live", "ip link set mtu on the vif's backend interface, in place (NETDEV_FIELDS)"),
    "rate": _r("host", "live", "netback reads the credit rate at attach: detach + attach"),
    "ip": _r("host", "live", "the hotplug script installs the IP filter at attach: detach + attach"),
    "script": _r("host", "live", "the hotplug script runs only at attach: detach + attach"),
    "vifname": _r("host", "live", "the backend interface is named at attach: detach + attach"),
    "promiscuous": _r("if-shown", "live", "ip link set promisc on the vif's backend interface, in place"),
    "ethtool": _r("if-shown", "live", "ethtool -K/-s on the vif's backend interface, in place; unset keys are left alone"),
}

# NIC fields the network-device port sets on the running interface (xen.md 8): a change
# to these alone is a `set` step, not an unplug and plug.
NETDEV_FIELDS = frozenset({"mtu", "promiscuous", "ethtool"})

PCI_FIELDS: dict[str, FieldRule] = {
    "bdf": _r("identity", "live", "the host device itself"),
    "match": _r("identity", "live", "selects host devices by class/vendor/device"),
    "guestSlot": _r("if-shown", "live", "vdevfn is chosen at pci-attach: detach + attach"),
    "permissive": _r("if-shown", "live", "pciback's permissive mode is set at pci-attach: detach + attach"),
    "msitranslate": _r("if-shown", "live", "MSI translation is set at pci-attach: detach + attach"),
    "powerMgmt": _r("if-shown", "live", "power management pass-through is set at pci-attach: detach + attach"),
    "seize": _r("record", "live", "the reconciler binds the device to pciback before it attaches"),
    "greedy": _r("record", "live", "the reconciler binds the device to pciback even while the VM is stopped"),
}

TABLES: dict[Kind, dict[str, FieldRule]] = {
    "VM": VM_FIELDS,
    "Disk": DISK_FIELDS,
    "NIC": NIC_FIELDS,
    "PCIPassthrough": PCI_FIELDS,
}

# Spec fields that are not compared at all: the owner link (devices are diffed per VM),
# the nested device lists (the loader empties them into standalone resources), and the
# VM's xenmgr `properties`, which are part of its rpc-proxy policy entry and compared there,
# and `adopt`, an instruction to the diff (take over an unmanaged domain), not a setting.
NOT_FIELDS = frozenset({"vm", "disks", "nics", "pci", "v4vRules", "rpcRules", "properties", "adopt"})

Flat = dict[str, object]


def secret_hash(value: str) -> str:
    """How a secret is recorded and compared: its sha256, never the clear text."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def plain(value: object) -> object:
    """A model value as plain JSON data with camelCase keys; secrets become hashes.

    pydantic dumps the data (fast; its serializer is called as model_dump calls it,
    without model_dump's keyword plumbing, which costs as much for these small specs);
    secrets, which dump as "(sensitive)", are then replaced by the hash of their value."""
    if isinstance(value, BaseModel):
        data = value.__pydantic_serializer__.to_python(value, mode="json", by_alias=True, warnings=False)
        _hash_secrets(value, data)
        return data
    if isinstance(value, SecretStr):
        return secret_hash(value.get_secret_value())
    return value


def set_values(spec: BaseModel) -> dict[str, object]:
    """`plain(spec)` without the NOT_FIELDS and without None values (at any depth of
    nested models): what a new resource sets. pydantic leaves them out as it dumps."""
    data = spec.__pydantic_serializer__.to_python(spec, mode="json", by_alias=True, warnings=False, exclude_none=True,
                                                  exclude=_not_fields(type(spec)))
    _hash_secrets(spec, data)
    return data  # type: ignore[no-any-return]


@functools.cache
def _not_fields(cls: type[BaseModel]) -> set[str]:
    """Python names of the NOT_FIELDS of `cls` (a set, as model_dump takes it; shared, never changed)."""
    return {name for name, info in cls.model_fields.items() if (info.alias or name) in NOT_FIELDS}


@functools.cache
def _may_hold_secrets(cls: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(name, alias) of the fields of `cls` that are secrets, or nested models that
    hold one (at any depth): the only fields `_hash_secrets` has to visit."""
    out: list[tuple[str, str]] = []
    for name, info in cls.model_fields.items():
        if typing.get_origin(info.annotation) is list:
            continue
        args = (info.annotation, *typing.get_args(info.annotation))
        nested = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if "SecretStr" in repr(info.annotation) or any(_may_hold_secrets(m) for m in nested):
            out.append((name, info.alias or name))
    return tuple(out)


def _hash_secrets(model: BaseModel, data: dict[str, object]) -> None:
    for name, key in _may_hold_secrets(type(model)):
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            data[key] = secret_hash(value.get_secret_value())
        elif isinstance(value, BaseModel) and isinstance(data.get(key), dict):
            _hash_secrets(value, data[key])  # type: ignore[arg-type]


def spec_fields(spec: BaseModel, table: Mapping[str, FieldRule], seen: frozenset[Seen]) -> dict[str, object]:
    """Top-level spec fields whose rule is in `seen`, as plain data."""
    values = plain(spec)
    assert isinstance(values, dict)
    return {key: values[key] for key, rule in table.items() if rule.seen in seen and key in values}


def shown(spec: BaseModel) -> frozenset[str]:
    """camelCase names of the spec fields an observer actually set."""
    aliases = _aliases(type(spec))
    return frozenset(aliases[name] for name in spec.model_fields_set if name in aliases)


@functools.cache
def _aliases(cls: type[BaseModel]) -> dict[str, str]:
    return {name: info.alias or name for name, info in cls.model_fields.items()}


@functools.cache
def field_names(cls: type[BaseModel]) -> dict[str, str]:
    """camelCase name -> Python field name, for looking names up in `model_fields_set`."""
    return {alias: name for name, alias in _aliases(cls).items()}


def flatten(prefix: str, value: object) -> Flat:
    """`{"hvm": {"acpi": True}}` -> `{"spec.hvm.acpi": True}`; lists stay whole.

    An absent nested model or map (None) and an empty list flatten to nothing, so
    their leaves compare as None against the other side's values."""
    out: Flat = {}
    _flatten_into(out, prefix, value)
    return out


def _flatten_into(out: Flat, prefix: str, value: object) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten_into(out, f"{prefix}.{key}", item)
    elif value is not None and value != []:
        out[prefix] = value


@functools.lru_cache(maxsize=4096)
def is_sensitive(path: str) -> bool:
    return path.rsplit(".", 1)[-1] in SECRET_FIELDS
