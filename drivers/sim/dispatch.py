"""The simulated host's RPC operations: names, argument decoding, faults, results.

Stage: simulated host. `Dispatcher.call(op, args)` is the RPC server's handler: it
applies the operation's fault decision first (latency, hang, transient error, so a
failed call changes nothing), decodes the JSON arguments into the manifest models,
runs the toolstack/PCI/firewall/rpc-policy operation and encodes the result as JSON. One
operation name per port method (firewall ones prefixed `fw_`, rpc-proxy policy ones `rpc_`),
as faults.yaml uses.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic

from drivers.sim.attach import Devices
from drivers.sim.devices import PciOpts
from drivers.sim.domains import DomainTable
from drivers.sim.faults import Faults
from drivers.sim.firewall import FirewallTable, entry_from_json, entry_to_json
from drivers.sim.guests import Guests
from drivers.sim.netdev import NetDevTable
from drivers.sim.pci import PciTable
from drivers.sim.pcidev import PciDevices
from drivers.sim.rpcpolicy import RpcPolicyTable, check_uuid, checked_entry, policy_to_json
from drivers.sim.toolstack import Core, Libxl
from reconciler.errors import TerminalHostError, TransientHostError
from reconciler.model import NIC, VM, Disk
from reconciler.model.host import Build, FirewallEntry, PciAssignment

Args = dict[str, Any]
READS = frozenset({"list_domains", "inventory", "fw_list", "netdev_list", "rpc_read"})  # the ops that change nothing


# The answers of the three reads, also given by the read-only view (`drivers.sim.frozen`).
# Flat records: dataclasses.asdict would deep-copy every field.
def domain_rows(domains: DomainTable) -> list[dict[str, Any]]:
    return [vars(s).copy() for s in domains.statuses()]


def pci_rows(pci: PciTable) -> list[dict[str, Any]]:
    return [vars(d).copy() for d in pci.inventory()]


def firewall_rows(firewall: FirewallTable) -> list[dict[str, Any]]:
    return [entry_to_json(e) for e in firewall.list()]


def netdev_rows(netdevs: NetDevTable) -> list[dict[str, Any]]:
    return [vars(d) | {"ethtool": dict(d.ethtool)} for d in netdevs.shown()]


def rpc_policy_answer(table: RpcPolicyTable) -> dict[str, Any]:
    return policy_to_json(table.read())


class Dispatcher:
    def __init__(self, core: Core, libxl: Libxl, devices: Devices, pci: PciDevices, guests: Guests,
                 faults: Callable[[], Faults]) -> None:
        self.core, self.libxl, self.devices, self.pci, self.guests = core, libxl, devices, pci, guests
        self._faults = faults
        self.ops: dict[str, Callable[[Args], Awaitable[Any]]] = {
            "list_domains": self._list, "create": self._create, "unpause": self._unpause,
            "pause": lambda a: libxl.pause(_int(a, "domid")), "shutdown": self._shutdown, "destroy": self._destroy,
            "crash": self._crash, "reboot": self._reboot,
            "mem_set": lambda a: libxl.mem_set(_int(a, "domid"), _int(a, "mib")),
            "vcpu_set": lambda a: libxl.vcpu_set(_int(a, "domid"), _int(a, "count")),
            "rename": lambda a: libxl.rename(_int(a, "domid"), _str(a, "name")),
            "attach_disk": lambda a: devices.attach_disk(_int(a, "domid"), _model(Disk, a, "disk")),
            "detach_disk": lambda a: devices.detach_disk(_int(a, "domid"), _str(a, "vdev")),
            "attach_nic": lambda a: devices.attach_nic(_int(a, "domid"), _model(NIC, a, "nic")),
            "detach_nic": lambda a: devices.detach_nic(_int(a, "domid"), _int(a, "devid")),
            "cd_insert": lambda a: devices.cd_insert(_int(a, "domid"), _str(a, "vdev"), _str(a, "target"), _str(a, "format")),
            "cd_eject": lambda a: devices.cd_insert(_int(a, "domid"), _str(a, "vdev"), "", "raw"),
            "attach_pci": self._attach_pci, "detach_pci": lambda a: pci.detach(_int(a, "domid"), _str(a, "bdf")),
            "inventory": self._inventory, "assignable_add": lambda a: pci.assignable_add(_str(a, "bdf")),
            "assignable_remove": lambda a: pci.assignable_remove(_str(a, "bdf"), rebind=bool(a.get("rebind", True))),
            "fw_list": self._fw_list, "fw_insert": self._fw_insert, "fw_insert_many": self._fw_insert_many,
            "fw_append": self._fw_append, "fw_delete_many": self._fw_delete_many,
            "fw_delete": self._fw_delete, "netdev_list": self._netdev_list, "netdev_set": self._netdev_set,
            "rpc_read": self._rpc_read, "rpc_set": self._rpc_set, "rpc_clear": self._rpc_clear,
        }

    async def call(self, op: str, args: Args) -> Any:
        handler = self.ops.get(op)
        if handler is None:
            raise TerminalHostError(f"the simulated host has no operation {op!r}; client and host versions differ?")
        decision = self._faults().decide(op)
        if decision.latency_ms:
            await asyncio.sleep(self.core.settings.ms(decision.latency_ms))
        if decision.hang_s is not None:
            await asyncio.sleep(decision.hang_s)
            raise TransientHostError(f"{op} timed out after {decision.hang_s:g} s (simulated hang, faults.yaml)")
        if decision.fail:
            raise TransientHostError(f"{op} failed: simulated transient error (faults.yaml error_rate); retry")
        try:
            return await handler(args)
        except ValueError as exc:  # a layout function refused its parameters
            raise TerminalHostError(f"{op}: {exc}") from exc

    async def _list(self, args: Args) -> Any:
        return domain_rows(self.core.domains)

    async def _create(self, args: Args) -> int:
        domid = await self.libxl.create(_model(VM, args, "vm"), build_from_json(args.get("build")),
                                        paused=bool(args.get("paused", True)))
        domain = self.core.domains.get(domid)
        self.guests.boot(domain)
        if domain.power == "running":
            self.guests.unpaused(domain)
        return domid

    async def _unpause(self, args: Args) -> None:
        domain = self.core.domains.get(_int(args, "domid"))
        was = domain.power
        await self.libxl.unpause(domain.domid)
        if was != "running":
            self.guests.unpaused(domain)

    async def _shutdown(self, args: Args) -> None:
        timeout = args.get("timeout")
        if not isinstance(timeout, (int, float)) or timeout < 0:
            raise TerminalHostError(f"shutdown needs a timeout in seconds, found {timeout!r}")
        await self.libxl.shutdown(_int(args, "domid"), timeout=float(timeout))

    async def _destroy(self, args: Args) -> None:
        domid = _int(args, "domid")
        await self.libxl.destroy(domid)
        self.guests.forget(domid)

    async def _crash(self, args: Args) -> None:
        domain = self.core.domains.get(_int(args, "domid"))
        await self.guests.crash(domain, why="sim crash", handled=bool(args.get("handled", True)))

    async def _reboot(self, args: Args) -> None:
        self.guests.reboot(self.core.domains.get(_int(args, "domid")))

    async def _attach_pci(self, args: Args) -> None:
        slot = args.get("guest_slot")
        opts = PciOpts(msitranslate=bool(args.get("msitranslate")), power_mgmt=bool(args.get("power_mgmt")),
                       permissive=bool(args.get("permissive")), vslot=slot if isinstance(slot, int) else None)
        await self.pci.attach(_int(args, "domid"), _str(args, "bdf"), opts)

    async def _netdev_list(self, args: Args) -> Any:
        return netdev_rows(self.core.netdevs)

    async def _netdev_set(self, args: Args) -> None:
        mtu, promiscuous, ethtool = args.get("mtu"), args.get("promiscuous"), args.get("ethtool")
        if promiscuous is not None and not isinstance(promiscuous, bool):
            raise TerminalHostError(f"bad request: promiscuous must be true or false, found {promiscuous!r}")
        if ethtool is not None and not isinstance(ethtool, dict):
            raise TerminalHostError(f"bad request: ethtool must be an object, found {ethtool!r}")
        self.core.netdevs.set(_int(args, "backend_domid"), _str(args, "name"), mtu=mtu, promiscuous=promiscuous,
                              ethtool=ethtool)

    async def _inventory(self, args: Args) -> Any:
        return pci_rows(self.core.pci)

    async def _fw_list(self, args: Args) -> Any:
        return firewall_rows(self.core.firewall)

    async def _fw_insert(self, args: Args) -> None:
        self.core.firewall.insert(_entry(args), _int(args, "position"))

    async def _fw_insert_many(self, args: Args) -> None:
        self.core.firewall.insert_many(_entries(args))

    async def _fw_delete_many(self, args: Args) -> None:
        self.core.firewall.delete_many(_entries(args))

    async def _fw_append(self, args: Args) -> None:
        self.core.firewall.append(_entry(args))

    async def _fw_delete(self, args: Args) -> None:
        self.core.firewall.delete(_entry(args))

    async def _rpc_read(self, args: Args) -> Any:
        return rpc_policy_answer(self.core.rpc)

    async def _rpc_set(self, args: Args) -> None:
        uuid = check_uuid(args.get("uuid"))
        self.core.rpc.set(uuid, checked_entry(uuid, args.get("rules"), args.get("properties")))

    async def _rpc_clear(self, args: Args) -> None:
        self.core.rpc.clear(check_uuid(args.get("uuid")))


def _int(args: Args, key: str) -> int:
    value = args.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TerminalHostError(f"bad request: {key} must be an integer, found {value!r}")
    return value


def _str(args: Args, key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise TerminalHostError(f"bad request: {key} must be a string, found {value!r}")
    return value


def _model(cls: type[pydantic.BaseModel], args: Args, key: str) -> Any:
    try:
        return cls.model_validate_json(json.dumps(args.get(key)))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise TerminalHostError(f"bad {cls.__name__} for the simulated host: {where}: {first['msg']}") from None


def build_from_json(doc: Any) -> Build:
    """The create request's `build` (`client.build_to_json`); absent: no devices."""
    if doc is None:
        return Build()
    if not isinstance(doc, dict) or not set(doc) <= {"disks", "nics", "pci"} or \
            not all(isinstance(doc.get(k, []), list) for k in ("disks", "nics", "pci")):
        raise TerminalHostError(f"bad request: build must be an object of disks, nics and pci lists, found {doc!r}")
    disks = tuple(_model(Disk, {"d": d}, "d") for d in doc.get("disks", []))
    nics = tuple(_model(NIC, {"n": n}, "n") for n in doc.get("nics", []))
    pci = []
    for row in doc.get("pci", []):
        slot = row.get("guest_slot") if isinstance(row, dict) else None
        if not isinstance(row, dict) or not isinstance(row.get("bdf"), str) or \
                not (slot is None or (isinstance(slot, int) and not isinstance(slot, bool))):
            raise TerminalHostError(f"bad request: a build's PCI device needs a bdf and an integer guest_slot, found {row!r}")
        pci.append(PciAssignment(row["bdf"], permissive=bool(row.get("permissive")),
                                 msitranslate=bool(row.get("msitranslate")),
                                 power_mgmt=bool(row.get("power_mgmt")), guest_slot=slot))
    return Build(disks, nics, tuple(pci))


def _entries(args: Args) -> list[FirewallEntry]:
    rows = args.get("entries")
    if not isinstance(rows, list):
        raise TerminalHostError(f"bad request: entries must be a list, found {rows!r}")
    try:
        return [entry_from_json(row) for row in rows]
    except ValueError as exc:
        raise TerminalHostError(f"bad firewall entry: {exc}") from exc


def _entry(args: Args) -> Any:
    try:
        return entry_from_json(args.get("entry"))
    except ValueError as exc:
        raise TerminalHostError(f"bad firewall entry: {exc}") from exc
