"""`validate`'s policy lint (reconciler/loader/lint.py): each warning, the rule text it points
at, and its absence where the policy is fine. Manifests are written to files and loaded as
`validate` loads them; the output formats are checked through the CLI."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.loader import load

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


def vm(name: str = "web", type: str = "svm", v4v: list[str] = (), extra: str = "") -> str:  # type: ignore[assignment]
    text = PVH.format(name=name, type=type) + extra
    if v4v:
        text += "  v4vRules:\n" + "".join(f"    - {item}\n" for item in v4v)
    return text


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
    assert got.startswith("19:9: warning: rule 'myself -> 0:5555' allows exactly what V4VRule 'web-v4vrules-0' at ")
    assert got.endswith(":11:7 ('myself -> 0:5555') already allows (a duplicate); remove one of them")


def test_v4v_port_inside_any_port(tmp_path: Path) -> None:
    got = one(tmp_path, vm(v4v=["myself -> 0:80", "myself -> 0"]))
    assert got.startswith("11:7: warning: rule 'myself -> 0:80' allows nothing that V4VRule 'web-v4vrules-1' at ")
    assert "remove it, or narrow the other rule" in got


def test_v4v_one_way_inside_bidirectional(tmp_path: Path) -> None:
    got = one(tmp_path, vm(v4v=["myself -> 0:80"]), standalone("oneway", "web", "0:80 -> myself", bidirectional=False))
    assert got.startswith("19:9: warning: rule '0:80 -> myself' allows nothing that V4VRule 'web-v4vrules-0'")


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
