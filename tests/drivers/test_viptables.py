"""ViptablesFirewall against a fake `viptables` that prints libv4v's `-L` format."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from typing import TYPE_CHECKING

import pytest

from drivers.viptables import ViptablesFirewall, ViptablesSettings, parse_entry, parse_listing
from reconciler.errors import TerminalHostError, TransientHostError
from reconciler.model.host import FirewallEntry
from reconciler.ports import FirewallPort

if TYPE_CHECKING:
    from tests.drivers.conftest import FakeTool, V4VTable

UIVM_TABLE = """\
1 : ACCEPT 3:* -> 0:5555
2 : ACCEPT 0:5555 -> 3:*
3 : ACCEPT 0:* -> 0:*
4 : REJECT *:* -> *:*
"""


def firewall(tool: FakeTool, **settings: object) -> ViptablesFirewall:
    return ViptablesFirewall(str(tool.path), ViptablesSettings(**settings))  # type: ignore[arg-type]


def test_list_parses_the_table_in_order(fake_viptables: FakeTool) -> None:
    fake_viptables.update(listing=UIVM_TABLE)
    port: FirewallPort = firewall(fake_viptables)
    assert asyncio.run(port.list()) == [
        FirewallEntry(dom_in=3, dom_out=0, port_out=5555),
        FirewallEntry(dom_in=0, dom_out=3, port_in=5555),
        FirewallEntry(dom_in=0, dom_out=0),
        FirewallEntry(target="REJECT"),
    ]
    assert fake_viptables.calls() == [["-L"]]


@pytest.mark.parametrize(("line", "entry"), [
    ("ACCEPT 3:* -> 0:5555", FirewallEntry(dom_in=3, dom_out=0, port_out=5555)),
    ("  12 :   accept   3 : 80  ->  0 : *  ", FirewallEntry(dom_in=3, port_in=80, dom_out=0)),
    ("5 : REJECT 32756:-1 -> *:*", FirewallEntry(target="REJECT")),
    ("Chain V4V", None),
    ("1 : DROP 3:* -> 0:*", None),
])
def test_parse_entry_is_tolerant(line: str, entry: FirewallEntry | None) -> None:
    assert parse_entry(line) == entry


def test_unreadable_lines_fail_list_by_default_and_are_named(fake_viptables: FakeTool) -> None:
    fake_viptables.update(listing="1 : ACCEPT 3:* -> 0:5555\n\n2 : ACCEPT 3 to 0\nnum target\n3 : REJECT *:* -> *:*\n")
    assert parse_listing(fake_viptables.state["listing"])[1] == [(3, "2 : ACCEPT 3 to 0")]
    with pytest.raises(TerminalHostError, match=r"cannot read 1 line\(s\) of `viptables -L`: line 3: '2 : ACCEPT 3 to 0'"):
        asyncio.run(firewall(fake_viptables).list())


def test_lenient_list_logs_and_skips(fake_viptables: FakeTool, caplog: pytest.LogCaptureFixture) -> None:
    fake_viptables.update(listing="garbage\n1 : REJECT *:* -> *:*\n")
    with caplog.at_level(logging.WARNING, logger="drivers.viptables"):
        entries = asyncio.run(firewall(fake_viptables, strict=False).list())
    assert entries == [FirewallEntry(target="REJECT")]
    assert "line 1: 'garbage'" in caplog.text


def test_insert_and_delete_argv(fake_viptables: FakeTool) -> None:
    fake_viptables.update(listing=UIVM_TABLE)
    fw = firewall(fake_viptables)
    asyncio.run(fw.insert(FirewallEntry(dom_in=3, dom_out=0, port_out=5555)))
    asyncio.run(fw.insert(FirewallEntry(dom_in=5, target="REJECT"), position=3))
    asyncio.run(fw.append(FirewallEntry(target="REJECT")))  # xenmgr's default deny goes last
    asyncio.run(fw.delete(FirewallEntry(dom_in=0, dom_out=3, port_in=5555)))
    assert fake_viptables.calls() == [
        ["-I", "1", "--dom-in", "3", "--dom-out", "0", "--port-out", "5555", "-j", "ACCEPT"],
        ["-I", "3", "--dom-in", "5", "-j", "REJECT"],
        ["-A", "-j", "REJECT"],
        ["-L"],
        ["-D2"],  # by position: viptables' -D <rule> would ignore the target
    ]


def test_deleting_an_absent_rule_is_an_error_and_runs_no_delete(fake_viptables: FakeTool) -> None:
    fake_viptables.update(listing=UIVM_TABLE)
    with pytest.raises(TerminalHostError, match=r"no v4v firewall rule `--dom-in 9 -j ACCEPT` to delete"):
        asyncio.run(firewall(fake_viptables).delete(FirewallEntry(dom_in=9)))
    assert fake_viptables.calls() == [["-L"]]


def test_failures_and_timeouts(fake_viptables: FakeTool) -> None:
    fake_viptables.update(fail={"-I": "v4v_socket: No such file or directory"})
    with pytest.raises(TerminalHostError, match=r"^`viptables -I` failed \(exit status 255\): v4v_socket: No such file"):
        asyncio.run(firewall(fake_viptables).insert(FirewallEntry(dom_in=1)))
    fake_viptables.update(fail={}, sleep={"-L": 30})
    with pytest.raises(TransientHostError, match=r"`viptables -L` did not finish within 0.3 s"):
        asyncio.run(firewall(fake_viptables, timeout=0.3).list())


def test_positions_start_at_one(fake_viptables: FakeTool) -> None:
    with pytest.raises(TerminalHostError, match="start at 1"):
        asyncio.run(firewall(fake_viptables).insert(FirewallEntry(), position=0))
    assert fake_viptables.calls() == []


def test_insert_many_runs_one_insert_at_the_top_per_entry_in_order(fake_viptables: FakeTool) -> None:
    """viptables has no batch syntax: a batch is its `-I 1` commands, in order (the last on top)."""
    fake_viptables.update(listing=UIVM_TABLE)
    asyncio.run(firewall(fake_viptables).insert_many([FirewallEntry(dom_in=3, dom_out=0), FirewallEntry(dom_in=4)]))
    assert fake_viptables.calls() == [
        ["-I", "1", "--dom-in", "3", "--dom-out", "0", "-j", "ACCEPT"],
        ["-I", "1", "--dom-in", "4", "-j", "ACCEPT"],
    ]


def test_delete_many_lists_once_then_deletes_each_and_checks_first(fake_viptables: FakeTool) -> None:
    fake_viptables.update(listing=UIVM_TABLE)
    present = FirewallEntry(dom_in=0, dom_out=3, port_in=5555)
    asyncio.run(firewall(fake_viptables).delete_many([present]))
    assert fake_viptables.calls() == [["-L"], ["-D2"]]
    with pytest.raises(TerminalHostError, match=r"no v4v firewall rule `--dom-in 9 -j ACCEPT` to delete"):
        asyncio.run(firewall(fake_viptables).delete_many([present, FirewallEntry(dom_in=9)]))
    assert fake_viptables.calls()[-1] == ["-L"]  # nothing deleted: every entry is checked first


# ---- against a fake viptables that keeps a table as OpenXT's v4v does -------------------

ACCEPT_ALL, REJECT_ALL = FirewallEntry(), FirewallEntry(target="REJECT")
DOM0 = FirewallEntry(dom_in=0, dom_out=0)


def test_the_v4v_fake_deletes_by_endpoints_whatever_the_target(v4v: V4VTable) -> None:
    """What the driver must never rely on: `viptables -D -j ACCEPT` removes the first
    `* -> *` entry, here the default REJECT, leaving the foreign ACCEPT (v4v open)."""
    v4v.load(DOM0, REJECT_ALL, ACCEPT_ALL)
    subprocess.run([str(v4v.path), "-D", "-j", "ACCEPT"], check=True)
    assert v4v.table() == [DOM0, ACCEPT_ALL]
    subprocess.run([str(v4v.path), "-D", "1"], check=True)  # a separate number is not a position: by rule again
    assert v4v.table() == [DOM0]
    listing = subprocess.run([str(v4v.path), "-L"], check=True, capture_output=True, text=True).stdout
    assert listing == "1 : ACCEPT 0:* -> 0:*\n"


def test_deleting_a_foreign_accept_below_the_reject_keeps_the_reject(v4v: V4VTable) -> None:
    v4v.load(FirewallEntry(dom_in=3, dom_out=0, port_out=5555), DOM0, REJECT_ALL, ACCEPT_ALL)
    fw = ViptablesFirewall(str(v4v.path))
    asyncio.run(fw.delete(ACCEPT_ALL))
    assert v4v.table() == [FirewallEntry(dom_in=3, dom_out=0, port_out=5555), DOM0, REJECT_ALL]
    assert v4v.calls()[-1] == ["-D4"]


def test_delete_many_removes_the_first_copies_from_the_bottom_up(v4v: V4VTable) -> None:
    a, b = FirewallEntry(dom_in=1), FirewallEntry(dom_in=1, target="REJECT")  # same endpoints, other targets
    v4v.load(a, b, a, REJECT_ALL, a)
    asyncio.run(ViptablesFirewall(str(v4v.path)).delete_many([a, a, b]))
    assert v4v.table() == [REJECT_ALL, a]
    assert v4v.calls()[1:] == [["-D3"], ["-D2"], ["-D1"]]
