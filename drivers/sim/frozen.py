"""A read-only view of a simulated host's saved state, for the verbs that only look.

Stage: simulated host. `open_frozen(state_dir)` reads DIR/xenstore.json, DIR/host.json
and DIR/pci.yaml under a shared lock and answers the ports' reads from them without
starting the host: no sockets, no guests, no backend moves, nothing saved. `plan` and
`observe` are dry runs and must not move the host on; and a 1,000-guest host opens
without building 115k xenstore nodes (a snapshot is the saved values). Writes answer
EROFS, as xenstored's read-only socket does. faults.yaml shapes a running host only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from drivers.sim import settings as names
from drivers.sim.client import SimFirewall, SimNetDevices, SimPciBack, SimRpcPolicy, SimToolstack
from drivers.sim.direct import DirectXenstore
from drivers.sim.domains import DomainTable
from drivers.sim.dispatch import domain_rows, firewall_rows, netdev_rows, pci_rows, rpc_policy_answer
from drivers.sim.firewall import FirewallTable
from drivers.sim.host import DirectoryBusy, ensure_dom0, lock, read_host_state
from drivers.sim.netdev import NetDevTable
from drivers.sim.pci import PciTable, load_inventory
from drivers.sim.rpcpolicy import GLOBAL_FILE, RpcPolicyTable
from drivers.xenstore import errors, persist
from drivers.xenstore.store import Store
from reconciler import rpc
from reconciler.errors import TerminalHostError
from reconciler.ports import HostPorts, Perm, WatchStream, XenstoreOps

T = TypeVar("T")


class FrozenRpc:
    """The host RPC's five reads, answered from the saved tables in the same JSON shapes."""

    def __init__(self, state_dir: Path, domains: DomainTable, pci: PciTable, firewall: FirewallTable,
                 netdevs: NetDevTable, rpc: RpcPolicyTable | None = None) -> None:
        self.state_dir, self.domains, self.pci, self.firewall, self.netdevs = state_dir, domains, pci, firewall, netdevs
        self.rpc = rpc or RpcPolicyTable()

    async def call(self, op: str, **args: Any) -> Any:
        if op == "list_domains":
            return domain_rows(self.domains)
        if op == "inventory":
            return pci_rows(self.pci)
        if op == "fw_list":
            return firewall_rows(self.firewall)
        if op == "netdev_list":
            return netdev_rows(self.netdevs)
        if op == "rpc_read":
            answer = rpc_policy_answer(self.rpc)
            if answer["global_rules"] is None and self.rpc.global_file is not None and \
                    not os.path.lexists(self.rpc.global_file):
                answer["global_rules"] = rpc.STOCK_RULES  # what the host writes there when it next starts
            return answer
        raise TerminalHostError(f"{op}: the simulated host in {self.state_dir} is open read-only (plan and "
                                f"observe only look); apply or `sim serve` runs it")


class FrozenXenstore:
    """`XenstorePort` over the saved tree: the whole snapshot straight from the saved
    values; other reads from a store built on first use; every write EROFS."""

    def __init__(self, state_file: Path) -> None:
        self._file = state_file
        self._direct: DirectXenstore | None = None

    def _store(self) -> DirectXenstore:
        if self._direct is None:
            store = persist.load(self._file) if self._file.exists() else Store()
            ensure_dom0(store)
            self._direct = DirectXenstore(store)
        return self._direct

    async def snapshot(self, path: str = "/") -> dict[str, bytes]:
        if path != "/" or self._direct is not None or not self._file.exists():
            return await self._store().snapshot(path)
        return persist.load_values(self._file)

    async def read(self, path: str) -> bytes:
        return await self._store().read(path)

    async def directory(self, path: str) -> list[str]:
        return await self._store().directory(path)

    async def get_perms(self, path: str) -> list[Perm]:
        return await self._store().get_perms(path)

    async def watch(self, path: str, token: str | None = None) -> WatchStream:
        return await self._store().watch(path, token)  # nothing changes, so only the first event comes

    async def transaction(self, body: Callable[[XenstoreOps], Awaitable[T]]) -> T:
        return await body(self)  # reads see the saved tree; a write in `body` fails as below

    async def get_domain_path(self, domid: int) -> str:
        return f"/local/domain/{domid}"

    async def write(self, path: str, value: bytes | str) -> None:
        raise self._refused(path)

    async def mkdir(self, path: str) -> None:
        raise self._refused(path)

    async def rm(self, path: str) -> None:
        raise self._refused(path)

    async def set_perms(self, path: str, perms: Sequence[Perm]) -> None:
        raise self._refused(path)

    async def close(self) -> None:
        return None

    def _refused(self, path: str) -> errors.ReadOnly:
        return errors.ReadOnly(f"{path}: the simulated host in {self._file.parent} is open read-only", path=path)


async def _shared_lock(state_dir: Path, wait_s: float) -> int:
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            return lock(state_dir, shared=True)
        except DirectoryBusy:
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def open_frozen(state_dir: Path, *, wait_s: float = 0.0) -> AsyncIterator[HostPorts]:
    """The saved host of `state_dir` as read-only ports; while another process runs the
    host, wait up to `wait_s` (then DirectoryBusy). A missing directory is an empty host."""
    fd = await _shared_lock(state_dir, wait_s) if state_dir.is_dir() else None
    try:
        domains, pci, netdevs = DomainTable(), PciTable(load_inventory(state_dir / names.PCI_FILE)), NetDevTable()
        policy = RpcPolicyTable(state_dir / GLOBAL_FILE)
        firewall, _, _ = read_host_state(state_dir / names.HOST_STATE, domains, pci, netdevs, policy)
        calls = FrozenRpc(state_dir, domains, pci, firewall, netdevs, policy)
        yield HostPorts(f"sim:{state_dir}", FrozenXenstore(state_dir / persist.STATE_FILE),
                        SimToolstack(calls), SimPciBack(calls), SimFirewall(calls), SimNetDevices(calls),
                        rpc=SimRpcPolicy(calls))
    finally:
        if fd is not None:
            os.close(fd)
