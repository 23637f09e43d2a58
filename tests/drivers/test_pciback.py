"""SysfsPciBack on a kernel-shaped fake sysfs (tests/drivers/conftest.py): inventory, the
libxl order of writes when a device moves to pciback and back (reference xen.md 4.2,
libxl_pci.c of Xen 4.17), driver_override, resets, and libxl's driver_path record in a
real simulated xenstored, which `xl pci-assignable-remove -r` and our release share."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivers.pciback import PciBackNotLoaded, SysfsPciBack, UnknownPciDevice
from drivers.sim.direct import DirectXenstore
from drivers.xenstore import Store
from drivers.xenstore.errors import NoEntry
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


def xenstore() -> DirectXenstore:
    """A real (simulated) xenstored in this process, as dom0: libxl's /libxl/pci records."""
    return DirectXenstore(Store())


def with_xenstore(sysfs: KernelSysfsPciBack) -> tuple[KernelSysfsPciBack, DirectXenstore]:
    xs = xenstore()
    return type(sysfs)(sysfs.root, sysfs.original, xs), xs


def drivers_dir(sysfs: SysfsPciBack, name: str) -> str:
    return os.path.join(os.path.realpath(sysfs.root), "bus/pci/drivers", name)


async def read(xs: DirectXenstore, path: str) -> str | None:
    try:
        return (await xs.read(path)).decode()
    except NoEntry:
        return None


def test_assignable_add_unbinds_adds_slot_binds_in_libxl_order(sysfs: KernelSysfsPciBack) -> None:
    back, xs = with_xenstore(sysfs)
    asyncio.run(back.assignable_add("00:02.0"))
    assert back.writes == [
        ("bus/pci/drivers/i915/unbind", "0000:00:02.0"),  # libxl: realpath(<device>/driver)/unbind
        ("bus/pci/drivers/pciback/new_slot", "0000:00:02.0"),
        ("bus/pci/drivers/pciback/bind", "0000:00:02.0"),
    ]  # no driver_override to clear, and the GPU offers no reset file
    assert back.driver_of("0000:00:02.0") == "pciback"
    assert (back.pciback / "slots").read_text() == "0000:00:02.0\n"
    assert (back.root / "bus/pci/drivers/i915/unbind").read_text() == "0000:00:02.0"  # what reached the file
    # libxl's record, node and value as libxl_pci.c writes them: the realpath of the old driver
    assert asyncio.run(read(xs, "/libxl/pci/0000-00-02-0/driver_path")) == drivers_dir(back, "i915")
    back.writes.clear()
    asyncio.run(back.assignable_add("0000:00:02.0"))  # already there: nothing written
    assert back.writes == []


def test_a_device_offering_reset_is_reset_on_pciback_both_ways(sysfs: KernelSysfsPciBack) -> None:
    back, xs = with_xenstore(sysfs)
    asyncio.run(back.assignable_add("0000:00:1f.6"))
    assert back.writes[-2:] == [("bus/pci/drivers/pciback/bind", "0000:00:1f.6"),
                                ("bus/pci/devices/0000:00:1f.6/reset", "1")]
    assert back.resets == ["0000:00:1f.6"]
    back.writes.clear()
    asyncio.run(back.assignable_remove("0000:00:1f.6"))
    assert back.writes == [
        ("bus/pci/devices/0000:00:1f.6/reset", "1"),  # while pciback still holds it
        ("bus/pci/drivers/pciback/unbind", "0000:00:1f.6"),
        ("bus/pci/drivers/pciback/remove_slot", "0000:00:1f.6"),
        ("bus/pci/drivers/e1000e/bind", "0000:00:1f.6"),  # driver_path/bind, as xl pci-assignable-remove -r
    ]
    assert back.resets == ["0000:00:1f.6"] * 2


def test_pciback_do_flr_is_preferred_as_libxl_does(sysfs: KernelSysfsPciBack) -> None:
    (sysfs.pciback / "do_flr").write_text("")
    asyncio.run(sysfs.assignable_add("0000:00:1f.6"))
    assert sysfs.writes[-1] == ("bus/pci/drivers/pciback/do_flr", "0000:00:1f.6")


