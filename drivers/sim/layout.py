"""The xenstore layout libxl writes for domains (reference xen.md 2.1-2.2, 2.6), as data.

Pure functions: domain parameters in, an ordered list of `Op` out (what one libxl
transaction writes, in libxl's order). The simulated toolstack plays them into its
xenstored; tests compare them with real dumps. This is the one import for all of
the layout: devices (`drivers.sim.devices`) and the backends' asynchronous moves
(`drivers.sim.progress`) are re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.sim.devices import PciOpts, console_add, device_paths, pci_backend, vbd_add, vif_add
from drivers.sim.ops import (
    NOPERM,
    Op,
    Virt,
    dom_path,
    libxl_path,
    roperm,
    rwperm,
    vm_path,
)
from drivers.sim.ops import mkdir as _mkdir
from drivers.sim.ops import writes as _writes
from drivers.sim.progress import Step, backend_progress, device_destroy, device_remove

__all__ = [
    "HVM_PLATFORM",
    "NOPERM",
    "Op",
    "PciOpts",
    "Step",
    "Virt",
    "backend_progress",
    "build_post",
    "console_add",
    "device_destroy",
    "device_paths",
    "device_remove",
    "domain_skeleton",
    "pci_backend",
    "roperm",
    "rwperm",
    "vbd_add",
    "vif_add",
]

HVM_PLATFORM: Mapping[str, str] = {
    "acpi": "1",
    "acpi_s3": "1",
    "acpi_s4": "1",
    "acpi_laptop_slate": "0",
    "device-model": "qemu_xen",
}
"""`$DOM/platform/*` for an HVM guest with xl defaults, as in the 2019 dump."""


def domain_skeleton(
    domid: int,
    name: str,
    uuid: str,
    virt: Virt,
    *,
    platform: Mapping[str, str] | None = None,
    dm_version: str = "qemu_xen",
) -> list[Op]:
    """The nodes `libxl__domain_make` creates in one transaction (reference 2.1).

    `platform` overrides the HVM platform data (ignored for pv/pvh). `dm_version`
    is written to `/libxl/<D>/dm-version` as both real dumps show it.
    """
    dom, vm, lx = dom_path(domid), vm_path(uuid), libxl_path(domid)
    # libxl rm's both first: whatever an earlier domain left under /vm/<uuid> is gone.
    ops = [Op("rm", dom), *_mkdir(dom, roperm(domid)), Op("rm", vm), *_mkdir(vm, roperm(domid))]
    ops += [Op("rm", lx), *_mkdir(lx, NOPERM), *_mkdir(f"{lx}/device", NOPERM)]
    # Order as the dumps list children (C xenstored keeps insertion order):
    # vm, name, then the directories.
    ops += [Op("write", f"{dom}/vm", vm)]
    ops += [Op("write", f"{dom}/name", name), Op("write", f"{vm}/name", name)]
    ops += [Op("write", f"{vm}/uuid", uuid)]
    ro_dirs = ["cpu", "memory", "device", "control"] + (["hvmloader"] if virt == "hvm" else [])
    for sub in ro_dirs:
        ops += _mkdir(f"{dom}/{sub}", roperm(domid))
    ops += _mkdir(f"{dom}/device/suspend/event-channel", rwperm(domid))
    features = ["poweroff", "reboot", "suspend"] + (["s3", "s4"] if virt == "hvm" else [])
    for sub in ["shutdown", *(f"feature-{f}" for f in features), "sysrq"]:
        ops += _mkdir(f"{dom}/control/{sub}", rwperm(domid))
    ops += _writes(
        f"{dom}/control",
        [
            ("platform-feature-multiprocessor-suspend", "1"),
            ("platform-feature-xs_reset_watches", "1"),
        ],
    )
    for sub in ("data", "drivers", "feature", "attr", "error"):
        ops += _mkdir(f"{dom}/{sub}", rwperm(domid))
    if virt == "hvm":
        ops += _writes(f"{dom}/platform", (platform or HVM_PLATFORM).items())
    ops += [Op("write", f"{lx}/type", virt), Op("write", f"{lx}/dm-version", dm_version)]
    return ops


def _start_time(seconds: float) -> str:
    """`/vm/<uuid>/start_time`: seconds and centiseconds, e.g. `1561550075.84`."""
    centis = round(seconds * 100)
    return f"{centis // 100}.{centis % 100:02d}"


def build_post(
    domid: int,
    uuid: str,
    virt: Virt,
    *,
    max_memkb: int,
    target_memkb: int,
    videoram_kb: int,
    max_vcpus: int,
    online_vcpus: int,
    start_time: float,
    kernel: str | None = None,
    ramdisk: str | None = None,
    cmdline: str | None = None,
    store_port: int = 1,
    store_ring_ref: int = 0xFEFFC,
) -> list[Op]:
    """What `libxl__build_post` writes once the domain is built (reference 2.2).

    `memory/target` is the balloon target minus the video RAM (HVM 16 GiB with 16 MiB
    video gives 16760832 in the 2019 dump). vCPUs beyond `online_vcpus` start
    offline. PV gets `image/ostype=linux` plus kernel/ramdisk/cmdline, HVM
    `image/ostype=hvm` and `rtc/timeoffset`, PVH no image node.
    """
    if not 1 <= online_vcpus <= max_vcpus:
        raise ValueError(f"need 1 <= online_vcpus <= max_vcpus, got {online_vcpus}/{max_vcpus}")
    dom, vm = dom_path(domid), vm_path(uuid)
    ops = _writes(
        f"{dom}/memory",
        [
            ("static-max", str(max_memkb)),
            ("target", str(target_memkb - videoram_kb)),
            ("videoram", str(videoram_kb)),
        ],
    )
    ops += [Op("write", f"{dom}/domid", str(domid))]
    ops += _writes(f"{dom}/store", [("port", str(store_port)), ("ring-ref", str(store_ring_ref))])
    for cpu in range(max_vcpus):
        state = "online" if cpu < online_vcpus else "offline"
        ops.append(Op("write", f"{dom}/cpu/{cpu}/availability", state))
    ops.append(Op("write", f"{vm}/start_time", _start_time(start_time)))
    if virt == "pv":
        image = [("ostype", "linux"), ("kernel", kernel or ""), ("ramdisk", ramdisk or "")]
        ops += _writes(f"{vm}/image", [*image, ("cmdline", cmdline or "")])
    elif virt == "hvm":
        ops += [Op("write", f"{vm}/rtc/timeoffset", ""), Op("write", f"{vm}/image/ostype", "hvm")]
    return ops
