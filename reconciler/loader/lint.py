"""Lint: policy mistakes in v4v and rpc-proxy rules, as `validate` warnings (issue 14).

Pure: normalized entries -> warnings, each at the text of the rule it concerns. A warning
never stops a load (the rules are valid; they just do not do what their author meant):
- a rule another rule of the same VM makes useless: v4v, one whose entries are always a
  subset of another's (a duplicate, `myself -> 0:80` next to `myself -> 0`); rpc, one a
  later rule of the same VM matches whenever it matches (the last match wins, so it never
  decides; the same rpc rule twice is an error, `checks.check_rpc_duplicates`');
- a rule that can never match: v4v, `my-stubdom` on a VM without a stub domain, or both
  ends always the same domain (`myself -> myself`, `* -> *`: the entry would be internal);
  rpc, `dom-type`/`dom-name` other than its VM's (rpc-proxy restricts a VM's rules to
  that VM), `stubdom true` on a VM without a stub domain, `if-boolean P V` where the VM's
  property P (its manifest's, else xenmgr's default) is not V. v4v endpoints naming no VM
  are `checks.check_v4v_targets`' (not repeated here);
- v4v `*` to dom0 (`* -> 0:P`, `* -> 0`, or the inverse a bidirectional `0:P -> *`
  implies): any domain, running now or later, may reach that dom0 service;
- rpc: an allow that matches every call in a VM's rules (`allow all`, `allow`,
  `allow inc-any`) reopens the global `deny all`; after a `deny all` of the same VM, it
  also undoes that one.
A rule that can never match is neither reported as overridden nor as overriding others.
Called by the loader after `checks.run_all`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler import rpc, v4v
from reconciler.errors import Diagnostic
from reconciler.loader.checks import diag, same_item, spec_path, where
from reconciler.loader.locate import Path
from reconciler.loader.normalize import Entry
from reconciler.loader.yamlsrc import Document
from reconciler.model import VM, RPCRule, V4VRule


Names = Mapping[Document, Mapping[Path, Any]]  # the loader's marks of each resource's name, per document


def run_all(entries: list[Entry], names: Names) -> list[Diagnostic]:
    """Every warning; `names` (the marks the loader keeps for `origins`) orders each VM's
    rpc rules without composing a file again."""
    vms: dict[str, VM] = {}
    v4v_rules: list[Entry] = []
    rpc_rules: list[Entry] = []
    for entry in entries:
        resource = entry.resource
        if isinstance(resource, VM):
            vms[resource.metadata.name] = resource
        elif isinstance(resource, V4VRule):
            v4v_rules.append(entry)
        elif isinstance(resource, RPCRule):
            rpc_rules.append(entry)
    return [*check_v4v(v4v_rules, vms), *check_rpc(rpc_rules, vms, names)]


def _at_rule(entry: Entry, message: str) -> Diagnostic:
    return diag(entry, spec_path(entry, "rule"), message, "warning")


def _kind_name(entry: Entry) -> str:
    return f"{entry.kind} '{entry.name}' at {where(entry, *spec_path(entry, 'rule'))}"


def has_stubdom(vm: VM) -> bool:
    """Whether the VM runs its device model in a stub domain (hvm only)."""
    return vm.spec.virt == "hvm" and vm.spec.stubdom is not None and vm.spec.stubdom.enabled


# ---------------------------------------------------------------- v4v

Members = frozenset[tuple[str, str]] | None  # the domains an endpoint stands for; None = any domain


@dataclass(frozen=True)
class _Pattern:
    """One direction of a v4v rule, its domains resolved to what they stand for."""

    client: Members
    server: Members
    client_port: int | None
    server_port: int | None

    def covered_by(self, other: _Pattern) -> bool:
        return (
            _within(self.client, other.client)
            and _within(self.server, other.server)
            and other.client_port in (None, self.client_port)
            and other.server_port in (None, self.server_port)
        )

    @property
    def empty(self) -> bool:
        """Resolves to no entry: an end names nothing, or both ends are one same domain
        (the resolver drops internal entries; `*` to `*` included)."""
        if self.client is not None and not self.client or self.server is not None and not self.server:
            return True
        return self.client == self.server and (self.client is None or len(self.client) == 1)


def _within(inner: Members, outer: Members) -> bool:
    return outer is None or (inner is not None and inner <= outer)


@dataclass(frozen=True)
class _V4V:
    entry: Entry
    rule: v4v.Rule
    patterns: tuple[_Pattern, ...]  # the rule, then its inverse when bidirectional
    dead: bool = False  # never yields an entry (warned about as such)

    def covered_by(self, other: _V4V) -> bool:
        return all(any(mine.covered_by(theirs) for theirs in other.patterns) for mine in self.patterns)


class _Domains:
    """What each v4v domain stands for, given the manifests' VMs: a VM by name (managed or
    not: names are unique among running domains), dom0, a VM's stub domain."""

    def __init__(self, vms: Mapping[str, VM]) -> None:
        self.by_type: dict[str, set[tuple[str, str]]] = {}
        self.by_uuid: dict[str, set[tuple[str, str]]] = {}
        self.frozen: dict[tuple[int, str], frozenset[tuple[str, str]]] = {}
        for name, vm in vms.items():
            self.by_type.setdefault(vm.spec.type, set()).add(("vm", name))
            if vm.spec.uuid:
                self.by_uuid.setdefault(vm.spec.uuid, set()).add(("vm", name))

    def members(self, domain: v4v.Domain, owner: str) -> Members:
        kind, value = domain.kind, domain.value
        if kind == "any":
            return None
        if kind == "dom0":
            return frozenset({("dom0", "")})
        if kind == "myself":
            return frozenset({("vm", owner)})
        if kind == "my-stubdom":
            return frozenset({("stub", owner)})
        if kind == "dom-name":
            return frozenset({("vm", value)})
        if kind == "dom-type":  # only managed VMs have a type: exactly the manifests' VMs of that type
            return self._shared(self.by_type, value, frozenset())
        return self._shared(self.by_uuid, value, frozenset({("uuid", value)}))

    def _shared(self, table: dict[str, set[tuple[str, str]]], value: str, missing: frozenset[tuple[str, str]]) -> Members:
        """One frozenset per type or uuid, however many rules name it (a type can stand for
        every VM: a set per rule would make N rules cost N*N)."""
        found = self.frozen.get((id(table), value))
        if found is None:
            found = self.frozen[(id(table), value)] = frozenset(table[value]) if value in table else missing
        return found

    def pattern(self, rule: v4v.Rule, owner: str) -> _Pattern:
        return _Pattern(self.members(rule.client.domain, owner), self.members(rule.server.domain, owner),
                        rule.client.port, rule.server.port)


