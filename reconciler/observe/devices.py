"""Devices: backend directories -> Disk, NIC and PCIPassthrough models plus health.

Pure: reads a `Tree`, returns models keyed by `<vm>-<kind>-<devid>` and DeviceHealth,
logs problems on the tree. The backend directory is read, not the `/libxl/<d>/device`
copy: the backend is what the host actually runs (reference 2.3). Called by
`reconciler.observe.observe_tree`, whose docstring lists the mapping rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from reconciler import xenfmt
from reconciler.model.common import API_VERSION
from reconciler.model.devices import NIC, Disk, PCIPassthrough
from reconciler.model.observed import DeviceHealth, StrandedDevice
from reconciler.observe.domains import Domain
from reconciler.observe.health import device_health
from reconciler.observe.tree import Tree, build_model

DISK_KINDS = ("vbd", "qdisk", "vbd3")  # backend kinds whose frontend kind is vbd
_FORMAT_PREFIX = re.compile(r"(aio|raw|qcow|qcow2|vhd|qed):(.*)", re.DOTALL)


@dataclass
class Devices:
    disks: dict[str, Disk] = field(default_factory=dict)
    nics: dict[str, NIC] = field(default_factory=dict)
    pci: dict[str, PCIPassthrough] = field(default_factory=dict)
    health: dict[str, DeviceHealth] = field(default_factory=dict)
    stranded: dict[str, StrandedDevice] = field(default_factory=dict)


@dataclass(frozen=True)
class Backend:
    """One backend directory `/local/domain/<backend>/backend/<kind>/<domid>/<devid>`."""

    path: str
    kind: str
    backend: int
    dom: Domain
    devid: int


def _backends(tree: Tree, doms: dict[int, Domain]) -> Iterator[Backend]:
    for backend, b_key in tree.numeric_children("/local/domain", "domid"):
        root = f"/local/domain/{b_key}/backend"
        for kind in tree.children(root):
            for domid, d_key in tree.numeric_children(f"{root}/{kind}", "domid"):
                if domid == 0:
                    continue  # devices of dom0 itself (e.g. QEMU's qdisk): not a VM's
                if domid not in doms:
                    tree.problem(f"{root}/{kind}/{d_key}: backend for domain {domid}, which has no /local/domain/{domid}; stale, skipped")
                    continue
                for devid, key in tree.numeric_children(f"{root}/{kind}/{d_key}", "devid"):
                    yield Backend(f"{root}/{kind}/{d_key}/{key}", kind, backend, doms[domid], devid)


def _resource(kind: str, name: str, spec: dict[str, object]) -> dict[str, object]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def _common(tree: Tree, be: Backend, doms: dict[int, Domain], default_script: str) -> dict[str, object]:
    spec: dict[str, object] = {"vm": be.dom.name}
    if be.backend != 0:
        if be.backend in doms:
            spec["backendVM"] = doms[be.backend].name
        else:
            tree.problem(f"{be.path}: backend domain {be.backend} is not listed; backendVM unknown")
    script = tree.get(f"{be.path}/script")
    if script and script != default_script:  # the one libxl writes when the config names none: "not set"
        spec["script"] = script
    return spec


def _disk(tree: Tree, be: Backend, doms: dict[int, Domain]) -> dict[str, object]:
    spec = _common(tree, be, doms, xenfmt.DISK_SCRIPT)
    params = tree.need(f"{be.path}/params", "the disk's target") or ""
    m = _FORMAT_PREFIX.fullmatch(params)
    fmt, spec["target"] = (m.group(1), m.group(2)) if m else ("raw", params)
    spec["format"] = "raw" if fmt == "aio" else fmt  # qdisk's `aio:` is a raw file
    spec["vdev"] = tree.get(f"{be.path}/dev") or _vdev_of(tree, be)
    mode = tree.get(f"{be.path}/mode")
    if mode in ("w", "r"):
        spec["access"] = "rw" if mode == "w" else "ro"
    else:
        tree.problem(f"{be.path}/mode is {mode!r}, not w or r; access unknown")
    devtype = tree.get(f"{be.path}/device-type")
    if devtype is not None:
        spec["devtype"] = devtype
    discard = tree.get(f"{be.path}/discard-enable")
    if discard in ("0", "1"):
        spec["discard"] = discard == "1"
    return spec


def _vdev_of(tree: Tree, be: Backend) -> str:
    try:
        return xenfmt.devid_to_vdev(be.devid)
    except ValueError as exc:
        tree.problem(f"{be.path}: no dev node and {exc}")
        return str(be.devid)


def _nic(tree: Tree, be: Backend, doms: dict[int, Domain]) -> dict[str, object]:
    spec = _common(tree, be, doms, xenfmt.NIC_SCRIPT)
    spec["index"] = be.devid
    for key in ("mac", "bridge", "vifname", "ip"):
        value = tree.get(f"{be.path}/{key}")
        if value:
            spec[key] = value
    # libxl writes mtu only when it is not 1500 (reference 2.5).
    spec["mtu"] = tree.integer(f"{be.path}/mtu", "NIC MTU", required=False) or 1500
    vif_type = tree.get(f"{be.path}/type")
    if vif_type in ("vif", "vif_ioemu"):
        spec["type"] = "ioemu" if vif_type == "vif_ioemu" else "vif"
    rate = tree.get(f"{be.path}/rate")
    if rate:
        try:
            spec["rate"] = xenfmt.rate_from_xenstore(rate)
        except ValueError as exc:
            tree.problem(f"{be.path}/rate: {exc}")
    return spec


def _pci(tree: Tree, be: Backend) -> Iterator[tuple[int, dict[str, object]]]:
    """One spec per `dev-<i>` of the domain's single PCI backend (devid 0)."""
    count = tree.integer(f"{be.path}/num_devs", "number of passed-through devices") or 0
    for i in range(count):
        text = tree.get(f"{be.path}/dev-{i}") or tree.need(f"{be.path}/key-{i}", "PCI address")
        if text is None:
            continue
        spec: dict[str, object] = {"vm": be.dom.name, "bdf": text}
        opts = dict(kv.partition("=")[::2] for kv in (tree.get(f"{be.path}/opts-{i}") or "").split(",") if kv)
        for opt, field_name in (("permissive", "permissive"), ("msitranslate", "msitranslate"), ("power_mgmt", "powerMgmt")):
            if opts.get(opt) in ("0", "1"):
                spec[field_name] = opts[opt] == "1"
        vdevfn = tree.get(f"{be.path}/vdevfn-{i}")
        if vdevfn:
            try:
                spec["guestSlot"] = int(vdevfn, 16) >> 3  # devfn = slot << 3 | function
            except ValueError:
                tree.problem(f"{be.path}/vdevfn-{i} = {vdevfn!r} is not hex")
        yield i, spec


