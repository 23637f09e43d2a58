"""Who can reach whom: the inter-VM policy (v4v firewall and rpc-proxy) as pairs and decisions.

Pure. `after_apply(desired, observed)` is the policy in force once the plan is applied,
computed offline from the manifests and an observed host (a captured dump works);
`in_force(observed)` is what the host enforces now. `changes` compares two of them
(the plan's Reachability section), `filter_reach` keeps one VM's side, `to_json` and
`render_text` are the `reconciler reach` outputs. Called by `reconciler.cli.reach` and
the plan renderers. Which domains run after the plan is the plan's own diff's answer
(`reconciler.diff.vm`: kept, built, stopped); the v4v half resolves rules with
`reconciler.diff.firewall` (the resolver the diff and execute use), the rpc half
decides with `reconciler.rpc`.

Names: a VM's name, `dom0`, `*` (any domain: a rule endpoint `*`), `<vm>-dm` (a VM's
stub domain, `my-stubdom`), `domid N` (a table entry naming a domain nothing observed
names). In an rpc decision a `None` destination, interface or member is "any name no
rule names": every such name is decided alike (`rpc.probes`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler import rpc
from reconciler.diff.context import Context, build_context
from reconciler.diff.firewall import RunningIndex, RunningVM, rule_keys
from reconciler.diff.rules import running_set
from reconciler.diff.vm import vm_changes
from reconciler.model.host import FirewallEntry, RpcVmPolicy
from reconciler.model.observed import ObservedState
from reconciler.model.state import DesiredState
from reconciler.model.vm import VM
from reconciler.plan.changes import Action, Diff

VERSION = 1
"""Of the JSON document (`to_json`); schemas/reach.schema.json describes it."""

DOM0 = "dom0"
ANY = "*"
BASELINE = "baseline"
"""The `rules` of xenmgr's dom0<->dom0 ACCEPT (reworkRules, openxt.md 4.3): dom0's own
v4v (the rpc proxy) is open whatever the rules say."""
DEFAULT = "default"
DEFAULT_DENY = "default deny"
LIVE = ("running", "paused")


@dataclass(frozen=True, order=True)
class V4VPair:
    """One allowed v4v flow: `source` may send to `destination`:`port`. Ports None = any.
    Sort a mix of pairs with `order_key` (None ports do not compare with numbers)."""

    source: str
    destination: str
    source_port: int | None
    port: int | None
    rules: tuple[str, ...] = ()

    def key(self) -> tuple[str, str, int | None, int | None]:
        return self.source, self.destination, self.source_port, self.port

    def __str__(self) -> str:
        text = f"{self.source} -> {self.destination}" + ("" if self.port is None else f":{self.port}")
        return text + ("" if self.source_port is None else f" (from port {self.source_port})")


@dataclass(frozen=True, order=True)
class RpcDecision:
    """What rpc-proxy does with one incoming method call `vm` makes to dom0's DBus."""

    vm: str
    destination: str | None
    interface: str | None
    member: str | None
    allowed: bool
    rule: str
    origin: str

    def key(self) -> tuple[str, str | None, str | None, str | None]:
        return self.vm, self.destination, self.interface, self.member

    def call(self) -> str:
        """`DEST INTERFACE.MEMBER`, `*` for a name no rule names."""
        return f"{self.destination or ANY} {self.interface or ANY}.{self.member or ANY}"

    def __str__(self) -> str:
        return f"{self.vm} {'may' if self.allowed else 'may not'} call {self.call()}"


@dataclass(frozen=True)
class Reach:
    v4v: tuple[V4VPair, ...]
    rpc: tuple[RpcDecision, ...]
    notes: tuple[str, ...] = ()


def _none_first(value: int | str | None) -> tuple[bool, int | str]:
    return (value is not None, value if value is not None else "")


def order_key(item: V4VPair | RpcDecision) -> tuple[Any, ...]:
    """Total order over pairs and decisions (pairs first, then by key, None first)."""
    if isinstance(item, V4VPair):
        return (0, item.source, item.destination, _none_first(item.source_port), _none_first(item.port), item.rules)
    return (1, item.vm, *(_none_first(v) for v in (item.destination, item.interface, item.member)),
            item.allowed, item.rule, item.origin)


# ---- v4v --------------------------------------------------------------------------------


