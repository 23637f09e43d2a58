"""SysfsPciBack on a fake sysfs tree: inventory, and the libxl order of writes when a
device moves to pciback and back (reference xen.md 4.2)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivers.pciback import PciBackNotLoaded, SysfsPciBack, UnknownPciDevice
from reconciler.errors import TerminalHostError, TransientHostError
from reconciler.model.host import HostPciDevice
from reconciler.ports import PciBackPort

if TYPE_CHECKING:
    from tests.drivers.conftest import KernelSysfsPciBack


def test_inventory_reads_ids_16_bit_class_and_driver(sysfs: KernelSysfsPciBack) -> None:
    port: PciBackPort = sysfs
    assert asyncio.run(port.inventory()) == [
        HostPciDevice("0000:00:02.0", "0x8086", "0x3e92", "0x0300", "i915"),
        HostPciDevice("0000:00:1f.6", "0x8086", "0x15bb", "0x0200", "e1000e"),
        HostPciDevice("0000:03:00.0", "0x10ec", "0x8168", "0x0200", None),
    ]


def test_assignable_add_unbinds_adds_slot_binds_in_libxl_order(sysfs: KernelSysfsPciBack) -> None:
    asyncio.run(sysfs.assignable_add("00:02.0"))
    assert sysfs.writes == [
        ("bus/pci/devices/0000:00:02.0/driver/unbind", "0000:00:02.0"),
        ("bus/pci/drivers/pciback/new_slot", "0000:00:02.0"),
        ("bus/pci/drivers/pciback/bind", "0000:00:02.0"),
    ]
    assert sysfs.driver_of("0000:00:02.0") == "pciback"
    assert (sysfs.pciback / "slots").read_text() == "0000:00:02.0\n"
    assert (sysfs.root / "bus/pci/drivers/i915/unbind").read_text() == "0000:00:02.0"  # what reached the file
    sysfs.writes.clear()
    asyncio.run(sysfs.assignable_add("0000:00:02.0"))  # already there: nothing written
    assert sysfs.writes == []


def test_unbound_device_in_slots_is_only_bound(sysfs: KernelSysfsPciBack) -> None:
    (sysfs.pciback / "slots").write_text("0000:03:00.0\n")
    asyncio.run(sysfs.assignable_add("0000:03:00.0"))
    assert sysfs.writes == [("bus/pci/drivers/pciback/bind", "0000:03:00.0")]


def test_assignable_remove_unbinds_removes_slot_and_reprobes(sysfs: KernelSysfsPciBack) -> None:
    asyncio.run(sysfs.assignable_add("0000:00:1f.6"))
    sysfs.writes.clear()
    asyncio.run(sysfs.assignable_remove("0000:00:1f.6"))
    assert sysfs.writes == [
        ("bus/pci/drivers/pciback/unbind", "0000:00:1f.6"),
        ("bus/pci/drivers/pciback/remove_slot", "0000:00:1f.6"),
        ("bus/pci/drivers_probe", "0000:00:1f.6"),
    ]
    assert sysfs.driver_of("0000:00:1f.6") == "e1000e"
    assert (sysfs.pciback / "slots").read_text() == ""


def test_assignable_remove_without_rebind_leaves_it_unbound(sysfs: KernelSysfsPciBack) -> None:
    asyncio.run(sysfs.assignable_add("0000:00:1f.6"))
    sysfs.writes.clear()
    asyncio.run(sysfs.assignable_remove("0000:00:1f.6", rebind=False))
    assert [path for path, _ in sysfs.writes] == ["bus/pci/drivers/pciback/unbind", "bus/pci/drivers/pciback/remove_slot"]
    assert sysfs.driver_of("0000:00:1f.6") is None


def test_pciback_not_loaded(tmp_path: Path, sysfs: KernelSysfsPciBack) -> None:
    bare = SysfsPciBack(sysfs.root)
    os.rename(sysfs.pciback, tmp_path / "unloaded")
    with pytest.raises(PciBackNotLoaded, match=r"pciback is missing: .*modprobe xen-pciback"):
        asyncio.run(bare.assignable_add("0000:00:02.0"))
    assert sysfs.driver_of("0000:00:02.0") == "i915"  # nothing was unbound first


def test_unknown_and_malformed_bdf(sysfs: KernelSysfsPciBack) -> None:
    with pytest.raises(UnknownPciDevice, match=r"no PCI device 0000:07:00.0 on this host"):
        asyncio.run(sysfs.assignable_add("07:00.0"))
    with pytest.raises(UnknownPciDevice, match="expected a PCI address"):
        asyncio.run(sysfs.assignable_remove("not-a-bdf"))
    assert sysfs.writes == []


def test_permission_denied_names_the_file_and_the_fix(sysfs: KernelSysfsPciBack,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bind = sysfs.pciback / "bind"
    bind.chmod(0o444)
    if os.access(bind, os.W_OK):  # root ignores file modes: fail the write as sysfs would for a user
        original = SysfsPciBack._write_attr

        def denied(self: SysfsPciBack, path: Path, value: str) -> None:
            if path == bind:
                raise PermissionError(13, "Permission denied", str(path))
            original(self, path, value)

        monkeypatch.setattr(SysfsPciBack, "_write_attr", denied)
    with pytest.raises(TerminalHostError, match=r"permission denied writing 0000:03:00.0 to .*pciback/bind: run the reconciler as root"):
        asyncio.run(sysfs.assignable_add("0000:03:00.0"))


def test_busy_write_is_transient(sysfs: KernelSysfsPciBack, monkeypatch: pytest.MonkeyPatch) -> None:
    def busy(self: SysfsPciBack, path: Path, value: str) -> None:
        raise OSError(16, "Device or resource busy")

    monkeypatch.setattr(SysfsPciBack, "_write_attr", busy)
    with pytest.raises(TransientHostError, match=r"writing 0000:00:02.0 to .*driver/unbind failed: Device or resource busy"):
        asyncio.run(sysfs.assignable_add("0000:00:02.0"))


def test_missing_sysfs_is_reported(tmp_path: Path) -> None:
    with pytest.raises(TerminalHostError, match=r"does not exist: is sysfs mounted"):
        asyncio.run(SysfsPciBack(tmp_path / "nothing").inventory())