# (frontend kind, model kind, name part)
_STRANDABLE: tuple[tuple[str, Literal["Disk", "NIC"], str], ...] = (("vbd", "Disk", "disk"), ("vif", "NIC", "nic"))


def _stranded(tree: Tree, doms: dict[int, Domain], found: Devices) -> Iterator[StrandedDevice]:
    """The `/libxl/<d>/device` copies of disks and NICs whose backend directory is gone
    (their backend domain died): the device is not observed, yet libxl cannot add it again."""
    for dom in doms.values():
        for kind, model, part in _STRANDABLE:
            base = f"/libxl/{dom.domid}/device/{kind}"
            for devid, key in tree.numeric_children(base, "devid"):
                name = f"{dom.name}-{part}-{devid}"
                back = tree.get(f"{base}/{key}/backend") or ""
                if name in found.disks or name in found.nics or not back or tree.exists(back):
                    continue
                parts = back.split("/")  # /local/domain/<B>/backend/<kind>/<D>/<devid>
                if len(parts) != 8 or not parts[3].isdigit():
                    tree.problem(f"{base}/{key}/backend = {back!r} is not a backend path; skipped")
                    continue
                vdev = (tree.get(f"{base}/{key}/dev") or _vdev_of(tree, Backend(back, kind, int(parts[3]), dom, devid))) \
                    if model == "Disk" else None
                yield StrandedDevice(model, name, dom.name, devid, int(parts[3]), vdev)


def scan_devices(tree: Tree, doms: dict[int, Domain]) -> Devices:
    found = Devices()
    for be in _backends(tree, doms):
        vm = be.dom.name
        if be.kind in DISK_KINDS:
            name = f"{vm}-disk-{be.devid}"
            found.disks[name] = build_model(Disk, _resource("Disk", name, _disk(tree, be, doms)), tree, f"Disk {name!r}")
            found.health[name] = device_health(tree, be.path, be.dom.domid, f"vbd/{be.devid}")
        elif be.kind == "vif":
            name = f"{vm}-nic-{be.devid}"
            found.nics[name] = build_model(NIC, _resource("NIC", name, _nic(tree, be, doms)), tree, f"NIC {name!r}")
            found.health[name] = device_health(tree, be.path, be.dom.domid, f"vif/{be.devid}")
        elif be.kind == "pci":
            for i, spec in _pci(tree, be):
                name = f"{vm}-pci-{i}"
                found.pci[name] = build_model(PCIPassthrough, _resource("PCIPassthrough", name, spec), tree, f"PCIPassthrough {name!r}")
                found.health[name] = device_health(tree, be.path, be.dom.domid, f"pci/{be.devid}")
    found.stranded = {device.name: device for device in _stranded(tree, doms, found)}
    return found
