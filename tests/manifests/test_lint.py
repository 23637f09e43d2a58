"""`validate`'s policy lint (reconciler/loader/lint.py): each warning, the rule text it points
at, and its absence where the policy is fine. Manifests are written to files and loaded as
`validate` loads them; the output formats are checked through the CLI."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.loader import load
from reconciler.loader.normalize import v4v_rule_name

PVH = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata:
  name: {name}
spec:
  virt: pvh
  memory: 512Mi
  kernel: /srv/xen/kernels/vmlinuz
  type: {type}
"""
HVM_STUB = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata:
  name: {name}
spec:
  virt: hvm
  memory: 2Gi
  disks:
    - {{target: /srv/xen/{name}.qcow2, format: qcow2, vdev: hda}}
  stubdom: {{enabled: {stub}}}
"""


def vm(name: str = "web", type: str = "svm", v4v: Sequence[str] = (), extra: str = "", rpc: Sequence[str] = ()) -> str:
    text = PVH.format(name=name, type=type) + extra
    if v4v:
        text += "  v4vRules:\n" + "".join(f"    - {item}\n" for item in v4v)
    if rpc:
        text += "  rpcRules:\n" + "".join(f"    - {item}\n" for item in rpc)
    return text


def rpc_rule(name: str, owner: str, rule: str) -> str:
    return f"apiVersion: xen.reconciler/v1\nkind: RPCRule\nmetadata:\n  name: {name}\nspec:\n  vm: {owner}\n  rule: {rule}\n"


def standalone(name: str, owner: str, rule: str, bidirectional: bool = True) -> str:
    return (f"apiVersion: xen.reconciler/v1\nkind: V4VRule\nmetadata:\n  name: {name}\nspec:\n  vm: {owner}\n"
            f"  rule: {json.dumps(rule)}\n  bidirectional: {str(bidirectional).lower()}\n")


def warnings(tmp_path: Path, *documents: str) -> list[str]:
    """`FILE:LINE:COL: warning: ...` lines (file name left out) of loading the documents as one file."""
    path = tmp_path / "m.yaml"
    path.write_text("---\n".join(documents))
    result = load([str(path)])
    assert result.state is not None, [str(d) for d in result.diagnostics]
    assert all(d.severity == "warning" for d in result.diagnostics)
    return [str(d).removeprefix(f"{path}:") for d in result.diagnostics]


def one(tmp_path: Path, *documents: str) -> str:
    found = warnings(tmp_path, *documents)
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------- v4v


def test_v4v_duplicate_after_canonicalisation(tmp_path: Path) -> None:
    got = one(tmp_path, vm(v4v=["myself -> 0:5555"]), standalone("again", "web", "myself->0:5555"))
    assert got.startswith(f"19:9: warning: rule 'myself -> 0:5555' allows exactly what V4VRule '{v4v_rule_name('web', 'myself -> 0:5555')}' at ")
    assert got.endswith(":11:7 ('myself -> 0:5555') already allows (a duplicate); remove one of them")


def test_v4v_port_inside_any_port(tmp_path: Path) -> None:
    got = one(tmp_path, vm(v4v=["myself -> 0:80", "myself -> 0"]))
    assert got.startswith(f"11:7: warning: rule 'myself -> 0:80' allows nothing that V4VRule '{v4v_rule_name('web', 'myself -> 0')}' at ")
    assert "remove it, or narrow the other rule" in got


def test_v4v_one_way_inside_bidirectional(tmp_path: Path) -> None:
    got = one(tmp_path, vm(v4v=["myself -> 0:80"]), standalone("oneway", "web", "0:80 -> myself", bidirectional=False))
    assert got.startswith(f"19:9: warning: rule '0:80 -> myself' allows nothing that V4VRule '{v4v_rule_name('web', 'myself -> 0:80')}'")


def test_v4v_named_vm_inside_its_type_and_any(tmp_path: Path) -> None:
    # dom-type=uivm stands for the manifests' VMs of that type (only they have a type).
    got = warnings(tmp_path, vm(v4v=["myself -> dom-name=ui:5555", "myself -> dom-type=uivm:5555", "0 -> myself:22",
                                     "\"* -> myself:22\""]), vm("ui", "uivm"), vm("ui2", "uivm"))
    assert [w.split(" allows")[0] for w in got] == ["11:7: warning: rule 'myself -> dom-name=ui:5555'",
                                                    "13:7: warning: rule '0 -> myself:22'"]
    alone = warnings(tmp_path, vm(v4v=["myself -> dom-name=ui:5555", "myself -> dom-type=uivm:5555"]), vm("ui", "uivm"))
    assert len(alone) == 1 and "12:7: warning: rule 'myself -> dom-type=uivm:5555' allows exactly what" in alone[0]


def test_v4v_no_redundancy_across_owners_or_directions(tmp_path: Path) -> None:
    # The same text in two VMs names two different `myself`; a one-way rule does not cover
    # a bidirectional one; different ports and a port against a source port are distinct.
    assert warnings(tmp_path, vm(v4v=["myself -> 0:80", "myself -> 0:81", "myself:80 -> 0"]),
                    standalone("oneway", "web", "myself -> dom-name=ui", bidirectional=False),
                    standalone("both", "web", "dom-name=ui -> myself:7"),
                    vm("ui", "uivm", v4v=["myself -> 0:80"])) == []


@pytest.mark.parametrize("rule", ["\"* -> 0:5555\"", "\"* -> 0\"", "\"*:9 -> 0:5555\"", "0:4000 -> *", "\"0 -> *:*\""])
def test_v4v_any_to_dom0(tmp_path: Path, rule: str) -> None:
    got = one(tmp_path, vm(v4v=[rule]))
    assert got.startswith("11:7: warning: rule '")
    assert "any domain may reach dom0 on " in got
    implied = not rule.strip('"').startswith("*")
    assert ("implied by bidirectional: true" in got) == implied
    assert ("set bidirectional: false" in got) == implied


def test_v4v_dom0_to_any_one_way_is_fine(tmp_path: Path) -> None:
    assert warnings(tmp_path, vm(), standalone("out", "web", "0:4000 -> *", bidirectional=False),
                    standalone("named", "web", "dom-type=svm -> 0:4000")) == []


def test_v4v_my_stubdom(tmp_path: Path) -> None:
    no_stub = HVM_STUB.format(name="win", stub="false") + "  v4vRules:\n    - my-stubdom -> 0:4001\n"
    got = one(tmp_path, no_stub)
    assert got == ("12:7: warning: rule 'my-stubdom -> 0:4001': VM 'win' has no stub domain (its spec.stubdom.enabled "
                   "is not true), so my-stubdom names nothing and the rule never allows anything; enable the stub domain "
                   "or remove the rule")
    with_stub = HVM_STUB.format(name="win", stub="true") + "  v4vRules:\n    - my-stubdom -> 0:4001\n"
    assert warnings(tmp_path, with_stub) == []
    assert "(it is not hvm)" in one(tmp_path, vm(v4v=["my-stubdom -> 0:4001"]))


def test_v4v_same_domain_both_ends(tmp_path: Path) -> None:
    got = warnings(tmp_path, vm(v4v=["myself -> myself:80", "dom-name=web -> myself", "\"* -> *\"", "0 -> 0:1"]))
    assert [w.split(":", 3)[:2] for w in got] == [["11", "7"], ["12", "7"], ["13", "7"], ["14", "7"]]
    assert all("xenmgr drops such a rule as internal" in w for w in got)
    assert "'*' at both ends" in got[2]


def test_v4v_ghost_endpoints_warned_once(tmp_path: Path) -> None:
    """check_v4v_targets already warns; lint adds no second warning (nor a redundancy)."""
    got = warnings(tmp_path, vm(v4v=["myself -> dom-type=nosuch", "myself -> dom-type=nosuch:80"]))
    assert len(got) == 2 and all("no VM of type 'nosuch'" in w for w in got)


# ---------------------------------------------------------------- rpc-proxy

NETD = "destination com.citrix.xenclient.networkdaemon"


def test_rpc_shadowed_by_a_later_rule(tmp_path: Path) -> None:
    got = one(tmp_path, vm(rpc=[f"allow {NETD} member list", f"deny {NETD}"]))
    assert got.startswith(f"11:7: warning: rule 'allow {NETD} member list' never decides: the later rule 'deny {NETD}' "
                          "(RPCRule 'web-rpc-")
    assert got.endswith("matches every message this one matches, and the last match wins; remove it, or move it after "
                        "that rule")
    same = one(tmp_path, vm(rpc=[f"allow {NETD} member list", f"allow {NETD}"]))
    assert same.endswith("remove it (the later rule gives the same answer)")


@pytest.mark.parametrize(("earlier", "later"), [
    ("allow inc-method-call destination a", "deny destination a"),     # inc-any covers every incoming tag
    ("allow inc-signal destination a member b", "deny inc-signal destination a"),
    ("allow out-method-call destination a", "deny out-any all"),
    ("allow destination a if-boolean usb-enabled true", "deny destination a"),
    ("allow destination a sender b interface c", "deny interface c"),
])
def test_rpc_covering_subjects_and_fields(tmp_path: Path, earlier: str, later: str) -> None:
    assert " never decides: the later rule " in one(tmp_path, vm(rpc=[earlier, later]))


@pytest.mark.parametrize(("earlier", "later"), [
    ("allow destination a", "deny destination a member b"),            # the later is narrower
    ("allow destination a", "deny inc-method-call destination a"),     # inc-any also takes signals, errors, returns
    ("allow inc-any destination a", "deny out-any"),                   # the other direction
    ("allow destination a", "deny destination b"),
    ("allow destination a", "deny destination a stubdom true"),        # the stub domain is another caller
])
def test_rpc_not_covered(tmp_path: Path, earlier: str, later: str) -> None:
    stub = HVM_STUB.format(name="web", stub="true") + "  rpcRules:\n" + f"    - {earlier}\n    - {later}\n"
    assert warnings(tmp_path, stub) == []


def test_rpc_evaluation_order_is_where_rules_are_written(tmp_path: Path) -> None:
    """A standalone rule written before the VM's nested rules comes first, as in
    DesiredState.rpc_rules_of: even in a file that is read later (a/x.yaml after z.yaml)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "z.yaml").write_text(vm(rpc=["allow destination a"]))
    (tmp_path / "a" / "x.yaml").write_text(rpc_rule("narrow", "web", "deny destination a member b"))
    result = load([str(tmp_path)])
    assert result.state is not None
    assert [r.metadata.name for r in result.state.rpc_rules_of("web")][0] == "narrow"
    assert [str(d) for d in result.diagnostics] == [
        f"{tmp_path}/a/x.yaml:7:9: warning: rule 'deny destination a member b' never decides: the later rule "
        f"'allow destination a' (RPCRule 'web-rpc-{result.state.rpc_rules_of('web')[1].metadata.name[-8:]}' at "
        f"{tmp_path}/z.yaml:11:7) matches every message this one matches, and the last match wins; remove it, or move "
        "it after that rule"]


