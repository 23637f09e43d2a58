"""Device kinds: Disk, NIC, PCIPassthrough, V4VRule, RPCRule (DESIGN.md section 4).

Pure value types. Each kind has a standalone spec (with `vm`) and a nested form used in a
VM's `spec.disks` / `nics` / `pci` / `v4vRules` / `rpcRules` (no `vm`, optional `name`).
Xen grammars (vdev, MAC, rate, BDF) are checked with `reconciler.xenfmt`; v4v rules with
`reconciler.v4v` and rpc-proxy rules with `reconciler.rpc`, both stored in canonical
spelling.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, WithJsonSchema

from reconciler import rpc, v4v, xenfmt
from reconciler.model.common import Model, Name, ResourceBase

# ---- field types -------------------------------------------------------------------------


def _mac(value: str) -> str:
    return value if value == "auto" else xenfmt.validate_mac(value)


def _rate(value: str) -> str:
    xenfmt.parse_rate(value)
    return value


def _bdf(value: str) -> str:
    return str(xenfmt.parse_bdf(value))


def _ips(value: str) -> str:
    for part in value.split():
        try:
            ipaddress.ip_address(part)
        except ValueError:
            raise ValueError(f"expected IP addresses separated by spaces, found {part!r}") from None
    return value


def _hex_or_any(value: Any) -> Any:
    """PCI match values: `0x`-hex strings or `any`. Integers are refused: `vendor: 8086`
    would silently mean decimal 8086, the trap OpenXT's `read :: Int` fell into."""
    if isinstance(value, str) and value.strip().lower() == "any":
        return "any"
    if not isinstance(value, str) or not value.strip().lower().startswith("0x"):
        raise ValueError(f"expected 0x-hex like '0x8086' or 'any' (PCI ids are hex), found {_show(value)}")
    try:
        number = int(value.strip(), 16)
    except ValueError:
        raise ValueError(f"expected 0x-hex like '0x0200' or 'any', found {value!r}") from None
    if not 0 <= number <= 0xFFFF:
        raise ValueError(f"expected a 16-bit value (0x0000-0xffff), found {value!r}")
    return f"0x{number:04x}"


def _show(value: Any) -> str:
    return f"the integer {value}" if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def _guest_slot(value: Any) -> Any:
    """Guest PCI slot, always hex as in xl's `vslot` (an int is taken as the number)."""
    if isinstance(value, str):
        try:
            value = int(value, 16)
        except ValueError:
            raise ValueError(f"expected a hex slot like '0x05' (0x00-0x1f), found {value!r}") from None
    return value


def _canonical_rule(value: str) -> str:
    return v4v.canonical(value)


HexOrAny = Annotated[
    str,
    BeforeValidator(_hex_or_any, json_schema_input_type=str),
    WithJsonSchema({"type": "string", "pattern": "^(any|0[xX][0-9a-fA-F]{1,4})$"}),
]
Vdev = Annotated[str, AfterValidator(xenfmt.validate_vdev)]
Mac = Annotated[str, AfterValidator(_mac)]
Bdf = Annotated[str, AfterValidator(_bdf)]


