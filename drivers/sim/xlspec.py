"""Short xl-like device specs of `reconciler sim create` -> manifest models.

Pure: strings in, `VM`/`Disk`/`NIC` models out (built with `model_validate`, so the
manifest rules apply), or a one-line `UsageError` naming the bad option. Spellings:
`--disk TARGET,VDEV[,FORMAT[,ro]]`, `--nic BRIDGE[,MAC]` (MAC auto from the uuid and
index when omitted), `--pci BDF`. Called by `reconciler.cli.sim`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from reconciler.errors import UsageError
from reconciler.model import NIC, VM, Disk, default_vm_uuid
from reconciler.xenfmt import auto_mac, parse_bdf

FORMATS = ("raw", "qcow", "qcow2", "vhd", "qed")


@dataclass(frozen=True)
class CreateRequest:
    name: str
    virt: str
    memory: int
    max_memory: int | None = None
    vcpus: int = 1
    max_vcpus: int | None = None
    kernel: str | None = None
    disks: Sequence[str] = ()
    nics: Sequence[str] = ()
    pci: Sequence[str] = ()


def _validate(cls: type[pydantic.BaseModel], doc: dict[str, Any], what: str) -> Any:
    try:
        return cls.model_validate(doc)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "spec")
        raise UsageError(f"{what}: {where}: {first['msg']}") from None


def build(req: CreateRequest) -> tuple[VM, list[Disk], list[NIC], list[str]]:
    """The VM and its devices; `pci` comes back as canonical BDFs."""
    spec: dict[str, Any] = {"virt": req.virt, "memory": req.memory, "vcpus": req.vcpus}
    for key, value in (("maxMemory", req.max_memory), ("maxVcpus", req.max_vcpus), ("kernel", req.kernel)):
        if value is not None:
            spec[key] = value
    vm: VM = _validate(VM, {"metadata": {"name": req.name}, "spec": spec}, f"domain {req.name!r}")
    uuid = vm.spec.uuid or default_vm_uuid(req.name)
    disks = [_disk(req.name, i, text) for i, text in enumerate(req.disks)]
    nics = [_nic(req.name, uuid, i, text) for i, text in enumerate(req.nics)]
    pci = []
    for text in req.pci:
        try:
            pci.append(str(parse_bdf(text)))
        except ValueError as exc:
            raise UsageError(f"--pci {text}: {exc}") from None
    return vm, disks, nics, pci


def _disk(vm: str, index: int, text: str) -> Disk:
    parts = text.split(",")
    if not 2 <= len(parts) <= 4 or (len(parts) == 4 and parts[3] not in ("ro", "rw")):
        raise UsageError(f"--disk {text}: expected TARGET,VDEV[,FORMAT[,ro]], e.g. /srv/web.img,xvda,raw")
    spec: dict[str, Any] = {"vm": vm, "target": parts[0], "vdev": parts[1]}
    if len(parts) >= 3:
        if parts[2] not in FORMATS:
            raise UsageError(f"--disk {text}: format {parts[2]!r} is not one of {', '.join(FORMATS)}")
        spec["format"] = parts[2]
    if len(parts) == 4:
        spec["access"] = parts[3]
    disk: Disk = _validate(Disk, {"metadata": {"name": f"{vm}-disks-{index}"}, "spec": spec}, f"--disk {text}")
    return disk


def _nic(vm: str, uuid: str, index: int, text: str) -> NIC:
    parts = text.split(",")
    if len(parts) > 2 or not parts[0]:
        raise UsageError(f"--nic {text}: expected BRIDGE[,MAC], e.g. xenbr0 or xenbr0,00:16:3e:00:00:01")
    mac = parts[1] if len(parts) == 2 else auto_mac(uuid, index)
    spec = {"vm": vm, "index": index, "bridge": parts[0], "mac": mac}
    nic: NIC = _validate(NIC, {"metadata": {"name": f"{vm}-nics-{index}"}, "spec": spec}, f"--nic {text}")
    return nic