def test_rpc_evaluation_order_of_an_aliased_rule_is_its_list_position(tmp_path: Path) -> None:
    """`*narrow` is evaluated where the list puts it (last), not where its anchor is written."""
    anchored = PVH.format(name="web", type="svm").replace("  name: web\n", "  name: web\n  labels: {narrow: &narrow "
                                                          "\"deny destination a member b\"}\n")
    assert warnings(tmp_path, anchored + "  rpcRules:\n    - allow destination a\n    - *narrow\n") == []
    swapped = one(tmp_path, anchored + "  rpcRules:\n    - *narrow\n    - allow destination a\n")
    assert swapped.startswith("5:20: warning: rule 'deny destination a member b' never decides: the later rule "
                              "'allow destination a'")


@pytest.mark.parametrize("rule", ["allow", "allow all", "allow inc-any all", "allow inc-method-call all",
                                  "allow if-boolean usb-enabled true", "allow dom-name web", "allow dom-type svm"])
def test_rpc_allow_everything(tmp_path: Path, rule: str) -> None:
    got = one(tmp_path, vm(rpc=["deny out-any destination a", rule]))
    assert got.startswith("12:7: warning: rule '")
    assert ("lets VM 'web' call every method of every dom0 service: it matches every call, so it reopens the global "
            "rules' 'deny all'; allow only the destination (and interface, member) the VM needs") in got