@dataclass
class _Running:
    """A running set (the resolver's input) and the way from its domids back to names."""

    vms: dict[str, RunningVM] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=lambda: {0: DOM0})
    next_domid: int = 0  # set past every observed domid by the maker

    def __post_init__(self) -> None:
        self.next_domid = max(self.names) + 1

    def start(self, name: str, vm: VM) -> None:
        """A domain the plan builds: new domids (never an observed one), its stub domain
        when the manifest asks for one (libxl's `<vm>-dm`)."""
        domid = self.next_domid
        self.names[domid] = name
        stubdom = None
        if vm.spec.virt == "hvm" and vm.spec.stubdom is not None and vm.spec.stubdom.enabled:
            stubdom = domid + 1
            self.names[stubdom] = f"{name}-dm"
        self.next_domid = (stubdom or domid) + 1
        self.vms[name] = RunningVM(domid, vm.spec.type, vm.spec.uuid, stubdom)


def _plan_sets(desired: DesiredState, observed: ObservedState, diff: Diff | None) -> tuple[set[str], set[str], list[str]]:
    """(VMs the plan builds, domains it stops, conflict sentences). From the plan's Diff
    when given (VM changes: + builds, -/+ rebuilds, - stops); else by running the diff's
    VM part over the desired VMs the host shows (a VM it does not show is built when its
    state is running or paused: that needs no diff, and a 1,000-VM empty host costs none)."""
    if diff is not None:
        vm_level = [c for c in diff.changes if c.kind == "VM" and c.name == c.vm]
        return ({c.name for c in vm_level if c.action in (Action.CREATE, Action.RESTART)},
                {c.name for c in vm_level if c.action in (Action.DELETE, Action.RESTART)}, [])
    shown = {name: vm for name, vm in desired.vms.items() if name in observed.domains}
    ctx = build_context(replace(desired, vms=shown), observed)
    vm_changes(ctx)  # fills ctx.starting / ctx.stopping
    starting = ctx.starting | {name for name, vm in desired.vms.items() if name not in shown and vm.spec.state in LIVE}
    return starting, ctx.stopping, [text for _, text in ctx.conflicts]


def _after_running(desired: DesiredState, observed: ObservedState, diff: Diff | None) -> tuple[_Running, list[str]]:
    """The domains running once the plan is applied, as the plan's own diff decides
    (`reconciler.diff.vm`): the domains it keeps as they are (a VM whose restart-only
    change waits under `updatePolicy: live` keeps its build, stub domain included;
    unmanaged domains, with no manifest type, match `dom-name=` and uuids only), and the
    VMs it builds (created, restarted), as their manifests say."""
    starting, stopping, conflicts = _plan_sets(desired, observed, diff)
    stubdoms = {name: name.removesuffix("-dm") for name in observed.domains  # as reconciler.diff.context finds them
                if name.endswith("-dm") and name.removesuffix("-dm") in observed.domains and name not in desired.vms}
    kept = running_set(Context(desired, observed, stubdoms=stubdoms), stopping)
    running = _Running(kept, {0: DOM0, **{info.domid: name for name, info in observed.domains.items()}})
    for name in sorted(starting):
        running.start(name, desired.vms[name])
    notes = [f"{text.split(';')[0]}: plan and apply refuse until it is resolved" for text in conflicts]
    return running, notes


def _name(domid: int | None, names: Mapping[int, str]) -> str:
    if domid is None:
        return ANY
    return names.get(domid, f"domid {domid}")


def _v4v_after(desired: DesiredState, running: _Running) -> tuple[V4VPair, ...]:
    """Every entry the desired rules resolve to, by domids, then named once per entry
    (domids and names are one to one, so no two entries merge; rule names come in
    order, as the desired rules are sorted by name)."""
    index = RunningIndex(running.vms)
    found: dict[tuple[int | None, int | None, int | None, int | None], list[str]] = {(0, 0, None, None): [BASELINE]}
    for name, rule in desired.v4v_rules.items():
        for dom_in, dom_out, port_in, port_out, target in rule_keys(rule, index):
            if target == "ACCEPT":
                found.setdefault((dom_in, dom_out, port_in, port_out), []).append(name)
    names = running.names
    named = {(_name(dom_in, names), _name(dom_out, names), port_in, port_out): rules
             for (dom_in, dom_out, port_in, port_out), rules in found.items()}
    return tuple(V4VPair(*key, rules=tuple(named[key])) for key in sorted(named, key=_pair_order))


