"""The last-applied record: the spec fields the host cannot show, as canonical JSON.

Pure. `applied_record(desired, vm, salt=...)` is what execute writes,
split in `RECORD_CHUNK`-byte nodes, to `/vm/<uuid>/reconciler/applied/<i>` (and its
sha256 to `.../digest`) after it creates or updates a VM; the observer joins them back
into `DomainInfo.applied`/`digest` and `read_record` parses them for the diff, so
fields like hooks or lifecycle never show as a perpetual change. Secrets are never
recorded in clear text nor as a bare hash: each is PBKDF2 of its `secret_hash` with a
salt of the VM's own (`reconciler.secrets`), and `unsalt_secrets` turns the ones the manifests still
match back into the `secret_hash` the diff compares with.

Shape (version 1): `{"version": 1, "vm": {field: value},
"disks"|"nics"|"pci": {manifest name: {field: value}}}` with the `if-shown` and
`record` fields of `reconciler.diff.fields`, camelCase, keys sorted, no spaces. A
device's entry also holds its `identity` fields (a disk's vdev, a NIC's index, a PCI
rule's bdf or match), so a device removed from the manifests is shown by the name it
was applied under (`manifest_name`), not by the observer's `<vm>-disk-<devid>`; a record
written before them has none, and the observer's name is shown.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler import xenfmt
from reconciler.diff.fields import DISK_FIELDS, NIC_FIELDS, PCI_FIELDS, VM_FIELDS, Seen, spec_fields
from reconciler.model.common import SECRET_FIELDS
from reconciler.model.devices import NIC, Disk, PCIPassthrough
from reconciler.model.host import RECORD_CHUNK
from reconciler.model.observed import DomainInfo
from reconciler.model.state import DesiredState
from reconciler.secrets import SALTED, salt_secret, salted_matches

RECORD_VERSION = 1
_RECORDED: frozenset[Seen] = frozenset({"if-shown", "record"})
_DEVICE_RECORDED: frozenset[Seen] = _RECORDED | {"identity"}


@dataclass(frozen=True)
class Record:
    """A parsed record: the VM's fields and each device's, by manifest name."""

    vm: Mapping[str, object] = field(default_factory=dict)
    disks: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    nics: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    pci: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


def _salt_all(data: object, salt: bytes) -> object:
    """`data` with every secret leaf (a `secret_hash` under a SECRET_FIELDS key) salted."""
    if not isinstance(data, dict):
        return data
    return {key: salt_secret(value, salt) if key in SECRET_FIELDS and isinstance(value, str) else _salt_all(value, salt)
            for key, value in data.items()}


def unsalt_secrets(recorded: Mapping[str, object], hashed: Mapping[str, object]) -> dict[str, object]:
    """The recorded fields with each salted secret that `hashed` (the desired spec's
    plain data, secrets as `secret_hash`) still matches replaced by that hash; a secret
    that no longer matches stays salted, so it compares as changed."""
    out: dict[str, object] = {}
    for key, value in recorded.items():
        want = hashed.get(key)
        if key in SECRET_FIELDS and isinstance(value, str):
            out[key] = want if isinstance(want, str) and salted_matches(value, want) else value
        elif isinstance(value, dict):
            out[key] = unsalt_secrets(value, want if isinstance(want, dict) else {})
        else:
            out[key] = value
    return out


def holds_bare_hash(recorded: Mapping[str, object]) -> bool:
    """Does a record (an older version's) hold a secret as its bare sha256?"""
    for key, value in recorded.items():
        if key in SECRET_FIELDS and isinstance(value, str) and not value.startswith(SALTED):
            return True
        if isinstance(value, dict) and holds_bare_hash(value):
            return True
    return False


def applied_record(desired: DesiredState, vm: str, *, salt: bytes | None = None) -> tuple[str, str]:
    """(canonical JSON, sha256 hex of it) for VM `vm` of `desired` (KeyError if absent);
    secrets salted with `salt`, by default one of the VM's own (from its uuid: a salt
    per VM, and equal inputs still make an equal record)."""
    spec = desired.vms[vm].spec
    devices = desired.devices_of(vm)
    data: dict[str, object] = {
        "version": RECORD_VERSION,
        "vm": spec_fields(spec, VM_FIELDS, _RECORDED),
        "disks": {d.metadata.name: spec_fields(d.spec, DISK_FIELDS, _DEVICE_RECORDED) for d in devices if isinstance(d, Disk)},
        "nics": {d.metadata.name: spec_fields(d.spec, NIC_FIELDS, _DEVICE_RECORDED) for d in devices if isinstance(d, NIC)},
        "pci": {d.metadata.name: spec_fields(d.spec, PCI_FIELDS, _DEVICE_RECORDED) for d in devices if isinstance(d, PCIPassthrough)},
    }
    if salt is None:
        salt = hashlib.sha256(f"xen-reconciler/secret-salt/{spec.uuid or vm}".encode()).digest()[:16]
    data = _salt_all(data, salt)  # type: ignore[assignment]
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text, hashlib.sha256(text.encode()).hexdigest()


def record_chunks(text: str) -> list[str]:
    """The record as the values of `applied/0`, `applied/1`... (RECORD_CHUNK bytes each;
    the text is ASCII, so bytes are characters)."""
    return [text[i:i + RECORD_CHUNK] for i in range(0, len(text), RECORD_CHUNK)] or [""]


def _table(data: Mapping[str, object], key: str) -> dict[str, Mapping[str, object]]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{key!r} is not an object")
    if not all(isinstance(v, dict) for v in value.values()):
        raise ValueError(f"an entry of {key!r} is not an object")
    return dict(value)


def read_record(info: DomainInfo) -> tuple[Record | None, str | None]:
    """(record, None), or (None, a sentence why it cannot be used), or (None, None)
    when the domain has no record at all (never applied by the reconciler)."""
    if info.applied is None:
        return None, None
    why = f"VM {info.name!r}: the last-applied record under /vm/<uuid>/reconciler"
    if info.digest is not None and hashlib.sha256(info.applied.encode()).hexdigest() != info.digest.strip().lower():
        return None, f"{why} does not match its digest; fields the host cannot show are not compared until the next apply"
    try:
        data = json.loads(info.applied)
        if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
            raise ValueError(f"expected a version {RECORD_VERSION} object")
        vm = data.get("vm")
        if not isinstance(vm, dict):
            raise ValueError("'vm' is not an object")
        return Record(vm, _table(data, "disks"), _table(data, "nics"), _table(data, "pci")), None
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        return None, f"{why} is unreadable ({exc}); fields the host cannot show are not compared until the next apply"


def manifest_name(record: Record | None, kind: str, devid: int | str, taken: Mapping[str, object]) -> str | None:
    """The name a disk (`kind` "Disk", `devid` of its vdev), NIC ("NIC", its index) or PCI
    device ("PCIPassthrough", its bdf) was applied under, from the record's identity
    fields; None when the record does not say, or the name is `taken` (a device of that
    kind in the manifests has it now). A match rule records no bdf: it stays unnamed."""
    if record is None:
        return None
    table = {"Disk": record.disks, "NIC": record.nics, "PCIPassthrough": record.pci}.get(kind, {})
    for name, fields in table.items():
        if name in taken:
            continue
        if kind == "NIC" and fields.get("index") == devid:
            return name
        if kind == "PCIPassthrough" and isinstance(devid, str) and _same_bdf(fields.get("bdf"), devid):
            return name
        vdev = fields.get("vdev") if kind == "Disk" else None
        if isinstance(vdev, str) and _devid_of(vdev) == devid:
            return name
    return None


def _same_bdf(recorded: object, bdf: str) -> bool:
    """Whether a recorded bdf (as written, its domain optional) is the host address `bdf`."""
    try:
        return isinstance(recorded, str) and xenfmt.parse_bdf(recorded) == xenfmt.parse_bdf(bdf)
    except ValueError:
        return False


def _devid_of(vdev: str) -> int | None:
    try:
        return xenfmt.vdev_to_devid(vdev)
    except ValueError:
        return None