def test_rpc_allow_everything_after_deny_all(tmp_path: Path) -> None:
    got = warnings(tmp_path, vm(rpc=["deny all", f"allow {NETD}"]), rpc_rule("everything", "web", "allow"))
    assert [w.split(": ", 2)[0] for w in got] == ["11:7", "12:7", "20:9"]
    assert got[0].startswith("11:7: warning: rule 'deny all' never decides: the later rule 'allow all' (RPCRule "
                             "'everything' at ")
    assert "reopens the global rules' 'deny all' and this VM's 'deny all' (RPCRule 'web-rpc-" in got[2]


def test_rpc_allow_everything_then_deny_all_is_only_shadowed(tmp_path: Path) -> None:
    got = one(tmp_path, vm(rpc=["allow all", "deny all"]))
    assert got.startswith("11:7: warning: rule 'allow all' never decides: the later rule 'deny all'")


def test_rpc_allow_everything_for_the_stub_domain(tmp_path: Path) -> None:
    stub = HVM_STUB.format(name="win", stub="true") + "  rpcRules:\n    - allow stubdom true\n"
    assert "lets the stub domain of VM 'win' call every method" in one(tmp_path, stub)


def test_rpc_never_matches_dom_type_and_dom_name(tmp_path: Path) -> None:
    got = warnings(tmp_path, vm(rpc=["allow dom-type uivm destination a", "allow dom-name ui destination b",
                                     "allow dom-type ghost destination c", "allow dom-name ghost destination d"]),
                   vm("ui", "uivm"))
    assert [w.split(" never matches: ")[0] for w in got] == [
        "11:7: warning: rule 'allow destination a dom-type uivm'", "12:7: warning: rule 'allow destination b dom-name ui'",
        "13:7: warning: rule 'allow destination c dom-type ghost'", "14:7: warning: rule 'allow destination d dom-name ghost'"]
    assert "it belongs to VM 'web' of type 'svm'" in got[0] and "(no VM" not in got[0]
    assert got[1].endswith("so dom-name ui never holds; remove dom-name ui, or give the rule to VM 'ui'")
    assert "(no VM in the manifests is of type 'ghost')" in got[2]
    assert "(no VM in the manifests is named 'ghost')" in got[3]