def check_v4v(entries: list[Entry], vms: Mapping[str, VM]) -> Iterator[Diagnostic]:
    domains = _Domains(vms)
    owned: dict[str, list[_V4V]] = {}
    for entry in entries:
        r = entry.resource
        assert isinstance(r, V4VRule)
        rule = v4v.parse_rule(r.spec.rule)
        owner = r.spec.vm
        patterns = tuple(domains.pattern(p, owner) for p in ((rule, rule.inverse()) if r.spec.bidirectional else (rule,)))
        yield from _v4v_to_dom0(entry, rule, r.spec.bidirectional)
        never = _v4v_never(entry, rule, patterns, vms.get(owner))
        yield from never
        dead = bool(never) or all(p.empty for p in patterns)
        owned.setdefault(owner, []).append(_V4V(entry, rule, patterns, dead))
    for items in owned.values():
        yield from _v4v_redundant([item for item in items if not item.dead])


def _v4v_to_dom0(entry: Entry, rule: v4v.Rule, bidirectional: bool) -> Iterator[Diagnostic]:
    """`*` as the client and dom0 as the server, in the rule or in its implied inverse."""
    for implied, direction in enumerate((rule, rule.inverse())[: 1 + bidirectional]):
        if direction.client.domain.kind == "any" and direction.server.domain.kind == "dom0":
            port = "any port" if direction.server.port is None else f"port {direction.server.port}"
            how = f" (its inverse '{direction}', implied by bidirectional: true)" if implied else ""
            fix = ("set bidirectional: false, or name the clients instead of '*'" if implied
                   else "name the clients instead of '*' (myself, dom-name=, dom-type=)")
            yield _at_rule(entry, f"rule '{rule}'{how}: any domain may reach dom0 on {port}, every VM and stub domain "
                           f"including ones no manifest describes; {fix}")
            return


def _v4v_never(entry: Entry, rule: v4v.Rule, patterns: tuple[_Pattern, ...], vm: VM | None) -> list[Diagnostic]:
    """A rule that can never yield an entry. Ends naming no VM are check_v4v_targets'
    warnings; an owner that is not defined is an error already."""
    if vm is None:
        return []
    if "my-stubdom" in (rule.client.domain.kind, rule.server.domain.kind) and not has_stubdom(vm):
        why = "it is not hvm" if vm.spec.virt != "hvm" else "its spec.stubdom.enabled is not true"
        return [_at_rule(entry, f"rule '{rule}': VM '{vm.metadata.name}' has no stub domain ({why}), so my-stubdom "
                         "names nothing and the rule never allows anything; enable the stub domain or remove the rule")]
    names_something = all(end is None or end for p in patterns for end in (p.client, p.server))
    if names_something and all(p.empty for p in patterns):
        ends = "'*' at both ends" if patterns[0].client is None else "both ends are always the same domain"
        return [_at_rule(entry, f"rule '{rule}': {ends}; xenmgr drops such a rule as internal, so it never allows "
                         "anything; name another domain at one end")]
    return []


