"""v4v rules -> viptables entries, resolved against the running VMs (openxt.md 4.2).

Pure: `resolve(rules, running)` is a function of the rules and a running set
(name -> domid, type, uuid, stub domain) only, so the diff uses it (as `rule_keys`:
entries as tuples of their fields) to find missing and stale entries and execute uses
it to compute what to insert when a VM starts.
`references(rule, desired)` names the VMs whose start or stop changes a rule's entries.
`RuleIndex(desired)` indexes the rules once by what their endpoints name, so one VM's
start is resolved alone (`start_keys`: xenmgr's delta, openxt.md 4.3) and the planner
and the diff ask "does a rule name this VM" without a pass over the rules per VM.

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

import heapq
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice, product

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
    return table.get(value, [])  # the caller makes a set of entries: no order needed


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


# Endpoint kinds that name VMs whose start changes a rule (besides its owner): the index keys.
_NAMING = ("dom-type", "dom-name", "uuid")


class RuleIndex:
    """The desired rules, parsed once, by owner and by each VM-naming endpoint
    (`dom-type=`/`dom-name=`/uuid; `*`, `0`, `myself`, `my-stubdom` name no other VM).
    Built once per plan and once per apply; every lookup is by key, so the work for one
    VM is what involves that VM, never a pass over every rule."""

    def __init__(self, desired: DesiredState) -> None:
        self.desired = desired
        self.own: dict[str, list[tuple[V4VRule, tuple[v4v.Rule, ...]]]] = {}
        self.naming: dict[tuple[str, str], list[tuple[V4VRule, tuple[v4v.Rule, ...]]]] = {}
        self.vm_uuids: dict[str, list[str]] = {}  # desired uuid -> desired VM names
        for name, vm in desired.vms.items():
            if vm.spec.uuid is not None:
                self.vm_uuids.setdefault(vm.spec.uuid, []).append(name)
        for rule in desired.v4v_rules.values():
            parsed = v4v.parse_rule(rule.spec.rule)
            item = (rule, (parsed, parsed.inverse()) if rule.spec.bidirectional else (parsed,))
            self.own.setdefault(rule.spec.vm, []).append(item)
            keys = {(e.domain.kind, e.domain.value) for e in (parsed.client, parsed.server) if e.domain.kind in _NAMING}
            for key in sorted(keys):
                self.naming.setdefault(key, []).append(item)

    def _naming(self, name: str, kind: str | None, uuid: str | None) -> Iterable[tuple[V4VRule, tuple[v4v.Rule, ...]]]:
        """Rules with an endpoint that names this VM (a rule naming it twice comes once per key)."""
        yield from self.naming.get(("dom-name", name), ())
        if kind is not None:
            yield from self.naming.get(("dom-type", kind), ())
        if uuid is not None:
            yield from self.naming.get(("uuid", uuid), ())

    def touches(self, vm: str) -> bool:
        """Does the start of desired VM `vm` resolve any entry: it owns a rule, or a rule
        names it (by its name, its manifest type or its manifest uuid)?"""
        spec = self.desired.vms[vm].spec
        return vm in self.own or any(True for _ in self._naming(vm, spec.type, spec.uuid))

    def start_keys(self, vm: str, running: RunningIndex) -> set[EntryKey]:
        """The entries `vm`'s start resolves (xenmgr's applyVmFirewallRules, openxt.md 4.3):
        its own rules whole, and of the other running VMs' rules only the entries with
        `vm` on one side. Empty when `vm` does not run. Work: what involves `vm`."""
        me = running.running.get(vm)
        if me is None:
            return set()
        out: set[EntryKey] = set()
        for _rule, parsed in self.own.get(vm, ()):
            for one in parsed:
                out |= _entries(one, me, running)
        seen: set[int] = set()
        for rule, parsed in self._naming(vm, me.type, me.uuid):
            owner_name = rule.spec.vm
            owner = running.running.get(owner_name)
            if owner is None or owner_name == vm or id(rule) in seen:
                continue
            seen.add(id(rule))
            for one in parsed:
                _entries_with(one, owner, running, vm, me, out)
        return out

    def waiting(self, rule: V4VRule, starting: Collection[str], starting_by_type: Mapping[str, Sequence[str]],
                shown: int = 3) -> tuple[int, list[str]]:
        """How many of the `starting` VMs change `rule` when they start (its owner and the
        VMs it names), and the first `shown` of them by name. `starting_by_type`: the
        starting VMs by manifest type, each list sorted. Work: the rule's endpoints and
        the names shown, not the VMs of a type."""
        parsed = v4v.parse_rule(rule.spec.rule)
        types = sorted({e.domain.value for e in (parsed.client, parsed.server) if e.domain.kind == "dom-type"})
        others = {rule.spec.vm}
        for endpoint in (parsed.client, parsed.server):
            kind, value = endpoint.domain.kind, endpoint.domain.value
            if kind == "dom-name" and value in self.desired.vms:
                others.add(value)
            elif kind == "uuid":
                others.update(self.vm_uuids.get(value, ()))
        extra = sorted(n for n in others if n in starting and self.desired.vms[n].spec.type not in types)
        lists = [starting_by_type.get(t, ()) for t in types] + [extra]
        return sum(map(len, lists)), list(islice(heapq.merge(*lists), shown))


def _names(domain: v4v.Domain, name: str, vm: RunningVM) -> bool:
    """Does an endpoint's domain name the running VM `name` (other than as `myself`)?"""
    kind = domain.kind
    if kind == "dom-name":
        return domain.value == name
    if kind == "dom-type":
        return vm.type is not None and domain.value == vm.type
    return kind == "uuid" and vm.uuid is not None and domain.value == vm.uuid


def _entries_with(rule: v4v.Rule, owner: RunningVM, index: RunningIndex, name: str, vm: RunningVM,
                  out: set[EntryKey]) -> None:
    """Add the entries of `rule` (owned by `owner`) that have `vm` on one side."""
    cport, sport = rule.client.port, rule.server.port
    if _names(rule.client.domain, name, vm):
        for server in _domids(rule.server.domain, owner, index):
            if server != vm.domid:
                out.add((vm.domid, server, cport, sport, "ACCEPT"))
    if _names(rule.server.domain, name, vm):
        for client in _domids(rule.client.domain, owner, index):
            if client != vm.domid:
                out.add((client, vm.domid, cport, sport, "ACCEPT"))


def entry_text(entries: Iterable[FirewallEntry | EntryKey]) -> list[str]:
    """The sorted `str(FirewallEntry)` list the diff shows as before/after."""
    return sorted(str(entry if isinstance(entry, FirewallEntry) else FirewallEntry(*entry)) for entry in entries)