def _pair_order(key: tuple[str, str, int | None, int | None]) -> tuple[str, str, bool, int, bool, int]:
    source, destination, source_port, port = key
    return source, destination, source_port is not None, source_port or 0, port is not None, port or 0


def _v4v_table(table: Sequence[FirewallEntry], names: Mapping[int, str]) -> tuple[tuple[V4VPair, ...], list[str]]:
    """The ACCEPT entries viptables matches before its default REJECT (first match wins),
    as pairs; a table without a default REJECT lets everything through (`* -> *`)."""
    found: set[V4VPair] = set()
    notes: list[str] = []
    rejects = 0
    closed = False
    for entry in table:
        if entry.target == "REJECT":
            if (entry.dom_in, entry.dom_out, entry.port_in, entry.port_out) == (None, None, None, None):
                closed = True
                break
            rejects += 1
            continue
        found.add(V4VPair(_name(entry.dom_in, names), _name(entry.dom_out, names), entry.port_in, entry.port_out))
    if not closed:
        found.add(V4VPair(ANY, ANY, None, None))
        notes.append("the v4v table has no default REJECT: every domain can reach every other")
    if rejects:
        notes.append(f"the v4v table holds {rejects} REJECT entr{'y' if rejects == 1 else 'ies'} besides the default: "
                     "pairs listed below one may be refused in part")
    return tuple(sorted(found, key=order_key)), notes


# ---- rpc-proxy --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Origin:
    rule: rpc.Rule
    origin: str
    text: str = ""  # str(rule), made once

    @classmethod
    def of(cls, rule: rpc.Rule, origin: str) -> _Origin:
        return cls(rule, origin, str(rule))


def _global_rules(text: str | None, notes: list[str]) -> list[_Origin]:
    """The host's global rules file, else OpenXT's stock one (with a note saying why)."""
    if text is not None:
        try:
            return [_Origin.of(rule, f"global:{line}") for line, rule in rpc.parse_rules_file(text)]
        except rpc.RuleError as exc:
            notes.append(f"global rpc-proxy rules: the host's file does not parse (line {exc.line}: "
                         f"{exc}): OpenXT stock used")
    else:
        notes.append("global rpc-proxy rules: OpenXT stock (the host's could not be read)")
    return [_Origin.of(rule, f"global:{line}") for line, rule in rpc.parse_rules_file(rpc.STOCK_RULES)]


Verdicts = list[tuple[rpc.Call, bool, int | None]]


class _Decider:
    """rpc-proxy's decision on every probe call, for callers under one set of global
    rules. Callers no rule tells apart (same own rules, type, stubdom, and the names,
    uuids and properties some rule tests) share one evaluation: 1,000 VMs under the stock
    rules are decided once, not 1,000 times."""

    def __init__(self, global_rules: list[_Origin]) -> None:
        self.global_rules = global_rules
        self.memo: dict[tuple[object, ...], Verdicts] = {}

    def _key(self, own: Sequence[_Origin], caller: rpc.Caller) -> tuple[object, ...]:
        rules = [r.rule for r in (*self.global_rules, *own)]
        types = {r.dom_type for r in rules}
        names = {r.dom_name for r in rules}
        uuids = {r.dom_uuid.lower() for r in rules if r.dom_uuid is not None}
        tested = sorted({name for r in rules for name, _ in r.if_boolean})
        return (tuple(r.text for r in own), caller.type if caller.type in types else None, caller.stubdom,
                caller.name if caller.name in names else None, caller.uuid.lower() if caller.uuid.lower() in uuids else None,
                tuple(caller.properties.get(name) for name in tested))

    def decisions(self, who: str, own: Sequence[_Origin], caller: rpc.Caller) -> list[RpcDecision]:
        rules = [*self.global_rules, *own]
        key = self._key(own, caller)
        verdicts = self.memo.get(key)
        if verdicts is None:
            parsed = [r.rule for r in rules]
            verdicts = [(call, *rpc.decide(parsed, call, caller)) for call in rpc.probes(parsed)]
            self.memo[key] = verdicts
        out: list[RpcDecision] = []
        for call, allowed, index in verdicts:  # probes come sorted as order_key sorts one VM's decisions
            rule, origin = (DEFAULT_DENY, DEFAULT) if index is None else (rules[index].text, rules[index].origin)
            out.append(RpcDecision(who, call.destination, call.interface, call.member, allowed, rule, origin))
        return out


