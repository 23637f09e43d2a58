"""The pure core of `reconciler reach` (reconciler/reach.py) on small, exact cases."""

from __future__ import annotations

from collections.abc import Callable

from reconciler import reach
from reconciler.model import default_vm_uuid
from reconciler.model.host import FirewallEntry, RpcPolicy, RpcVmPolicy
from reconciler.model.observed import DomainInfo, ObservedState
from reconciler.model.state import DesiredState
from reconciler.reach import Reach, RpcDecision, V4VPair, after_apply, changes, filter_reach, in_force
from tests.reach.conftest import API, vm_doc
from reconciler.loader.normalize import v4v_rule_name

Make = Callable[..., DesiredState]
EMPTY = ObservedState(firewall=())


def keys(result: Reach) -> set[tuple[str, str, int | None, int | None]]:
    return {pair.key() for pair in result.v4v}


def test_pairs_are_named_attributed_and_carry_the_baseline(desired: Make) -> None:
    state = desired(vm_doc("ui", type_="uivm", rules=("myself -> 0:80", "myself -> dom-type=ndvm:5555")),
                    vm_doc("net", type_="ndvm"))
    got = after_apply(state, EMPTY)
    assert {str(p): p.rules for p in got.v4v} == {
        "dom0 -> dom0": ("baseline",),
        "ui -> dom0:80": (v4v_rule_name("ui", "myself -> 0:80"),),
        "dom0 -> ui (from port 80)": (v4v_rule_name("ui", "myself -> 0:80"),),  # bidirectional: the inverse, ports swapped
        "ui -> net:5555": (v4v_rule_name("ui", "myself -> dom-type=ndvm:5555"),),
        "net -> ui (from port 5555)": (v4v_rule_name("ui", "myself -> dom-type=ndvm:5555"),),
    }


def test_one_pair_allowed_by_two_rules_names_both(desired: Make) -> None:
    state = desired(vm_doc("a", rules=("myself -> dom-name=b:22",)), vm_doc("b", rules=("dom-name=a -> myself:22",)))
    pair = next(p for p in after_apply(state, EMPTY).v4v if str(p) == "a -> b:22")
    assert pair.rules == (v4v_rule_name("a", "myself -> dom-name=b:22"), v4v_rule_name("b", "dom-name=a -> myself:22"))


def test_stopped_vms_resolve_nothing_and_are_not_reached(desired: Make) -> None:
    state = desired(vm_doc("a", rules=("myself -> dom-type=web:80",)), vm_doc("b", type_="web", state="stopped"),
                    vm_doc("c", state="stopped", rules=("myself -> 0",)))
    assert keys(after_apply(state, EMPTY)) == {("dom0", "dom0", None, None)}


def test_bidirectional_false_and_any_domain(desired: Make) -> None:
    rule = API + "kind: V4VRule\nmetadata: {name: logs}\nspec: {vm: a, rule: '* -> myself:514', bidirectional: false}\n"
    got = after_apply(desired(vm_doc("a"), rule), EMPTY)
    assert keys(got) == {("dom0", "dom0", None, None), ("*", "a", None, 514)}
    assert filter_reach(got, source="b", destination=None).v4v == (V4VPair("*", "a", None, 514, ("logs",)),)


def test_stub_domain_is_named_and_unmanaged_domains_stay(desired: Make) -> None:
    state = desired(vm_doc("w", virt="hvm", stubdom=True, rules=("my-stubdom -> 0:4001", "myself -> dom-name=legacy")))
    observed = ObservedState(firewall=(), domains={
        "legacy": DomainInfo("legacy", 9, default_vm_uuid("legacy")),          # unmanaged: kept
        "gone": DomainInfo("gone", 10, default_vm_uuid("gone"), managed=True),  # managed, not desired: deleted
    })
    assert keys(after_apply(state, observed)) == {
        ("dom0", "dom0", None, None), ("w-dm", "dom0", None, 4001), ("dom0", "w-dm", 4001, None),
        ("w", "legacy", None, None), ("legacy", "w", None, None)}


def test_a_uuid_rule_reaches_an_unmanaged_domain_by_its_uuid(desired: Make) -> None:
    uuid = "00000000-0000-4000-8000-000000000abc"
    state = desired(vm_doc("a", rules=(f"myself -> {uuid}:9",)))
    observed = ObservedState(domains={"x": DomainInfo("x", 4, uuid)})
    assert ("a", "x", None, 9) in keys(after_apply(state, observed))


def test_in_force_reads_the_table_as_viptables_matches_it() -> None:
    observed = ObservedState(domains={"a": DomainInfo("a", 3, None)}, firewall=(
        FirewallEntry(3, 0, None, 80), FirewallEntry(0, 0), FirewallEntry(5, 3), FirewallEntry(target="REJECT"),
        FirewallEntry(3, 0, None, 22)))  # below the default REJECT: never matched
    got = in_force(observed)
    assert got is not None
    assert keys(got) == {("a", "dom0", None, 80), ("dom0", "dom0", None, None), ("domid 5", "a", None, None)}


def test_a_table_without_its_default_reject_lets_everything_through() -> None:
    got = in_force(ObservedState(firewall=(FirewallEntry(0, 0),)))
    assert got is not None and ("*", "*", None, None) in keys(got)
    assert any("no default REJECT" in note for note in got.notes)


