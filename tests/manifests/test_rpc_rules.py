"""RPCRule manifests: nested `spec.rpcRules` (plain strings or {rule, name}) and standalone
documents become RPCRule resources named by their rule's hash, in the order written;
errors point at the offending word inside the rule. Real files through the real loader
and the `validate` CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from reconciler import rpc
from reconciler.cli.main import main
from reconciler.loader import load
from reconciler.model import DesiredState
from reconciler.model.digest import desired_digest

NET = "allow destination com.citrix.xenclient.networkdaemon"
GET = "allow destination com.citrix.xenclient.xenmgr interface org.freedesktop.DBus.Properties member Get"
USB = "deny destination com.citrix.xenclient.usbdaemon"
DB = "allow destination com.citrix.xenclient.db interface com.citrix.xenclient.db member read if-boolean domstore-read-access true"

VM = """\
---
apiVersion: xen.reconciler/v1
kind: VM
metadata:
  name: {name}
spec:
  virt: pvh
  memory: 512Mi
  kernel: /srv/xen/kernels/vmlinuz
"""


def rule_doc(name: str, vm: str, rule: str) -> str:
    return f"---\napiVersion: xen.reconciler/v1\nkind: RPCRule\nmetadata:\n  name: {name}\nspec:\n  vm: {vm}\n  rule: {rule}\n"


def vm_doc(name: str, *rules: str, extra: str = "") -> str:
    items = "".join(f"    - {r}\n" for r in rules)
    return VM.format(name=name) + extra + (f"  rpcRules:\n{items}" if rules else "")


def default_name(vm: str, rule: str) -> str:
    return f"{vm}-rpc-{hashlib.sha256(rpc.canonical(rule).encode()).hexdigest()[:8]}"


def load_files(tmp_path: Path, **files: str) -> DesiredState:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    result = load([str(tmp_path)])
    assert result.state is not None, [str(d) for d in result.diagnostics]
    return result.state


def validate(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, list[str]]:
    code = main(["validate", str(path)])
    return code, capsys.readouterr().out.splitlines()


def names_of(state: DesiredState, vm: str) -> list[str]:
    return [r.metadata.name for r in state.rpc_rules_of(vm)]


def test_nested_strings_items_and_standalone_become_rpcrules(tmp_path: Path) -> None:
    state = load_files(
        tmp_path,
        a=vm_doc("uivm", NET, f"{{rule: '{GET}', name: uivm-xenmgr-get}}", "'allow   destination  com.citrix.xenclient.surfman'")
        + rule_doc("uivm-no-usb", "uivm", USB),
    )
    assert sorted(state.rpc_rules) == sorted(
        [default_name("uivm", NET), "uivm-xenmgr-get", default_name("uivm", "allow destination com.citrix.xenclient.surfman"), "uivm-no-usb"])
    assert list(state.rpc_rules) == sorted(state.rpc_rules)  # tables are sorted by name, like the others
    assert state.by_kind("RPCRule") == state.rpc_rules
    respaced = state.rpc_rules[default_name("uivm", "allow destination com.citrix.xenclient.surfman")]
    assert respaced.spec.rule == "allow destination com.citrix.xenclient.surfman"  # stored canonically
    assert respaced.kind == "RPCRule" and respaced.spec.vm == "uivm"
    assert [r.spec.rule for r in state.rpc_rules_of("uivm")] == [NET, GET, "allow destination com.citrix.xenclient.surfman", USB]
    assert state.vms["uivm"].spec.rpc_rules == []  # emptied into the standalone resources
    assert state.rpc_rules_of("nobody") == []


def test_default_names_survive_inserting_reordering_and_respacing(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    first = load_files(tmp_path / "1", vm=vm_doc("uivm", NET, GET))
    second = load_files(tmp_path / "2", vm=vm_doc("uivm", USB, f"'{GET.replace(' ', '   ')}'", NET))
    assert names_of(first, "uivm") == [default_name("uivm", NET), default_name("uivm", GET)]
    assert names_of(second, "uivm") == [default_name("uivm", USB), default_name("uivm", GET), default_name("uivm", NET)]
    for name in names_of(first, "uivm"):
        assert second.rpc_rules[name] == first.rpc_rules[name]


def test_evaluation_order_is_the_written_order_across_documents_and_files(tmp_path: Path) -> None:
    state = load_files(
        tmp_path,
        a=rule_doc("ndvm-first", "ndvm", USB) + vm_doc("uivm", NET) + rule_doc("uivm-later", "uivm", USB),
        b=vm_doc("ndvm", GET, NET) + rule_doc("aaa-last", "ndvm", DB) + rule_doc("uivm-in-b", "uivm", GET),
    )
    assert names_of(state, "uivm") == [default_name("uivm", NET), "uivm-later", "uivm-in-b"]
    assert names_of(state, "ndvm") == ["ndvm-first", default_name("ndvm", GET), default_name("ndvm", NET), "aaa-last"]
    # the order decides: the same rules written in another order evaluate in that order
    (tmp_path / "a.yaml").write_text(vm_doc("uivm", NET) + rule_doc("uivm-later", "uivm", USB))
    (tmp_path / "b.yaml").write_text(vm_doc("ndvm", NET, GET) + rule_doc("ndvm-first", "ndvm", USB))
    state = load_files(tmp_path)
    assert names_of(state, "ndvm") == [default_name("ndvm", NET), default_name("ndvm", GET), "ndvm-first"]


def test_rpc_rules_are_no_device_of_the_vm(tmp_path: Path) -> None:
    state = load_files(tmp_path, a=vm_doc("uivm", NET, extra="  v4vRules: ['myself -> 0:80']\n"))
    assert [d.kind for d in state.devices_of("uivm")] == ["V4VRule"]
    assert [r.kind for r in state.rpc_rules_of("uivm")] == ["RPCRule"]


def test_properties_are_kept_and_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    props = "  properties:\n    domstore-read-access: true\n    usb-enabled: false\n"
    state = load_files(tmp_path, a=vm_doc("uivm", DB, extra=props))
    assert state.vms["uivm"].spec.properties == {"domstore-read-access": True, "usb-enabled": False}
    (tmp_path / "a.yaml").write_text(vm_doc("uivm", extra="  properties:\n    domstore-read: true\n"))
    code, out = validate(capsys, tmp_path)
    assert code == 1
    assert out == [f"{tmp_path}/a.yaml:11:5: error: spec.properties.domstore-read: unknown property 'domstore-read': expected "
                   f"one of {', '.join(rpc.PROPERTY_DEFAULTS)} (xenmgr's boolean VM properties an rpc rule's if-boolean may test) "
                   "(did you mean 'domstore-read-access'?)"]


@pytest.mark.parametrize(("written", "column", "message"), [
    # plain: the column of the bad word itself
    ("allow destination com.citrix.xenclient.xenmgr bogus x", 53, "unknown specifier 'bogus': expected one of destination, "
     "interface, member, sender, dom-type, dom-name, stubdom, if-boolean"),
    # quoted: one more for the quote
    ("'allow stubdom maybe'", 22, "stubdom takes true or false, found 'maybe'"),
    ('"allow dom-id 5"', 14, "dom-id is not supported"),
    # a string with an escape is not written as is: the string's start
    ('"allow\\tdestination x stubdom no"', 7, "stubdom takes true or false, found 'no'"),
])
def test_grammar_errors_point_into_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str, column: int,
                                            message: str) -> None:
    (tmp_path / "a.yaml").write_text(vm_doc("uivm", written))
    code, out = validate(capsys, tmp_path)
    assert code == 1 and len(out) == 1
    assert out[0].startswith(f"{tmp_path}/a.yaml:11:{column}: error: spec.rpcRules[0].rule: {message}")


def test_folded_rule_errors_at_its_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(VM.format(name="uivm") + "  rpcRules:\n    - rule: >-\n        allow destination\n        x member\n")
    code, out = validate(capsys, tmp_path)
    assert code == 1
    assert out == [f"{tmp_path}/a.yaml:11:13: error: spec.rpcRules[0].rule: member needs a NAME (letters, digits, '_', '.', '-'; "
                   "starting with a letter or digit), found the end of the rule"]


def test_standalone_rule_error_and_missing_vm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(vm_doc("uivm") + rule_doc("r1", "uivm", "allow dom-uuid 00000000-0000-0000-0000-000000000001")
                                     + rule_doc("r2", "ghost", NET))
    code, out = validate(capsys, tmp_path)
    assert code == 1
    assert out == [
        f"{tmp_path}/a.yaml:17:15: error: spec.rule: dom-uuid is not allowed in a VM's rules: rpc-proxy restricts them to their "
        "own VM (its uuid is forced); use the rule's vm",
        f"{tmp_path}/a.yaml:24:7: error: vm: no VM named 'ghost' (VMs: uivm)",
    ]


def test_one_rule_twice_in_a_vm_is_one_error_at_the_second(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(vm_doc("uivm", NET, GET, f"'{NET.replace(' ', '  ')}'") + vm_doc("ndvm", NET)
                                     + rule_doc("ndvm-net", "ndvm", NET))
    code, out = validate(capsys, tmp_path)
    assert code == 1
    assert out == [
        f"{tmp_path}/a.yaml:13:7: error: rule '{NET}' is given twice to VM 'uivm' (first at {tmp_path}/a.yaml:11:7); remove one",
        f"{tmp_path}/a.yaml:32:9: error: rule '{NET}' is given twice to VM 'ndvm' (first at {tmp_path}/a.yaml:24:7); remove one",
    ]


def test_the_same_rule_in_two_vms_is_fine(tmp_path: Path) -> None:
    state = load_files(tmp_path, a=vm_doc("uivm", NET) + vm_doc("ndvm", NET))
    assert sorted(state.rpc_rules) == sorted([default_name("uivm", NET), default_name("ndvm", NET)])


def test_a_too_long_default_name_asks_for_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vm = "v" * 55
    (tmp_path / "a.yaml").write_text(vm_doc(vm, NET))
    code, out = validate(capsys, tmp_path)
    assert code == 1
    assert out == [f"{tmp_path}/a.yaml:11:7: error: default name '{default_name(vm, NET)}' is longer than 63 characters; give the item a name"]


def test_states_without_rpc_keep_their_digest(tmp_path: Path) -> None:
    """The new VM fields, empty, are not part of the digest: a plan made before them
    still applies. Adding a rule or a property changes the VM's digest."""
    plain = desired_digest(load_files(tmp_path, a=vm_doc("uivm")))
    assert plain.vms == {"uivm": "476ee38beadbe757"}  # as before RPCRule existed (main at 5b8ec7d)
    with_rule = desired_digest(load_files(tmp_path, a=vm_doc("uivm", NET)))
    with_prop = desired_digest(load_files(tmp_path, a=vm_doc("uivm", extra="  properties: {usb-control: true}\n")))
    assert len({plain.vms["uivm"], with_rule.vms["uivm"], with_prop.vms["uivm"]}) == 3


