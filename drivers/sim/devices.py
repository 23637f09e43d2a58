"""Device layout as libxl writes it (reference xen.md 2.3-2.7), and backend state moves.

Pure functions: device parameters in, the `Op` list of libxl's add transaction out.
What happens afterwards (backends, hotplug scripts, frontends, detach) is in
`drivers.sim.progress`. Re-exported by `drivers.sim.layout`; called by the
simulated toolstack and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from drivers.sim.ops import Op, Virt, dom_path, libxl_path, roperm, writes
from reconciler.xenfmt import NIC_SCRIPT, Bdf, XenbusState, rate_to_xenstore, script_path

__all__ = [
    "DiskFormat",
    "PciOpts",
    "console_add",
    "device_paths",
    "pci_backend",
    "vbd_add",
    "vif_add",
]

DiskFormat = Literal["raw", "qcow", "qcow2", "vhd", "qed"]
_QDISK_FORMAT = {"raw": "aio", "qcow": "qcow", "qcow2": "qcow2", "vhd": "vhd", "qed": "qed"}


def media_params(backend_type: str, target: str, disk_format: DiskFormat) -> str:
    """A CD drive's backend `params` for new media, as `libxl_cdrom_insert` writes it:
    `<fmt>:<path>` on a qdisk backend (raw as `aio`), the path on phy; "" when empty."""
    if backend_type == "qdisk" and target:
        return f"{_QDISK_FORMAT[disk_format]}:{target}"
    return target


def _state(value: XenbusState) -> str:
    return str(int(value))


def device_paths(
    domid: int, kind: str, devid: int, backend_domid: int = 0, backend_kind: str | None = None
) -> tuple[str, str, str]:
    """(frontend, backend, libxl copy) paths; console 0's frontend is `$DOM/console`."""
    if (kind, devid) == ("console", 0):
        front = f"{dom_path(domid)}/console"
    else:
        front = f"{dom_path(domid)}/device/{kind}/{devid}"
    back = f"{dom_path(backend_domid)}/backend/{backend_kind or kind}/{domid}/{devid}"
    return front, back, f"{libxl_path(domid)}/device/{kind}/{devid}"


def _generic_add(
    domid: int,
    kind: str,
    devid: int,
    backend_domid: int,
    backend_kind: str,
    back: Sequence[tuple[str, str]],
    front: Sequence[tuple[str, str]],
) -> list[Op]:
    """`libxl__device_generic_add`: libxl copy, frontend, backend, in one transaction."""
    fe, be, lx = device_paths(domid, kind, devid, backend_domid, backend_kind)
    # The guest owns its frontend; console 0 is the exception (guest read-only).
    fe_perms: tuple[str, ...] = (f"n{domid}", f"r{backend_domid}")
    if kind == "console":
        fe_perms = roperm(domid, owner=backend_domid)
    ops = [Op("rm", lx), Op("write", f"{lx}/frontend", fe), Op("write", f"{lx}/backend", be)]
    ops += [Op("rm", fe), Op("mkdir", fe), Op("set_perms", fe, perms=fe_perms)]
    ops += [Op("write", f"{fe}/backend", be), *writes(fe, front)]
    be_perms = roperm(domid, owner=backend_domid)
    ops += [Op("rm", be), Op("mkdir", be), Op("set_perms", be, perms=be_perms)]
    ops += [Op("write", f"{be}/frontend", fe), *writes(be, back)]
    # The copy under /libxl is the intended config; its `state` stays "1" forever.
    ops += writes(lx, back)
    return ops


def _common_back(domid: int) -> list[tuple[str, str]]:
    initialising = _state(XenbusState.INITIALISING)
    return [("frontend-id", str(domid)), ("online", "1"), ("state", initialising)]


def vbd_add(
    domid: int,
    devid: int,
    *,
    target: str,
    vdev: str,
    virt: Virt,
    disk_format: DiskFormat = "raw",
    backend_domid: int = 0,
    readwrite: bool = True,
    cdrom: bool = False,
    script: str | None = None,
    discard: bool = True,
    protocol: str = "x86_64-abi",
) -> list[Op]:
    """Ops of `xl block-attach` / domain build for one disk (reference 2.4).

    Raw images and block devices go to the kernel backend (`vbd`, type `phy`,
    `script=/etc/xen/scripts/block`); other formats and empty cdroms to QEMU
    (`qdisk`, `params=<fmt>:<path>`, raw as `aio`). `protocol` goes to the frontend
    for PV guests only, as libxl writes it for old PV kernels.
    """
    qdisk = disk_format != "raw" or not target
    if qdisk:
        params = [("params", f"{_QDISK_FORMAT[disk_format]}:{target}")]
    else:
        params = [("params", target), ("script", script_path(script or "block"))]
    back = [
        *params,
        *_common_back(domid)[:2],
        ("removable", "1" if cdrom else "0"),
        ("bootable", "1"),
        ("state", _state(XenbusState.INITIALISING)),
        ("dev", vdev),
        ("type", "qdisk" if qdisk else "phy"),
        ("mode", "w" if readwrite else "r"),
        ("device-type", "cdrom" if cdrom else "disk"),
        ("discard-enable", "1" if discard else "0"),
    ]
    front = [
        ("backend-id", str(backend_domid)),
        ("state", _state(XenbusState.INITIALISING)),
        ("virtual-device", str(devid)),
        ("device-type", "cdrom" if cdrom else "disk"),
        ("trusted", "1"),
    ]
    if virt == "pv":
        front.append(("protocol", protocol))
    backend_kind = "qdisk" if qdisk else "vbd"
    return _generic_add(domid, "vbd", devid, backend_domid, backend_kind, back, front)


