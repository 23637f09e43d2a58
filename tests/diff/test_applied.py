"""The last-applied record and the field table it is built from."""

from __future__ import annotations

import hashlib
import json

import pytest

from reconciler.diff.applied import applied_record
from reconciler.secrets import salted_matches
from reconciler.diff.fields import NOT_FIELDS, TABLES
from reconciler.model import DesiredState, DiskSpec, NICSpec, PCISpec, VMSpec


@pytest.mark.parametrize(("kind", "model"), [("VM", VMSpec), ("Disk", DiskSpec), ("NIC", NICSpec), ("PCIPassthrough", PCISpec)])
def test_table_covers_every_spec_field(kind: str, model: type) -> None:
    names = {info.alias or name for name, info in model.model_fields.items()} - NOT_FIELDS
    table = TABLES[kind]  # type: ignore[index]
    assert set(table) == names
    assert all(rule.why and rule.impact in ("live", "restart", "destructive") for rule in table.values())


def test_record_is_canonical_json_with_its_digest(desktop: DesiredState) -> None:
    text, digest = applied_record(desktop, "win10")
    assert digest == hashlib.sha256(text.encode()).hexdigest()
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert applied_record(desktop, "win10") == (text, digest)
    assert data["vm"]["hooks"]["preBoot"] == "/usr/libexec/xen-hooks/check-igd-boot-vga"
    assert "memory" not in data["vm"] and "uuid" not in data["vm"]  # the host shows those
    assert set(data["disks"]) == {"win10-data", "win10-install-iso", "win10-system"}
    assert data["nics"]["win10-wired"]["model"] == "e1000"
    assert data["pci"]["win10-igd"] == {"bdf": "0000:00:02.0", "greedy": False, "guestSlot": 2, "match": None,
                                        "msitranslate": False, "permissive": False, "powerMgmt": True, "seize": True}
    # identity fields: a device removed from the manifests is shown by the name it was applied under
    assert data["disks"]["win10-system"]["vdev"] == "hda" and data["nics"]["win10-wired"]["index"] == 0


def test_record_never_holds_a_secret_in_clear_nor_its_bare_hash(desktop: DesiredState) -> None:
    text, _ = applied_record(desktop, "win10")
    bare = hashlib.sha256(b"change-me").hexdigest()
    assert "change-me" not in text and bare not in text
    recorded = json.loads(text)["vm"]["display"]["vncPassword"]
    assert recorded.startswith("pbkdf2-sha256:20000:") and salted_matches(recorded, "sha256:" + bare)
    assert not salted_matches(recorded, "sha256:" + hashlib.sha256(b"change-me-not").hexdigest())
    # Salted per VM: the same password in another VM's record is another value.
    other = applied_record(desktop, "win10", salt=b"\x01" * 16)[0]
    assert json.loads(other)["vm"]["display"]["vncPassword"] != recorded


def test_record_changes_when_a_recorded_field_changes(desktop: DesiredState) -> None:
    vm = desktop.vms["uivm"]
    other = DesiredState(vms={"uivm": vm.model_copy(update={"spec": vm.spec.model_copy(update={"start_priority": 1})})})
    assert applied_record(other, "uivm")[1] != applied_record(DesiredState(vms={"uivm": vm}), "uivm")[1]