def _on_off(value: Any) -> Any:
    """ethtool switches: on/off/true/false (YAML 1.1 reads bare on/off as booleans)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str) and value in ("on", "off", "true", "false"):
        return "on" if value in ("on", "true") else "off"
    raise ValueError(f"expected on, off, true or false, found {value!r}")


OnOff = Annotated[
    Literal["on", "off"],
    BeforeValidator(_on_off, json_schema_input_type=Literal["on", "off", "true", "false"] | bool),
]
RuleText = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_canonical_rule)]


def _canonical_rpc_rule(value: str) -> str:
    """A VM's rpc-proxy rule (`dom-uuid` and `dom-id` refused), canonically spelled. The
    RuleError (a ValueError) keeps its column for the loader to point inside the text."""
    return rpc.canonical(value)


RpcRuleText = Annotated[str, StringConstraints(max_length=1024), AfterValidator(_canonical_rpc_rule)]


# ---- Disk ------------------------------------------------------------------------------


class DiskFields(Model):
    target: str = ""
    format: Literal["raw", "qcow", "qcow2", "vhd", "qed"] = "raw"
    vdev: Vdev
    access: Literal["ro", "rw"] | None = None  # default: rw, ro for a cdrom (set by the loader)
    devtype: Literal["disk", "cdrom"] = "disk"
    backend_vm: Name | None = Field(None, alias="backendVM")
    script: str | None = None
    discard: bool = True


class DiskSpec(DiskFields):
    vm: Name


class NestedDisk(DiskFields):
    name: Name | None = None


class Disk(ResourceBase):
    kind: Literal["Disk"] = "Disk"
    spec: DiskSpec


# ---- NIC -------------------------------------------------------------------------------


class Ethtool(Model):
    rx: OnOff | None = None
    tx: OnOff | None = None
    sg: OnOff | None = None
    tso: OnOff | None = None
    ufo: OnOff | None = None
    gso: OnOff | None = None
    autoneg: OnOff | None = None
    speed: Literal[10, 100, 1000] | None = None
    duplex: Literal["half", "full"] | None = None


class NICFields(Model):
    index: Annotated[int, Field(ge=0, le=1023)] | None = None  # default: position in the VM
    bridge: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,15}$")] = "xenbr0"
    backend_vm: Name | None = Field(None, alias="backendVM")
    mac: Mac = "auto"
    model: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$")] | None = None
    type: Literal["vif", "ioemu"] | None = None
    mtu: Annotated[int, Field(ge=68, le=65535)] = 1500
    rate: Annotated[str, AfterValidator(_rate)] | None = None
    ip: Annotated[str, AfterValidator(_ips)] | None = None
    script: str | None = None
    vifname: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,15}$")] | None = None
    promiscuous: bool = False
    ethtool: Ethtool | None = None


class NICSpec(NICFields):
    vm: Name


class NestedNIC(NICFields):
    name: Name | None = None


class NIC(ResourceBase):
    kind: Literal["NIC"] = "NIC"
    spec: NICSpec


# ---- PCIPassthrough -------------------------------------------------------------------


class PciMatch(Model):
    """Match host devices by 16-bit class, vendor and device; a missing field is `any`.

    class 0x0300 matches every display controller (class & 0xff00), as in xenmgr."""

    class_: HexOrAny = Field("any", alias="class")
    vendor: HexOrAny = "any"
    device: HexOrAny = "any"


class PCIFields(Model):
    bdf: Bdf | None = None
    match: PciMatch | None = None
    guest_slot: Annotated[int, BeforeValidator(_guest_slot, json_schema_input_type=str | int), Field(ge=0, le=31)] | None = None
    permissive: bool = False
    msitranslate: bool = False
    power_mgmt: bool = False
    seize: bool = True
    greedy: bool = False


class PCISpec(PCIFields):
    vm: Name


class NestedPCI(PCIFields):
    name: Name | None = None


class PCIPassthrough(ResourceBase):
    kind: Literal["PCIPassthrough"] = "PCIPassthrough"
    spec: PCISpec


# ---- V4VRule ----------------------------------------------------------------------------


class V4VFields(Model):
    rule: RuleText
    bidirectional: bool = True


class V4VRuleSpec(V4VFields):
    vm: Name


class NestedV4VRule(V4VFields):
    name: Name | None = None


class V4VRule(ResourceBase):
    kind: Literal["V4VRule"] = "V4VRule"
    spec: V4VRuleSpec


# ---- RPCRule ----------------------------------------------------------------------------


class RPCFields(Model):
    rule: RpcRuleText


class RPCRuleSpec(RPCFields):
    """`vm` owns the rule: rpc-proxy applies it to that VM's traffic only (it forces the
    rule's dom-uuid to the VM's)."""

    vm: Name


class NestedRPCRule(RPCFields):
    name: Name | None = None


class RPCRule(ResourceBase):
    kind: Literal["RPCRule"] = "RPCRule"
    spec: RPCRuleSpec
