"""How the Reachability section compares two policies, on hand-made `reach.Reach` halves:
rpc calls one side never probed are decided there by its nearest probe, a VM a side does
not run calls nothing, and a pair a wildcard of the other side allows is no change.

Pure: the decisions and pairs are what `reach.after_apply`/`reach.in_force` produce (the
sim tests in test_reachability.py run those on a real host); nothing is faked.
"""

from __future__ import annotations

from reconciler.plan.reachability import _rpc_changes, _uncovered, line
from reconciler.reach import RpcDecision, V4VPair

NETD = "com.citrix.xenclient.networkdaemon"
DENY_ALL = RpcDecision("uivm", None, None, None, False, "deny all", "global:1")


def allow(vm: str, destination: str | None, interface: str | None = None, member: str | None = None,
          origin: str = "uivm-rpc-1") -> RpcDecision:
    return RpcDecision(vm, destination, interface, member, True, f"allow destination {destination}", origin)


def test_a_rule_added_to_a_running_vm_opens_its_call() -> None:
    opened, closed = _rpc_changes([DENY_ALL], [DENY_ALL, allow("uivm", NETD)])
    assert (opened, closed) == ([allow("uivm", NETD)], [])
    assert line(opened[0], True) == f"+ uivm may now call {NETD}  (uivm-rpc-1: allow destination {NETD})"


def test_a_rule_removed_closes_the_call_with_the_rule_that_now_refuses_it() -> None:
    opened, closed = _rpc_changes([DENY_ALL, allow("uivm", NETD, "a.b", "list")], [DENY_ALL])
    assert opened == []
    assert closed == [RpcDecision("uivm", NETD, "a.b", "list", False, "deny all", "global:1")]
    assert line(closed[0], False) == f"- uivm may no longer call {NETD} a.b.list  (global:1: deny all)"


def test_a_call_an_allow_all_already_allowed_is_no_change() -> None:
    """By key alone the new probe would count as opened: before, `allow all` decided it."""
    everything = RpcDecision("uivm", None, None, None, True, "allow all", "uivm-rpc-0")
    assert _rpc_changes([everything], [everything, allow("uivm", NETD)]) == ([], [])
    # ... and the other way: a call the other side never names is decided by its catch-all.
    assert _rpc_changes([everything, allow("uivm", NETD)], [everything]) == ([], [])
    opened, closed = _rpc_changes([everything, allow("uivm", NETD)], [DENY_ALL])
    assert opened == [] and [d.key() for d in closed] == [("uivm", None, None, None), ("uivm", NETD, None, None)]


def test_the_nearest_probe_is_the_one_naming_most_of_the_call() -> None:
    before = [DENY_ALL, allow("uivm", NETD)]  # destination NETD: any interface and member of it
    after = [DENY_ALL, allow("uivm", NETD), RpcDecision("uivm", NETD, "x.y", None, False, "deny interface x.y", "r2")]
    opened, closed = _rpc_changes(before, after)
    assert opened == [] and closed == [RpcDecision("uivm", NETD, "x.y", None, False, "deny interface x.y", "r2")]


def test_a_vm_that_stops_calls_nothing() -> None:
    opened, closed = _rpc_changes([DENY_ALL, allow("uivm", NETD)], [])
    assert opened == [] and closed == [RpcDecision("uivm", NETD, None, None, False, "default deny", "default")]
    assert line(closed[0], False, frozenset({"uivm"})) == f"- uivm may no longer call {NETD}  (uivm stops)"
    assert _rpc_changes([], [allow("ndvm", None)]) == ([allow("ndvm", None)], [])
    assert line(allow("ndvm", None), True) == "+ ndvm may now call any other service  (uivm-rpc-1: allow destination None)"


def test_vms_with_nothing_allowed_on_either_side_do_not_change() -> None:
    denied = [RpcDecision(f"vm{i}", d, None, None, False, "deny all", "global:1") for i in range(3) for d in (None, NETD)]
    assert _rpc_changes(denied, denied[:2]) == ([], [])


def test_a_pair_a_wildcard_allows_is_no_change() -> None:
    open_table = [V4VPair("*", "*", None, None)]
    pairs: list[V4VPair | RpcDecision] = [V4VPair("uivm", "ndvm", None, 5555, ("r",)), V4VPair("dom0", "uivm", 80, None)]
    assert _uncovered(pairs, open_table) == []
    assert _uncovered(pairs, [V4VPair("uivm", "ndvm", None, None)]) == [pairs[1]]  # any port of ndvm
    assert _uncovered(pairs, [V4VPair("uivm", "ndvm", 1, 5555)]) == pairs  # only from port 1: narrower
    assert line(pairs[0], True) == "+ uivm can now reach ndvm:5555  (rule r)"
    assert line(pairs[1], False) == "- dom0 can no longer reach uivm from port 80  (no rule allows it once applied)"
