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


HEX_OR_ANY_PATTERN = r"^\s*([aA][nN][yY]|0[xX][0-9a-fA-F_]+)\s*$"
V4V_PATTERN = "->"  # exactly one arrow; the parser says what else is wrong
RPC_PATTERN = r"^[ \t]*(allow|deny)([ \t]|$)"
HexOrAny = Annotated[
    str,
    BeforeValidator(_hex_or_any, json_schema_input_type=str),
    # An unquoted 0x0200 is a string to our loader but the integer 512 to YAML 1.2 editors
    # (yaml-language-server): the editor must accept both spellings of what validate accepts.
    WithJsonSchema({"anyOf": [
        {"type": "string", "pattern": HEX_OR_ANY_PATTERN},
        {"type": "integer", "minimum": 0, "maximum": 0xFFFF},
    ]}),
]
# JSON Schema patterns for editors: each accepts at least what the validator accepts.
VDEV_PATTERN = r"^(xvd[a-z]{1,5}([1-9][0-9]{0,2})?|hd[a-d]([1-9][0-9]?)?|sd[a-p]([1-9][0-9]?)?)$"
MAC_PATTERN = r"^(auto|[0-9a-fA-F][02468aceACE](:[0-9a-fA-F]{2}){5})$"  # unicast: first octet even
BDF_PATTERN = r"^\s*([0-9a-fA-F]{1,4}:)?[0-9a-fA-F]{1,2}:[01]?[0-9a-fA-F]\.[0-7]\s*$"
RATE_PATTERN = r"^[0-9]+[GMK]?[Bb]/s(@[0-9]+[mu]?s?)?$"
Vdev = Annotated[str, AfterValidator(xenfmt.validate_vdev), WithJsonSchema({"type": "string", "pattern": VDEV_PATTERN})]
Mac = Annotated[str, AfterValidator(_mac), WithJsonSchema({"type": "string", "pattern": MAC_PATTERN})]
Bdf = Annotated[str, AfterValidator(_bdf), WithJsonSchema({"type": "string", "pattern": BDF_PATTERN})]


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
RuleText = Annotated[
    str, StringConstraints(max_length=1024), AfterValidator(_canonical_rule),
    WithJsonSchema({"type": "string", "maxLength": 1024, "pattern": V4V_PATTERN}),
]


def _canonical_rpc_rule(value: str) -> str:
    """A VM's rpc-proxy rule (`dom-uuid` and `dom-id` refused), canonically spelled. The
    RuleError (a ValueError) keeps its column for the loader to point inside the text."""
    return rpc.canonical(value)


RpcRuleText = Annotated[
    str, StringConstraints(max_length=1024), AfterValidator(_canonical_rpc_rule),
    WithJsonSchema({"type": "string", "maxLength": 1024, "pattern": RPC_PATTERN}),
]


# ---- Disk ------------------------------------------------------------------------------


class DiskFields(Model):
    """A virtual disk of a VM; removing it from manifests detaches it, the image is kept."""

    target: str = Field("", description="Path of the disk image or device in the backend; may be empty only for "
                        "an empty cdrom. Default: empty.")
    format: Literal["raw", "qcow", "qcow2", "vhd", "qed"] = Field("raw", description="Image format. Default: raw.")
    vdev: Vdev = Field(description="Virtual device name the guest sees: xvdX[N], hdX[N] (X a-d) or sdX[N] (X a-p), "
                       "e.g. xvda or hdc. Required.")
    access: Literal["ro", "rw"] | None = Field(None, description="ro or rw. Default: rw, ro for a cdrom.")
    devtype: Literal["disk", "cdrom"] = Field("disk", description="disk or cdrom. Default: disk.")
    backend_vm: Name | None = Field(None, alias="backendVM", description="VM that serves the disk (a storage "
                                    "driver domain). Default: dom0.")
    script: str | None = Field(None, description="Block hotplug script run by the backend. Default: none "
                               "(xl's).")
    discard: bool = Field(True, description="Pass discard (TRIM) requests to the backend. Default: true.")


class DiskSpec(DiskFields):
    """A Disk (DESIGN.md section 4, Disk spec)."""

    vm: Name = Field(description="Name of the VM this device belongs to. Required.")


class NestedDisk(DiskFields):
    """A disk in a VM's `spec.disks`."""

    name: Name | None = Field(None, description="Name of the resulting Disk. Default: <vm>-<vdev>.")


class Disk(ResourceBase):
    """A virtual disk of a VM (DESIGN.md section 4)."""

    kind: Literal["Disk"] = Field("Disk", description="Disk.")
    spec: DiskSpec = Field(description="The disk's desired state.")


# ---- NIC -------------------------------------------------------------------------------