def _callers(name: str, caller: rpc.Caller, stub: bool) -> list[tuple[str, rpc.Caller]]:
    """The VM, and its stub domain (rpc-proxy sees the guest's uuid with `stubdom` true)."""
    out = [(name, caller)]
    if stub:
        out.append((f"{name}-dm", rpc.Caller(f"{name}-dm", caller.uuid, caller.type, True, caller.properties)))
    return out


def _observed_entry(observed: ObservedState, uuid: str | None) -> RpcVmPolicy | None:
    return None if observed.rpc is None or uuid is None else observed.rpc.vms.get(uuid)


def _entry_rules(entry: RpcVmPolicy | None, name: str, notes: list[str]) -> list[_Origin]:
    """An observed per-VM entry's rules; origin `NAME:N` (its N-th rule, from 1)."""
    out: list[_Origin] = []
    for n, text in enumerate(entry.rules if entry is not None else (), 1):
        try:
            out.append(_Origin.of(rpc.parse_rule(text), f"{name}:{n}"))
        except rpc.RuleError as exc:
            notes.append(f"rpc-proxy rule {n} of {name} on the host does not parse ({exc}): left out")
    return out


def _rpc_after(desired: DesiredState, observed: ObservedState, running: _Running,
               notes: list[str]) -> tuple[RpcDecision, ...]:
    policy = observed.rpc
    if policy is None and any(name not in desired.vms for name in running.vms):
        notes.append("the rpc-proxy policy is not in this source: the rules of unmanaged domains are not known")
    decider = _Decider(_global_rules(None if policy is None else policy.global_rules, notes))
    out: dict[str, list[RpcDecision]] = {}
    for name, vm in running.vms.items():
        spec = desired.vms[name].spec if name in desired.vms else None
        if spec is not None:
            own = [_Origin.of(rpc.parse_rule(r.spec.rule), r.metadata.name) for r in desired.rpc_rules_of(name)]
            caller = rpc.Caller(name, spec.uuid or "", spec.type, False, dict(spec.properties))
        else:
            entry = _observed_entry(observed, vm.uuid)
            own = _entry_rules(entry, name, notes)
            seen = observed.vms.get(name)
            caller = rpc.Caller(name, vm.uuid or "", seen.spec.type if seen is not None else "svm", False,
                                dict(entry.properties) if entry is not None else {})
        for who, one in _callers(name, caller, vm.stubdom is not None):
            out[who] = decider.decisions(who, own, one)
    return tuple(d for who in sorted(out) for d in out[who])


def _rpc_in_force(observed: ObservedState, notes: list[str]) -> tuple[RpcDecision, ...] | None:
    policy = observed.rpc
    if policy is None:
        notes.append("the rpc-proxy policy is not in this source (a captured dump?)")
        return None
    decider = _Decider(_global_rules(policy.global_rules, notes))
    stubs = {name.removesuffix("-dm") for name, info in observed.domains.items()  # guests with a live stub domain
             if name.endswith("-dm") and name.removesuffix("-dm") in observed.domains and info.power in LIVE}
    out: dict[str, list[RpcDecision]] = {}
    for name, info in observed.domains.items():
        if info.power not in LIVE or (name.endswith("-dm") and name.removesuffix("-dm") in observed.domains):
            continue
        entry = _observed_entry(observed, info.uuid)
        seen = observed.vms.get(name)
        caller = rpc.Caller(name, info.uuid or "", seen.spec.type if seen is not None else "svm", False,
                            dict(entry.properties) if entry is not None else {})
        own = _entry_rules(entry, name, notes)
        for who, one in _callers(name, caller, name in stubs):
            out[who] = decider.decisions(who, own, one)
    return tuple(d for who in sorted(out) for d in out[who])


# ---- the API ----------------------------------------------------------------------------


def after_apply(desired: DesiredState, observed: ObservedState, *, diff: Diff | None = None) -> Reach:
    """The policy in force once the plan for (desired, observed) is applied. `diff`: the
    plan's own Diff of the same pair, when the caller has it (the planner), so which VMs
    start and stop is read from it instead of diffing the VMs again."""
    running, notes = _after_running(desired, observed, diff)
    v4v = _v4v_after(desired, running)
    decisions = _rpc_after(desired, observed, running, notes)
    return Reach(v4v, decisions, tuple(notes))


