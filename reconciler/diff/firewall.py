"""v4v rules -> viptables entries, resolved against the running VMs (openxt.md 4.2).

Pure: `resolve(rules, running)` is a function of the rules and a running set
(name -> domid, type, uuid, stub domain) only, so the diff uses it to find missing and
stale entries and execute uses it to compute what to insert when a VM starts.
`references(rule, desired)` names the VMs whose start or stop changes a rule's entries.

Resolution, as xenmgr's V4VFirewall does it:
- a bidirectional rule also yields its inverse (v4v has no connection state);
- `*` is any domain (option left out), `0` is dom0, `myself` the owner, `my-stubdom`
  the owner's stub domain, `dom-type=`/`dom-name=`/UUID every running match;
- a rule is the cross product of its client and server domid lists; an endpoint that
  names nothing running resolves to nothing, so the rule emits no entry (yet);
- an entry whose client and server are the same domain is internal and dropped
  (`myself -> myself`, `* -> *`). Nothing resolves unless the owner runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product

from reconciler import v4v
from reconciler.model.devices import V4VRule
from reconciler.model.host import FirewallEntry
from reconciler.model.state import DesiredState

Running = Mapping[str, "RunningVM"]


@dataclass(frozen=True)
class RunningVM:
    """A running domain as the firewall sees it; `type` None for domains no manifest
    describes (they match `dom-name=` and UUIDs, never `dom-type=`)."""

    domid: int
    type: str | None = None
    uuid: str | None = None
    stubdom: int | None = None


def _domids(domain: v4v.Domain, owner: RunningVM, running: Running) -> Sequence[int | None]:
    """The domids an endpoint's domain stands for; `[None]` means any domain."""
    kind, value = domain.kind, domain.value
    if kind == "any":
        return [None]
    if kind == "dom0":
        return [0]
    if kind == "myself":
        return [owner.domid]
    if kind == "my-stubdom":
        return [] if owner.stubdom is None else [owner.stubdom]
    if kind == "dom-name":
        vm = running.get(value)
        return [] if vm is None else [vm.domid]
    if kind == "dom-type":
        return sorted(vm.domid for vm in running.values() if vm.type == value)
    return sorted(vm.domid for vm in running.values() if vm.uuid == value)


def _entries(rule: v4v.Rule, owner: RunningVM, running: Running) -> set[FirewallEntry]:
    out: set[FirewallEntry] = set()
    clients = _domids(rule.client.domain, owner, running)
    servers = _domids(rule.server.domain, owner, running)
    for client, server in product(clients, servers):
        if client == server:
            continue  # internal: same source and destination
        out.add(FirewallEntry(client, server, rule.client.port, rule.server.port))
    return out


def rule_entries(rule: V4VRule, running: Running) -> frozenset[FirewallEntry]:
    """The entries one rule resolves to; empty when its owner is not running."""
    owner = running.get(rule.spec.vm)
    if owner is None:
        return frozenset()
    parsed = v4v.parse_rule(rule.spec.rule)
    found = _entries(parsed, owner, running)
    if rule.spec.bidirectional:
        found |= _entries(parsed.inverse(), owner, running)
    return frozenset(found)


def resolve(rules: Iterable[V4VRule], running: Running) -> frozenset[FirewallEntry]:
    """Every entry the rules resolve to against `running`, de-duplicated."""
    out: set[FirewallEntry] = set()
    for rule in rules:
        out |= rule_entries(rule, running)
    return frozenset(out)


def references(rule: V4VRule, desired: DesiredState) -> frozenset[str]:
    """Names of the desired VMs whose start or stop changes the rule's entries: the
    owner (`myself`, `my-stubdom`, and nothing resolves without it), `dom-name=`
    targets, VMs with a named UUID and VMs of a named `dom-type=`."""
    parsed = v4v.parse_rule(rule.spec.rule)
    names = {rule.spec.vm}
    for endpoint in (parsed.client, parsed.server):
        kind, value = endpoint.domain.kind, endpoint.domain.value
        if kind == "dom-name" and value in desired.vms:
            names.add(value)
        elif kind == "dom-type":
            names.update(n for n, vm in desired.vms.items() if vm.spec.type == value)
        elif kind == "uuid":
            names.update(n for n, vm in desired.vms.items() if vm.spec.uuid == value)
    return frozenset(names)


def entry_text(entries: Iterable[FirewallEntry]) -> list[str]:
    """The sorted `str(FirewallEntry)` list the diff shows as before/after."""
    return sorted(str(entry) for entry in entries)
