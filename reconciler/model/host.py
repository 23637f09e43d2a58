"""Host facts outside xenstore: hypervisor domain status, host PCI devices, firewall
entries, the network settings of vif interfaces, rpc-proxy's policy.

Pure value types. The toolstack, PCI back-end, firewall, network-device and rpc-policy ports
(`reconciler.ports`) return them; the observer folds them into `ObservedState`; the
diff reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import total_ordering
from typing import Literal

from reconciler.model.devices import NIC, Disk

PCIBACK_RECORDS = "/reconciler/pciback"
"""xenstore directory (dom0's alone) of the host PCI devices the reconciler bound to
pciback: one node per device, named `DDDD-BB-SS-F` as libxl names them, whose value is
the driver it took the device from ("" for none). Only these it ever gives back."""

RPC_ENTRIES = "/reconciler/rpc"
"""xenstore directory (dom0's alone) of the rpc-proxy entries the reconciler set: `<uuid>` =
VM name, written BEFORE the entry and removed after it is cleared. rpc-proxy's policy says
nothing of who wrote an entry, and once a removed VM's domain is gone nothing else shows
the uuid was the reconciler's: an apply stopped between that VM's destroy and its
`rpc-clear` would leave the entry to no plan. With the mark, the next plan clears it."""

BUILDING = "/reconciler/building"
"""xenstore directory (dom0's alone) of the VMs an apply is building: `<uuid>` = VM name,
written BEFORE `xl create` and removed once the VM's own record is written. libxl
empties `/vm/<uuid>` when it builds a domain (`libxl__domain_make` rm's it), so the
intent cannot live there. A domain whose uuid is listed here is the reconciler's own,
even if the apply that built it was killed before writing its record."""

RECORD_CHUNK = 1024
"""Bytes per node of the last-applied record (`/vm/<uuid>/reconciler/applied/<i>`): a
xenstore value travels in one 4096-byte message with its path, and unprivileged
quotas count 2048 bytes per node; any record fits as enough chunks."""

DomainPower = Literal["running", "paused", "shutdown", "crashed", "dying", "rebooted"]
FirewallTarget = Literal["ACCEPT", "REJECT"]


@dataclass(frozen=True)
class DomainStatus:
    """One domain as the hypervisor lists it (`xl list`): the power state xenstore cannot show.

    `shutdown`: the guest stopped and the domain waits to be destroyed; `crashed`: it
    crashed and `onCrash` is `preserve`; `dying`: being torn down; `rebooted`: the guest
    asked for a reboot (shut down with reason reboot) and no toolstack rebuilt it: domains
    are made with `xl create -e`, so the reconciler carries out `onReboot` itself.
    """

    domid: int
    name: str
    uuid: str
    power: DomainPower
    memory_mib: int
    vcpus: int
    passthrough: bool | None = None  # built with PCI passthrough on; None: the toolstack cannot say


@dataclass(frozen=True)
class PciAssignment:
    """One host PCI function given to a domain, with xl's per-device options."""

    bdf: str  # canonical 0000:03:00.0
    permissive: bool = False
    msitranslate: bool = False
    power_mgmt: bool = False
    guest_slot: int | None = None


@dataclass(frozen=True)
class Build:
    """The devices a domain is built with: xl.cfg `disk=`, `vif=`, `pci=`.

    Made by `reconciler.build.build_of`; given to `ToolstackPort.create`, which builds
    the domain with them as xl does for the devices of its cfg."""

    disks: tuple[Disk, ...] = ()  # sorted by vdev devid
    nics: tuple[NIC, ...] = ()  # sorted by index; MAC resolved (never "auto")
    pci: tuple[PciAssignment, ...] = ()  # sorted by bdf


@dataclass(frozen=True)
class HostPciDevice:
    """A host PCI function from sysfs: ids as lower-case `0x` hex, `driver` None when unbound.

    `pci_class` is the 16-bit class (class and subclass, e.g. `0x0300`, display VGA),
    as OpenXT matches it. `driver` `pciback` means it is assignable to guests.
    """

    bdf: str  # canonical DDDD:BB:SS.F
    vendor: str
    device: str
    pci_class: str
    driver: str | None = None


ETHTOOL_KEYS = ("rx", "tx", "sg", "tso", "ufo", "gso", "autoneg", "speed", "duplex")
"""The ethtool settings a NIC manifest may set (xen.md 8): offload switches `on`/`off`,
`autoneg` likewise, `speed` in Mb/s, `duplex` `half`/`full`."""


@dataclass(frozen=True)
class NetDevice:
    """A vif's network interface in its backend domain, as `ip -d link show` and
    `ethtool -k`/`ethtool` read it (xen.md 8). `backend_domid`/`name` identify it
    (`vif<domid>.<devid>` or the NIC's `vifname`); `ethtool` holds the keys of
    ETHTOOL_KEYS the device reports (a key it does not report is unknown)."""

    backend_domid: int
    name: str
    mtu: int
    promiscuous: bool = False
    ethtool: Mapping[str, str | int] = field(default_factory=dict)


_OPTIONS = {"--dom-in": "dom_in", "--dom-out": "dom_out", "--port-in": "port_in", "--port-out": "port_out"}


@total_ordering
@dataclass(frozen=True)
class FirewallEntry:
    """One viptables rule: `--dom-in/--dom-out/--port-in/--port-out ... -j TARGET`.

    None means the option is left out, i.e. any (openxt.md 4.2): `dom_in` is the
    client (source) domid, `dom_out` the server's, ports likewise. Entries sort with
    "any" before every number, so a table mixing both sorts (a dataclass `order=True`
    would compare None with int).
    """

    dom_in: int | None = None
    dom_out: int | None = None
    port_in: int | None = None
    port_out: int | None = None
    target: FirewallTarget = "ACCEPT"

    def _key(self) -> tuple[tuple[bool, int], ...]:
        fields = (self.dom_in, self.dom_out, self.port_in, self.port_out)
        return (*((v is not None, v or 0) for v in fields), (self.target == "REJECT", 0))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, FirewallEntry):
            return NotImplemented
        return self._key() < other._key()

    def argv(self) -> list[str]:
        """The viptables options for this entry, e.g. `--dom-in 3 --dom-out 0 -j ACCEPT`."""
        args: list[str] = []
        for flag, value in (
            ("--dom-in", self.dom_in),
            ("--dom-out", self.dom_out),
            ("--port-in", self.port_in),
            ("--port-out", self.port_out),
        ):
            if value is not None:
                args += [flag, str(value)]
        return [*args, "-j", self.target]

    def __str__(self) -> str:
        return " ".join(self.argv())

    @classmethod
    def parse(cls, text: str) -> FirewallEntry:
        """`str(entry)` back into the entry (`--dom-in 3 --port-out 80 -j ACCEPT`); ValueError
        names what is not viptables options."""
        words = text.split()
        values: dict[str, int] = {}
        target: FirewallTarget = "ACCEPT"
        if len(words) % 2:
            raise ValueError(f"{text!r}: expected viptables options in pairs, e.g. --dom-in 3 -j ACCEPT")
        for flag, value in zip(words[::2], words[1::2]):
            if flag == "-j" and value in ("ACCEPT", "REJECT"):
                target = "ACCEPT" if value == "ACCEPT" else "REJECT"
            elif flag in _OPTIONS and value.isascii() and value.isdigit():
                values[_OPTIONS[flag]] = int(value)
            else:
                raise ValueError(f"{text!r}: {flag} {value} is not a viptables option "
                                 "(--dom-in/--dom-out/--port-in/--port-out N, -j ACCEPT|REJECT)")
        return cls(values.get("dom_in"), values.get("dom_out"), values.get("port_in"), values.get("port_out"), target)


@dataclass(frozen=True)
class RpcVmPolicy:
    """One VM's entry in rpc-proxy's policy: its rules (canonical text, evaluation order)
    and the xenmgr boolean properties its if-boolean rules test."""

    rules: tuple[str, ...] = ()
    properties: tuple[tuple[str, bool], ...] = ()  # sorted by name


@dataclass(frozen=True)
class RpcPolicy:
    """rpc-proxy's policy as a host shows it (`reconciler.ports.RpcPolicyPort.read`): the
    global rules file's text, and the per-VM entries by VM uuid (sorted)."""

    global_rules: str | None  # text of the host's global rules file; None: none/unreadable
    vms: Mapping[str, RpcVmPolicy] = field(default_factory=dict)  # by VM uuid, sorted