def vif_add(
    domid: int,
    devid: int,
    *,
    mac: str,
    virt: Virt,
    bridge: str = "xenbr0",
    backend_domid: int = 0,
    script: str = NIC_SCRIPT,
    emulated: bool | None = None,
    mtu: int = 1500,
    rate: str | None = None,
    ip: str | None = None,
    vifname: str | None = None,
) -> list[Op]:
    """Ops for one NIC (reference 2.5, `libxl__set_xenstore_nic`).

    `emulated` (type `vif_ioemu`) defaults to True for HVM, and is refused for pv/pvh
    as libxl refuses it. `mtu` goes to the backend only when not 1500; `rate` is
    converted with xl's arithmetic; `hotplug-status=""` makes netback wait for the
    hotplug script.
    """
    if emulated is None:
        emulated = virt == "hvm"
    if emulated and virt != "hvm":
        raise ValueError(f"an emulated (ioemu) NIC needs an HVM guest, not {virt}")
    back = [*_common_back(domid), ("script", script_path(script or NIC_SCRIPT))]
    back += [("vifname", vifname)] if vifname else []
    back += [("mac", mac)] + ([("ip", ip)] if ip else [])
    back += [("rate", rate_to_xenstore(rate))] if rate else []
    back += [("mtu", str(mtu))] if mtu != 1500 else []
    nic_type = "vif_ioemu" if emulated else "vif"
    back += [("bridge", bridge), ("handle", str(devid)), ("type", nic_type)]
    back += [("hotplug-status", "")]
    front = [
        ("backend-id", str(backend_domid)),
        ("state", _state(XenbusState.INITIALISING)),
        ("handle", str(devid)),
        ("mac", mac),
        ("mtu", str(mtu)),
        ("trusted", "1"),
    ]
    return _generic_add(domid, "vif", devid, backend_domid, "vif", back, front)


def console_add(
    domid: int,
    *,
    port: int,
    ring_ref: int,
    backend_domid: int = 0,
    console_type: Literal["xenconsoled", "ioemu"] = "xenconsoled",
    vnc: tuple[str, int] | None = None,
) -> list[Op]:
    """The primary console (reference 2.6): frontend `$DOM/console`, guest read-only.

    `vnc` = (listen address, port) adds `vnc-listen`/`vnc-port` as for HVM guests.
    `tty` is left to xenconsoled (see `backend_progress`).
    """
    front = [
        ("backend-id", str(backend_domid)),
        ("limit", "1048576"),
        ("type", console_type),
        ("output", "pty"),
        ("tty", ""),
        ("port", str(port)),
        ("ring-ref", str(ring_ref)),
    ]
    if vnc is not None:
        front += [("vnc-listen", vnc[0]), ("vnc-port", str(vnc[1]))]
    back = [*_common_back(domid), ("protocol", "vt100")]
    return _generic_add(domid, "console", 0, backend_domid, "console", back, front)


@dataclass(frozen=True)
class PciOpts:
    """Per-device options of a `pci=` entry (reference 3.5), as libxl records them."""

    msitranslate: bool = False
    power_mgmt: bool = False
    permissive: bool = False
    rdm_policy: Literal["strict", "relaxed"] = "strict"
    vslot: int | None = None  # guest slot; written as `vdevfn-i` when given
    name: str | None = None  # `pci-assignable-add -n` name, written as `name-i`

    def xenstore(self) -> str:
        flags = (
            ("msitranslate", self.msitranslate),
            ("power_mgmt", self.power_mgmt),
            ("permissive", self.permissive),
        )
        return ",".join(f"{k}={int(v)}" for k, v in flags) + f",rdm_policy={self.rdm_policy}"


def _pci_device_keys(index: int, bdf: Bdf, opts: PciOpts) -> list[tuple[str, str]]:
    keys = [(f"key-{index}", str(bdf)), (f"dev-{index}", str(bdf))]
    if opts.vslot is not None:
        keys.append((f"vdevfn-{index}", f"{opts.vslot << 3 | bdf.func:x}"))
    if opts.name is not None:
        keys.append((f"name-{index}", opts.name))
    keys.append((f"opts-{index}", opts.xenstore()))
    keys.append((f"state-{index}", _state(XenbusState.INITIALISING)))
    return keys


def pci_backend(domid: int, name: str, devices: Sequence[tuple[Bdf, PciOpts]]) -> list[Op]:
    """The guest's single pci backend (devid 0) and the host-wide `/libxl/pci/<bdf>/domid`.

    Key order as in the 2021 `xenstore-ls -f | grep pci` dump; that dump has no
    `/libxl/<D>/device/pci` copy, so none is written. `domain` is the guest name.
    """
    if not devices:
        raise ValueError("a pci backend needs at least one device")
    fe, be, _ = device_paths(domid, "pci", 0)
    back = [*_common_back(domid), ("domain", name)]
    for index, (bdf, opts) in enumerate(devices):
        back += _pci_device_keys(index, bdf, opts)
    back.append(("num_devs", str(len(devices))))
    front = [("backend-id", "0"), ("state", _state(XenbusState.INITIALISING))]
    ops = [Op("rm", fe), Op("mkdir", fe), Op("set_perms", fe, perms=(f"n{domid}", "r0"))]
    ops += [Op("write", f"{fe}/backend", be), *writes(fe, front)]
    ops += [Op("rm", be), Op("mkdir", be), Op("set_perms", be, perms=roperm(domid))]
    ops += [Op("write", f"{be}/frontend", fe), *writes(be, back)]
    for bdf, _opts in devices:
        ops.append(Op("write", f"/libxl/pci/{bdf.xenstore_key}/domid", str(domid)))
    return ops
