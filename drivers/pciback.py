"""SysfsPciBack: the PciBackPort on a real dom0, through Linux sysfs (reference xen.md 4).

Stage: driver (PCI back-end). Called by observe/execute through `reconciler.ports.PciBackPort`.
Reads `<root>/bus/pci/devices/<bdf>/{vendor,device,class,driver}` for the inventory and
makes devices assignable the way libxl does (`libxl__device_pci_assignable_add/remove`,
libxl_pci.c of Xen 4.17), on any kernel:
  add:    driver_override cleared (one naming another driver makes the pciback bind fail
          after the unbind, leaving dom0 without the device; one naming pciback would
          make `xl pci-assignable-remove -r`, which never touches it, fail to give the
          device back: pciback claims it through new_slot instead), <current driver>/unbind,
          xenstore /libxl/pci/<DDDD-BB-SS-F>/driver_path := that driver's realpath (as
          libxl records it), pciback/new_slot (unless already in pciback/slots),
          pciback/bind, then the function reset.
  remove: the function reset, pciback/unbind, pciback/remove_slot (if in slots),
          driver_override cleared if it says pciback (else the kernel would hand the
          device straight back to pciback), then `<driver_path>/bind` (what
          `xl pci-assignable-remove -r` does) and the node goes; with no driver_path
          recorded, bus/pci/drivers_probe lets the kernel pick the driver.
The reset is libxl's `libxl__device_pci_reset`: the BDF to `pciback/do_flr` where that
exists, else `1` to `<device>/reset` where the device offers one; none is not an error
(libxl logs and goes on). libxl resets at pci-attach and detach, which xl does itself
on a real host; this driver also resets when the device changes hands in dom0.
Each write is one write(2), run in a worker thread (a bind probes the driver and may
block). libxl also quarantines the device (assigns it to DOMID_IO); that needs a
hypercall, so it happens at `xl pci-attach` time instead. Without a xenstore port
(tests, tools) driver_path is neither written nor read.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path

from reconciler import xenfmt
from reconciler.errors import HostError, TerminalHostError, TransientHostError
from reconciler.model.host import HostPciDevice
from reconciler.ports import XenstoreOps

log = logging.getLogger(__name__)

PCIBACK = "pciback"  # the driver name xen-pciback registers (not xen-pciback)
PCI_INFO = "/libxl/pci"  # libxl's PCI_INFO_PATH: /libxl/pci/<DDDD-BB-SS-F>/{driver_path,domid,name}
UNSET = "(null)"  # what driver_override reads when no override is set


class PciBackNotLoaded(TerminalHostError):
    """`<root>/bus/pci/drivers/pciback` is missing: the xen-pciback module is not loaded."""


class UnknownPciDevice(TerminalHostError):
    """No `<root>/bus/pci/devices/<bdf>`: the host has no such PCI function."""


def _canonical(bdf: str) -> str:
    try:
        return str(xenfmt.parse_bdf(bdf))
    except ValueError as exc:
        raise UnknownPciDevice(str(exc)) from exc


def _read_hex(path: Path, digits: int) -> str:
    """A sysfs id file (`0x8086\\n`) as lower-case `0x` hex of `digits` digits."""
    return f"0x{int(path.read_text().strip(), 16):0{digits}x}"


class SysfsPciBack:
    """PCI inventory and pciback binding under `root` (`/sys` on a host, a tree in tests)."""

    def __init__(self, root: Path = Path("/sys"), xenstore: XenstoreOps | None = None) -> None:
        self.root = root
        self.devices = root / "bus" / "pci" / "devices"
        self.drivers = root / "bus" / "pci" / "drivers"
        self.pciback = self.drivers / PCIBACK
        self.xenstore = xenstore  # for libxl's driver_path; None: not recorded nor read

    # -- reading -------------------------------------------------------------------

    def driver_of(self, bdf: str) -> str | None:
        """The name of the driver bound to `bdf` (the `driver` symlink's target), or None."""
        link = self.devices / bdf / "driver"
        return os.path.basename(os.readlink(link)) if link.is_symlink() else None

    def _device(self, bdf: str) -> HostPciDevice:
        base = self.devices / bdf
        return HostPciDevice(
            bdf=bdf,
            vendor=_read_hex(base / "vendor", 4),
            device=_read_hex(base / "device", 4),
            pci_class=f"0x{int((base / 'class').read_text().strip(), 16) >> 8:04x}",  # 0xCCSSPP -> 0xCCSS
            driver=self.driver_of(bdf),
        )

    def _inventory(self) -> list[HostPciDevice]:
        try:
            names = os.listdir(self.devices)
        except FileNotFoundError as exc:
            raise TerminalHostError(f"{self.devices} does not exist: is sysfs mounted at {self.root}?") from exc
        found: list[HostPciDevice] = []
        for name in names:
            bdf = _canonical(name)
            try:
                found.append(self._device(bdf))
            except (OSError, ValueError) as exc:
                raise TerminalHostError(f"cannot read PCI device {bdf} under {self.devices}: {exc}") from exc
        return sorted(found, key=lambda device: device.bdf)

    async def inventory(self) -> list[HostPciDevice]:
        return await asyncio.to_thread(self._inventory)

    def _slots(self) -> set[str]:
        """The BDFs pciback will seize (hide= and new_slot), from `pciback/slots`."""
        path = self.pciback / "slots"
        try:
            lines = path.read_text().split()
        except OSError as exc:
            raise TerminalHostError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return {_canonical(line) for line in lines}

    # -- writing -------------------------------------------------------------------

    def _write_attr(self, path: Path, value: str) -> None:
        """Write `value` to one sysfs attribute in a single write(2), as `echo` does."""
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)

    def _check(self, bdf: str) -> None:
        if not self.pciback.is_dir():
            raise PciBackNotLoaded(
                f"{self.pciback} is missing: the xen-pciback driver is not loaded; "
                "run `modprobe xen-pciback` (it loads only in dom0)"
            )
        if not (self.devices / bdf).exists():
            raise UnknownPciDevice(f"no PCI device {bdf} on this host (nothing at {self.devices / bdf}); check the BDF with lspci -D")

    def override_of(self, bdf: str) -> str | None:
        """The device's `driver_override` (None: unset, or a kernel without the file)."""
        try:
            text = (self.devices / bdf / "driver_override").read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TerminalHostError(f"cannot read {self.devices / bdf / 'driver_override'}: {exc.strerror or exc}") from exc
        return None if text in ("", UNSET) else text

    def _set_override(self, bdf: str, driver: str | None) -> None:
        """Write `driver_override` (a newline clears it), if this kernel has the file."""
        path = self.devices / bdf / "driver_override"
        if path.exists() and self.override_of(bdf) != driver:
            self._write(path, bdf, driver or "\n")

    def _write(self, path: Path, bdf: str, value: str | None = None) -> None:
        try:
            self._write_attr(path, bdf if value is None else value)
        except OSError as exc:
            raise _write_error(path, bdf, exc, self, value) from exc

    def _reset(self, bdf: str) -> None:
        """libxl__device_pci_reset: `pciback/do_flr` if the kernel has it, else the device's
        `reset` if it offers one. A failed or impossible reset is logged, as libxl does."""
        for path, value in ((self.pciback / "do_flr", bdf), (self.devices / bdf / "reset", "1")):
            if path.exists():
                try:
                    self._write_attr(path, value)
                except OSError as exc:
                    log.warning("PCI device %s: writing %r to %s failed (%s); going on without a reset",
                                bdf, value, path, exc.strerror or exc)
                return
        log.info("PCI device %s: the kernel offers no reset for it (no %s, no %s)", bdf,
                 self.pciback / "do_flr", self.devices / bdf / "reset")

    def _unbind_for_pciback(self, bdf: str) -> str | None:
        """Steps before the driver_path record: the override cleared, then the unbind.
        The canonical path of the driver it came from (libxl's realpath), None if unbound."""
        self._check(bdf)
        self._set_override(bdf, None)
        link = self.devices / bdf / "driver"
        if not link.is_symlink():
            return None
        driver_path = os.path.realpath(link)
        self._write(Path(driver_path) / "unbind", bdf)
        return driver_path

    def _bind_pciback(self, bdf: str) -> None:
        if bdf not in self._slots():
            self._write(self.pciback / "new_slot", bdf)
        self._write(self.pciback / "bind", bdf)
        if self.driver_of(bdf) != PCIBACK:
            raise TerminalHostError(f"PCI device {bdf} is still not bound to pciback after writing {self.pciback / 'bind'}; see dmesg")
        self._reset(bdf)

    def _unbind_pciback(self, bdf: str) -> None:
        self._check(bdf)
        if self.driver_of(bdf) == PCIBACK:
            self._reset(bdf)
            self._write(self.pciback / "unbind", bdf)
        if bdf in self._slots():
            self._write(self.pciback / "remove_slot", bdf)
        if self.override_of(bdf) == PCIBACK:
            self._set_override(bdf, None)  # else any probe gives it straight back to pciback

    def _rebind(self, bdf: str, driver_path: str | None) -> None:
        if self.driver_of(bdf) is not None:
            return  # something took it already (a driver's own probe): nothing to give back
        if driver_path is None:
            self._write(self.root / "bus" / "pci" / "drivers_probe", bdf)
            return
        self._write(self._driver_dir(bdf, driver_path) / "bind", bdf)
        name = os.path.basename(driver_path)
        if self.driver_of(bdf) != name:
            raise TerminalHostError(f"PCI device {bdf} is not bound to {name} after writing {driver_path}/bind; see dmesg")

    def _driver_dir(self, bdf: str, driver_path: str) -> Path:
        """libxl's driver_path, checked to be a driver directory of this sysfs."""
        path = Path(driver_path)
        if path.parent != Path(os.path.realpath(self.drivers)) or not path.is_dir():
            raise TerminalHostError(
                f"{PCI_INFO}/{xenfmt.parse_bdf(bdf).xenstore_key}/driver_path is {driver_path!r}, not a driver "
                f"directory under {self.drivers}; remove that node (xenstore-rm) to let the kernel pick the driver")
        return path

    # -- libxl's xenstore record --------------------------------------------------

    def _info(self, bdf: str, node: str | None = None) -> str:
        key = f"{PCI_INFO}/{xenfmt.parse_bdf(bdf).xenstore_key}"
        return key if node is None else f"{key}/{node}"

    async def _read_driver_path(self, bdf: str) -> str | None:
        if self.xenstore is None:
            return None
        from drivers.xenstore.errors import NoEntry

        try:
            return (await self.xenstore.read(self._info(bdf, "driver_path"))).decode("utf-8", "replace") or None
        except NoEntry:
            return None

    async def _forget_driver_path(self, bdf: str) -> None:
        """Remove driver_path once used, as libxl does, and the device's node if that
        left it empty (an empty node would read as a device once made assignable)."""
        if self.xenstore is None:
            return
        from drivers.xenstore.errors import NoEntry

        try:
            await self.xenstore.rm(self._info(bdf, "driver_path"))
            if not await self.xenstore.directory(self._info(bdf)):
                await self.xenstore.rm(self._info(bdf))
        except NoEntry:
            pass

    async def assignable_add(self, bdf: str) -> None:
        bdf = _canonical(bdf)
        if await asyncio.to_thread(self.driver_of, bdf) == PCIBACK:
            await asyncio.to_thread(self._check, bdf)
            return  # already assignable: libxl leaves it (and its driver_path) alone
        driver_path = await asyncio.to_thread(self._unbind_for_pciback, bdf)
        if driver_path is not None and self.xenstore is not None:
            try:
                await self.xenstore.write(self._info(bdf, "driver_path"), driver_path)
            except HostError as exc:  # libxl only warns; the device is unbound now, so bind it anyway
                log.warning("PCI device %s: cannot record driver_path %s (%s); release will let the kernel pick",
                            bdf, driver_path, exc)
        await asyncio.to_thread(self._bind_pciback, bdf)

    async def assignable_remove(self, bdf: str, *, rebind: bool = True) -> None:
        bdf = _canonical(bdf)
        await asyncio.to_thread(self._unbind_pciback, bdf)
        if not rebind:
            return  # driver_path stays, as libxl keeps it, for a later `xl pci-assignable-remove -r`
        driver_path = await self._read_driver_path(bdf)
        await asyncio.to_thread(self._rebind, bdf, driver_path)
        await self._forget_driver_path(bdf)


def _write_error(path: Path, bdf: str, exc: OSError, back: SysfsPciBack,
                 value: str | None = None) -> TerminalHostError | TransientHostError:
    """`value`: what was written when it is not the BDF itself (driver_override, reset)."""
    reason = exc.strerror or str(exc)
    what = bdf if value is None else (f"{value.strip()!r} for {bdf}" if value.strip() else f"an empty line for {bdf}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return TerminalHostError(f"permission denied writing {what} to {path}: run the reconciler as root in dom0")
    if exc.errno == errno.ENODEV and path.name == "bind":
        override = back.override_of(bdf)
        why = f"its driver_override is {override!r}" if override else "the driver does not claim it"
        return TerminalHostError(f"writing {what} to {path} failed: {reason} ({why}); the device has no driver now, see dmesg")
    if exc.errno in (errno.EBUSY, errno.EAGAIN):
        return TransientHostError(f"writing {what} to {path} failed: {reason} (device busy); will retry")
    if exc.errno == errno.ENOENT:
        return TerminalHostError(f"{path} does not exist: this kernel's pciback lacks it, or {bdf} vanished")
    return TerminalHostError(f"writing {what} to {path} failed: {reason}")