def in_force(observed: ObservedState) -> Reach | None:
    """What the host enforces now; None when the source shows neither the v4v table nor
    the rpc-proxy policy (a captured dump)."""
    notes: list[str] = []
    names = {0: DOM0, **{info.domid: name for name, info in observed.domains.items()}}
    decisions = _rpc_in_force(observed, notes)
    if observed.firewall is None:
        if decisions is None:
            return None
        notes.append("the v4v firewall table is not in this source")
        return Reach((), decisions, tuple(notes))
    v4v, table_notes = _v4v_table(observed.firewall, names)
    return Reach(v4v, decisions or (), tuple(notes + table_notes))


def changes(before: Reach, after: Reach) -> tuple[list[V4VPair | RpcDecision], list[V4VPair | RpcDecision]]:
    """(now allowed, now denied), by key, each sorted with `order_key`. A v4v pair counts
    when its key appears or goes; an rpc decision when it appears allowed, goes while
    allowed, or flips (once, on the side it flips to)."""
    allowed: list[V4VPair | RpcDecision] = []
    denied: list[V4VPair | RpcDecision] = []
    old_pairs = {p.key(): p for p in before.v4v}
    new_pairs = {p.key(): p for p in after.v4v}
    allowed += [p for k, p in new_pairs.items() if k not in old_pairs]
    denied += [p for k, p in old_pairs.items() if k not in new_pairs]
    old_rpc = {d.key(): d for d in before.rpc}
    new_rpc = {d.key(): d for d in after.rpc}
    for key, new in new_rpc.items():
        old = old_rpc.get(key)
        was = old.allowed if old is not None else False
        if new.allowed and not was:
            allowed.append(new)
        elif was and not new.allowed:
            denied.append(new)
    denied += [old for key, old in old_rpc.items() if key not in new_rpc and old.allowed]
    return sorted(allowed, key=order_key), sorted(denied, key=order_key)


def filter_reach(reach: Reach, *, source: str | None, destination: str | None) -> Reach:
    """The pairs from `source` and to `destination` (None: any), a `*` endpoint matching
    every domain; rpc decisions of VM `source`, kept for a `destination` of dom0 only
    (rpc-proxy's calls go to dom0's DBus services)."""
    def hits(side: str, wanted: str | None) -> bool:
        return wanted is None or side == wanted or side == ANY

    v4v = tuple(p for p in reach.v4v if hits(p.source, source) and hits(p.destination, destination))
    decisions = tuple(d for d in reach.rpc if (source is None or d.vm == source) and destination in (None, DOM0))
    return Reach(v4v, decisions, reach.notes)


def item_json(item: V4VPair | RpcDecision) -> dict[str, Any]:
    """One pair or decision as JSON (as `to_json` lists them; the plan's Reachability too)."""
    if isinstance(item, V4VPair):
        return {"source": item.source, "destination": item.destination, "source_port": item.source_port,
                "port": item.port, "rules": list(item.rules)}
    return {"vm": item.vm, "destination": item.destination, "interface": item.interface, "member": item.member,
            "allowed": item.allowed, "rule": item.rule, "origin": item.origin}


_PORT = {"type": ["integer", "null"], "minimum": 0, "maximum": 65535}
_NAME_OR_ANY = {"type": ["string", "null"], "description": "null: any name no rule names (every such name is decided alike)"}
SCHEMA_FILENAME = "reach.schema.json"
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://xen-reconciler.invalid/schemas/" + SCHEMA_FILENAME,
    "title": "reconciler reach --format json: who may talk to whom once the plan is applied",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "v4v", "rpc", "notes"],
    "properties": {
        "version": {"const": VERSION},
        "v4v": {
            "type": "array",
            "description": "every v4v flow the firewall allows, sorted by source, destination, ports (null first)",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["source", "destination", "source_port", "port", "rules"],
                "properties": {
                    "source": {"type": "string", "description": "a VM name, dom0, * (any domain), <vm>-dm (its stub "
                               "domain) or 'domid N' (a domain nothing names)"},
                    "destination": {"type": "string", "description": "as source"},
                    "source_port": {**_PORT, "description": "the sender's port; null: any"},
                    "port": {**_PORT, "description": "the destination port; null: any"},
                    "rules": {"type": "array", "items": {"type": "string"},
                              "description": "the V4VRule names that allow it, sorted; 'baseline' for xenmgr's "
                              "dom0<->dom0; empty when read from a host's table"},
                },
            },
        },
        "rpc": {
            "type": "array",
            "description": "rpc-proxy's decision on each incoming method call the rules name, for every VM left running",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["vm", "destination", "interface", "member", "allowed", "rule", "origin"],
                "properties": {
                    "vm": {"type": "string", "description": "the calling VM (<vm>-dm: its stub domain)"},
                    "destination": _NAME_OR_ANY,
                    "interface": _NAME_OR_ANY,
                    "member": _NAME_OR_ANY,
                    "allowed": {"type": "boolean"},
                    "rule": {"type": "string", "description": "canonical text of the deciding rule, or 'default deny'"},
                    "origin": {"type": "string", "description": "global:LINE (the global rules file), an RPCRule "
                               "name, VM:N (the N-th rule of a VM's entry on the host) or 'default'"},
                },
            },
        },
        "notes": {"type": "array", "items": {"type": "string"},
                  "description": "what the source could not show, and what was assumed instead"},
    },
}


