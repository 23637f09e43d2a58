"""The xl driver's part of live changes (issue 13, part B): whether each domain was built
with passthrough, read from `xl list -l` (libxl's stored JSON configs), and CD media
through `xl cd-insert`/`xl cd-eject` with xl(1)'s argv."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivers.xl import XlSettings, XlToolstack
from drivers.xl.listing import parse_passthrough
from reconciler.errors import TerminalHostError

if TYPE_CHECKING:
    from tests.drivers.conftest import FakeTool

# `xl list -l` of xl 4.17 (xl_info.c printf_info_one_json; field names from libxl_types.idl):
# an HVM guest built with a GPU (libxl chose sync_pt), a PV guest built without pci=.
# Defaults are left out as libxl's JSON generator leaves them out; dom0 has no stored config.
LIST_L_417 = """[
    {
        "domid": 3,
        "config": {
            "c_info": {
                "type": "hvm",
                "name": "win10",
                "uuid": "7b3a1f62-5c0e-4d4f-9a51-2b7f8e0c9d11",
                "run_hotplug_scripts": "True",
                "passthrough": "sync_pt"
            },
            "b_info": {
                "max_vcpus": 2,
                "avail_vcpus": [0, 1],
                "max_memkb": 4194304,
                "target_memkb": 4194304,
                "device_model_version": "qemu_xen",
                "sched_params": {},
                "type.hvm": {"vga": {"kind": "stdvga"}, "vnc": {"enable": "True", "listen": "127.0.0.1"}},
                "arch_arm": {},
                "arch_x86": {"msr_relaxed": "False"}
            },
            "disks": [
                {"pdev_path": "/dev/vg0/win10", "vdev": "hda", "backend": "phy", "format": "raw", "readwrite": 1},
                {"pdev_path": "", "vdev": "hdc", "backend": "qdisk", "format": "empty", "removable": 1,
                 "is_cdrom": 1}
            ],
            "nics": [
                {"devid": 0, "mac": "00:16:3e:4a:01:02", "bridge": "xenbr0", "model": "e1000",
                 "nictype": "vif_ioemu", "script": "/etc/xen/scripts/vif-bridge"}
            ],
            "pcidevs": [
                {"func": 0, "dev": 2, "bus": 0, "domain": 0, "vdevfn": 16, "rdm_policy": "strict"}
            ],
            "on_reboot": "restart",
            "on_crash": "destroy"
        }
    },
    {
        "domid": 4,
        "config": {
            "c_info": {
                "type": "pv",
                "name": "web01",
                "uuid": "0f6b7a6e-2c55-4a53-8a8c-1f2e3d4c5b6a",
                "run_hotplug_scripts": "True",
                "passthrough": "disabled"
            },
            "b_info": {"max_vcpus": 1, "avail_vcpus": [0], "max_memkb": 524288, "target_memkb": 524288,
                       "kernel": "/boot/vmlinuz", "sched_params": {}, "type.pv": {}},
            "disks": [{"pdev_path": "/dev/vg0/web01", "vdev": "xvda", "backend": "phy", "format": "raw",
                       "readwrite": 1}],
            "nics": [{"devid": 0, "mac": "00:16:3e:12:34:56", "bridge": "xenbr0", "nictype": "vif"}]
        }
    }
]
"""


def test_passthrough_from_the_stored_configs() -> None:
    assert parse_passthrough(LIST_L_417) == {3: True, 4: False}


def test_an_xl_without_the_passthrough_field_is_read_from_pcidevs() -> None:
    doc = json.loads(LIST_L_417)
    for item in doc:
        del item["config"]["c_info"]["passthrough"]
    # Built with a PCI device: passthrough was on; without one, nothing says (older xl
    # could hot-plug PCI onto any HVM domain).
    assert parse_passthrough(json.dumps(doc)) == {3: True, 4: None}


@pytest.mark.parametrize("mode", ["enabled", "share_pt"])
def test_every_enabled_mode_counts(mode: str) -> None:
    doc = json.loads(LIST_L_417)
    doc[1]["config"]["c_info"]["passthrough"] = mode
    assert parse_passthrough(json.dumps(doc))[4] is True


@pytest.mark.parametrize("text", ["", "(domain (domid 3) (create_info))", "[{\"domid\": \"3\"}]", "{}"])
def test_output_that_is_not_libxl_json_tells_nothing(text: str) -> None:
    assert parse_passthrough(text) == {}


def _xl(tmp_path: Path) -> XlToolstack:
    return XlToolstack(XlSettings(cfg_dir=tmp_path))


def test_cd_insert_and_eject_argv(tmp_path: Path, fake_xl: FakeTool) -> None:
    fake_xl.state_file.write_text(json.dumps({"domains": [{"domid": 3, "name": "win10", "uuid": "u", "mem": 1,
                                                           "vcpus": 1, "state": "r-----"}]}))
    xl = _xl(tmp_path)
    asyncio.run(xl.cd_insert(3, "hdc", "/srv/iso/win.iso", "raw"))
    asyncio.run(xl.cd_eject(3, "hdc"))
    # xl(1): cd-insert domain-id virtualdevice target; cd-eject domain-id virtualdevice
    assert fake_xl.calls() == [["cd-insert", "3", "hdc", "/srv/iso/win.iso"], ["cd-eject", "3", "hdc"]]


def test_cd_insert_refuses_a_format_xl_cannot_pass(tmp_path: Path, fake_xl: FakeTool) -> None:
    with pytest.raises(TerminalHostError, match="xl cd-insert inserts raw images only"):
        asyncio.run(_xl(tmp_path).cd_insert(3, "hdc", "/srv/iso/win.qcow2", "qcow2"))
    assert fake_xl.calls() == []
