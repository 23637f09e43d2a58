"""Observe a live or simulated host through its ports -> ObservedState.

Touches the host, read-only, and only through `reconciler.ports.HostPorts`: one
pipelined xenstore snapshot, `xl list` (power states xenstore cannot show, xen.md
2.9), the sysfs PCI inventory, the v4v firewall table, the vif interfaces
(MTU, promiscuous mode, ethtool; xen.md 8) and rpc-proxy's policy (none when the ports
have no rpc-proxy driver: `NoRpcPolicy`). The tree goes through the same pure
`observe_tree` a captured dump does. Each read is retried on a transient error under
the one retry policy (`reconciler.retry`), as execute retries its steps. Called by the
CLI (observe, plan, apply).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping

import pydantic

from reconciler.model.devices import NIC, Ethtool
from reconciler.model.host import DomainStatus, FirewallEntry, HostPciDevice, NetDevice, RpcPolicy
from reconciler.model.observed import DomainInfo, ObservedPower, ObservedState
from reconciler.observe import observe_tree
from reconciler.ports import HostPorts, NoRpcPolicy
from reconciler.retry import RetryPolicy, retried
from reconciler.xenfmt import vif_ifname

_POWER: dict[str, ObservedPower] = {
    "running": "running",
    "paused": "paused",
    "shutdown": "shutdown",  # the guest powered off; nobody destroyed it yet (`xl create -e`: no xl monitor)
    "dying": "stopped",
    "crashed": "crashed",
    "rebooted": "rebooted",  # shut down with reason reboot; nobody rebuilt it (`xl create -e`)
}


def decode(nodes: dict[str, bytes]) -> dict[str, str]:
    """xenstore values are bytes; what is not UTF-8 keeps its bytes visible as escapes."""
    return {path: value.decode("utf-8", "backslashreplace") for path, value in nodes.items()}


def with_power(state: ObservedState, domains: list[DomainStatus]) -> ObservedState:
    """Fold `xl list` power states (and whether each domain was built with passthrough)
    into the domains xenstore showed (pure).

    A domain xenstore shows but the hypervisor does not list is reported: its nodes
    outlived it (a toolstack that died mid-destroy). A guest domain the hypervisor lists
    but xenstore does not show (`xenstore-rm /local/domain/<domid>`) is added, named as
    `xl list` names it (else as `/vm/<uuid>/name` does), `xenstore_gone`, and matched by
    uuid to the reconciler's record under `/vm/<uuid>/reconciler` if that survived (else
    it is not known to be managed).
    Matching is by domid.
    """
    by_domid = {d.domid: d for d in domains}
    infos: dict[str, DomainInfo] = {}
    problems = list(state.problems)
    for name, info in state.domains.items():
        status = by_domid.get(info.domid)
        if status is None:
            problems.append(f"domain {info.domid} ({name}) is in xenstore but not in the hypervisor's list")
            infos[name] = dataclasses.replace(info, power="stopped")
        else:
            infos[name] = dataclasses.replace(info, power=_POWER[status.power], passthrough=status.passthrough)
    shown = {info.domid for info in state.domains.values()}
    for status in domains:
        if status.domid == 0 or status.domid in shown:
            continue
        uuid = status.uuid.lower() or None
        record = state.vm_records.get(uuid or "")
        # Real `xl list` reads names from xenstore: without the tree it prints "(null)".
        listed = status.name if status.name not in ("", "(null)") else None
        name = listed or (record.name if record else None) or f"domain-{status.domid}"
        if name in infos:
            problems.append(f"domain {status.domid} ({name}) is listed by the hypervisor but not in xenstore, and "
                            f"domain {infos[name].domid} has that name in xenstore; domain {status.domid} left out")
            continue
        unfinished = uuid is not None and state.building.get(uuid) == name
        kept = "its /vm/<uuid>/reconciler record is kept" if record is not None else "no record of the reconciler names it"
        problems.append(f"domain {status.domid} ({name}) is listed by the hypervisor but its xenstore nodes "
                        f"(/local/domain/{status.domid}) are gone; {kept}")
        infos[name] = DomainInfo(
            name, status.domid, uuid, _POWER[status.power],
            managed=(record is not None and record.managed) or unfinished,
            digest=record.digest if record else None, applied=record.applied if record else None,
            unfinished=unfinished, xenstore_gone=True, passthrough=status.passthrough)
    infos = dict(sorted(infos.items())) if len(infos) != len(state.domains) else infos
    return dataclasses.replace(state, domains=infos, problems=tuple(problems))


def with_netdevs(state: ObservedState, devices: list[NetDevice]) -> ObservedState:
    """Fold the vif interfaces into the NICs xenstore showed (pure): the interface's MTU
    (what runs, not the vif's configured `mtu` node), promiscuous mode and ethtool
    settings. An interface is found by backend domid and name (`vif<domid>.<devid>`, or
    `vifname`); a NIC whose interface the port does not show keeps what xenstore said."""
    if not devices:
        return state
    by_key = {(d.backend_domid, d.name): d for d in devices}
    problems = list(state.problems)
    nics: dict[str, NIC] = {}
    for name, nic in state.nics.items():
        spec, owner = nic.spec, state.domains.get(nic.spec.vm)
        backend = state.domains.get(spec.backend_vm) if spec.backend_vm else None
        found = None
        if owner is not None and spec.index is not None and (backend is not None or spec.backend_vm is None):
            found = by_key.get((backend.domid if backend else 0, vif_ifname(owner.domid, spec.index, spec.vifname)))
        if found is None:
            nics[name] = nic
            continue
        update: dict[str, object] = {"mtu": found.mtu, "promiscuous": found.promiscuous}
        try:
            update["ethtool"] = Ethtool.model_validate(dict(found.ethtool))
        except pydantic.ValidationError as exc:
            problems.append(f"NIC {name!r}: interface {found.name} reports ethtool settings no manifest can state "
                            f"({exc.errors()[0]['msg']}); ethtool not compared")
        nics[name] = nic.model_copy(update={"spec": spec.model_copy(update=update)})
    return dataclasses.replace(state, nics=nics, problems=tuple(problems))


async def read_rpc(ports: HostPorts, retry: RetryPolicy = RetryPolicy()) -> RpcPolicy | None:
    """rpc-proxy's policy, retried like the other reads; None when the ports have no
    rpc-proxy driver (`NoRpcPolicy` cannot show what the host enforces)."""
    if isinstance(ports.rpc, NoRpcPolicy):
        return None
    return await retried(retry, ports.rpc.read)


async def observe_host(ports: HostPorts, retry: RetryPolicy = RetryPolicy()) -> ObservedState:
    """Everything the host shows, read concurrently: xenstore, domains, PCI, firewall, vifs,
    rpc-proxy's policy; a read that fails transiently is read again (only that one)."""
    nodes, domains, pci, firewall, netdevs, rpc = await asyncio.gather(
        retried(retry, lambda: ports.xenstore.snapshot("/")),
        retried(retry, ports.toolstack.list_domains),
        retried(retry, ports.pciback.inventory),
        retried(retry, ports.firewall.list),
        retried(retry, ports.netdev.list),
        read_rpc(ports, retry),
    )
    return fold(decode(nodes), domains, pci, firewall, netdevs, rpc)


def fold(nodes: Mapping[str, str], domains: list[DomainStatus], pci: list[HostPciDevice],
         firewall: list[FirewallEntry], netdevs: list[NetDevice], rpc: RpcPolicy | None = None) -> ObservedState:
    """The ObservedState of a decoded xenstore tree and the host's other reads (pure):
    what `observe_host` returns, shared with the agent's live observer, which keeps
    the tree current from watch events instead of walking it each pass."""
    return fold_tree(observe_tree(nodes), domains, pci, firewall, netdevs, rpc)


def fold_tree(tree: ObservedState, domains: list[DomainStatus], pci: list[HostPciDevice],
              firewall: list[FirewallEntry], netdevs: list[NetDevice], rpc: RpcPolicy | None = None) -> ObservedState:
    """`fold` of a tree already observed (`observe_tree`): what is not xenstore added."""
    state = with_netdevs(with_power(tree, domains), netdevs)
    return dataclasses.replace(state, host_pci=tuple(pci), firewall=tuple(firewall), rpc=rpc)
