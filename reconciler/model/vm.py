"""The VM kind: DESIGN.md section 4, `VM spec`.

Pure value types. Nested device lists (`disks`, `nics`, `pci`, `v4vRules`, `rpcRules`) are
accepted here and turned into standalone resources by the loader, so the rest of the pipeline
sees one form only. Checks that span fields (maxMemory >= memory, hvm-only fields...)
live in `reconciler.loader.checks`, where they can point at the exact YAML line.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, WithJsonSchema

from reconciler.model.common import (
    BOOT_PATTERN,
    TAG_PATTERN,
    AbsPath,
    MiB,
    Model,
    Name,
    PowerState,
    ResourceBase,
    Secret,
    UuidStr,
)
from reconciler import rpc
from reconciler.model.devices import NestedDisk, NestedNIC, NestedPCI, NestedRPCRule, NestedV4VRule

LifecycleAction = Literal["destroy", "restart", "preserve", "rename-restart", "coredump-destroy", "coredump-restart"]
SleepMode = Literal["pv", "ignore", "restart"]

# A node name under /local/domain/<domid>/: xenstore path characters, relative, no '..'.
XS_RELATIVE = r"^[A-Za-z0-9_@-]+(/[A-Za-z0-9_@-]+)*$"
_XS_RELATIVE = re.compile(XS_RELATIVE)


def _ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"expected an IP address like 127.0.0.1 or ::1, found {value!r}") from None
    return value


def _xenstore_data_key(key: str) -> str:
    if not key.startswith("vm-data/") or key == "vm-data/":
        raise ValueError(
            f"xenstoreData key {key!r} is outside vm-data/: only vm-data/... keys may be "
            "written into the guest's xenstore (XenServer silently drops others; we refuse)"
        )
    if not _XS_RELATIVE.fullmatch(key) or ".." in key.split("/"):
        raise ValueError(f"xenstoreData key {key!r} has characters xenstore does not allow: use A-Z a-z 0-9 - _ @ and /")
    return key



XenstoreDataKey = Annotated[str, AfterValidator(_xenstore_data_key)]


class HvmOptions(Model):
    """HVM platform flags passed to the device model; hvm only."""

    pae: bool | None = None
    acpi: bool | None = None
    apic: bool | None = None
    nx: bool | None = None
    viridian: bool | None = None
    hpet: bool | None = None
    timer_mode: str | None = None
    videoram: MiB | None = None


class Display(Model):
    type: Literal["none", "vnc", "sdl"] = "none"
    vnc_listen: Annotated[str, AfterValidator(_ip)] = "127.0.0.1"
    vnc_password: Secret | None = None
    pv_vnc: bool = True


class Stubdom(Model):
    """Run the device model in a stub domain (hvm only). Memory defaults to OpenXT's 96 MiB."""

    enabled: bool = False
    memory: MiB = 96


class Lifecycle(Model):
    on_poweroff: LifecycleAction = "destroy"
    on_reboot: LifecycleAction = "restart"
    on_crash: LifecycleAction = "destroy"


class Power(Model):
    s3_mode: SleepMode = "pv"
    s4_mode: SleepMode = "pv"


class Hooks(Model):
    """Executables run with the VM uuid as argument (OpenXT run-pre-boot & co); the
    state-change hook gets the public state (running, paused, stopped) after it."""

    pre_boot: AbsPath | None = None
    post_create: AbsPath | None = None
    on_state_change: AbsPath | None = None
    pre_delete: AbsPath | None = None


def _v4v_shorthand(value: Any) -> Any:
    """A plain string in `v4vRules` is shorthand for `{rule: <string>}`."""
    return {"rule": value} if isinstance(value, str) else value


NestedRuleItem = Annotated[
    NestedV4VRule, BeforeValidator(_v4v_shorthand, json_schema_input_type=str | NestedV4VRule)
]
# The same shorthand in `rpcRules`: a plain string is `{rule: <string>}`.
NestedRpcItem = Annotated[
    NestedRPCRule, BeforeValidator(_v4v_shorthand, json_schema_input_type=str | NestedRPCRule)
]


def _property_name(key: str) -> str:
    if key not in rpc.PROPERTY_DEFAULTS:
        hint = rpc.suggest(key, rpc.PROPERTY_DEFAULTS)
        raise ValueError(f"unknown property {key!r}: expected one of {', '.join(rpc.PROPERTY_DEFAULTS)} "
                         f"(xenmgr's boolean VM properties an rpc rule's if-boolean may test){hint}")
    return key


# xenmgr's boolean VM properties (`rpc.PROPERTY_DEFAULTS`), which rpc-proxy's `if-boolean` reads.
PropertyName = Annotated[
    str, AfterValidator(_property_name), WithJsonSchema({"type": "string", "enum": list(rpc.PROPERTY_DEFAULTS)})
]


class VMSpec(Model):
    uuid: UuidStr | None = None
    type: Annotated[str, StringConstraints(pattern=TAG_PATTERN)] = "svm"
    virt: Literal["pv", "pvh", "hvm"]
    state: PowerState = "running"
    memory: MiB
    max_memory: MiB | None = None
    vcpus: Annotated[int, Field(ge=1, le=4096)] = 1
    max_vcpus: Annotated[int, Field(ge=1, le=4096)] | None = None
    kernel: AbsPath | None = None
    ramdisk: AbsPath | None = None
    cmdline: str | None = None
    bootloader: str | None = None
    boot: Annotated[str, StringConstraints(pattern=BOOT_PATTERN)] | None = None
    hvm: HvmOptions | None = None
    display: Display = Display()
    serial: str | None = None
    stubdom: Stubdom | None = None
    flask_label: str | None = None
    lifecycle: Lifecycle = Lifecycle()
    power: Power = Power()
    start_priority: int = 0
    shutdown_priority: int = 0
    provides_network_backend: bool = False
    depends_on: list[Name] = []
    boot_sentinel: Annotated[str, StringConstraints(pattern=XS_RELATIVE, max_length=256)] | None = None
    xenstore_data: dict[XenstoreDataKey, Annotated[str, StringConstraints(max_length=4096)]] = {}
    hooks: Hooks = Hooks()
    update_policy: Literal["live", "restart"] = "live"
    # xenmgr boolean properties (domstore-read-access...) the VM's rpc rules may test with
    # if-boolean; one not given has xenmgr's default (rpc.PROPERTY_DEFAULTS).
    properties: dict[PropertyName, bool] = {}
    # Nested devices: normalized into standalone resources by the loader.
    disks: list[NestedDisk] = []
    nics: list[NestedNIC] = []
    pci: list[NestedPCI] = []
    v4v_rules: list[NestedRuleItem] = Field([], alias="v4vRules")
    rpc_rules: list[NestedRpcItem] = Field([], alias="rpcRules")


# Fields a manifest may not hold any more, with the one-line message the loader gives
# (path inside the document -> what to do instead). `install` (XenServer's PV network
# install keys) was accepted but reached no host: nothing fetched the installer from
# `repository` nor ran it, so the first boot ignored it silently.
WITHDRAWN: dict[tuple[str | int, ...], str] = {
    ("spec", "install"): (
        "not supported (it reached no host); for a PV network install, fetch the installer's kernel and "
        "ramdisk from the repository yourself, set kernel, ramdisk and cmdline to them and apply, then "
        "replace them with bootloader: pygrub in the next commit (a restart)"),
}


class VM(ResourceBase):
    kind: Literal["VM"] = "VM"
    spec: VMSpec
