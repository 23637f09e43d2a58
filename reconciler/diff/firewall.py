"""v4v rules -> viptables entries, resolved against the running VMs (openxt.md 4.2).

Pure: `resolve(rules, running)` is a function of the rules and a running set
(name -> domid, type, uuid, stub domain) only, so the diff uses it (as `rule_keys`:
entries as tuples of their fields) to find missing and stale entries and execute uses
it to compute what to insert when a VM starts.
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
from reconciler.model.host import FirewallEntry, FirewallTarget
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


class RunningIndex:
    """A running set indexed by type and uuid, built once per resolution (linear)."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.by_type: dict[str, list[int]] = {}
        self.by_uuid: dict[str, list[int]] = {}
        for vm in running.values():
            if vm.type is not None:
                self.by_type.setdefault(vm.type, []).append(vm.domid)
            if vm.uuid is not None:
                self.by_uuid.setdefault(vm.uuid, []).append(vm.domid)


def _domids(domain: v4v.Domain, owner: RunningVM, index: RunningIndex) -> Sequence[int | None]:
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
        vm = index.running.get(value)
        return [] if vm is None else [vm.domid]
    table = index.by_type if kind == "dom-type" else index.by_uuid
    return sorted(table.get(value, []))


EntryKey = tuple[int | None, int | None, int | None, int | None, FirewallTarget]
"""A FirewallEntry's fields in order (dom_in, dom_out, port_in, port_out, target): equal
keys, equal entries. The diff does its set algebra on keys, which hash in C (an
entry's dataclass __hash__ and __eq__ run Python code for every set operation)."""


def entry_key(entry: FirewallEntry) -> EntryKey:
    return entry.dom_in, entry.dom_out, entry.port_in, entry.port_out, entry.target


def _entries(rule: v4v.Rule, owner: RunningVM, index: RunningIndex) -> set[EntryKey]:
    out: set[EntryKey] = set()
    clients = _domids(rule.client.domain, owner, index)
    servers = _domids(rule.server.domain, owner, index)
    for client, server in product(clients, servers):
        if client == server:
            continue  # internal: same source and destination
        out.add((client, server, rule.client.port, rule.server.port, "ACCEPT"))
    return out


def rule_keys(rule: V4VRule, running: Running | RunningIndex) -> frozenset[EntryKey]:
    """The keys of the entries one rule resolves to; empty when its owner is not
    running. Pass a RunningIndex when resolving many rules against one running set."""
    index = running if isinstance(running, RunningIndex) else RunningIndex(running)
    owner = index.running.get(rule.spec.vm)
    if owner is None:
        return frozenset()
    parsed = v4v.parse_rule(rule.spec.rule)
    found = _entries(parsed, owner, index)
    if rule.spec.bidirectional:
        found |= _entries(parsed.inverse(), owner, index)
    return frozenset(found)


def rule_entries(rule: V4VRule, running: Running | RunningIndex) -> frozenset[FirewallEntry]:
    """The entries one rule resolves to; empty when its owner is not running. Pass a
    RunningIndex when resolving many rules against one running set."""
    return frozenset(FirewallEntry(*key) for key in rule_keys(rule, running))


def resolve(rules: Iterable[V4VRule], running: Running | RunningIndex) -> frozenset[FirewallEntry]:
    """Every entry the rules resolve to against `running`, de-duplicated."""
    index = running if isinstance(running, RunningIndex) else RunningIndex(running)
    out: set[FirewallEntry] = set()
    for rule in rules:
        out |= rule_entries(rule, index)
    return frozenset(out)


@dataclass(frozen=True)
class _DesiredIndex:
    state: DesiredState
    by_type: Mapping[str, frozenset[str]]
    by_uuid: Mapping[str, frozenset[str]]


_last: list[_DesiredIndex] = []  # memo of the last desired state's index (invisible to callers)


def _desired_index(desired: DesiredState) -> _DesiredIndex:
    if _last and _last[0].state is desired:
        return _last[0]
    by_type: dict[str, set[str]] = {}
    by_uuid: dict[str, set[str]] = {}
    for name, vm in desired.vms.items():
        by_type.setdefault(vm.spec.type, set()).add(name)
        if vm.spec.uuid is not None:
            by_uuid.setdefault(vm.spec.uuid, set()).add(name)
    index = _DesiredIndex(desired, {k: frozenset(v) for k, v in by_type.items()}, {k: frozenset(v) for k, v in by_uuid.items()})
    _last[:] = [index]
    return index


def references(rule: V4VRule, desired: DesiredState) -> frozenset[str]:
    """Names of the desired VMs whose start or stop changes the rule's entries: the
    owner (`myself`, `my-stubdom`, and nothing resolves without it), `dom-name=`
    targets, VMs with a named UUID and VMs of a named `dom-type=`."""
    parsed = v4v.parse_rule(rule.spec.rule)
    index = _desired_index(desired)
    names = {rule.spec.vm}
    for endpoint in (parsed.client, parsed.server):
        kind, value = endpoint.domain.kind, endpoint.domain.value
        if kind == "dom-name" and value in desired.vms:
            names.add(value)
        elif kind == "dom-type":
            names |= index.by_type.get(value, frozenset())
        elif kind == "uuid":
            names |= index.by_uuid.get(value, frozenset())
    return frozenset(names)


def entry_text(entries: Iterable[FirewallEntry | EntryKey]) -> list[str]:
    """The sorted `str(FirewallEntry)` list the diff shows as before/after."""
    return sorted(str(entry if isinstance(entry, FirewallEntry) else FirewallEntry(*entry)) for entry in entries)