class Ethtool(Model):
    """Offload and link settings set with ethtool on the backend vif; unset ones are left alone."""

    rx: OnOff | None = Field(None, description="Receive checksum offload: on, off, true or false. Default: unset.")
    tx: OnOff | None = Field(None, description="Transmit checksum offload: on, off, true or false. Default: unset.")
    sg: OnOff | None = Field(None, description="Scatter-gather: on, off, true or false. Default: unset.")
    tso: OnOff | None = Field(None, description="TCP segmentation offload: on, off, true or false. Default: unset.")
    ufo: OnOff | None = Field(None, description="UDP fragmentation offload: on, off, true or false. Default: unset.")
    gso: OnOff | None = Field(None, description="Generic segmentation offload: on, off, true or false. "
                              "Default: unset.")
    autoneg: OnOff | None = Field(None, description="Link autonegotiation: on, off, true or false. Default: unset.")
    speed: Literal[10, 100, 1000] | None = Field(None, description="Link speed in Mb/s: 10, 100 or 1000. "
                                                 "Default: unset.")
    duplex: Literal["half", "full"] | None = Field(None, description="half or full. Default: unset.")


class NICFields(Model):
    """A virtual network interface of a VM."""

    index: Annotated[int, Field(ge=0, le=1023)] | None = Field(None, description="Device id (devid) in the guest, "
                                                               "0-1023. Default: position among the VM's NICs.")
    bridge: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,15}$")] = Field(
        "xenbr0", description="Bridge the backend vif joins. Default: xenbr0.")
    backend_vm: Name | None = Field(None, alias="backendVM", description="VM that serves the NIC; it must have "
                                    "providesNetworkBackend and starts first. Default: dom0.")
    mac: Mac = Field("auto", description="xx:xx:xx:xx:xx:xx (unicast) or auto: deterministic from the VM uuid and "
                     "index, locally administered unicast. Default: auto.")
    model: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]+$")] | None = Field(
        None, description="Emulated NIC model for hvm, e.g. e1000. Default: none (xl's).")
    type: Literal["vif", "ioemu"] | None = Field(None, description="vif (PV only) or ioemu (emulated, hvm). "
                                                 "Default: none (xl's).")
    mtu: Annotated[int, Field(ge=68, le=65535)] = Field(1500, description="MTU, 68-65535. Default: 1500.")
    rate: Annotated[str, AfterValidator(_rate), WithJsonSchema({"type": "string", "pattern": RATE_PATTERN})] | None = (
        Field(None, description="Bandwidth limit in xl grammar, e.g. 10Mb/s or 1MB/s@20ms. Default: unlimited."))
    ip: Annotated[str, AfterValidator(_ips)] | None = Field(None, description="IP addresses of the guest, "
                                                            "separated by spaces (for the vif script). Default: none.")
    script: str | None = Field(None, description="Network hotplug script run by the backend. Default: none (xl's).")
    vifname: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,15}$")] | None = Field(
        None, description="Name of the backend interface, at most 15 characters. Default: vif<domid>.<index>.")
    promiscuous: bool = Field(False, description="Let the guest see all traffic on the bridge. Default: false.")
    ethtool: Ethtool | None = Field(None, description="{rx, tx, sg, tso, ufo, gso, autoneg: on|off|true|false, "
                                    "speed: 10|100|1000, duplex: half|full}. Default: none.")


class NICSpec(NICFields):
    """A NIC (DESIGN.md section 4, NIC spec)."""

    vm: Name = Field(description="Name of the VM this device belongs to. Required.")


class NestedNIC(NICFields):
    """A NIC in a VM's `spec.nics`."""

    name: Name | None = Field(None, description="Name of the resulting NIC. Default: <vm>-nic<index>.")


class NIC(ResourceBase):
    """A virtual network interface of a VM (DESIGN.md section 4)."""

    kind: Literal["NIC"] = Field("NIC", description="NIC.")
    spec: NICSpec = Field(description="The NIC's desired state.")


# ---- PCIPassthrough -------------------------------------------------------------------


class PciMatch(Model):
    """Match host devices by 16-bit class, vendor and device; a missing field is `any`.

    class 0x0300 matches every display controller (class & 0xff00), as in xenmgr."""

    class_: HexOrAny = Field("any", alias="class", description="16-bit PCI class, 0x-hex like '0x0200', or any; "
                             "0x0300 matches every display controller (class & 0xff00). Default: any.")
    vendor: HexOrAny = Field("any", description="16-bit PCI vendor id, 0x-hex like '0x8086', or any. Default: any.")
    device: HexOrAny = Field("any", description="16-bit PCI device id, 0x-hex like '0x1502', or any. Default: any.")


GUEST_SLOT_PATTERN = r"^\s*[+-]?(0[xX])?[0-9a-fA-F_]+\s*$"  # what int(value, 16) takes


