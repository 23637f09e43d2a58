"""Default names of nested items (DESIGN section 4): each from what identifies the item,
so inserting or reordering items renames none; the same item twice is one error at the
second, not also a "defined twice" for the name they would share; a default name
longer than 63 characters asks for a name. Real files through `load` and `validate`."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main
from reconciler.loader import load
from reconciler.loader.normalize import v4v_rule_name
from reconciler.model import DesiredState

VM = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: ndvm}
spec:
  virt: hvm
  memory: 256
  disks:
%s  nics:
%s  pci:
%s  v4vRules:
%s"""
ITEMS = (
    "    - {vdev: xvda, target: /a.img}\n    - {vdev: hdc, devtype: cdrom}\n",
    "    - {bridge: xenbr0}\n    - {index: 5}\n",  # the first: index 0, its position
    '    - {bdf: "00:19.0"}\n    - {bdf: "0001:03:00.1"}\n    - {match: {class: "0x0300"}}\n'
    '    - {match: {vendor: "0x8086", device: "0x10D3"}}\n',
    '    - myself -> 0:80\n    - {rule: "myself -> 0:80", bidirectional: false}\n',
)
TOP = ("    - {vdev: xvdz, target: /z.img}\n", "    - {index: 9}\n", '    - {bdf: "00:02.0"}\n', "    - myself -> 0:22\n")


def state(tmp_path: Path, text: str) -> DesiredState:
    (tmp_path / "vm.yaml").write_text(text)
    result = load([str(tmp_path / "vm.yaml")])
    assert result.state is not None, result.diagnostics
    return result.state


def names(s: DesiredState) -> set[str]:
    return {*s.disks, *s.nics, *s.pci, *s.v4v_rules}


def test_names_come_from_what_identifies_the_item(tmp_path: Path) -> None:
    s = state(tmp_path, VM % ITEMS)
    assert sorted(s.disks) == ["ndvm-hdc", "ndvm-xvda"]
    assert {n: nic.spec.index for n, nic in s.nics.items()} == {"ndvm-nic0": 0, "ndvm-nic5": 5}
    assert sorted(s.pci) == ["ndvm-pci-0000-00-19-0", "ndvm-pci-0001-03-00-1", "ndvm-pci-0300-any-any",
                             "ndvm-pci-any-8086-10d3"]
    one_way = v4v_rule_name("ndvm", "myself -> 0:80", bidirectional=False)
    assert sorted(s.v4v_rules) == sorted([v4v_rule_name("ndvm", "myself -> 0:80"), one_way])
    assert v4v_rule_name("ndvm", "myself -> 0:80") == "ndvm-v4v-d50a8863"  # sha256("myself -> 0:80")[:8]
    assert s.v4v_rules[one_way].spec.bidirectional is False


def test_inserting_an_item_at_the_top_renames_none(tmp_path: Path) -> None:
    """A NIC without an `index` has its position as index (the guest's ethN order), so
    a NIC inserted before it is a change of devid; with indexes given, none moves."""
    items = (ITEMS[0], ITEMS[1].replace("{bridge: xenbr0}", "{index: 0, bridge: xenbr0}"), *ITEMS[2:])
    before = names(state(tmp_path, VM % items))
    after = names(state(tmp_path, VM % tuple(top + item for top, item in zip(TOP, items))))
    assert before < after
    assert after - before == {"ndvm-xvdz", "ndvm-nic9", "ndvm-pci-0000-00-02-0", v4v_rule_name("ndvm", "myself -> 0:22")}


def validate(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> list[str]:
    (tmp_path / "vm.yaml").write_text(text)
    code = main(["validate", str(tmp_path / "vm.yaml")])
    out = capsys.readouterr().out.splitlines()
    assert code == 1, out
    return [line.removeprefix(f"{tmp_path}/vm.yaml:") for line in out]


def test_the_same_item_twice_is_one_error_at_the_second(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    twice = VM % (
        "    - {vdev: xvda, target: /a.img}\n    - {vdev: xvda, target: /b.img}\n",
        "    - {index: 1}\n    - {index: 1}\n",
        '    - {match: {class: "0x0300"}}\n    - {match: {class: "0x0300", vendor: any}}\n',
        "    - myself -> 0:80\n    - myself  ->  0:80\n",
    )
    out = validate(tmp_path, capsys, twice)
    assert out == [
        "9:14: error: vdev xvda is used twice in VM 'ndvm': first at " f"{tmp_path}/vm.yaml:8:7",
        "12:15: error: NIC index 1 is used twice in VM 'ndvm': first at " f"{tmp_path}/vm.yaml:11:7",
        "15:8: error: match class=0x0300 vendor=any device=any is given twice to VM 'ndvm' (first at "
        f"{tmp_path}/vm.yaml:14:8); remove one",
        f"18:7: error: rule 'myself -> 0:80' is given twice to VM 'ndvm' (first at {tmp_path}/vm.yaml:17:7); remove one",
    ]


def test_a_rule_both_ways_and_one_way_is_two_rules(tmp_path: Path) -> None:
    text = VM % ("", "", "", '    - myself -> 0:80\n    - {rule: "myself -> 0:80", bidirectional: false}\n')
    assert len(state(tmp_path, text.replace("  disks:\n  nics:\n  pci:\n", "")).v4v_rules) == 2


def test_a_too_long_default_name_asks_for_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vm = "v" * 55
    text = VM.replace("name: ndvm", f"name: {vm}") % ("", "", "", "    - myself -> 0:80\n")
    out = validate(tmp_path, capsys, text.replace("  disks:\n  nics:\n  pci:\n", ""))
    assert out == [f"8:7: error: default name '{v4v_rule_name(vm, 'myself -> 0:80')}' is longer than 63 characters; "
                   "give the item a name"]