def _one_name(a: Entry, b: Entry) -> bool:
    return a.name == b.name and same_item(a, b)


def _v4v_redundant(items: list[_V4V]) -> Iterator[Diagnostic]:
    """Per owner (items in file order, rules that never match left out): a rule whose
    every entry another rule also gives. Of two equal rules, the later is reported."""
    for i, item in enumerate(items):
        for j, other in enumerate(items):
            if i == j or not item.covered_by(other) or _one_name(item.entry, other.entry):
                continue  # the same rule twice under one default name: an error (checks.check_duplicate_names)
            same = other.covered_by(item)
            if same and j > i:
                continue
            if same:
                message = (f"rule '{item.rule}' allows exactly what {_kind_name(other.entry)} ('{other.rule}') already "
                           "allows (a duplicate); remove one of them")
            else:
                message = (f"rule '{item.rule}' allows nothing that {_kind_name(other.entry)} ('{other.rule}') does not "
                           "already allow; remove it, or narrow the other rule")
            yield _at_rule(item.entry, message)
            break


# ---------------------------------------------------------------- rpc-proxy


@dataclass(frozen=True)
class _Rpc:
    entry: Entry
    rule: rpc.Rule
    dead: bool  # can never match (warned about as such)

    @property
    def text(self) -> str:
        """The rule's canonical text (as the model stores it)."""
        assert isinstance(self.entry.resource, RPCRule)
        return self.entry.resource.spec.rule


def rpc_written_at(entry: Entry, names: Names) -> tuple[str, int, int, int]:
    """Where an rpc rule is written, as rpc-proxy's evaluation order sorts it: its file,
    the place of its document (1-based line, column), its position in the VM's rpcRules
    (a standalone rule: -1). The loader keeps it as `DesiredState.rpc_order`, which
    `rpc_rules_of` sorts by; lint orders a VM's rules with the same key."""
    doc = names[entry.document][()]
    index = entry.path[2] if entry.path and isinstance(entry.path[2], int) else -1
    return entry.document.file, doc.line + 1, doc.column + 1, index


def _evaluation_order(entries: list[Entry], names: Names) -> list[Entry]:
    """One VM's rules in the order rpc-proxy evaluates them (`rpc_written_at`, then name)."""
    if len(entries) < 2:
        return entries
    return sorted(entries, key=lambda entry: (*rpc_written_at(entry, names), entry.name))


def check_rpc(entries: list[Entry], vms: Mapping[str, VM], names: Names) -> Iterator[Diagnostic]:
    owned: dict[str, list[Entry]] = {}
    for entry in entries:
        assert isinstance(entry.resource, RPCRule)
        owned.setdefault(entry.resource.spec.vm, []).append(entry)
    types = frozenset(vm.spec.type for vm in vms.values())
    vm_names = frozenset(vms)
    for owner, rules in owned.items():
        vm = vms.get(owner)
        if vm is None:
            continue  # an error already: no VM of that name
        items: list[_Rpc] = []
        for entry in _evaluation_order(rules, names):
            assert isinstance(entry.resource, RPCRule)
            rule = rpc.parse_rule(entry.resource.spec.rule)
            never = list(_rpc_never(entry, rule, vm, types, vm_names))
            yield from never
            items.append(_Rpc(entry, rule, bool(never)))
        yield from _rpc_shadowed_and_open(items, vm)


