"""rpc-proxy rules (reconciler/rpc.py): the grammar with its edge cases, rpc-proxy's
last-match-wins evaluation, and OpenXT's stock global rules with the decisions they make.
Pure module: no host, nothing faked."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import rpc

UUID = "6f2a1c3e-0b4d-4e5f-8a9b-0c1d2e3f4a5b"
OTHER_UUID = "11111111-2222-4333-8444-555555555555"
DB = "com.citrix.xenclient.db"
XENMGR = "com.citrix.xenclient.xenmgr"
USB = "com.citrix.xenclient.usbdaemon"
NETWORK = "com.citrix.xenclient.networkdaemon"
STOCK = [rule for _, rule in rpc.parse_rules_file(rpc.STOCK_RULES)]


def vm(**properties: bool) -> rpc.Caller:
    return rpc.Caller("win10", UUID, properties=properties)


def db(member: str) -> rpc.Call:
    return rpc.Call(DB, DB, member)


def xenmgr(interface: str, member: str) -> rpc.Call:
    return rpc.Call(XENMGR, interface, member)


# ---------------------------------------------------------------- grammar: valid rules


@pytest.mark.parametrize("subject", rpc.SUBJECTS)
def test_every_subject_parses_and_inc_any_is_the_default(subject: str) -> None:
    rule = rpc.parse_rule(f"deny {subject} destination a.b")
    assert (rule.allow, rule.subject, rule.destination) == (False, subject, "a.b")
    assert str(rule) == ("deny destination a.b" if subject == "inc-any" else f"deny {subject} destination a.b")
    assert rpc.parse_rule("allow destination a.b").subject == "inc-any"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("allow destination com.x", rpc.Rule(True, destination="com.x")),
        ("allow interface org.I", rpc.Rule(True, interface="org.I")),
        ("allow member Get", rpc.Rule(True, member="Get")),
        ("allow sender n1", rpc.Rule(True, sender="n1")),
        ("allow dom-type syncvm", rpc.Rule(True, dom_type="syncvm")),
        ("allow dom-name uivm", rpc.Rule(True, dom_name="uivm")),
        ("allow stubdom true", rpc.Rule(True, stubdom=True)),
        ("allow stubdom false", rpc.Rule(True)),
        ("allow if-boolean usb-control true", rpc.Rule(True, if_boolean=(("usb-control", True),))),
        ("allow if-boolean usb-control false", rpc.Rule(True, if_boolean=(("usb-control", False),))),
    ],
)
def test_every_specifier(text: str, expected: rpc.Rule) -> None:
    assert rpc.parse_rule(text) == expected


def test_all_and_no_specifier_both_match_everything_from_non_stub_domains() -> None:
    assert rpc.parse_rule("allow all") == rpc.parse_rule("allow") == rpc.Rule(True)
    assert rpc.parse_rule("deny out-any all") == rpc.parse_rule("deny out-any") == rpc.Rule(False, "out-any")
    assert rpc.Rule(True).stubdom is False
    assert rpc.Rule(True).matches_everything and rpc.Rule(False, "out-signal").matches_everything
    assert not rpc.parse_rule("allow stubdom true").matches_everything
    assert not rpc.parse_rule("allow if-boolean usb-control true").matches_everything


def test_canonical_form() -> None:
    assert rpc.canonical("allow") == "allow all"
    assert rpc.canonical("allow inc-any all") == "allow all"
    assert rpc.canonical("allow out-any") == "allow out-any all"
    assert rpc.canonical("allow stubdom false destination d") == "allow destination d"
    # fixed specifier order, whatever the text's order; if-boolean keeps its own order
    assert (
        rpc.canonical(
            "deny if-boolean b true stubdom true dom-name n dom-type t sender s member m interface i destination d"
            " if-boolean a false"
        )
        == "deny destination d interface i member m sender s dom-type t dom-name n stubdom true"
        " if-boolean b true if-boolean a false"
    )
    assert rpc.parse_rule("allow dom-uuid U1", per_vm=False).__str__() == "allow dom-uuid U1"


def test_tabs_and_runs_of_blanks_separate_words() -> None:
    assert rpc.canonical("\tallow \t destination\t\tcom.x  member   m \t") == "allow destination com.x member m"


@pytest.mark.parametrize("name", ["a", "9", "a_b", "a.b", "a-b", "Z9_.-x", "0a", "com.citrix.xenclient.xenmgr.vm"])
def test_name_characters(name: str) -> None:
    assert rpc.parse_rule(f"allow member {name}").member == name


def test_later_specifier_overrides_but_if_boolean_accumulates() -> None:
    rule = rpc.parse_rule("allow destination a destination b stubdom true stubdom false member m member n")
    assert (rule.destination, rule.member, rule.stubdom) == ("b", "n", False)
    rule = rpc.parse_rule("allow if-boolean usb-control true if-boolean usb-enabled false")
    assert rule.if_boolean == (("usb-control", True), ("usb-enabled", False))
    assert rpc.parse_rule("allow dom-type t dom-type t").dom_type == "t"


def test_a_keyword_is_a_valid_name_as_in_rpc_proxy() -> None:
    assert rpc.parse_rule("allow destination all member stubdom").destination == "all"


def test_dom_uuid_is_refused_in_a_vm_rule_and_accepted_in_the_global_file() -> None:
    with pytest.raises(rpc.RuleError, match=r"dom-uuid is not allowed in a VM's rules.*use the rule's vm") as exc:
        rpc.parse_rule(f"allow dom-uuid {UUID}")
    assert exc.value.column == 7
    assert rpc.parse_rule(f"allow dom-uuid {UUID}", per_vm=False).dom_uuid == UUID
    assert rpc.parse_rules_file(f"allow dom-uuid {UUID}\n") == [(1, rpc.Rule(True, dom_uuid=UUID))]


@pytest.mark.parametrize("per_vm", [True, False])
def test_dom_id_is_refused_with_the_reason(per_vm: bool) -> None:
    with pytest.raises(rpc.RuleError, match=r"dom-id is not supported: domids change on every boot.*NAME") as exc:
        rpc.parse_rule("allow destination x dom-id 5", per_vm=per_vm)
    assert exc.value.column == 21


# ---------------------------------------------------------------- grammar: errors

SPECIFIER_WORDS = "destination, interface, member, sender, dom-type, dom-name, stubdom, if-boolean"


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("", 1, "empty rule: expected allow or deny"),
        ("  \t ", 1, "empty rule: expected allow or deny"),
        ("Allow all", 1, "unknown rule type 'Allow': expected allow or deny (did you mean 'allow'? keywords are lower-case)"),
        ("permit all", 1, "unknown rule type 'permit': expected allow or deny"),
        ("destination x", 1, "unknown rule type 'destination': expected allow or deny (a rule starts with allow or deny)"),
        ("allow destination x dest y", 21, f"unknown specifier 'dest': expected one of {SPECIFIER_WORDS} (did you mean 'destination'?)"),
        ("allow Destination x", 7, "(did you mean 'destination'? keywords are lower-case)"),
        ("allow INC-ANY", 7, "(did you mean 'inc-any'? keywords are lower-case)"),
        ("allow dest x", 7, f"unknown specifier 'dest': expected one of {SPECIFIER_WORDS}; or 'all'; or first a subject (inc-method-call,"),
        ("allow inc-metod-call", 7, "unknown subject 'inc-metod-call': expected one of inc-method-call, out-method-call, inc-signal,"),
        ("allow inc-metod-call", 7, "(did you mean 'inc-method-call'?)"),
        ("allow destination", 18, "destination needs a NAME"),
        ("allow interface", 16, "interface needs a NAME"),
        ("allow member  ", 13, "member needs a NAME (letters, digits, '_', '.', '-'; starting with a letter or digit), found the end of the rule"),
        ("allow sender", 13, "sender needs a NAME"),
        ("allow dom-type", 15, "dom-type needs a NAME"),
        ("allow dom-name", 15, "dom-name needs a NAME"),
        ("allow stubdom", 14, "stubdom needs true or false, found the end of the rule"),
        ("allow stubdom maybe", 15, "stubdom takes true or false, found 'maybe'"),
        ("allow stubdom True", 15, "(did you mean 'true'? keywords are lower-case)"),
        ("allow if-boolean", 17, "if-boolean needs a property: one of amt-pt, domstore-read-access, domstore-write-access,"),
        ("allow if-boolean usb-control", 29, "if-boolean usb-control needs true or false, found the end of the rule"),
        ("allow if-boolean usb-control yes", 30, "if-boolean usb-control takes true or false, found 'yes'"),
        ("allow inc-any out-any", 15, "a second subject 'out-any' after 'inc-any': a rule has at most one"),
        ("allow inc-signal member m out-any", 27, "a second subject 'out-any'"),
        ("allow destination x inc-any", 21, "subject 'inc-any' must come right after allow/deny"),
        ("allow all destination x", 11, "'all' matches everything and ends the rule, found 'destination' after it"),
        ("allow out-any all all", 19, "'all' matches everything and ends the rule, found 'all'"),
        ("allow destination x all", 21, "'all' cannot follow specifiers"),
        ("allow all deny all", 11, "'all' matches everything and ends the rule, found 'deny'"),
        ("allow destination x deny", 21, "'deny' starts a rule: one rule per line"),
        ("allow destination com/x", 22, "unexpected character '/' in 'com/x': expected a NAME"),
        ("allow member _x", 14, "'_x' is not a word: expected a NAME"),
        ("allow member .x", 14, "'.x' is not a word"),
        ("allow member é", 14, "unexpected character 'é'"),
        ("allow all # comment", 11, "'#' comments belong in the rules file"),
        ("allow all\ndeny all", 10, "a line break inside a rule"),
        ("allow destination stubdom true", 27, "('stubdom' was read as the NAME of destination: is that NAME missing?)"),
        ("allow dom-type a dom-type b", 18, "dom-type given twice ('a', then 'b'): the rule could never match"),
        ("allow dom-name a dom-name b", 18, "dom-name given twice"),
    ],
)
def test_errors_say_where_what_was_found_and_what_is_valid(text: str, column: int, message: str) -> None:
    with pytest.raises(rpc.RuleError) as exc:
        rpc.parse_rule(text)
    assert message in str(exc.value)
    assert exc.value.column == column
    assert exc.value.line is None
    assert "\n" not in str(exc.value)


def test_a_valid_word_is_not_suggested_when_nothing_is_close() -> None:
    with pytest.raises(rpc.RuleError) as exc:
        rpc.parse_rule("allow destination x zzzz q")
    assert "did you mean" not in str(exc.value)


def test_the_global_file_lists_dom_uuid_among_the_valid_specifiers() -> None:
    with pytest.raises(rpc.RuleError, match=r"expected one of destination, .*if-boolean, dom-uuid \(did you mean 'dom-uuid'"):
        rpc.parse_rule("allow destination x dom-uid u", per_vm=False)


# ---------------------------------------------------------------- the global rules file


def test_rules_file_skips_blanks_and_comments_and_numbers_lines() -> None:
    text = "# header\n\ndeny all   # trailing comment\n \t\nallow\tout-any\n#allow all\n"
    assert rpc.parse_rules_file(text) == [(3, rpc.Rule(False)), (5, rpc.Rule(True, "out-any"))]


def test_rules_file_error_has_line_and_column() -> None:
    with pytest.raises(rpc.RuleError, match=r"^stubdom takes true or false, found 'maybe'$") as exc:
        rpc.parse_rules_file("deny all\n# ok\nallow destination x stubdom maybe # why\n")
    assert (exc.value.line, exc.value.column) == (3, 29)


def test_rules_file_with_crlf_line_ends_is_refused_as_rpc_proxy_refuses_it() -> None:
    with pytest.raises(rpc.RuleError, match="CRLF") as exc:
        rpc.parse_rules_file("deny all\r\nallow out-any\r\n")
    assert (exc.value.line, exc.value.column) == (1, 9)


def test_stock_rules_are_openxts_rule_for_rule() -> None:
    lines = [number for number, _ in rpc.parse_rules_file(rpc.STOCK_RULES)]
    assert len(STOCK) == 31 and len(set(lines)) == 31
    assert STOCK[0] == rpc.Rule(False)
    assert STOCK[-1] == rpc.Rule(True, "out-any")
    assert STOCK[1] == rpc.Rule(True, destination=DB, interface=DB, member="read", if_boolean=(("domstore-read-access", True),))
    assert [r.member for r in STOCK[1:7]] == ["read", "read_binary", "list", "exists", "write", "rm"]
    assert STOCK[7] == rpc.Rule(True, destination=USB, if_boolean=(("usb-control", True),))
    syncvm = STOCK[8:30]
    assert all(r.dom_type == "syncvm" and r.allow for r in syncvm)
    assert [r.member for r in syncvm] == [
        "Introspect", "attach_vhd", "list_vms", "set_license", "unrestricted_create_vm_with_template_and_json",
        "unrestricted_create_vm", "unrestricted_delete_vm", "add_disk", "add_argo_firewall_rule", "delete",
        "delete_argo_firewall_rule", "destroy", "list_disks", "list_argo_firewall_rules", "get_domstore_key",
        "set_domstore_key", "Introspect", "Get", "Set", "generic_message", "umount", "delete",
    ]  # fmt: skip
    assert syncvm[19] == rpc.Rule(
        True, interface="com.citrix.xenclient.xenmgr.host", member="generic_message", dom_type="syncvm"
    )  # the one syncvm rule naming no destination


# ---------------------------------------------------------------- evaluation on the stock rules


@pytest.mark.parametrize("member", ["read", "read_binary", "list", "exists"])
def test_domstore_read_access_allows_reads_not_writes(member: str) -> None:
    reader = vm(**{"domstore-read-access": True})
    allowed, index = rpc.decide(STOCK, db(member), reader)
    assert allowed and STOCK[index or 0].member == member
    assert rpc.decide(STOCK, db("write"), reader) == (False, 0)
    assert rpc.decide(STOCK, db("rm"), reader) == (False, 0)
    assert rpc.decide(STOCK, db(member), vm()) == (False, 0)  # xenmgr's default: false


def test_domstore_write_access_allows_write_and_rm_only() -> None:
    writer = vm(**{"domstore-write-access": True})
    assert rpc.decide(STOCK, db("write"), writer) == (True, 5)
    assert rpc.decide(STOCK, db("rm"), writer) == (True, 6)
    assert rpc.decide(STOCK, db("read"), writer) == (False, 0)
    assert rpc.decide(STOCK, rpc.Call(DB, "org.other", "write"), writer) == (False, 0)


def test_usb_control_gates_the_usb_daemon() -> None:
    call = rpc.Call(USB, "com.citrix.xenclient.usbdaemon", "list_devices")
    assert rpc.decide(STOCK, call, vm()) == (False, 0)
    assert rpc.decide(STOCK, call, vm(**{"usb-control": False})) == (False, 0)
    assert rpc.decide(STOCK, call, vm(**{"usb-control": True})) == (True, 7)
    assert rpc.decide(STOCK, rpc.Call(USB), vm(**{"usb-control": True})) == (True, 7)


def test_a_syncvm_may_call_xenmgr_list_vms_an_svm_may_not() -> None:
    call = xenmgr(XENMGR, "list_vms")
    sync = rpc.Caller("sync", UUID, type="syncvm")
    assert rpc.decide(STOCK, call, sync) == (True, 10)
    assert rpc.decide(STOCK, call, vm()) == (False, 0)
    assert rpc.decide(STOCK, xenmgr(XENMGR, "shutdown"), sync) == (False, 0)
    # generic_message names no destination: any destination with that interface and member
    generic = rpc.Call("any.bus.name", "com.citrix.xenclient.xenmgr.host", "generic_message")
    assert rpc.decide(STOCK, generic, sync) == (True, 27)
    assert rpc.decide(STOCK, rpc.Call(None, "com.citrix.xenclient.xenmgr.host", "generic_message"), sync) == (True, 27)


def test_a_stub_domain_is_denied_by_everything_as_stubdom_defaults_to_false() -> None:
    stub = rpc.Caller("win10-dm", UUID, type="syncvm", stubdom=True, properties={"domstore-read-access": True})
    for call in [*rpc.probes(STOCK), db("read"), xenmgr(XENMGR, "list_vms")]:
        assert rpc.decide(STOCK, call, stub) == (False, None)
    assert rpc.decide(STOCK, rpc.Call(subject="out-method-return"), stub) == (False, None)
    opened = [*STOCK, rpc.parse_rule("allow stubdom true destination com.x")]
    assert rpc.decide(opened, rpc.Call("com.x"), stub) == (True, 31)
    assert rpc.decide(opened, rpc.Call("com.x"), vm()) == (False, 0)


def test_allow_out_any_lets_replies_out_but_no_incoming_call_in() -> None:
    for call in rpc.probes(STOCK):
        assert not rpc.decide(STOCK, call, vm())[0]
    for subject in ("inc-method-call", "inc-signal", "inc-method-return", "inc-error"):
        assert rpc.decide(STOCK, rpc.Call("com.x", subject=subject), vm()) == (False, 0)
    for subject in ("out-method-call", "out-signal", "out-method-return", "out-error"):
        assert rpc.decide(STOCK, rpc.Call("com.x", subject=subject), vm()) == (True, 30)


# ---------------------------------------------------------------- per-VM rules after the global ones
# The template examples of openxt.md section 8. rpc-proxy appends a VM's rules after the
# global ones and forces their dom-uuid to the VM's (RulesCache.hs): modelled here.


def own(uuid: str, *texts: str) -> list[rpc.Rule]:
    return [replace(rpc.parse_rule(text), dom_uuid=uuid) for text in texts]


def test_a_vm_rule_allow_destination_networkdaemon() -> None:
    rules = STOCK + own(UUID, "allow destination com.citrix.xenclient.networkdaemon")
    for call in (rpc.Call(NETWORK), rpc.Call(NETWORK, NETWORK, "list"), rpc.Call(NETWORK, "x", "y")):
        assert rpc.decide(rules, call, vm()) == (True, 31)
    assert rpc.decide(rules, rpc.Call(NETWORK), rpc.Caller("other", OTHER_UUID)) == (False, 0)
    assert rpc.decide(rules, rpc.Call(XENMGR), vm()) == (False, 0)
    assert rpc.decide(STOCK, rpc.Call(NETWORK), vm()) == (False, 0)


def test_a_vm_rule_properties_get_and_the_deny_that_follows_a_broader_allow() -> None:
    rules = STOCK + own(
        UUID,
        "allow destination com.citrix.xenclient.xenmgr interface org.freedesktop.DBus.Properties member Get",
        "allow destination com.citrix.xenclient.xenmgr",
        "deny destination com.citrix.xenclient.xenmgr interface com.citrix.xenclient.xenmgr.config member Set",
    )
    assert rpc.decide(rules, xenmgr("org.freedesktop.DBus.Properties", "Get"), vm()) == (True, 32)
    assert rpc.decide(rules, xenmgr("com.citrix.xenclient.xenmgr.config", "Set"), vm()) == (False, 33)
    assert rpc.decide(rules, xenmgr("com.citrix.xenclient.xenmgr.config", "Get"), vm()) == (True, 32)
    only_get = STOCK + own(
        UUID, "allow destination com.citrix.xenclient.xenmgr interface org.freedesktop.DBus.Properties member Get"
    )
    assert rpc.decide(only_get, xenmgr("org.freedesktop.DBus.Properties", "Get"), vm()) == (True, 31)
    assert rpc.decide(only_get, xenmgr("org.freedesktop.DBus.Properties", "Set"), vm()) == (False, 0)
    assert rpc.decide(only_get, rpc.Call(XENMGR, None, "Get"), vm()) == (False, 0)


def test_last_match_wins_in_both_directions() -> None:
    allow_then_deny = [rpc.parse_rule("allow destination d"), rpc.parse_rule("deny destination d member m")]
    assert rpc.decide(allow_then_deny, rpc.Call("d", "i", "m"), vm()) == (False, 1)
    assert rpc.decide(allow_then_deny, rpc.Call("d", "i", "n"), vm()) == (True, 0)
    assert rpc.decide(allow_then_deny[::-1], rpc.Call("d", "i", "m"), vm()) == (True, 1)
    assert rpc.decide([], rpc.Call("d"), vm()) == (False, None)


# ---------------------------------------------------------------- matches()


def test_a_call_field_no_rule_names_never_equals_a_named_field() -> None:
    rule = rpc.parse_rule("allow destination d interface i member m")
    assert rpc.matches(rule, rpc.Call("d", "i", "m"), vm())
    assert not rpc.matches(rule, rpc.Call("d", "i", None), vm())
    assert not rpc.matches(rule, rpc.Call(None, "i", "m"), vm())
    assert not rpc.matches(rpc.parse_rule("allow sender s"), rpc.Call("d"), vm())
    assert rpc.matches(rpc.parse_rule("allow sender s"), rpc.Call("d", sender="s"), vm())


@pytest.mark.parametrize(
    ("rule_subject", "call_subject", "expected"),
    [
        ("inc-any", "inc-method-call", True),
        ("inc-any", "inc-signal", True),
        ("inc-any", "inc-error", True),
        ("inc-any", "out-method-call", False),
        ("out-any", "out-error", True),
        ("out-any", "inc-method-call", False),
        ("inc-method-call", "inc-method-call", True),
        ("inc-method-call", "inc-method-return", False),
        ("inc-signal", "inc-signal", True),
        ("inc-signal", "out-signal", False),
        ("out-method-return", "out-method-return", True),
        ("inc-error", "inc-error", True),
        ("out-error", "inc-error", False),
    ],
)
def test_subject_direction_and_tag(rule_subject: str, call_subject: str, expected: bool) -> None:
    rule = rpc.parse_rule(f"allow {rule_subject} all")
    assert rpc.matches(rule, rpc.Call("d", subject=call_subject), vm()) is expected


def test_dom_type_dom_name_and_dom_uuid_test_the_caller() -> None:
    caller = rpc.Caller("uivm", UUID.upper(), type="uivm")
    assert rpc.matches(rpc.parse_rule("allow dom-type uivm"), rpc.Call(), caller)
    assert not rpc.matches(rpc.parse_rule("allow dom-type ndvm"), rpc.Call(), caller)
    assert rpc.matches(rpc.parse_rule("allow dom-name uivm"), rpc.Call(), caller)
    assert not rpc.matches(rpc.parse_rule("allow dom-name win10"), rpc.Call(), caller)
    assert rpc.matches(rpc.parse_rule(f"allow dom-uuid {UUID}", per_vm=False), rpc.Call(), caller)
    assert not rpc.matches(rpc.parse_rule(f"allow dom-uuid {OTHER_UUID}", per_vm=False), rpc.Call(), caller)
    assert rpc.Caller("x", UUID).type == "svm"


def test_if_boolean_reads_properties_then_xenmgrs_defaults_and_all_must_hold() -> None:
    enabled = rpc.parse_rule("allow if-boolean usb-enabled true")
    assert rpc.PROPERTY_DEFAULTS["usb-enabled"] is True
    assert rpc.matches(enabled, rpc.Call(), vm())
    assert not rpc.matches(enabled, rpc.Call(), vm(**{"usb-enabled": False}))
    both = rpc.parse_rule("allow if-boolean usb-control true if-boolean usb-grab-devices false")
    assert rpc.matches(both, rpc.Call(), vm(**{"usb-control": True}))
    assert not rpc.matches(both, rpc.Call(), vm(**{"usb-control": True, "usb-grab-devices": True}))
    contradiction = rpc.parse_rule("allow if-boolean usb-control true if-boolean usb-control false")
    assert not any(rpc.matches(contradiction, rpc.Call(), vm(**{"usb-control": v})) for v in (True, False))


@pytest.mark.parametrize("value", [True, False])
def test_an_unknown_property_never_matches(value: bool) -> None:
    rule = rpc.parse_rule(f"allow if-boolean no-such-property {'true' if value else 'false'}")
    assert not rpc.matches(rule, rpc.Call(), vm())
    assert not rpc.matches(rule, rpc.Call(), vm(**{"no-such-property": value}))


def test_property_defaults_are_xenmgrs() -> None:
    assert {
        "domstore-read-access": False, "domstore-write-access": False, "usb-enabled": True,
        "usb-auto-passthrough": True, "usb-control": False, "usb-grab-devices": False,
        "seamless-traffic": False, "amt-pt": False,
    }.items() <= rpc.PROPERTY_DEFAULTS.items()  # fmt: skip
    assert all(isinstance(v, bool) for v in rpc.PROPERTY_DEFAULTS.values())


# ---------------------------------------------------------------- probes()


def test_probes_on_the_stock_rules() -> None:
    calls = rpc.probes(STOCK)
    assert calls[0] == rpc.Call()
    assert calls[1] == rpc.Call(None, "com.citrix.xenclient.xenmgr.host", "generic_message")
    assert rpc.Call(USB) in calls and db("read") in calls and xenmgr(XENMGR, "list_vms") in calls
    assert all(c.subject == "inc-method-call" and c.sender is None for c in calls)
    # 30 incoming rules name 29 distinct triples (deny all and allow out-any name none;
    # "Introspect" on xenmgr... every triple is distinct), plus the call no rule names
    triples = {(r.destination, r.interface, r.member) for r in STOCK[1:30]}
    assert len(calls) == len(triples | {(None, None, None)}) == 30
    keys = [tuple((v is not None, v or "") for v in (c.destination, c.interface, c.member)) for c in calls]
    assert keys == sorted(keys) and len(set(calls)) == len(calls)


def test_probes_ignore_rules_that_cannot_match_an_incoming_call() -> None:
    texts = ("allow out-any destination o", "allow inc-signal member s", "deny inc-method-call member m", "allow member a")
    rules = [rpc.parse_rule(text) for text in texts]
    assert rpc.probes(rules) == [rpc.Call(), rpc.Call(member="a"), rpc.Call(member="m")]
    assert rpc.probes([]) == [rpc.Call()]


# ---------------------------------------------------------------- round trip (property)

NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}", fullmatch=True)
BLANK = st.text(" \t", min_size=1, max_size=3)


@st.composite
def rule_texts(draw: st.DrawFn) -> tuple[str, rpc.Rule]:
    """A rule's text, specifiers in any order with repeats and any blanks, and the rule it means."""
    allow = draw(st.booleans())
    subject = draw(st.none() | st.sampled_from(rpc.SUBJECTS))
    words = ["allow" if allow else "deny"] + ([subject] if subject else [])
    expected = rpc.Rule(allow, subject or "inc-any")
    if draw(st.booleans()) and draw(st.booleans()):
        words.append("all")
    else:
        for _ in range(draw(st.integers(0, 6))):
            keyword = draw(st.sampled_from((*rpc.SPECIFIERS, "dom-uuid")))
            if keyword == "stubdom":
                value = draw(st.booleans())
                words += [keyword, "true" if value else "false"]
                expected = replace(expected, stubdom=value)
            elif keyword == "if-boolean":
                name, value = draw(NAMES), draw(st.booleans())
                words += [keyword, name, "true" if value else "false"]
                expected = replace(expected, if_boolean=(*expected.if_boolean, (name, value)))
            else:
                field = keyword.replace("-", "_")
                old = getattr(expected, field)
                # a second, different dom-type/dom-name is an error (tested above): repeat the first
                value_text: str = old if keyword in ("dom-type", "dom-name") and old is not None else draw(NAMES)
                words += [keyword, value_text]
                changes: dict[str, Any] = {field: value_text}
                expected = replace(expected, **changes)
    gaps = [draw(BLANK) for _ in words[1:]] + [draw(st.text(" \t", max_size=2))]
    text = draw(st.text(" \t", max_size=2)) + "".join(word + gap for word, gap in zip(words, gaps, strict=True))
    return text, expected


@settings(max_examples=300, deadline=None, database=None)
@given(rule_texts())
def test_round_trip(case: tuple[str, rpc.Rule]) -> None:
    text, expected = case
    rule = rpc.parse_rule(text, per_vm=False)
    assert rule == expected
    assert rpc.parse_rule(str(rule), per_vm=False) == rule
    assert str(rpc.parse_rule(str(rule), per_vm=False)) == str(rule)
    if rule.dom_uuid is None:
        assert rpc.canonical(text) == str(rule) == rpc.canonical(str(rule))
    else:
        with pytest.raises(rpc.RuleError, match="dom-uuid"):
            rpc.parse_rule(text)