def schema_text() -> str:
    """The schema as `reconciler schema` writes it (sorted keys, fixed indent)."""
    return json.dumps(SCHEMA, indent=2, sort_keys=True) + "\n"


def to_json(reach: Reach) -> dict[str, Any]:
    return {"version": VERSION, "v4v": [item_json(p) for p in reach.v4v], "rpc": [item_json(d) for d in reach.rpc],
            "notes": list(reach.notes)}


def _by(rules: Iterable[str]) -> str:
    return ", ".join(rules) or "the host's table"


def _catch_all(decision: RpcDecision, rules: Mapping[str, bool]) -> bool:
    """A denial by default deny, or by a rule that matches every call (`deny all`)."""
    return not decision.allowed and (decision.origin == DEFAULT or rules.get(decision.rule, False))


def _rpc_lines(decisions: Sequence[RpcDecision]) -> list[str]:
    """One line per call allowed or denied by a rule that names it; the calls a catch-all
    denial decides are one line (`may call nothing else`) with their count."""
    everything = {d.rule: d.origin != DEFAULT and rpc.parse_rule(d.rule, per_vm=False).matches_everything
                  for d in decisions if not d.allowed}
    lines: list[str] = []
    rest: dict[tuple[str, str], int] = {}
    for decision in decisions:
        if _catch_all(decision, everything):
            rest[(decision.origin, decision.rule)] = rest.get((decision.origin, decision.rule), 0) + 1
            continue
        verb = "may call" if decision.allowed else "may not call"
        lines.append(f"  {verb} {decision.call()}  ({_why(decision.origin, decision.rule)})")
    for (origin, rule), count in sorted(rest.items()):
        probed = f"{count} call{'' if count == 1 else 's'} probed"
        lines.append(f"  may not call anything{' else' if lines else ''} ({probed})  ({_why(origin, rule)})")
    return lines


def _why(origin: str, rule: str) -> str:
    return rule if origin == DEFAULT else f"{origin}: {rule}"


def render_text(reach: Reach) -> str:
    """Grouped by source (a VM, dom0, `*`, a stub domain), sources sorted: its v4v pairs
    (`can reach DEST:PORT  (RULES)`), then its rpc-proxy decisions (`may call` / `may not
    call DEST INTERFACE.MEMBER  (ORIGIN: RULE)`; the calls a `deny all` or default deny
    refuses in one line); notes last."""
    groups: dict[str, list[str]] = {}
    for pair in reach.v4v:
        target = pair.destination + ("" if pair.port is None else f":{pair.port}")
        src = "" if pair.source_port is None else f" from port {pair.source_port}"
        groups.setdefault(pair.source, []).append(f"  can reach {target}{src}  ({_by(pair.rules)})")
    by_vm: dict[str, list[RpcDecision]] = {}
    for decision in reach.rpc:
        by_vm.setdefault(decision.vm, []).append(decision)
    for vm, decisions in by_vm.items():
        groups.setdefault(vm, []).extend(_rpc_lines(decisions))
    lines: list[str] = []
    for source in sorted(groups):
        lines.append(f"{source} (any domain)" if source == ANY else source)
        lines += groups[source]
    if not lines:
        lines.append("Nothing is allowed.")
    lines += [f"note: {note}" for note in reach.notes]
    return "\n".join(lines) + "\n"
