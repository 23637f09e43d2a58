"""The v4v table on a real-host composition (`open_xen`): observe, plan and execute the
table's own changes through ViptablesFirewall against a fake `viptables` that keeps its
table as OpenXT's v4v does (tests/drivers/conftest.py `v4v`: deletes by rule ignore the
target, an empty table lets everything through). The default REJECT is set where the
host lacks it and kept last and alone; applying twice changes nothing the second time.
Real: the xenstore client on a served simulated xenstored, the xl driver on the fake
`xl`, the pciback driver on a fake sysfs; no VM runs (the table alone is under test)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivers.viptables import ViptablesSettings
from drivers.xen import XenSettings, open_xen
from drivers.xenstore import ClientSettings, Store, XenstoreServer
from reconciler.execute.run import execute
from reconciler.execute.settings import resolve_settings
from reconciler.model import DesiredState
from reconciler.model.host import FirewallEntry
from reconciler.observe.host import observe_host
from reconciler.plan.build import plan_for
from tests.drivers.conftest import build_sysfs

if TYPE_CHECKING:
    from tests.drivers.conftest import FakeTool, V4VTable

REJECT = FirewallEntry(target="REJECT")
ACCEPT_ALL = FirewallEntry()
DOM0 = FirewallEntry(dom_in=0, dom_out=0)  # xenmgr's dom0<->dom0 ACCEPT, for the v4v proxy


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="xen", dir="/tmp"))  # AF_UNIX paths are short
    yield path
    shutil.rmtree(path, ignore_errors=True)


def apply_twice(v4v: V4VTable, sock_dir: Path, tmp_path: Path) -> list[list[str]]:
    """Plan and execute the empty manifests twice on the fake host; the changes each plan shows."""
    settings = XenSettings(xenstore=ClientSettings(path=sock_dir / "socket"), sysfs_root=build_sysfs(tmp_path / "sys"),
                           viptables=ViptablesSettings(executable=str(v4v.path)))
    shown: list[list[str]] = []

    async def scenario() -> None:
        async with XenstoreServer(Store(), sock_dir / "socket"), open_xen(settings) as ports:
            for _ in range(2):
                plan = plan_for(DesiredState(), await observe_host(ports))
                shown.append([f"{c.name}: {c.reason}" for c in plan.diff.changes])
                report = await execute(plan, ports, settings=resolve_settings())
                assert not report.failures, report.summary()

    asyncio.run(scenario())
    return shown


def test_a_host_without_xenmgr_gets_the_baseline_and_the_default_reject(
        fake_xl: FakeTool, v4v: V4VTable, sock_dir: Path, tmp_path: Path) -> None:
    shown = apply_twice(v4v, sock_dir, tmp_path)
    assert shown == [["firewall-table: the default REJECT is missing: v4v is open; a bare table: "
                      "xenmgr's dom0<->dom0 ACCEPT goes in before it"], []]
    assert v4v.table() == [DOM0, REJECT]
    assert [call for call in v4v.calls() if call[0] != "-L"] == [
        ["-A", "--dom-in", "0", "--dom-out", "0", "-j", "ACCEPT"], ["-A", "-j", "REJECT"]]


@pytest.mark.parametrize("table", [
    pytest.param([DOM0, REJECT, ACCEPT_ALL], id="open-all-below-reject"),
    pytest.param([FirewallEntry(dom_in=9), ACCEPT_ALL, DOM0, REJECT], id="open-all-above-reject"),
    pytest.param([REJECT, ACCEPT_ALL, DOM0, REJECT], id="two-rejects"),
    pytest.param([DOM0, REJECT, FirewallEntry(dom_in=4, target="REJECT"), FirewallEntry(dom_in=4)], id="same-endpoints"),
])
def test_foreign_entries_go_and_the_reject_stays_last(
        fake_xl: FakeTool, v4v: V4VTable, sock_dir: Path, tmp_path: Path, table: list[FirewallEntry]) -> None:
    v4v.load(*table)
    shown = apply_twice(v4v, sock_dir, tmp_path)
    assert len(shown[0]) == 1 and shown[1] == []  # one table change, then converged
    assert v4v.table() == [DOM0, REJECT]
