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



XenstoreDataKey = Annotated[
    str, AfterValidator(_xenstore_data_key), WithJsonSchema({"type": "string", "pattern": "^vm-data/" + XS_RELATIVE[1:]})
]


class HvmOptions(Model):
    """HVM platform flags passed to the device model; hvm only."""

    pae: bool | None = Field(None, description="Expose PAE to the guest (xl `pae`). Default: unset, xl's default (on).")
    acpi: bool | None = Field(None, description="Expose ACPI tables to the guest (xl `acpi`). Default: unset, xl's default (on).")
    apic: bool | None = Field(None, description="Expose an APIC to the guest (xl `apic`). Default: unset, xl's default (on).")
    nx: bool | None = Field(None, description="Expose the NX (no-execute) bit (xl `nx`). Default: unset, xl's default (on).")
    viridian: bool | None = Field(None, description="Hyper-V enlightenments for Windows guests (xl `viridian`). "
                                  "Default: unset, xl's default (off).")
    hpet: bool | None = Field(None, description="Emulate an HPET timer (xl `hpet`). Default: unset, xl's default (on).")
    timer_mode: str | None = Field(None, description="xl `timer_mode`, e.g. no_delay_for_missed_ticks. "
                                   "Default: unset, xl's default.")
    videoram: MiB | None = Field(None, description="Video RAM of the emulated graphics card, MiB or '16Mi'. "
                                 "Default: unset, xl's default.")


class Display(Model):
    """The VM's console display."""

    type: Literal["none", "vnc", "sdl"] = Field("none", description="none, vnc or sdl. Default: none.")
    vnc_listen: Annotated[str, AfterValidator(_ip)] = Field("127.0.0.1", description="IP address the VNC server "
                                                            "listens on. Default: 127.0.0.1.")
    vnc_password: Secret | None = Field(None, description="VNC password; a secret, never printed in plans or "
                                        "output. Default: none.")
    pv_vnc: bool = Field(True, description="pv/pvh: give a vnc or sdl display as a PV framebuffer (xl "
                            "`vfb`). Default: true.")


class Stubdom(Model):
    """Run the device model in a stub domain (hvm only). Memory defaults to OpenXT's 96 MiB."""

    enabled: bool = Field(False, description="Run qemu in a stub domain instead of dom0. Default: false.")
    memory: MiB = Field(96, description="Memory of the stub domain, MiB or '96Mi'. Default: 96 (OpenXT's).")


class Lifecycle(Model):
    """What Xen does when the guest powers off, reboots or crashes (xl on_poweroff & co)."""

    on_poweroff: LifecycleAction = Field("destroy", description="Action when the guest powers off. Default: destroy.")
    on_reboot: LifecycleAction = Field("restart", description="Action when the guest reboots. Default: restart.")
    on_crash: LifecycleAction = Field("destroy", description="Action when the guest crashes. Default: destroy.")


class Power(Model):
    """What the VM does when the host sleeps (OpenXT s3-mode, s4-mode)."""

    s3_mode: SleepMode = Field("pv", description="On host suspend to RAM (S3): pv (the guest's PV drivers "
                               "suspend it), ignore, or restart. Default: pv.")
    s4_mode: SleepMode = Field("pv", description="On host hibernation (S4): pv, ignore or restart. Default: pv.")