class PCIFields(Model):
    """A PCI passthrough rule: exactly one of bdf or match."""

    bdf: Bdf | None = Field(None, description="Host PCI address DDDD:BB:SS.F or BB:SS.F (hex, domain 0000 when "
                            "omitted). Exactly one of bdf or match.")
    match: PciMatch | None = Field(None, description="Host devices by {class, vendor, device}, each 0x-hex or any. "
                                   "Exactly one of bdf or match.")
    guest_slot: Annotated[int, BeforeValidator(_guest_slot, json_schema_input_type=str | int), Field(ge=0, le=31),
                          WithJsonSchema({"anyOf": [{"type": "string", "pattern": GUEST_SLOT_PATTERN},
                                                    {"type": "integer", "minimum": 0, "maximum": 31}]})] | None = Field(
        None, description="PCI slot in the guest, hex like '0x02' (0x00-0x1f). Default: the next free slot.")
    permissive: bool = Field(False, description="Let the guest write any PCI config space (xl `permissive`). "
                             "Default: false.")
    msitranslate: bool = Field(False, description="Translate the guest's MSI to INTx (xl `msitranslate`). "
                               "Default: false.")
    power_mgmt: bool = Field(False, description="Let the guest power-manage the device (xl `power_mgmt`). "
                             "Default: false.")
    seize: bool = Field(True, description="Bind the device to pciback when the VM starts. Default: true.")
    greedy: bool = Field(False, description="Bind to pciback even while the VM is stopped, so dom0 drivers never "
                         "take it. Default: false.")


class PCISpec(PCIFields):
    """A PCIPassthrough (DESIGN.md section 4, PCIPassthrough spec)."""

    vm: Name = Field(description="Name of the VM this device belongs to. Required.")


class NestedPCI(PCIFields):
    """A PCI passthrough rule in a VM's `spec.pci`."""

    name: Name | None = Field(None, description="Name of the resulting PCIPassthrough. Default: <vm>-pci-<bdf> or "
                              "<vm>-pci-<class>-<vendor>-<device>.")


class PCIPassthrough(ResourceBase):
    """Host PCI devices given to a VM (DESIGN.md section 4)."""

    kind: Literal["PCIPassthrough"] = Field("PCIPassthrough", description="PCIPassthrough.")
    spec: PCISpec = Field(description="The passthrough rule.")


# ---- V4VRule ----------------------------------------------------------------------------


class V4VFields(Model):
    """A v4v firewall rule; the firewall is default-deny."""

    rule: RuleText = Field(description="CLIENT -> SERVER, each DOMAIN[:PORT|*] with DOMAIN one of *, myself, "
                           "my-stubdom, dom-type=TAG, dom-name=NAME, 0 or a UUID. Required.")
    bidirectional: bool = Field(True, description="Also allow the inverse rule, as v4v has no connection state. "
                                "Default: true.")


class V4VRuleSpec(V4VFields):
    """A V4VRule (DESIGN.md section 4, V4VRule spec)."""

    vm: Name = Field(description="The VM that owns the rule (the context for `myself`). Required.")


class NestedV4VRule(V4VFields):
    """A v4v rule in a VM's `spec.v4vRules`; a plain string is the rule."""

    name: Name | None = Field(None, description="Name of the resulting V4VRule. Default: <vm>-v4v-<hash>.")


class V4VRule(ResourceBase):
    """A v4v firewall rule (DESIGN.md section 4)."""

    kind: Literal["V4VRule"] = Field("V4VRule", description="V4VRule.")
    spec: V4VRuleSpec = Field(description="The rule.")


# ---- RPCRule ----------------------------------------------------------------------------


class RPCFields(Model):
    """An rpc-proxy rule for the DBus traffic a VM sends to dom0."""

    rule: RpcRuleText = Field(description="One line of the rpc-proxy grammar: allow|deny [subject] (all | "
                              "specifier...), specifiers destination, interface, member, sender, dom-type, dom-name, "
                              "stubdom true|false, if-boolean PROPERTY true|false. Required.")


class RPCRuleSpec(RPCFields):
    """`vm` owns the rule: rpc-proxy applies it to that VM's traffic only (it forces the
    rule's dom-uuid to the VM's)."""

    vm: Name = Field(description="The VM that owns the rule: it applies to that VM's traffic only. Required.")


class NestedRPCRule(RPCFields):
    """An rpc-proxy rule in a VM's `spec.rpcRules`; a plain string is the rule."""

    name: Name | None = Field(None, description="Name of the resulting RPCRule. Default: <vm>-rpc-<hash>.")


class RPCRule(ResourceBase):
    """An rpc-proxy rule (DESIGN.md section 4)."""

    kind: Literal["RPCRule"] = Field("RPCRule", description="RPCRule.")
    spec: RPCRuleSpec = Field(description="The rule.")
