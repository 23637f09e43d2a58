"""XlToolstack: the ToolstackPort on a real Xen dom0, through the `xl` command.

Stage: driver (toolstack). Called by observe/execute through `reconciler.ports.ToolstackPort`.
Every call is one `xl` subprocess (argv list, never a shell; `command.run_tool`) with a
per-command timeout; cfg text and spec strings come from the pure `cfg` and `specs`
modules. `create` builds the domain as xl builds one, with its disks, NICs and PCI
devices in the cfg (`Build`), and runs `xl create -e` (no background monitor acting on
the domain's lifecycle behind the reconciler, which carries out onReboot/onPoweroff/
onCrash); it writes the xl.cfg (it may hold the VNC password) 0600 into a private temp
directory that is removed once `xl create` returns; secrets never reach argv or error
messages.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from drivers.xl.cfg import render_cfg
from drivers.xl.command import run_tool
from drivers.xl.listing import parse_domid, parse_list_verbose, parse_passthrough
from drivers.xl.specs import disk_spec, pci_spec, vif_spec
from reconciler.atomic import write_text_atomic
from reconciler.errors import TerminalHostError
from reconciler.model.devices import NIC, Disk
from reconciler.model.host import Build, DomainStatus
from reconciler.model.vm import VM


@dataclass(frozen=True)
class XlSettings:
    """How `xl` is run."""

    executable: str = "xl"  # PATH lookup; Debian installs /usr/sbin/xl
    timeout: float = 30.0  # seconds for one ordinary xl command; they return in well under a second
    create_timeout: float = 180.0  # seconds for `xl create`: pygrub, device-model and hotplug scripts run inside it
    acpi_fallback: bool = True  # `xl shutdown -F`: HVM guests without PV drivers only hear the ACPI power button
    cfg_dir: Path | None = None  # where the private cfg directory is made; None: the system temp dir


class XlToolstack:
    """`xl` behind ToolstackPort. Domains are addressed by domid, as the port does."""

    def __init__(self, settings: XlSettings | None = None) -> None:
        self.settings = settings or XlSettings()

    async def _xl(self, *args: str, timeout: float | None = None, secrets: Sequence[str] = ()) -> str:
        argv = [self.settings.executable, *args]
        return await run_tool(argv, timeout=timeout or self.settings.timeout, secrets=secrets)

    async def list_domains(self) -> list[DomainStatus]:
        # `-v` for power and uuid; `-l` (the stored configs) for whether each was built with passthrough.
        domains = parse_list_verbose(await self._xl("list", "-v"))
        built = parse_passthrough(await self._xl("list", "-l"))
        return [dataclasses.replace(d, passthrough=built.get(d.domid)) for d in domains]

    async def create(self, vm: VM, build: Build = Build(), *, paused: bool = True) -> int:
        text, secrets = render_cfg(vm, build)
        name = vm.metadata.name
        directory = tempfile.mkdtemp(prefix="reconciler-xl-", dir=self.settings.cfg_dir)  # mode 0700
        try:
            path = str(Path(directory) / f"{name}.cfg")
            write_text_atomic(path, text, mode=0o600)
            # -e: no xl monitor waits in the background for the domain's death. Its rebuild on a
            # guest reboot or crash-restart (libxl destroys the domain, and /vm/<uuid> with it:
            # the reconciler's marker and record) would make our own VM look unmanaged; the
            # reconciler carries out onReboot/onPoweroff/onCrash itself (reconciler.diff.vm).
            flags = ["-e", "-p"] if paused else ["-e"]
            await self._xl("create", *flags, path, timeout=self.settings.create_timeout, secrets=sorted(secrets))
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return parse_domid(await self._xl("domid", name), name)

    async def unpause(self, domid: int) -> None:
        await self._xl("unpause", str(domid))

    async def pause(self, domid: int) -> None:
        await self._xl("pause", str(domid))

    async def shutdown(self, domid: int, *, timeout: float) -> None:
        flags = ["-w", "-F"] if self.settings.acpi_fallback else ["-w"]
        await self._xl("shutdown", *flags, str(domid), timeout=timeout)

    async def destroy(self, domid: int) -> None:
        await self._xl("destroy", str(domid))

    async def mem_set(self, domid: int, mib: int) -> None:
        await self._xl("mem-set", str(domid), f"{mib}m")

    async def vcpu_set(self, domid: int, count: int) -> None:
        await self._xl("vcpu-set", str(domid), str(count))

    async def rename(self, domid: int, name: str) -> None:
        await self._xl("rename", str(domid), name)

    async def attach_disk(self, domid: int, disk: Disk) -> None:
        await self._xl("block-attach", str(domid), *disk_spec(disk))

    async def detach_disk(self, domid: int, vdev: str) -> None:
        await self._xl("block-detach", str(domid), vdev)

    async def attach_nic(self, domid: int, nic: NIC) -> None:
        await self._xl("network-attach", str(domid), *vif_spec(nic))

    async def detach_nic(self, domid: int, devid: int) -> None:
        await self._xl("network-detach", str(domid), str(devid))

    async def attach_pci(self, domid: int, bdf: str, *, permissive: bool = False,
                         msitranslate: bool = False, power_mgmt: bool = False,
                         guest_slot: int | None = None) -> None:
        spec = pci_spec(bdf, permissive=permissive, msitranslate=msitranslate,
                        power_mgmt=power_mgmt, guest_slot=guest_slot)
        await self._xl("pci-attach", str(domid), spec)

    async def detach_pci(self, domid: int, bdf: str) -> None:
        await self._xl("pci-detach", str(domid), pci_spec(bdf))

    async def cd_insert(self, domid: int, vdev: str, target: str, format: str) -> None:
        # xl(1): `cd-insert domain-id virtualdevice target`. xl builds the spec
        # `vdev=V,access=r,devtype=cdrom,target=T` (xl_cdrom.c), so the image is raw:
        # `target=` swallows the rest of the string and takes no format.
        if format != "raw":
            raise TerminalHostError(f"cd-insert {target} into {vdev} of domain {domid}: xl cd-insert inserts raw "
                                    f"images only (its target= takes no format), not {format}; give the CD a raw "
                                    "image (ISO), or rebuild the VM with it")
        await self._xl("cd-insert", str(domid), vdev, target)

    async def cd_eject(self, domid: int, vdev: str) -> None:
        await self._xl("cd-eject", str(domid), vdev)
