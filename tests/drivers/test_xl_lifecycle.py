"""The xl driver and the executor without xl's background monitor: `xl create -e`, a
rebooted guest as `xl list -v` shows it, and the destroy of a domain whose xenstore tree
is gone, which real `xl list` names "(null)" (names come from xenstore), found by uuid.
Real: the executor's ops, the XlToolstack, an embedded simulated host's xenstore.
Faked: `xl` (tests/drivers/conftest.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivers.sim import open_sim
from drivers.xl import XlSettings, XlToolstack, parse_list_verbose
from reconciler.execute import ops
from reconciler.execute.runtime import Runtime
from reconciler.execute.settings import ExecuteSettings
from reconciler.model.common import default_vm_uuid
from reconciler.plan.steps import make

if TYPE_CHECKING:
    from collections.abc import Callable

    from reconciler.model import DesiredState
    from tests.drivers.conftest import FakeTool

WEB = """
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64}
"""
OTHER = "33333333-4444-5555-6666-777777777777"


NULL_ROW = """\
Name                                        ID   Mem VCPUs\tState\tTime(s)   UUID                            Reason-Code\tSecurity Label
Domain-0                                     0  2048     4     r-----     812.3 00000000-0000-0000-0000-000000000000        -                -
(null)                                       7    64     1     -b----       1.5 22222222-3333-4444-5555-666666666666        -                -
web                                          9    64     1     ---sr-       0.4 33333333-4444-5555-6666-777777777777        1                -
"""


def test_list_reads_a_treeless_domain_and_a_reboot() -> None:
    """`xl list -v` prints "(null)" for a domain whose xenstore name is gone (libxl reads
    names from xenstore), and reason code 1 with state `---sr-` for a reboot."""
    rows = parse_list_verbose(NULL_ROW)
    assert [(d.domid, d.name, d.uuid, d.power) for d in rows] == [
        (7, "(null)", "22222222-3333-4444-5555-666666666666", "running"),
        (9, "web", "33333333-4444-5555-6666-777777777777", "rebooted"),
    ]


def _destroy(tmp_path: Path, desired: DesiredState, args: dict[str, object]) -> None:
    async def body() -> None:
        async with open_sim(tmp_path / "sim", delay_scale=0.02) as ports:
            xl = XlToolstack(XlSettings(cfg_dir=tmp_path))
            rt = Runtime(dataclasses.replace(ports, toolstack=xl), desired, ExecuteSettings())
            await ops.destroy(rt, make("VM", "web", "web", "destroy", args), False)
    asyncio.run(body())


@pytest.mark.parametrize("with_uuid", [True, False], ids=["uuid-in-plan", "vm-uuid"])
def test_treeless_domain_listed_as_null_is_destroyed_by_uuid(
        tmp_path: Path, fake_xl: FakeTool, load_state: Callable[[str], DesiredState], with_uuid: bool) -> None:
    uuid = default_vm_uuid("web")
    other = {"domid": 4, "name": "(null)", "uuid": OTHER, "mem": 64, "vcpus": 1, "state": "-b----"}
    ours = {"domid": 7, "name": "(null)", "uuid": uuid, "mem": 64, "vcpus": 1, "state": "-b----"}
    fake_xl.update(domains=[other, ours])
    args: dict[str, object] = {"xenstoreGone": True, **({"uuid": uuid} if with_uuid else {})}
    _destroy(tmp_path, load_state(WEB), args)
    assert ["destroy", "7"] in fake_xl.calls()
    assert [d["domid"] for d in fake_xl.state["domains"]] == [4]  # the other treeless domain is left alone


def test_create_leaves_no_monitor_and_a_reboot_is_seen_as_such(
        tmp_path: Path, fake_xl: FakeTool, load_state: Callable[[str], DesiredState]) -> None:
    """`xl create -e`: no xl process waits for the domain's death, so none destroys and
    rebuilds it on a guest reboot (taking /vm/<uuid>, the reconciler's marker, with it).
    The domain then stays shut down with reason reboot (`---sr-`, code 1), listed as
    `rebooted` for the reconciler to act on."""
    xl = XlToolstack(XlSettings(cfg_dir=tmp_path))
    asyncio.run(xl.create(load_state(WEB).vms["web"]))
    asyncio.run(xl.create(load_state(WEB.replace("web", "db")).vms["db"], paused=False))
    creates = [c for c in fake_xl.calls() if c[0] == "create"]
    assert [c[:-1] for c in creates] == [["create", "-e", "-p"], ["create", "-e"]]
    fake_xl.update(domains=[{**d, "state": "---sr-" if d["name"] == "web" else "---s--"} for d in fake_xl.state["domains"]])
    assert [(d.name, d.power) for d in asyncio.run(xl.list_domains())] == [("web", "rebooted"), ("db", "shutdown")]