def test_a_foreign_driver_override_is_cleared_before_the_unbind(sysfs: KernelSysfsPciBack) -> None:
    """Left by vfio-pci tooling or an earlier driverctl: without clearing it, the pciback
    bind fails with ENODEV after the unbind and dom0 has lost the NIC."""
    back, xs = with_xenstore(sysfs)
    (back.devices / "0000:00:1f.6/driver_override").write_text("vfio-pci\n")
    asyncio.run(back.assignable_add("0000:00:1f.6"))
    assert back.writes[:3] == [
        ("bus/pci/devices/0000:00:1f.6/driver_override", "\n"),  # cleared first: an empty line
        ("bus/pci/drivers/e1000e/unbind", "0000:00:1f.6"),
        ("bus/pci/drivers/pciback/new_slot", "0000:00:1f.6"),
    ]
    assert back.driver_of("0000:00:1f.6") == "pciback"
    assert (back.devices / "0000:00:1f.6/driver_override").read_text() == "(null)\n"


def test_the_fake_kernel_refuses_the_bind_a_foreign_override_forbids(sysfs: KernelSysfsPciBack) -> None:
    """What the clearing prevents, shown on the fake kernel itself, and its message."""
    (sysfs.devices / "0000:03:00.0/driver_override").write_text("vfio-pci\n")
    (sysfs.pciback / "slots").write_text("0000:03:00.0\n")
    with pytest.raises(TerminalHostError, match=r"writing 0000:03:00.0 to .*pciback/bind failed: No such device "
                                                 r"\(its driver_override is 'vfio-pci'\); the device has no driver now"):
        sysfs._write(sysfs.pciback / "bind", "0000:03:00.0")
    assert sysfs.driver_of("0000:03:00.0") is None


def test_release_restores_the_original_driver_through_driver_path(sysfs: KernelSysfsPciBack) -> None:
    back, xs = with_xenstore(sysfs)
    asyncio.run(back.assignable_add("0000:00:02.0"))
    back.writes.clear()
    asyncio.run(back.assignable_remove("0000:00:02.0"))
    assert back.writes == [
        ("bus/pci/drivers/pciback/unbind", "0000:00:02.0"),
        ("bus/pci/drivers/pciback/remove_slot", "0000:00:02.0"),
        ("bus/pci/drivers/i915/bind", "0000:00:02.0"),
    ]
    assert back.driver_of("0000:00:02.0") == "i915"
    assert (back.pciback / "slots").read_text() == ""
    assert asyncio.run(xs.directory("/libxl/pci")) == []  # driver_path used and gone, no empty node left


def test_a_leftover_pciback_override_is_cleared_on_release(sysfs: KernelSysfsPciBack) -> None:
    """Bound the driver_override way (xen.md 4.2) by hand or an old tool: without clearing
    it, the kernel hands the device straight back to pciback on the reprobe."""
    (sysfs.devices / "0000:00:1f.6/driver_override").write_text("pciback\n")
    sysfs._write(sysfs.devices / "0000:00:1f.6/driver/unbind", "0000:00:1f.6")
    sysfs._write(sysfs.root / "bus/pci/drivers_probe", "0000:00:1f.6")
    assert sysfs.driver_of("0000:00:1f.6") == "pciback"
    sysfs.writes.clear()
    asyncio.run(sysfs.assignable_remove("0000:00:1f.6"))  # no xenstore record: the kernel picks
    assert sysfs.writes == [
        ("bus/pci/devices/0000:00:1f.6/reset", "1"),
        ("bus/pci/drivers/pciback/unbind", "0000:00:1f.6"),
        ("bus/pci/devices/0000:00:1f.6/driver_override", "\n"),
        ("bus/pci/drivers_probe", "0000:00:1f.6"),
    ]
    assert sysfs.driver_of("0000:00:1f.6") == "e1000e"


def xl_assignable_remove_r(back: KernelSysfsPciBack, xs: DirectXenstore, bdf: str) -> None:
    """`xl pci-assignable-remove -r BDF` as libxl_pci.c (4.17) does it on sysfs and
    xenstore: pciback unbind, remove_slot if listed, `<driver_path>/bind`, rm driver_path.
    It never touches driver_override."""
    key = bdf.replace(":", "-").replace(".", "-")
    driver_path = asyncio.run(read(xs, f"/libxl/pci/{key}/driver_path"))
    if back.driver_of(bdf) == "pciback":
        back._write_attr(back.pciback / "unbind", bdf)
    if bdf in (back.pciback / "slots").read_text().split():
        back._write_attr(back.pciback / "remove_slot", bdf)
    assert driver_path is not None, "libxl: Couldn't find path for original driver; not rebinding"
    back._write_attr(Path(driver_path) / "bind", bdf)
    asyncio.run(xs.rm(f"/libxl/pci/{key}/driver_path"))


