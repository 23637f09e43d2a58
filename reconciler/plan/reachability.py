"""The plan's Reachability section: which pairs this plan allows that the host refuses
now, and which it refuses that the host allows now.

Pure: (desired, observed) -> Reachability, from `reconciler.reach`: the policy the host
enforces now (`reach.in_force`, its v4v table and rpc-proxy policy) against the policy
once the plan is applied (`reach.after_apply`). Read through `Plan.reachability` by the
text and JSON renderers; `reconciler reach` lists the whole policy, this only what moves.

Compared as policies, not as lists: a pair a wildcard already allowed (`* -> *` of a
table without its default REJECT, `uivm -> win10` for any port) is not "now allowed",
and an rpc call one side never probed is decided there by its nearest probe (the one
naming most of it: `destination X` decides every call to X no rule names more of). A part
the source cannot show (a captured dump has neither the v4v table nor the rpc-proxy
policy) is not compared: a sentence in `notes` says so, instead of listing every pair as new.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Set
from dataclasses import dataclass
from itertools import product
from typing import Any

from reconciler import reach
from reconciler.model.observed import ObservedState
from reconciler.model.state import DesiredState
from reconciler.plan.changes import Action, Diff
from reconciler.reach import RpcDecision, V4VPair

Item = V4VPair | RpcDecision
RpcKey = tuple[str, str | None, str | None, str | None]

NOT_COMPARED = ("{part}not compared: this source {what}, so what the plan changes there is unknown; "
                "`reconciler reach` lists what the manifests allow once applied")


_NO_RULE = "no rule allows it once applied"


@dataclass(frozen=True)
class Reachability:
    """`allowed`/`denied`: pairs and rpc calls this plan opens/closes, each sorted with
    `reach.order_key`; None when the source shows no part of the policy in force now.
    `stopping`: domains running now that the plan leaves stopped (the reason of a pair
    that goes with them). `notes`: a part not compared, and why."""

    allowed: tuple[Item, ...] | None = ()
    denied: tuple[Item, ...] | None = ()
    stopping: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()

    @property
    def changes(self) -> bool:
        return bool(self.allowed or self.denied)


def reachability(desired: DesiredState, observed: ObservedState, diff: Diff | None = None) -> Reachability:
    """`diff`: the plan's own Diff of (desired, observed), when the caller has it: which VMs
    start and stop is read from it rather than diffed again."""
    before = reach.in_force(observed)
    if before is None:
        what = "(a captured dump?) shows neither the v4v firewall table nor the rpc-proxy policy"
        return Reachability(None, None, notes=(NOT_COMPARED.format(part="", what=what),))
    after = reach.after_apply(desired, observed, diff=diff)
    v4v_known = observed.firewall is not None
    rpc_known = getattr(observed, "rpc", None) is not None  # ObservedState.rpc: None where not shown
    allowed: list[Item] = []
    denied: list[Item] = []
    notes: list[str] = []
    if v4v_known:
        now, gone = reach.changes(reach.Reach(before.v4v, ()), reach.Reach(after.v4v, ()))
        allowed += _uncovered(now, before.v4v)
        denied += _uncovered(gone, after.v4v)
    else:
        notes.append(NOT_COMPARED.format(part="v4v ", what="does not show the firewall table"))
    if rpc_known:
        opened, closed = _rpc_changes(before.rpc, after.rpc)
        allowed += opened
        denied += closed
    else:
        notes.append(NOT_COMPARED.format(part="rpc-proxy ", what="does not show its policy"))
    return Reachability(tuple(sorted(allowed, key=reach.order_key)), tuple(sorted(denied, key=reach.order_key)),
                        _stopping(desired, observed, diff), tuple(notes))


# ---- v4v: a pair a wildcard pair of the other side allows is no change ------------------


def _uncovered(pairs: Iterable[Item], other: Iterable[V4VPair]) -> list[Item]:
    """The pairs no pair of `other` allows: same or `*` endpoints, same or any ports.
    Sixteen set lookups per pair, so linear in the pairs whatever the rules."""
    keys = {p.key() for p in other}
    out: list[Item] = []
    for pair in pairs:
        assert isinstance(pair, V4VPair)
        wider = product((pair.source, reach.ANY), (pair.destination, reach.ANY),
                        {pair.source_port, None}, {pair.port, None})
        if not any(key in keys for key in wider):
            out.append(pair)
    return out


# ---- rpc: decisions compared call by call -----------------------------------------------


def _nearest(decisions: Mapping[RpcKey, RpcDecision], vms: Set[str], key: RpcKey) -> RpcDecision | None:
    """The decision one side makes on call `key`: its own probe, else the probe naming
    most of the call (destination first), the one its rules decide the call by; None
    when the side does not run the VM (`vms`)."""
    found = decisions.get(key)
    if found is not None or key[0] not in vms:
        return found
    vm, destination, interface, member = key
    for d, i, m in product((destination, None), (interface, None), (member, None)):
        found = decisions.get((vm, d, i, m))
        if found is not None:
            return found
    return None


def _rpc_changes(before: Iterable[RpcDecision],
                 after: Iterable[RpcDecision]) -> tuple[list[RpcDecision], list[RpcDecision]]:
    """(calls now allowed, calls now refused): every call either side probed, decided by
    both sides; a VM a side does not run calls nothing there."""
    # Only a VM with a call allowed on one side can change: the others are skipped unread.
    before, after = tuple(before), tuple(after)
    moving = {d.vm for d in before if d.allowed} | {d.vm for d in after if d.allowed}
    old = {d.key(): d for d in before if d.vm in moving}
    new = {d.key(): d for d in after if d.vm in moving}
    old_vms, new_vms = {key[0] for key in old}, {key[0] for key in new}
    allowed: list[RpcDecision] = []
    denied: list[RpcDecision] = []
    for key in old.keys() | new.keys():
        was, will = _nearest(old, old_vms, key), _nearest(new, new_vms, key)
        if will is not None and will.allowed and not (was is not None and was.allowed):
            allowed.append(will if will.key() == key else _at(key, will))
        elif was is not None and was.allowed and not (will is not None and will.allowed):
            denied.append(_at(key, will) if will is not None else
                          RpcDecision(*key, False, reach.DEFAULT_DENY, reach.DEFAULT))
    return sorted(allowed, key=reach.order_key), sorted(denied, key=reach.order_key)


def _at(key: RpcKey, decision: RpcDecision) -> RpcDecision:
    return RpcDecision(*key, decision.allowed, decision.rule, decision.origin)


def _stopping(desired: DesiredState, observed: ObservedState, diff: Diff | None) -> frozenset[str]:
    """VMs running now that do not run once the plan is applied: the plan's VM deletions
    (a VM stopped or removed), else the managed domains no manifest keeps running."""
    if diff is not None:
        return frozenset(c.name for c in diff.changes if c.kind == "VM" and c.action is Action.DELETE)
    live = reach.LIVE
    after = {name for name, vm in desired.vms.items() if vm.spec.state in live}
    gone = set()
    for name, info in observed.domains.items():
        guest = name.removesuffix("-dm")
        if info.power in live and (info.managed or name in desired.vms) and guest not in after:
            gone.add(name)
    return frozenset(gone)


# ---- rendering --------------------------------------------------------------------------


def _endpoint(name: str) -> str:
    return "any domain" if name == reach.ANY else name


def _target(pair: V4VPair) -> str:
    """`DEST:PORT`, `DEST from port N` (a reply: any destination port), `DEST (any port)`."""
    if pair.port is not None:
        text = f"{_endpoint(pair.destination)}:{pair.port}"
    else:
        text = _endpoint(pair.destination) + ("" if pair.source_port is not None else " (any port)")
    return text + ("" if pair.source_port is None else f" from port {pair.source_port}")


def _call(decision: RpcDecision) -> str:
    """`DEST [INTERFACE[.MEMBER]]`; a name no rule names is `any other ...`."""
    text = decision.destination or "any other service"
    if decision.interface is not None or decision.member is not None:
        text += f" {decision.interface or '*'}" + ("" if decision.member is None else f".{decision.member}")
    return text


def _why_gone(names: Iterable[str], stopping: frozenset[str]) -> str:
    """`X stops` for an endpoint that stops (a stub domain `X-dm` stops with X), else no rule."""
    stops = sorted({n if n in stopping else n.removesuffix("-dm") for n in names
                    if n in stopping or n.removesuffix("-dm") in stopping})
    if stops:
        return f"{' and '.join(stops)} stop{'s' if len(stops) == 1 else ''}"
    return _NO_RULE


def _rule_why(decision: RpcDecision) -> str:
    return decision.rule if decision.origin == reach.DEFAULT else f"{decision.origin}: {decision.rule}"


def line(item: Item, allowed: bool, stopping: frozenset[str] = frozenset()) -> str:
    """One change as the text plan prints it: `+`/`-`, who, what, and why in parentheses."""
    if isinstance(item, V4VPair):
        if allowed:
            why = "xenmgr's dom0<->dom0 baseline" if item.rules == (reach.BASELINE,) else \
                f"rule{'s' if len(item.rules) > 1 else ''} {', '.join(item.rules)}" if item.rules else "once applied"
            return f"+ {_endpoint(item.source)} can now reach {_target(item)}  ({why})"
        why = _why_gone((item.source, item.destination), stopping)
        return f"- {_endpoint(item.source)} can no longer reach {_target(item)}  ({why})"
    if allowed:
        return f"+ {item.vm} may now call {_call(item)}  ({_rule_why(item)})"
    why = _why_gone((item.vm,), stopping)
    why = why if why != _NO_RULE else _rule_why(item)
    return f"- {item.vm} may no longer call {_call(item)}  ({why})"


def text_lines(r: Reachability) -> Iterator[str]:
    """The section's lines without their indent and colour: + lines, then - lines, then notes."""
    for item in r.allowed or ():
        yield line(item, True, r.stopping)
    for item in r.denied or ():
        yield line(item, False, r.stopping)
    for note in r.notes:
        yield note


def to_data(r: Reachability) -> dict[str, Any]:
    """The JSON plan's `reachability`: items as `reconciler reach --format json` has them."""
    return {
        "allowed": None if r.allowed is None else [reach.item_json(i) for i in r.allowed],
        "denied": None if r.denied is None else [reach.item_json(i) for i in r.denied],
        "notes": list(r.notes),
    }
