"""Observe a live or simulated host through its ports -> ObservedState.

Touches the host, read-only, and only through `reconciler.ports.HostPorts`: one
pipelined xenstore snapshot, `xl list` (power states xenstore cannot show, xen.md
2.9), the sysfs PCI inventory and the v4v firewall table. The tree goes through the
same pure `observe_tree` a captured dump does. Each read is retried on a transient
error under the one retry policy (`reconciler.retry`), as execute retries its steps.
Called by the CLI (observe, plan, apply).
"""

from __future__ import annotations

import asyncio
import dataclasses

from reconciler.model.host import DomainStatus
from reconciler.model.observed import DomainInfo, ObservedPower, ObservedState
from reconciler.observe import observe_tree
from reconciler.ports import HostPorts
from reconciler.retry import RetryPolicy, retried

_POWER: dict[str, ObservedPower] = {
    "running": "running",
    "paused": "paused",
    "shutdown": "stopped",  # the guest stopped; the toolstack has not destroyed it yet
    "dying": "stopped",
    "crashed": "crashed",
}


def _decode(nodes: dict[str, bytes]) -> dict[str, str]:
    """xenstore values are bytes; what is not UTF-8 keeps its bytes visible as escapes."""
    return {path: value.decode("utf-8", "backslashreplace") for path, value in nodes.items()}


def with_power(state: ObservedState, domains: list[DomainStatus]) -> ObservedState:
    """Fold `xl list` power states into the domains xenstore showed (pure).

    A domain xenstore shows but the hypervisor does not list is reported: its nodes
    outlived it (a toolstack that died mid-destroy). Matching is by domid.
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
            infos[name] = dataclasses.replace(info, power=_POWER[status.power])
    return dataclasses.replace(state, domains=infos, problems=tuple(problems))


async def observe_host(ports: HostPorts, retry: RetryPolicy = RetryPolicy()) -> ObservedState:
    """Everything the host shows, read concurrently: xenstore, domains, PCI, firewall;
    a read that fails transiently is read again (only that one)."""
    nodes, domains, pci, firewall = await asyncio.gather(
        retried(retry, lambda: ports.xenstore.snapshot("/")),
        retried(retry, ports.toolstack.list_domains),
        retried(retry, ports.pciback.inventory),
        retried(retry, ports.firewall.list),
    )
    state = with_power(observe_tree(_decode(nodes)), domains)
    return dataclasses.replace(state, host_pci=tuple(pci), firewall=tuple(firewall))
