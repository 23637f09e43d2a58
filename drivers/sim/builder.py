"""The devices a simulated domain is built with: what libxl does for the `disk=`, `vif=`
and `pci=` of an xl.cfg at `xl create` (reference xen.md 2.4-2.7).

Stage: simulated host. `refusal(core, vm, build)` says what libxl would refuse before the
domain exists (a bootloader with no boot disk, an unknown or unassignable PCI device, a
backend VM that is not running, two devices on one devid); `device_ops(core, domain,
build)` gives each device's add transaction (the same layout `xl block-attach`,
`network-attach` and `pci-attach` write, `drivers.sim.layout`) with the backend it
starts. Called by `drivers.sim.toolstack.Libxl.create`, which plays them, starts the
backends' moves and waits as attach does; `drivers.sim.attach` shares `disk_ops` and
`nic_ops`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.sim.backends import DeviceRef
from drivers.sim.devices import PciOpts
from drivers.sim.layout import Op, pci_backend, vbd_add, vif_add
from drivers.sim.pci import PCIBACK
from reconciler.errors import TerminalHostError
from reconciler.model.host import Build
from reconciler.xenfmt import auto_mac, parse_bdf, vdev_to_devid, vif_ifname

if TYPE_CHECKING:
    from drivers.sim.domains import Domain
    from drivers.sim.toolstack import Core
    from reconciler.model import NIC, VM, Disk


def disk_ops(core: Core, domain: Domain, disk: Disk, what: str) -> tuple[list[Op], DeviceRef]:
    """One disk's add transaction and its backend (blkback `vbd`, or QEMU `qdisk` for
    images that are not raw and empty cdroms); `what` names the command in refusals."""
    spec = disk.spec
    devid = vdev_to_devid(spec.vdev)
    backend_domid = core.backend_domid(spec.backend_vm)
    cdrom = spec.devtype == "cdrom"
    access = spec.access or ("ro" if cdrom else "rw")
    qdisk = spec.format != "raw" or not spec.target
    if qdisk and spec.script:  # libxl__device_disk_set_backend: qdisk takes no script, phy no qcow2
        raise TerminalHostError(f"{what} domain {domain.domid}: disk {spec.vdev}: no suitable backend "
                                f"(script= needs phy, which takes raw images, not {spec.format})")
    ops = vbd_add(domain.domid, devid, target=spec.target, vdev=spec.vdev, virt=domain.virt, disk_format=spec.format,
                  backend_domid=backend_domid, readwrite=access == "rw", cdrom=cdrom, script=spec.script,
                  discard=spec.discard)
    return ops, DeviceRef(domain.domid, "vbd", devid, backend_domid, "qdisk" if qdisk else "vbd")


def nic_ops(core: Core, domain: Domain, nic: NIC, devid: int, what: str,
            *, untyped_pv: bool = False) -> tuple[list[Op], DeviceRef]:
    """One NIC's add transaction, its backend, and its interface plugged in the backend domain;
    `untyped_pv`: a NIC without `type` is PV only (libxl's default for a hot-plugged NIC)."""
    spec = nic.spec
    emulated = None if spec.type is None else spec.type == "ioemu"
    if emulated is None and untyped_pv:
        emulated = False
    backend_domid = core.backend_domid(spec.backend_vm)
    mac = auto_mac(domain.uuid, devid) if spec.mac == "auto" else spec.mac
    try:
        ops = vif_add(domain.domid, devid, mac=mac, virt=domain.virt, bridge=spec.bridge, backend_domid=backend_domid,
                      emulated=emulated, mtu=spec.mtu, rate=spec.rate,
                      ip=spec.ip, vifname=spec.vifname, **({"script": spec.script} if spec.script else {}))
    except ValueError as exc:
        raise TerminalHostError(f"{what} domain {domain.domid}: {exc}") from exc
    return ops, DeviceRef(domain.domid, "vif", devid, backend_domid)


def refusal(core: Core, vm: VM, build: Build) -> None:
    """Raise what libxl refuses about `build` before it builds anything of the domain."""
    spec, name = vm.spec, vm.metadata.name
    if spec.bootloader and spec.virt != "hvm" and not build.disks:
        # libxl_bootloader.c: the first disk of the cfg is the one the bootloader reads.
        raise TerminalHostError(f"create {name}: cannot run bootloader with no boot disk (bootloader "
                                f"{spec.bootloader}); give the VM a disk, or boot it from a kernel")
    _unique(name, "disk", [vdev_to_devid(d.spec.vdev) for d in build.disks])
    _unique(name, "NIC", [_devid(build, n) for n in build.nics])
    for backend_vm in [d.spec.backend_vm for d in build.disks] + [n.spec.backend_vm for n in build.nics]:
        core.backend_domid(backend_vm)
    for assignment in build.pci:
        device = core.pci.get(assignment.bdf)  # unknown address: "no PCI device ... on this host"
        if device.driver != PCIBACK:
            raise TerminalHostError(f"PCI device {device.bdf} is not assignable (driver {device.driver or 'none'}); "
                                    "make it assignable first (pciback)")
        if (owner := core.value(f"/libxl/pci/{parse_bdf(device.bdf).xenstore_key}/domid")) is not None:
            raise TerminalHostError(f"PCI device {device.bdf} is already assigned to domain {owner}")


def device_ops(core: Core, domain: Domain, build: Build) -> list[tuple[list[Op], DeviceRef]]:
    """Every device's add transaction, in libxl's order at create: disks, NICs, then the
    one pci backend holding every passed-through device."""
    what = "create of"
    out = [disk_ops(core, domain, disk, what) for disk in build.disks]
    for nic in build.nics:
        devid = _devid(build, nic)
        ops, ref = nic_ops(core, domain, nic, devid, what)
        out.append((ops, ref))
    if build.pci:
        devices = [(parse_bdf(p.bdf), PciOpts(msitranslate=p.msitranslate, power_mgmt=p.power_mgmt,
                                             permissive=p.permissive, vslot=p.guest_slot)) for p in build.pci]
        out.append((pci_backend(domain.domid, domain.name, devices), DeviceRef(domain.domid, "pci", 0)))
    return out


def plug(core: Core, domain: Domain, build: Build) -> None:
    """The NICs' interfaces appear in their backend domains (netback's `vif<D>.<N>`)."""
    for nic in build.nics:
        devid = _devid(build, nic)
        core.netdevs.plug(core.backend_domid(nic.spec.backend_vm), vif_ifname(domain.domid, devid, nic.spec.vifname),
                          domid=domain.domid, devid=devid, mtu=nic.spec.mtu)


def _devid(build: Build, nic: NIC) -> int:
    return nic.spec.index if nic.spec.index is not None else build.nics.index(nic)


def _unique(name: str, what: str, devids: list[int]) -> None:
    seen = [d for i, d in enumerate(devids) if d in devids[:i]]
    if seen:
        raise TerminalHostError(f"create {name}: two {what}s on devid {seen[0]}; each needs its own")