def test_xl_assignable_remove_r_gives_back_what_we_bound(sysfs: KernelSysfsPciBack) -> None:
    """Our add leaves what libxl's own add would: xl's -r restores the driver, even for a
    device that came with a foreign driver_override."""
    back, xs = with_xenstore(sysfs)
    (back.devices / "0000:00:1f.6/driver_override").write_text("pciback\n")
    for bdf in ("0000:00:02.0", "0000:00:1f.6"):
        asyncio.run(back.assignable_add(bdf))
        xl_assignable_remove_r(back, xs, bdf)
    assert (back.driver_of("0000:00:02.0"), back.driver_of("0000:00:1f.6")) == ("i915", "e1000e")


def test_our_release_uses_a_driver_path_xl_recorded(sysfs: KernelSysfsPciBack) -> None:
    """`xl pci-assignable-add` recorded where the device came from; our release reads it,
    binds there (not a reprobe) and removes the node as xl's -r does."""
    back, xs = with_xenstore(sysfs)
    back._write_attr(back.devices / "0000:00:02.0/driver/unbind", "0000:00:02.0")  # xl's add, by hand
    asyncio.run(xs.write("/libxl/pci/0000-00-02-0/driver_path", drivers_dir(back, "i915")))
    back._write_attr(back.pciback / "new_slot", "0000:00:02.0")
    back._write_attr(back.pciback / "bind", "0000:00:02.0")
    back.writes.clear()
    asyncio.run(back.assignable_remove("0000:00:02.0"))
    assert back.writes[-1] == ("bus/pci/drivers/i915/bind", "0000:00:02.0")
    assert back.driver_of("0000:00:02.0") == "i915"
    assert asyncio.run(read(xs, "/libxl/pci/0000-00-02-0/driver_path")) is None


def test_a_driver_path_outside_sysfs_is_refused(sysfs: KernelSysfsPciBack) -> None:
    back, xs = with_xenstore(sysfs)
    asyncio.run(back.assignable_add("0000:00:02.0"))
    asyncio.run(xs.write("/libxl/pci/0000-00-02-0/driver_path", "/tmp/elsewhere"))
    with pytest.raises(TerminalHostError, match=r"driver_path is '/tmp/elsewhere', not a driver directory under .*"
                                                 r"bus/pci/drivers; remove that node"):
        asyncio.run(back.assignable_remove("0000:00:02.0"))


def test_unbound_device_in_slots_is_only_bound(sysfs: KernelSysfsPciBack) -> None:
    (sysfs.pciback / "slots").write_text("0000:03:00.0\n")
    asyncio.run(sysfs.assignable_add("0000:03:00.0"))
    assert sysfs.writes == [("bus/pci/drivers/pciback/bind", "0000:03:00.0"),
                            ("bus/pci/devices/0000:03:00.0/reset", "1")]


def test_assignable_remove_without_a_record_reprobes(sysfs: KernelSysfsPciBack) -> None:
    asyncio.run(sysfs.assignable_add("0000:00:1f.6"))  # no xenstore port: driver_path neither written nor read
    sysfs.writes.clear()
    asyncio.run(sysfs.assignable_remove("0000:00:1f.6"))
    assert [path for path, _ in sysfs.writes][1:] == [
        "bus/pci/drivers/pciback/unbind", "bus/pci/drivers/pciback/remove_slot", "bus/pci/drivers_probe"]
    assert sysfs.driver_of("0000:00:1f.6") == "e1000e"
    assert (sysfs.pciback / "slots").read_text() == ""


def test_assignable_remove_without_rebind_leaves_it_unbound_and_the_record(sysfs: KernelSysfsPciBack) -> None:
    back, xs = with_xenstore(sysfs)
    asyncio.run(back.assignable_add("0000:00:1f.6"))
    back.writes.clear()
    asyncio.run(back.assignable_remove("0000:00:1f.6", rebind=False))
    assert [path for path, _ in back.writes][1:] == ["bus/pci/drivers/pciback/unbind", "bus/pci/drivers/pciback/remove_slot"]
    assert back.driver_of("0000:00:1f.6") is None
    # kept, as libxl keeps it, for a later `xl pci-assignable-remove -r`
    assert asyncio.run(read(xs, "/libxl/pci/0000-00-1f-6/driver_path")) == drivers_dir(back, "e1000e")


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
    with pytest.raises(TransientHostError, match=r"writing 0000:00:02.0 to .*drivers/i915/unbind failed: Device or resource busy"):
        asyncio.run(sysfs.assignable_add("0000:00:02.0"))


def test_missing_sysfs_is_reported(tmp_path: Path) -> None:
    with pytest.raises(TerminalHostError, match=r"does not exist: is sysfs mounted"):
        asyncio.run(SysfsPciBack(tmp_path / "nothing").inventory())
