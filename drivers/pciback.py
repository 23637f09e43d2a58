"""SysfsPciBack: the PciBackPort on a real dom0, through Linux sysfs (reference xen.md 4).

Stage: driver (PCI back-end). Called by observe/execute through `reconciler.ports.PciBackPort`.
Reads `<root>/bus/pci/devices/<bdf>/{vendor,device,class,driver}` for the inventory and
makes devices assignable the way libxl does (4.2), on any kernel:
  add:    <current driver>/unbind, pciback/new_slot (unless already in pciback/slots), pciback/bind
  remove: pciback/unbind, pciback/remove_slot (if in slots), then bus/pci/drivers_probe
          so the kernel hands the device back to its own driver (when `rebind`).
Each write is one write(2) of the BDF, run in a worker thread (a bind probes the driver
and may block). libxl also quarantines the device (assigns it to DOMID_IO); that needs
a hypercall, so it happens at `xl pci-attach` time instead.
"""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

from reconciler import xenfmt
from reconciler.errors import TerminalHostError, TransientHostError
from reconciler.model.host import HostPciDevice

PCIBACK = "pciback"  # the driver name xen-pciback registers (not xen-pciback)


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

    def __init__(self, root: Path = Path("/sys")) -> None:
        self.root = root
        self.devices = root / "bus" / "pci" / "devices"
        self.pciback = root / "bus" / "pci" / "drivers" / PCIBACK

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

    def _write(self, path: Path, bdf: str) -> None:
        try:
            self._write_attr(path, bdf)
        except OSError as exc:
            raise _write_error(path, bdf, exc) from exc

    def _check(self, bdf: str) -> None:
        if not self.pciback.is_dir():
            raise PciBackNotLoaded(
                f"{self.pciback} is missing: the xen-pciback driver is not loaded; "
                "run `modprobe xen-pciback` (it loads only in dom0)"
            )
        if not (self.devices / bdf).exists():
            raise UnknownPciDevice(f"no PCI device {bdf} on this host (nothing at {self.devices / bdf}); check the BDF with lspci -D")

    def _assignable_add(self, bdf: str) -> None:
        self._check(bdf)
        driver = self.driver_of(bdf)
        if driver == PCIBACK:
            return
        if driver is not None:
            self._write(self.devices / bdf / "driver" / "unbind", bdf)
        if bdf not in self._slots():
            self._write(self.pciback / "new_slot", bdf)
        self._write(self.pciback / "bind", bdf)
        if self.driver_of(bdf) != PCIBACK:
            raise TerminalHostError(f"PCI device {bdf} is still not bound to pciback after writing {self.pciback / 'bind'}; see dmesg")

    def _assignable_remove(self, bdf: str, rebind: bool) -> None:
        self._check(bdf)
        if self.driver_of(bdf) == PCIBACK:
            self._write(self.pciback / "unbind", bdf)
        if bdf in self._slots():
            self._write(self.pciback / "remove_slot", bdf)
        if rebind and self.driver_of(bdf) is None:
            self._write(self.root / "bus" / "pci" / "drivers_probe", bdf)

    async def assignable_add(self, bdf: str) -> None:
        await asyncio.to_thread(self._assignable_add, _canonical(bdf))

    async def assignable_remove(self, bdf: str, *, rebind: bool = True) -> None:
        await asyncio.to_thread(self._assignable_remove, _canonical(bdf), rebind)


def _write_error(path: Path, bdf: str, exc: OSError) -> TerminalHostError | TransientHostError:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return TerminalHostError(f"permission denied writing {bdf} to {path}: run the reconciler as root in dom0")
    if exc.errno in (errno.EBUSY, errno.EAGAIN):
        return TransientHostError(f"writing {bdf} to {path} failed: {reason} (device busy); will retry")
    if exc.errno == errno.ENOENT:
        return TerminalHostError(f"{path} does not exist: this kernel's pciback lacks it, or {bdf} vanished")
    return TerminalHostError(f"writing {bdf} to {path} failed: {reason}")