def test_rpc_never_matches_stubdom(tmp_path: Path) -> None:
    rules = "  rpcRules:\n    - allow stubdom true destination a\n"
    got = one(tmp_path, HVM_STUB.format(name="win", stub="false") + rules)
    assert "stubdom true matches only the VM's stub domain, and VM 'win' has none" in got
    assert warnings(tmp_path, HVM_STUB.format(name="win", stub="true") + rules) == []


def test_rpc_never_matches_if_boolean(tmp_path: Path) -> None:
    props = "  properties:\n    usb-control: true\n    usb-enabled: false\n"
    got = warnings(tmp_path, vm(extra=props, rpc=[
        "allow destination a if-boolean usb-control false",       # manifest says true
        "allow destination b if-boolean usb-enabled true",        # manifest overrides the default true
        "allow destination c if-boolean amt-pt true",             # default false
        "allow destination d if-boolean usb-control true if-boolean usb-auto-passthrough true",  # holds
        "allow destination e if-boolean no-such-thing false",
    ]))
    assert [w.split(": ", 2)[0] for w in got] == ["14:7", "15:7", "16:7", "18:7"]
    assert "VM 'web' has usb-control true in its spec.properties" in got[0]
    assert "set properties: {usb-control: false} on the VM, or remove the rule" in got[0]
    assert "has usb-enabled false in its spec.properties" in got[1]
    assert "has amt-pt false by xenmgr's default (not in its spec.properties)" in got[2]
    assert "xenmgr has no boolean property 'no-such-thing'" in got[3] and "domstore-read-access" in got[3]


def test_rpc_never_matching_rules_neither_shadow_nor_are_shadowed(tmp_path: Path) -> None:
    got = warnings(tmp_path, vm(rpc=["allow destination a if-boolean amt-pt true", "deny destination a dom-type x"]))
    assert len(got) == 2 and all(" never matches: " in w for w in got)


def test_rpc_the_same_rule_twice_is_only_the_error(tmp_path: Path) -> None:
    """checks.check_rpc_duplicates makes it an error; lint adds no 'never decides' to it."""
    path = tmp_path / "m.yaml"
    path.write_text(vm(rpc=[f"allow {NETD}"]) + "---\n" + rpc_rule("again", "web", f"allow   {NETD}"))
    assert [d.severity for d in load([str(path)]).diagnostics] == ["error"]


def test_rpc_a_sound_policy_gives_no_warning(tmp_path: Path) -> None:
    """The whitelist idiom (deny all, then the allows), out-* rules, tests that hold, the
    VM's own type and name, stubdom rules of a VM with a stub domain."""
    stub = HVM_STUB.format(name="win", stub="true") + "  properties: {domstore-read-access: true}\n  rpcRules:\n" + "".join(
        f"    - {r}\n" for r in ["deny all", "allow destination com.citrix.xenclient.db member read if-boolean "
                                "domstore-read-access true", "allow stubdom true destination com.citrix.xenclient.surfman",
                                "allow dom-name win destination a", "allow dom-type svm destination b", "allow out-any",
                                "deny out-method-call destination c", "deny destination com.citrix.xenclient.db member rm"])
    assert warnings(tmp_path, stub, vm(rpc=["allow destination a member b", "deny destination a member c"])) == []


# ---------------------------------------------------------------- output formats and examples


def test_warning_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(vm(v4v=["\"* -> 0:5555\""]))
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}:11:7: warning: rule '* -> 0:5555': any domain may reach dom0")
    assert main(["validate", "--format", "json", str(path)]) == 0
    report = json.loads(capsys.readouterr().out)
    text = json.dumps(report)
    assert '"warning"' in text and "any domain may reach dom0 on port 5555" in text
    assert main(["validate", "--format", "github", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"::warning file={path},line=11,col=7::")


def test_examples_give_no_warning(repo: Path) -> None:
    for example in sorted((repo / "examples").iterdir()):
        result = load([str(example)])
        assert result.diagnostics == [], textwrap.indent("\n".join(map(str, result.diagnostics)), "  ")
