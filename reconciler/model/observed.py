"""ObservedState: what a host's xenstore says is there, in the manifest model types.

Pure value. Built by `reconciler.observe.observe_tree` (from a live xenstore walk or a
captured dump) and read by the diff, which compares it with DesiredState like with
like: VMs, Disks, NICs and PCIPassthrough are the same pydantic models the loader
produces. What the models do not carry (domid, managed marker, device health, host
PCI devices on pciback, what could not be read) sits beside them here.

Observed devices have no manifest names; they are named `<vm>-<kind>-<devid>` with
kind `disk`, `nic` or `pci` (for PCI the devid is the index `i` of `dev-<i>`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from reconciler.model.devices import NIC, Disk, PCIPassthrough
from reconciler.model.host import FirewallEntry, HostPciDevice, RpcPolicy
from reconciler.model.vm import VM

HealthState = Literal["connected", "initialising", "closing", "closed", "failed"]
ObservedPower = Literal["running", "paused", "stopped", "crashed", "rebooted", "shutdown"]


@dataclass(frozen=True)
class DomainInfo:
    """Per-domain facts xenstore shows that the VM model has no field for.

    `power` is `running` unless xenstore shows otherwise: shutdown and pause are
    hypervisor state, not xenstore state (reference 2.9), so a dump cannot prove them.
    With a toolstack (a live or simulated host) `power` comes from `xl list`.
    `managed`/`digest`/`applied` come from `/vm/<uuid>/reconciler/{managed,digest,
    applied/<i>}` (chunks joined), written by the reconciler when it creates or updates a VM: `applied` is
    the JSON record of the spec fields the host cannot show (see `reconciler.diff`),
    `digest` its sha256. A VM without `managed` is not ours to change, unless its uuid
    is under `reconciler.model.host.BUILDING`: then an apply built it and was stopped
    before recording it (`unfinished`), and it is ours, with work left.
    `booted`: whether the guest wrote the `bootSentinel` node its record names under
    `/local/domain/<domid>/` (non-empty: its services are up); None without one.
    `xenstore_gone`: the hypervisor lists the domain but xenstore has no
    `/local/domain/<domid>` for it (someone ran `xenstore-rm` on it): name, uuid and
    power come from `xl list`, the marker and record from `/vm/<uuid>/reconciler` if
    that survived (`ObservedState.vm_records`); no VM model or devices are observed.
    `passthrough`: whether the domain was built with PCI passthrough enabled (the
    toolstack's `DomainStatus.passthrough`: libxl turns it on only when the config it is
    built from has `pci=`); None when the source cannot say (a dump, an older xl).
    """

    name: str
    domid: int
    uuid: str | None
    power: ObservedPower = "running"
    managed: bool = False
    digest: str | None = None
    applied: str | None = None
    unfinished: bool = False
    booted: bool | None = None
    xenstore_gone: bool = False
    passthrough: bool | None = None


@dataclass(frozen=True)
class VmRecord:
    """The reconciler's marker and last-applied record under `/vm/<uuid>/reconciler`
    of a uuid no `/local/domain/<domid>` names: kept so a domain the hypervisor still
    lists after its xenstore tree was removed can be matched to it (see DomainInfo).
    `name`: `/vm/<uuid>/name` (libxl writes it), for a hypervisor listing that cannot
    name the domain (real `xl list` reads names from xenstore and prints `(null)`)."""

    managed: bool
    digest: str | None
    applied: str | None
    name: str | None = None


@dataclass(frozen=True)
class DeviceHealth:
    """Where a device's backend is in its XenbusState life, folded to five words.

    `reason` explains anything but `connected`: the hotplug script's `hotplug-error`,
    the guest's `error/device/...` node, or which state the backend is waiting in.
    """

    state: HealthState
    reason: str | None = None


@dataclass(frozen=True)
class StrandedDevice:
    """A guest's disk or NIC whose frontend and `/libxl/<d>/device` copy are still there
    but whose backend directory is gone: its backend domain died or was destroyed
    (domain death removes its nodes, xen.md 1.10) and nothing unplugged the guest's
    side. libxl refuses to add the device again while the copy exists
    (ERROR_DEVICE_EXISTS); a detach finds no backend state and only cleans up (2.3).
    `name` is the observed device name (`<vm>-disk-<devid>`, `<vm>-nic-<devid>`);
    `vdev` is a disk's virtual device (None for a NIC); `backend_domid` the domain the
    stale copy still names."""

    kind: Literal["Disk", "NIC"]
    name: str
    vm: str
    devid: int
    backend_domid: int
    vdev: str | None = None


@dataclass(frozen=True)
class ObservedState:
    """Everything observed, each mapping sorted by name; `problems` are sentences
    about nodes that were missing, malformed, unknown or truncated (never raised).

    `host_pci` (sysfs inventory), `firewall` (the viptables table) and `rpc` (rpc-proxy's
    policy) are None when the source cannot show them: a captured xenstore dump has none.
    """

    vms: Mapping[str, VM] = field(default_factory=dict)
    disks: Mapping[str, Disk] = field(default_factory=dict)
    nics: Mapping[str, NIC] = field(default_factory=dict)
    pci: Mapping[str, PCIPassthrough] = field(default_factory=dict)
    domains: Mapping[str, DomainInfo] = field(default_factory=dict)
    health: Mapping[str, DeviceHealth] = field(default_factory=dict)
    pci_assignable: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    host_pci: tuple[HostPciDevice, ...] | None = None
    firewall: tuple[FirewallEntry, ...] | None = None
    # Host devices the reconciler bound to pciback -> the driver they came from (None:
    # unbound), from its records under `reconciler.model.host.PCIBACK_RECORDS`.
    pciback_bound: Mapping[str, str | None] = field(default_factory=dict)
    # Build intents an interrupted apply left (`reconciler.model.host.BUILDING`): uuid -> VM name.
    building: Mapping[str, str] = field(default_factory=dict)
    # rpc-proxy entries the reconciler set (`reconciler.model.host.RPC_ENTRIES`): uuid -> VM name.
    rpc_owned: Mapping[str, str] = field(default_factory=dict)
    # Devices left stranded by a backend domain that is gone, by observed device name.
    stranded: Mapping[str, StrandedDevice] = field(default_factory=dict)
    # `/vm/<uuid>/reconciler` records whose uuid no listed domain holds, by uuid (VmRecord).
    vm_records: Mapping[str, VmRecord] = field(default_factory=dict)
    # rpc-proxy's policy (global rules, per-VM entries by uuid); None: a captured dump, or
    # a host opened without an rpc-proxy driver, cannot show it.
    rpc: RpcPolicy | None = None