def test_in_force_is_none_when_the_source_shows_no_policy() -> None:
    assert in_force(ObservedState()) is None


def test_changes_by_key_and_an_rpc_flip_counts_once() -> None:
    def dec(vm: str, member: str | None, allowed: bool) -> RpcDecision:
        return RpcDecision(vm, "d", "i", member, allowed, "allow all" if allowed else "deny all", "x")
    before = Reach((V4VPair("a", "b", None, 80), V4VPair("a", "c", None, None)),
                   (dec("a", "m", False), dec("a", "n", True), dec("a", "o", True)))
    after = Reach((V4VPair("a", "b", None, 80, ("r",)), V4VPair("a", "d", None, 5555)),
                  (dec("a", "m", True), dec("a", "n", False), dec("a", "p", True)))
    allowed, denied = changes(before, after)
    assert [str(x) for x in allowed] == ["a -> d:5555", "a may call d i.m", "a may call d i.p"]
    assert [str(x) for x in denied] == ["a -> c", "a may not call d i.n", "a may call d i.o"]


def test_rpc_decisions_come_from_the_stock_rules_with_a_note(desired: Make) -> None:
    got = after_apply(desired(vm_doc("a")), EMPTY)
    assert got.rpc and {d.vm for d in got.rpc} == {"a"}
    assert all(not d.allowed and d.rule == "deny all" and d.origin.startswith("global:") for d in got.rpc)
    assert any("OpenXT stock" in note for note in got.notes)
    assert filter_reach(got, source="a", destination="b").rpc == ()  # rpc calls go to dom0's services


def test_order_key_sorts_none_ports_first() -> None:
    pairs = [V4VPair("a", "b", None, 80), V4VPair("a", "b", None, None), V4VPair("a", "b", 5, None)]
    assert [p.key() for p in sorted(pairs, key=reach.order_key)] == [
        ("a", "b", None, None), ("a", "b", None, 80), ("a", "b", 5, None)]


RPC_VM = """  properties: {domstore-read-access: true}
  rpcRules:
    - allow destination com.citrix.xenclient.usbdaemon
    - rule: allow stubdom true destination org.qemu.dm
      name: dm-only
"""


def _decided(got: Reach, vm: str) -> dict[str, tuple[bool, str, str]]:
    return {d.call(): (d.allowed, d.origin, d.rule) for d in got.rpc if d.vm == vm}


def test_rpc_rules_properties_and_the_stub_domain_decide_as_rpc_proxy(desired: Make) -> None:
    state = desired(vm_doc("w", virt="hvm", stubdom=True, extra=RPC_VM), vm_doc("plain"))
    got = after_apply(state, ObservedState(firewall=()))
    w = _decided(got, "w")
    usb = next(r.metadata.name for r in state.rpc_rules_of("w") if "usbdaemon" in r.spec.rule)
    assert w["com.citrix.xenclient.usbdaemon *.*"] == (True, usb, "allow destination com.citrix.xenclient.usbdaemon")
    assert w["com.citrix.xenclient.db com.citrix.xenclient.db.read"][:2] == (True, "global:7")  # if-boolean, from properties
    assert w["com.citrix.xenclient.db com.citrix.xenclient.db.write"][:2] == (False, "global:4")  # deny all
    assert w["org.qemu.dm *.*"][:2] == (False, "global:4")  # stubdom true: not the guest's own calls
    dm = _decided(got, "w-dm")  # rpc-proxy sees the stub domain with the guest's uuid and rules, stubdom true
    assert dm["org.qemu.dm *.*"] == (True, "dm-only", "allow destination org.qemu.dm stubdom true")  # canonical
    assert dm["* *.*"] == (False, "default", "default deny")  # `deny all` is for stubdom false only
    plain = _decided(got, "plain")
    assert plain["com.citrix.xenclient.db com.citrix.xenclient.db.read"][:2] == (False, "global:4")
    assert "org.qemu.dm *.*" not in plain  # probes come from the rules that apply to the VM


GLOBAL = "# mine\ndeny all\nallow destination org.freedesktop.DBus\n"


def test_the_hosts_global_rules_and_unmanaged_entries_are_read(desired: Make) -> None:
    other = default_vm_uuid("other")
    observed = ObservedState(firewall=(), domains={"other": DomainInfo("other", 5, other)},
                             rpc=RpcPolicy(GLOBAL, {other: RpcVmPolicy(("allow destination a.b",), ())}))
    got = after_apply(desired(vm_doc("a")), observed)
    assert got.notes == ()
    assert _decided(got, "a")["org.freedesktop.DBus *.*"] == (True, "global:3", "allow destination org.freedesktop.DBus")
    assert _decided(got, "other")["a.b *.*"] == (True, "other:1", "allow destination a.b")
    now = in_force(observed)
    assert now is not None and _decided(now, "other") == _decided(got, "other")


def test_a_global_file_that_does_not_parse_falls_back_to_stock_with_a_note(desired: Make) -> None:
    got = after_apply(desired(vm_doc("a")), ObservedState(rpc=RpcPolicy("deny all\nallow maybe\n", {})))
    assert any(note.startswith("global rpc-proxy rules: the host's file does not parse (line 2") for note in got.notes)
    assert {d.origin for d in got.rpc} == {"global:4"}
