"""Client side of the simulated host: the toolstack, PCI back-end, firewall, network-device
and rpc-proxy policy ports.

Stage: driver (sim). `SimToolstack`, `SimPciBack`, `SimFirewall`, `SimNetDevices` and
`SimRpcPolicy` implement `reconciler.ports.ToolstackPort`, `PciBackPort`, `FirewallPort`,
`NetDevicePort` and `RpcPolicyPort` by calling the host
process over `rpc.RpcClient`; models travel as their JSON form and are validated again
on the host. Built by `drivers.sim.open_sim`; the xenstore port is the ordinary
`XenstoreClient` on DIR/xenstored.sock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from drivers.sim.firewall import entry_from_json, entry_to_json
from drivers.sim.rpcpolicy import entry_to_json as rpc_entry_to_json
from drivers.sim.rpcpolicy import policy_from_json
from reconciler.errors import TerminalHostError
from reconciler.model import NIC, VM, Disk
from reconciler.model.host import Build, DomainStatus, FirewallEntry, HostPciDevice, NetDevice, RpcPolicy, RpcVmPolicy

if TYPE_CHECKING:
    from reconciler.ports import FirewallPort, NetDevicePort, PciBackPort, RpcPolicyPort, ToolstackPort


def _dump(model: VM | Disk | NIC) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def build_to_json(build: Build) -> dict[str, Any]:
    """A Build as the create request carries it (`dispatch.build_from_json` reads it back)."""
    return {"disks": [_dump(d) for d in build.disks], "nics": [_dump(n) for n in build.nics],
            "pci": [vars(p).copy() for p in build.pci]}


def _rows(value: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TerminalHostError(f"the simulated host sent a bad {what} list: {value!r}")
    return value


class RpcCaller(Protocol):
    """What the clients need of a transport: `rpc.RpcClient`, or `frozen.FrozenRpc` in process."""

    async def call(self, op: str, **args: Any) -> Any: ...


class SimToolstack:
    def __init__(self, rpc: RpcCaller) -> None:
        self.rpc = rpc

    async def list_domains(self) -> list[DomainStatus]:
        return [DomainStatus(**row) for row in _rows(await self.rpc.call("list_domains"), "domain")]

    async def create(self, vm: VM, build: Build = Build(), *, paused: bool = True) -> int:
        domid = await self.rpc.call("create", vm=_dump(vm), build=build_to_json(build), paused=paused)
        if not isinstance(domid, int):
            raise TerminalHostError(f"the simulated host answered create with {domid!r}, not a domid")
        return domid

    async def unpause(self, domid: int) -> None:
        await self.rpc.call("unpause", domid=domid)

    async def pause(self, domid: int) -> None:
        await self.rpc.call("pause", domid=domid)

    async def shutdown(self, domid: int, *, timeout: float) -> None:
        await self.rpc.call("shutdown", domid=domid, timeout=timeout)

    async def destroy(self, domid: int) -> None:
        await self.rpc.call("destroy", domid=domid)

    async def crash(self, domid: int, *, handled: bool = True) -> None:
        """Not a port method: fault injection (`reconciler sim crash`), see `Guests.crash`."""
        await self.rpc.call("crash", domid=domid, handled=handled)

    async def reboot(self, domid: int) -> None:
        """Not a port method: the guest reboots itself (`reconciler sim reboot`), see `Guests.reboot`."""
        await self.rpc.call("reboot", domid=domid)

    async def mem_set(self, domid: int, mib: int) -> None:
        await self.rpc.call("mem_set", domid=domid, mib=mib)

    async def rename(self, domid: int, name: str) -> None:
        await self.rpc.call("rename", domid=domid, name=name)

    async def vcpu_set(self, domid: int, count: int) -> None:
        await self.rpc.call("vcpu_set", domid=domid, count=count)

    async def attach_disk(self, domid: int, disk: Disk) -> None:
        await self.rpc.call("attach_disk", domid=domid, disk=_dump(disk))

    async def detach_disk(self, domid: int, vdev: str) -> None:
        await self.rpc.call("detach_disk", domid=domid, vdev=vdev)

    async def attach_nic(self, domid: int, nic: NIC) -> None:
        await self.rpc.call("attach_nic", domid=domid, nic=_dump(nic))

    async def detach_nic(self, domid: int, devid: int) -> None:
        await self.rpc.call("detach_nic", domid=domid, devid=devid)

    async def attach_pci(self, domid: int, bdf: str, *, permissive: bool = False, msitranslate: bool = False,
                         power_mgmt: bool = False, guest_slot: int | None = None) -> None:
        await self.rpc.call("attach_pci", domid=domid, bdf=bdf, permissive=permissive, msitranslate=msitranslate,
                            power_mgmt=power_mgmt, guest_slot=guest_slot)

    async def detach_pci(self, domid: int, bdf: str) -> None:
        await self.rpc.call("detach_pci", domid=domid, bdf=bdf)

    async def cd_insert(self, domid: int, vdev: str, target: str, format: str) -> None:
        await self.rpc.call("cd_insert", domid=domid, vdev=vdev, target=target, format=format)

    async def cd_eject(self, domid: int, vdev: str) -> None:
        await self.rpc.call("cd_eject", domid=domid, vdev=vdev)


class SimPciBack:
    def __init__(self, rpc: RpcCaller) -> None:
        self.rpc = rpc

    async def inventory(self) -> list[HostPciDevice]:
        return [HostPciDevice(**row) for row in _rows(await self.rpc.call("inventory"), "PCI device")]

    async def assignable_add(self, bdf: str) -> None:
        await self.rpc.call("assignable_add", bdf=bdf)

    async def assignable_remove(self, bdf: str, *, rebind: bool = True) -> None:
        await self.rpc.call("assignable_remove", bdf=bdf, rebind=rebind)


class SimFirewall:
    def __init__(self, rpc: RpcCaller) -> None:
        self.rpc = rpc

    async def list(self) -> list[FirewallEntry]:
        try:
            return [entry_from_json(row) for row in _rows(await self.rpc.call("fw_list"), "firewall entry")]
        except ValueError as exc:
            raise TerminalHostError(f"the simulated host sent a bad firewall entry: {exc}") from exc

    async def insert(self, entry: FirewallEntry, position: int = 1) -> None:
        await self.rpc.call("fw_insert", entry=entry_to_json(entry), position=position)

    async def insert_many(self, entries: Sequence[FirewallEntry]) -> None:
        # One request, one answer (and one latency): the batch of a VM's start.
        await self.rpc.call("fw_insert_many", entries=[entry_to_json(e) for e in entries])

    async def append(self, entry: FirewallEntry) -> None:
        await self.rpc.call("fw_append", entry=entry_to_json(entry))

    async def delete(self, entry: FirewallEntry) -> None:
        await self.rpc.call("fw_delete", entry=entry_to_json(entry))

    async def delete_many(self, entries: Sequence[FirewallEntry]) -> None:
        await self.rpc.call("fw_delete_many", entries=[entry_to_json(e) for e in entries])


class SimNetDevices:
    def __init__(self, rpc: RpcCaller) -> None:
        self.rpc = rpc

    async def list(self) -> list[NetDevice]:
        try:
            return [NetDevice(**row) for row in _rows(await self.rpc.call("netdev_list"), "network device")]
        except TypeError as exc:
            raise TerminalHostError(f"the simulated host sent a bad network device: {exc}") from exc

    async def set(self, backend_domid: int, name: str, *, mtu: int | None = None, promiscuous: bool | None = None,
                  ethtool: Mapping[str, str | int] | None = None) -> None:
        await self.rpc.call("netdev_set", backend_domid=backend_domid, name=name, mtu=mtu, promiscuous=promiscuous,
                            ethtool=dict(ethtool) if ethtool is not None else None)


class SimRpcPolicy:
    def __init__(self, rpc: RpcCaller) -> None:
        self.rpc = rpc

    async def read(self) -> RpcPolicy:
        try:
            return policy_from_json(await self.rpc.call("rpc_read"))
        except ValueError as exc:
            raise TerminalHostError(f"the simulated host sent a bad rpc-proxy policy: {exc}") from exc

    async def set(self, uuid: str, policy: RpcVmPolicy) -> None:
        await self.rpc.call("rpc_set", uuid=uuid, **rpc_entry_to_json(policy))

    async def clear(self, uuid: str) -> None:
        await self.rpc.call("rpc_clear", uuid=uuid)


if TYPE_CHECKING:

    def _implements_the_ports(rpc: RpcCaller) -> tuple[ToolstackPort, PciBackPort, FirewallPort, NetDevicePort,
                                                       RpcPolicyPort]:
        return (SimToolstack(rpc), SimPciBack(rpc), SimFirewall(rpc), SimNetDevices(rpc),  # mypy proves the match
                SimRpcPolicy(rpc))