def test_rules_without_an_origin_follow_those_with_one_by_name() -> None:
    """A DesiredState built by hand (a test, a tool) has no origins for some rules: they
    come after the located ones, by name, so the order stays deterministic."""
    from reconciler.errors import Location
    from reconciler.model import RPCRule

    def rule(name: str, text: str) -> RPCRule:
        return RPCRule.model_validate({"kind": "RPCRule", "metadata": {"name": name}, "spec": {"vm": "uivm", "rule": text}})

    rules = {r.metadata.name: r for r in (rule("b", NET), rule("a", GET), rule("z", USB), rule("c", DB))}
    state = DesiredState(rpc_rules=rules, origins={("RPCRule", "z"): Location("a.yaml", 9, 3), ("RPCRule", "c"): Location("a.yaml", 2, 3)})
    assert names_of(state, "uivm") == ["c", "z", "a", "b"]


def test_aliased_items_keep_their_list_order(tmp_path: Path) -> None:
    """An item written as an alias sits where its anchor is: the list decides the order."""
    anchors = f"  xenstoreData:\n    vm-data/usb: &usb '{USB}'\n    vm-data/net: &net '{NET}'\n"
    state = load_files(tmp_path, a=vm_doc("uivm", "*net", GET, "*usb", extra=anchors))
    assert [r.spec.rule for r in state.rpc_rules_of("uivm")] == [NET, GET, USB]


def test_reordering_rules_changes_the_digest(tmp_path: Path) -> None:
    """Same rules, same names, another order: another policy, so `apply --plan` must
    refuse a plan made for the old order."""
    before = desired_digest(load_files(tmp_path, a=vm_doc("uivm", NET, USB) + vm_doc("ndvm", NET)))
    after = desired_digest(load_files(tmp_path, a=vm_doc("uivm", USB, NET) + vm_doc("ndvm", NET)))
    assert before.total != after.total
    assert after.changed(before) == "VM uivm changed"