class Hooks(Model):
    """Executables run with the VM uuid as argument (OpenXT run-pre-boot & co); the
    state-change hook gets the public state (running, paused, stopped) after it."""

    pre_boot: AbsPath | None = Field(None, description="Absolute path run before the VM starts, argv [path, uuid]; "
                                     "a failing preBoot fails the start. Default: none.")
    post_create: AbsPath | None = Field(None, description="Absolute path run after the domain is created, "
                                        "argv [path, uuid]. Default: none.")
    on_state_change: AbsPath | None = Field(None, description="Absolute path run on each power state change, argv "
                                            "[path, uuid, state]. Default: none.")
    pre_delete: AbsPath | None = Field(None, description="Absolute path run before the VM is deleted, "
                                       "argv [path, uuid]. Default: none.")


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
    """A VM's desired state (DESIGN.md section 4, VM spec)."""

    uuid: UuidStr | None = Field(None, description="The VM's stable identity. Default: uuid5 of the VM name in a "
                                 "fixed project namespace.")
    type: Annotated[str, StringConstraints(pattern=TAG_PATTERN)] = Field(
        "svm", description="A lower-case tag such as svm, ndvm or uivm, matched by v4v `dom-type=`. Default: svm.")
    virt: Literal["pv", "pvh", "hvm"] = Field(description="Virtualization mode: pv, pvh or hvm. Required.")
    state: PowerState = Field("running", description="Desired power state: running, stopped or paused. "
                              "Default: running.")
    memory: MiB = Field(description="Memory, an integer MiB or a string with unit Mi or Gi ('512Mi', '2Gi'). "
                        "Required.")
    max_memory: MiB | None = Field(None, description="Maximum memory (balloon limit), same units; must be >= "
                                   "memory. Default: = memory.")
    vcpus: Annotated[int, Field(ge=1, le=4096)] = Field(1, description="Virtual CPUs at start, >= 1 and <= "
                                                        "maxVcpus. Default: 1.")
    max_vcpus: Annotated[int, Field(ge=1, le=4096)] | None = Field(None, description="Maximum virtual CPUs, >= "
                                                                   "vcpus. Default: = vcpus.")
    kernel: AbsPath | None = Field(None, description="Absolute path of the guest kernel (pv/pvh need kernel or "
                                   "bootloader). Default: none.")
    ramdisk: AbsPath | None = Field(None, description="Absolute path of the initial ramdisk. Default: none.")
    cmdline: str | None = Field(None, description="Kernel command line. Default: none.")
    bootloader: str | None = Field(None, description="Bootloader run in dom0 to find the kernel, e.g. pygrub "
                                   "(pv/pvh need kernel or bootloader). Default: none.")
    boot: Annotated[str, StringConstraints(pattern=BOOT_PATTERN)] | None = Field(
        None, description="Boot order letters c (disk), d (cdrom), n (network); hvm only. Default: cd.")
    hvm: HvmOptions | None = Field(None, description="HVM platform flags {pae, acpi, apic, nx, viridian, hpet, "
                                   "timerMode, videoram}; hvm only. Default: none (xl's defaults).")
    display: Display = Field(Display(), description="Console display {type: none|vnc|sdl, vncListen, vncPassword, "
                             "pvVnc}. Default: {type: none}.")
    serial: str | None = Field(None, description="Emulated serial port (hvm), e.g. pty or tcp:HOST:PORT. "
                                 "Default: none.")
    stubdom: Stubdom | None = Field(None, description="Run the device model in a stub domain {enabled, memory}; "
                                    "hvm only. Default: disabled.")
    flask_label: str | None = Field(None, description="XSM/FLASK security label of the domain. Default: none.")
    lifecycle: Lifecycle = Field(Lifecycle(), description="{onPoweroff, onReboot, onCrash}. Default: "
                                 "destroy/restart/destroy.")
    power: Power = Field(Power(), description="Host sleep behaviour {s3Mode, s4Mode}: pv|ignore|restart. "
                         "Default: pv.")
    start_priority: int = Field(0, description="Tie-break among independent VMs: higher starts first. Default: 0.")
    shutdown_priority: int = Field(0, description="Tie-break among independent VMs: higher stops first. "
                                   "Default: 0.")
    provides_network_backend: bool = Field(False, description="This VM may be a NIC's backendVM (a network "
                                           "driver domain). Default: false.")
    depends_on: list[Name] = Field([], description="Names of VMs that must run before this one starts (extra "
                                   "start-order edges). Default: [].")
    boot_sentinel: Annotated[str, StringConstraints(pattern=XS_RELATIVE, max_length=256)] | None = Field(
        None, description="A xenstore node under /local/domain/<domid>/: VMs that depend on this one wait until "
        "it is non-empty. Default: none (running is enough).")
    xenstore_data: dict[XenstoreDataKey, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        {}, description="Map of vm-data/... keys to strings written into the guest's xenstore; keys outside "
        "vm-data/ are an error. Default: {}.")
    hooks: Hooks = Field(Hooks(), description="{preBoot, postCreate, onStateChange, preDelete}: absolute "
                         "executable paths run as OpenXT runs them (argv [path, uuid], no shell, with a timeout). "
                         "Default: none.")
    update_policy: Literal["live", "restart"] = Field("live", description="May apply restart a running VM for a "
                                                      "restart-only change? live: no; restart: yes. Default: live.")
    adopt: bool = Field(False, description="Take over a domain another toolstack built, with this VM's uuid (else "
                        "its name): the plan shows `<= adopt`, then only the changes the manifest needs; nothing is "
                        "restarted for the adoption. Does nothing for a VM the reconciler already manages. Default: false.")
    # xenmgr boolean properties (domstore-read-access...) the VM's rpc rules may test with
    # if-boolean; one not given has xenmgr's default (rpc.PROPERTY_DEFAULTS).
    properties: dict[PropertyName, bool] = Field({}, description="xenmgr boolean properties the VM's rpc rules "
                                                 "may test with if-boolean. Default: {} (xenmgr's defaults).")
    # Nested devices: normalized into standalone resources by the loader.
    disks: list[NestedDisk] = Field([], description="Disks of this VM, as Disk specs without `vm`. Default: [].")
    nics: list[NestedNIC] = Field([], description="NICs of this VM, as NIC specs without `vm`. Default: [].")
    pci: list[NestedPCI] = Field([], description="PCI passthrough rules of this VM, as PCIPassthrough specs "
                                 "without `vm`. Default: [].")
    v4v_rules: list[NestedRuleItem] = Field([], alias="v4vRules", description="v4v firewall rules of this VM: "
                                            "rule strings or V4VRule specs without `vm`. Default: [].")
    rpc_rules: list[NestedRpcItem] = Field([], alias="rpcRules", description="rpc-proxy rules of this VM: rule "
                                           "strings or RPCRule specs without `vm`. Default: [].")


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
    """A virtual machine (DESIGN.md section 4)."""

    kind: Literal["VM"] = Field("VM", description="VM.")
    spec: VMSpec = Field(description="The VM's desired state.")