def _rpc_never(entry: Entry, rule: rpc.Rule, vm: VM, types: frozenset[str], names: frozenset[str]) -> Iterator[Diagnostic]:
    """Why a rule of `vm` can never match: rpc-proxy adds the VM's dom-uuid to each of its
    rules, so the caller is always that VM (or, with `stubdom true`, its stub domain)."""
    name, spec = vm.metadata.name, vm.spec
    forced = "rpc-proxy applies a VM's rules to that VM only (it adds the VM's dom-uuid)"
    if rule.dom_type is not None and rule.dom_type != spec.type:
        nowhere = "" if rule.dom_type in types else f" (no VM in the manifests is of type '{rule.dom_type}')"
        yield _at_rule(entry, f"rule '{rule}' never matches: it belongs to VM '{name}' of type '{spec.type}', and {forced}, "
                       f"so dom-type {rule.dom_type} never holds{nowhere}; remove dom-type {rule.dom_type}, or give the "
                       "rule to a VM of that type")
    if rule.dom_name is not None and rule.dom_name != name:
        nowhere = "" if rule.dom_name in names else f" (no VM in the manifests is named '{rule.dom_name}')"
        yield _at_rule(entry, f"rule '{rule}' never matches: it belongs to VM '{name}', and {forced}, so dom-name "
                       f"{rule.dom_name} never holds{nowhere}; remove dom-name {rule.dom_name}, or give the rule to "
                       f"VM '{rule.dom_name}'")
    if rule.stubdom and not has_stubdom(vm):
        why = "it is not hvm" if spec.virt != "hvm" else "its spec.stubdom.enabled is not true"
        yield _at_rule(entry, f"rule '{rule}' never matches: stubdom true matches only the VM's stub domain, and VM "
                       f"'{name}' has none ({why}); remove stubdom true, or enable the stub domain")
    for prop, wanted in rule.if_boolean:
        if prop not in rpc.PROPERTY_DEFAULTS:
            yield _at_rule(entry, f"rule '{rule}' never matches: xenmgr has no boolean property '{prop}', so if-boolean "
                           f"{prop} never holds; test one of {', '.join(rpc.PROPERTY_DEFAULTS)}")
            continue
        value = spec.properties.get(prop)
        source = "in its spec.properties" if value is not None else "by xenmgr's default (not in its spec.properties)"
        value = rpc.PROPERTY_DEFAULTS[prop] if value is None else value
        if value != wanted:
            yield _at_rule(entry, f"rule '{rule}' never matches: VM '{name}' has {prop} {str(value).lower()} {source}, so "
                           f"if-boolean {prop} {str(wanted).lower()} never holds; set properties: {{{prop}: "
                           f"{str(wanted).lower()}}} on the VM, or remove the rule")


def _subject_covers(outer: str, inner: str) -> bool:
    """Every message `inner` matches, `outer` matches: same direction, and `outer`'s tag is
    `any` or `inner`'s (rpc-proxy's rulesFor)."""
    outer_dir, _, outer_tag = outer.partition("-")
    inner_dir, _, inner_tag = inner.partition("-")
    return outer_dir == inner_dir and outer_tag in ("any", inner_tag)


def _covers(later: rpc.Rule, earlier: rpc.Rule) -> bool:
    """`later` matches every message `earlier` matches, given both can match their VM (so
    their dom-type, dom-name and if-boolean tests hold: only stubdom tells callers apart)."""
    return (
        _subject_covers(later.subject, earlier.subject)
        and all(mine is None or mine == theirs for mine, theirs in (
            (later.destination, earlier.destination), (later.interface, earlier.interface),
            (later.member, earlier.member), (later.sender, earlier.sender)))
        and later.stubdom == earlier.stubdom
    )


def _opens_everything(rule: rpc.Rule) -> bool:
    """An allow that matches every incoming call (of its VM, or of its stub domain)."""
    return (rule.allow and rule.subject in ("inc-any", "inc-method-call")
            and (rule.destination, rule.interface, rule.member, rule.sender) == (None, None, None, None))


def _rpc_shadowed_and_open(items: list[_Rpc], vm: VM) -> Iterator[Diagnostic]:
    """Per VM, in evaluation order (rules that never match left out): a rule a later one
    always overrides (the last match wins, so it never decides); an allow of everything,
    which reopens the global `deny all` (and any `deny all` of the VM before it)."""
    live = [item for item in items if not item.dead]
    for i, item in enumerate(live):
        later = next((other for other in live[i + 1:] if other.text != item.text and _covers(other.rule, item.rule)), None)
        if later is not None:
            fix = ("remove it (the later rule gives the same answer)" if later.rule.allow == item.rule.allow
                   else "remove it, or move it after that rule")
            yield _at_rule(item.entry, f"rule '{item.text}' never decides: the later rule '{later.text}' ({_kind_name(later.entry)}) "
                           f"matches every message this one matches, and the last match wins; {fix}")
        elif _opens_everything(item.rule):
            who = f"VM '{vm.metadata.name}'" if not item.rule.stubdom else f"the stub domain of VM '{vm.metadata.name}'"
            denied = [other for other in live[:i] if not other.rule.allow and other.rule.matches_everything
                      and other.rule.stubdom == item.rule.stubdom and _covers(other.rule, item.rule)]
            undoes = f" and this VM's '{denied[0].text}' ({_kind_name(denied[0].entry)})" if denied else ""
            yield _at_rule(item.entry, f"rule '{item.text}' lets {who} call every method of every dom0 service: it matches every call, so it "
                           f"reopens the global rules' 'deny all'{undoes}; allow only the destination (and interface, "
                           "member) the VM needs")
