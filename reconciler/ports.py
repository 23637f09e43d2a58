"""Ports: the narrow interfaces through which the core touches the host.

Stage: boundary. `observe`, `execute` and the watch loop depend on these Protocols only;
`drivers/` implements them (`drivers.xenstore.client.XenstoreClient` for a real or
simulated xenstored), `drivers.sim` the simulated toolstack, PCI back-end,
firewall and network devices, `drivers.xl`/`drivers.pciback`/`drivers.viptables` the
real ones, `drivers.netdev` the network devices (`ip link`/`ethtool`; `NoNetDevices`
stands in where a host has no such driver), `drivers.rpcproxy` rpc-proxy's policy
(`NoRpcPolicy` where a host has none). The small value types the ports exchange live here and in
`reconciler.model.host`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar

from reconciler.model.devices import NIC, Disk
from reconciler.errors import TerminalHostError
from reconciler.model.host import Build, DomainStatus, FirewallEntry, HostPciDevice, NetDevice, RpcPolicy, RpcVmPolicy
from reconciler.model.vm import VM

T = TypeVar("T")

Access = Literal["n", "r", "w", "b"]
_ACCESS: tuple[Access, ...] = ("n", "r", "w", "b")


@dataclass(frozen=True)
class Perm:
    """One xenstore permission entry, e.g. `r5` (domain 5 may read).

    The first entry of a node's list names its owner, and its access letter is the
    default for domains not listed later.
    """

    domid: int
    access: Access

    @property
    def can_read(self) -> bool:
        return self.access in ("r", "b")

    @property
    def can_write(self) -> bool:
        return self.access in ("w", "b")

    def __str__(self) -> str:
        return f"{self.access}{self.domid}"

    @classmethod
    def parse(cls, text: str) -> Perm:
        """Parse `n0`/`r5`/`w7`/`b3`; ValueError names what is wrong."""
        letter, digits = text[:1], text[1:]
        for access in _ACCESS:
            if letter == access and digits.isascii() and digits.isdigit():
                return cls(int(digits), access)
        raise ValueError(f"bad xenstore permission {text!r}: expected n|r|w|b followed by a domid")


@dataclass(frozen=True)
class WatchEvent:
    """A watch fired: `path` changed (or is the watch's own path), `token` names the watch."""

    path: str
    token: str


class XenstoreOps(Protocol):
    """Node operations, available on a connection and inside a transaction."""

    async def read(self, path: str) -> bytes: ...

    async def write(self, path: str, value: bytes | str) -> None: ...

    async def mkdir(self, path: str) -> None: ...

    async def rm(self, path: str) -> None: ...

    async def directory(self, path: str) -> list[str]: ...

    async def get_perms(self, path: str) -> list[Perm]: ...

    async def set_perms(self, path: str, perms: Sequence[Perm]) -> None: ...


class WatchStream(Protocol):
    """Events of one registered watch; iterate it, close it to unwatch."""

    path: str
    token: str

    def __aiter__(self) -> AsyncIterator[WatchEvent]: ...

    async def close(self) -> None: ...


class XenstorePort(XenstoreOps, Protocol):
    """What the core needs from xenstore: node ops, bulk reads, watches, transactions."""

    async def snapshot(self, path: str = "/") -> dict[str, bytes]:
        """Every node at and below `path` with its value, read in few round trips."""
        ...

    async def watch(self, path: str, token: str | None = None) -> WatchStream: ...

    async def transaction(self, body: Callable[[XenstoreOps], Awaitable[T]]) -> T:
        """Run `body` in a transaction, committing it; redone on conflict (EAGAIN)."""
        ...

    async def get_domain_path(self, domid: int) -> str: ...

    async def close(self) -> None: ...


class ToolstackPort(Protocol):
    """Domain and device lifecycle, what `xl` does (reference xen.md 3.6).

    Devices are passed as manifest models; the driver resolves `backendVM` names to
    domids. Errors: `TransientHostError` for what a retry may fix (busy, timeout),
    `TerminalHostError` for the rest (no such domain, bad power state).
    """

    async def list_domains(self) -> list[DomainStatus]:
        """Every domain but dom0, sorted by domid (`xl list`)."""
        ...

    async def create(self, vm: VM, build: Build = Build(), *, paused: bool = True) -> int:
        """Build the domain (`xl create -p`) WITH the devices of `build`, as xl builds the
        devices of its cfg (emulated disks and NICs, passthrough set up at build); its
        domid. Returns once the devices' backends are up, as `attach_disk` does."""
        ...

    async def unpause(self, domid: int) -> None: ...

    async def pause(self, domid: int) -> None: ...

    async def shutdown(self, domid: int, *, timeout: float) -> None:
        """Ask the guest to power off (`control/shutdown`) and wait until the domain is gone;
        `TransientHostError` when the guest does not cooperate within `timeout` seconds."""
        ...

    async def destroy(self, domid: int) -> None:
        """Destroy at once (`xl destroy`), devices torn down, xenstore cleaned."""
        ...

    async def mem_set(self, domid: int, mib: int) -> None: ...

    async def vcpu_set(self, domid: int, count: int) -> None: ...

    async def rename(self, domid: int, name: str) -> None:
        """Give a running domain another name (`xl rename`: /local/domain/<domid>/name and
        /vm/<uuid>/name, its stub domain `<name>-dm` with it); for adopting a domain whose
        uuid a VM of another name has (`spec.adopt`)."""
        ...

    async def attach_disk(self, domid: int, disk: Disk) -> None:
        """`xl block-attach`; returns once the backend is up and its hotplug script ran
        (InitWait, `hotplug-status=connected`). The guest's frontend connects later, when
        it runs: a paused domain cannot, so the observer reports the device initialising."""
        ...

    async def detach_disk(self, domid: int, vdev: str) -> None: ...

    async def attach_nic(self, domid: int, nic: NIC) -> None:
        """`xl network-attach` with `nic.spec.mac` already resolved (no `auto`)."""
        ...

    async def detach_nic(self, domid: int, devid: int) -> None: ...

    async def attach_pci(self, domid: int, bdf: str, *, permissive: bool = False,
                         msitranslate: bool = False, power_mgmt: bool = False,
                         guest_slot: int | None = None) -> None:
        """`xl pci-attach`; the device must already be assignable (on pciback)."""
        ...

    async def detach_pci(self, domid: int, bdf: str) -> None: ...

    async def cd_insert(self, domid: int, vdev: str, target: str, format: str) -> None:
        """`xl cd-insert`: new media in the HVM guest's existing CD drive `vdev` (QEMU
        changes it live; libxl writes the backend's `params`)."""
        ...

    async def cd_eject(self, domid: int, vdev: str) -> None:
        """`xl cd-eject`: the HVM guest's CD drive `vdev` is left empty."""
        ...


class PciBackPort(Protocol):
    """Host PCI inventory and pciback binding (reference xen.md 4)."""

    async def inventory(self) -> list[HostPciDevice]:
        """Every host PCI function, sorted by BDF, with its current driver."""
        ...

    async def assignable_add(self, bdf: str) -> None:
        """Unbind from the current driver and bind to pciback (`xl pci-assignable-add`)."""
        ...

    async def assignable_remove(self, bdf: str, *, rebind: bool = True) -> None:
        """Unbind from pciback; `rebind` gives it back to its original driver."""
        ...


class FirewallPort(Protocol):
    """The v4v firewall table, what `viptables` does (openxt.md 4.2-4.3); default deny."""

    async def list(self) -> list[FirewallEntry]:
        """The table in order (`viptables -L`), the trailing REJECT included."""
        ...

    async def insert(self, entry: FirewallEntry, position: int = 1) -> None: ...

    async def insert_many(self, entries: Sequence[FirewallEntry]) -> None:
        """`viptables -I 1` of each entry, in order (the last ends on top), as one call
        where the host can batch them: one VM's start is one batch (openxt.md 4.3).
        On an error some may be in: list the table again before relying on it."""
        ...

    async def append(self, entry: FirewallEntry) -> None:
        """Add below every entry (`viptables -A`), as xenmgr adds the default REJECT."""
        ...

    async def delete(self, entry: FirewallEntry) -> None:
        """Delete the first equal entry; deleting an absent entry is an error."""
        ...

    async def delete_many(self, entries: Sequence[FirewallEntry]) -> None:
        """`delete` of each entry, in order, as one call where the host can batch them
        (a stopped VM's entries). An absent entry is an error, and nothing is deleted
        where the host can check first; on an error, list the table again."""
        ...


class NetDevicePort(Protocol):
    """The vif interfaces in their backend domains: MTU, promiscuous mode and ethtool
    settings, what `ip link` and `ethtool` read and set (xen.md 8). A vif's interface
    exists from its hotplug (`vif<domid>.<devid>`, MTU from the vif config) until unplug."""

    async def list(self) -> list[NetDevice]:
        """Every vif interface the driver can reach, sorted by (backend domid, name)
        (`ip -d link show` once, `ethtool -k` per interface)."""
        ...

    async def set(self, backend_domid: int, name: str, *, mtu: int | None = None, promiscuous: bool | None = None,
                  ethtool: Mapping[str, str | int] | None = None) -> None:
        """Set what is given and leave the rest (`ip link set dev NAME mtu N promisc on|off`,
        `ethtool -K NAME tso off ...`, `ethtool -s NAME speed N duplex D autoneg on|off`);
        `TerminalHostError` when there is no such interface."""
        ...


class NoNetDevices:
    """A host whose vif interfaces the reconciler cannot reach (ports composed without a
    network-device driver): it shows none, so the observer falls back to the vif's
    xenstore MTU and the last-applied record, and refuses every change."""

    async def list(self) -> list[NetDevice]:
        return []

    async def set(self, backend_domid: int, name: str, *, mtu: int | None = None, promiscuous: bool | None = None,
                  ethtool: Mapping[str, str | int] | None = None) -> None:
        raise TerminalHostError(
            f"cannot set MTU, promiscuous mode or ethtool settings of {name} (backend domain {backend_domid}): this "
            "host has no network-device driver yet (ip link/ethtool): set them on the interface by hand, or leave "
            "promiscuous and ethtool unset and change mtu by re-plugging the NIC")


class RpcPolicyPort(Protocol):
    """rpc-proxy's policy (openxt.md, rpc-proxy rules): the host's global rules file, read
    only, and the per-VM entries (rules and the boolean properties `if-boolean` tests) the
    reconciler puts in force when a VM starts and removes when it stops."""

    async def read(self) -> RpcPolicy: ...

    async def set(self, uuid: str, policy: RpcVmPolicy) -> None:
        """Replace the VM's whole entry (rules and properties), then make rpc-proxy reload."""
        ...

    async def clear(self, uuid: str) -> None:
        """Remove the VM's entry (absent: nothing to do), then make rpc-proxy reload."""
        ...


class NoRpcPolicy:
    """A composition that was given no rpc-proxy driver (the default of `HostPorts.rpc`):
    it shows an empty policy whose global rules are unknown, and the observer reports
    the policy as unknown (`ObservedState.rpc` None); every change is refused."""

    async def read(self) -> RpcPolicy:
        return RpcPolicy(global_rules=None, vms={})

    async def set(self, uuid: str, policy: RpcVmPolicy) -> None:
        raise TerminalHostError(f"cannot put the rpc-proxy rules of VM {uuid} in force: this host was opened without "
                                "an rpc-proxy driver; drop the VM's rpcRules or use a host that has one (xen, sim)")

    async def clear(self, uuid: str) -> None:
        raise TerminalHostError(f"cannot remove the rpc-proxy rules of VM {uuid}: this host was opened without an "
                                "rpc-proxy driver; use a host that has one (xen, sim)")


@dataclass(frozen=True)
class HookResult:
    """How one hook run ended: its exit status and what it printed (each stream bounded
    by the runner, `drivers.hooks.OUTPUT_MAX`)."""

    status: int  # exit status; negative: killed by that signal (timeout)
    stdout: str
    stderr: str


class HookPort(Protocol):
    """VM hooks (DESIGN 4, openxt.md 1.11): executables on the machine the reconciler
    runs on, whichever host it drives (`drivers.hooks.LocalHooks` for every host;
    `NoHooks` where none was given)."""

    async def run(self, argv: Sequence[str], *, timeout: float) -> HookResult:
        """Run `argv` (no shell) with stdin /dev/null; after `timeout` seconds kill its
        process group. `TerminalHostError` when it cannot be started at all."""
        ...


class NoHooks:
    """A composition that was given no hook runner (the default of `HostPorts.hooks`:
    the core may not import `drivers.hooks`); `open_sim` and `open_xen` give the real one."""

    async def run(self, argv: Sequence[str], *, timeout: float) -> HookResult:
        raise TerminalHostError(f"cannot run hook {argv[0] if argv else '(none)'}: this host was opened without a "
                                "hook runner; use `reconciler apply`, which runs hooks on this machine")


@dataclass(frozen=True)
class HostPorts:
    """Everything `observe` and `execute` use to reach one host; `name` for messages."""

    name: str
    xenstore: XenstorePort
    toolstack: ToolstackPort
    pciback: PciBackPort
    firewall: FirewallPort
    netdev: NetDevicePort = field(default_factory=NoNetDevices)
    hooks: HookPort = field(default_factory=NoHooks)
    rpc: RpcPolicyPort = field(default_factory=NoRpcPolicy)
