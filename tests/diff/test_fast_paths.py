"""The diff's fast paths give what the plain definitions give: leaf comparison of
nested values, the fields of a created resource, field-by-field comparison (which
dumps the models only when their values differ) and the v4v parse memo. The
reference functions here are the straightforward definitions (dump both sides,
flatten, compare every leaf); generated values and the example manifests are real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from reconciler import v4v, xenfmt
from reconciler.diff.applied import applied_record
from reconciler.diff.compare import compare, created, leaf_changes, new_leaf, shared_leaves
from reconciler.diff.firewall import RunningVM, entry_key, entry_text, rule_entries, rule_keys
from reconciler.diff.fields import NOT_FIELDS, SENSITIVE, TABLES, is_sensitive, plain, shown
from reconciler.loader import load_or_raise
from reconciler.model import DesiredState, ObservedState
from reconciler.model.common import Kind
from reconciler.model.host import FirewallEntry
from reconciler.plan.changes import FieldChange, Impact

ROOT = Path(__file__).resolve().parents[2]


def ref_flatten(prefix: str, value: object) -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(ref_flatten(f"{prefix}.{key}", item))
        return out
    if value is None or value == []:
        return {}
    return {prefix: value}


def ref_leaf_changes(path: str, before: object, after: object, impact: Impact) -> list[FieldChange]:
    old, new = ref_flatten(path, before), ref_flatten(path, after)
    out: list[FieldChange] = []
    for leaf in sorted(set(old) | set(new)):
        a, b = old.get(leaf), new.get(leaf)
        if a == b:
            continue
        if leaf.rsplit(".", 1)[-1] == "vncPassword":
            out.append(FieldChange(leaf, SENSITIVE, SENSITIVE, impact, sensitive=True))
        else:
            out.append(FieldChange(leaf, a, b, impact))
    return out


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "a", "b", "10Mb/s"]),
                    st.just([]), st.lists(st.integers(0, 2), max_size=2))
KEYS = st.sampled_from(["a", "b", "a.b", "vncPassword", "acpi"])
VALUES = st.recursive(SCALARS, lambda inner: st.dictionaries(KEYS, inner, max_size=3), max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(VALUES, VALUES)
def test_leaf_changes_are_the_flattened_leaves_that_differ(before: Any, after: Any) -> None:
    assert leaf_changes("spec.x", before, after, "restart") == ref_leaf_changes("spec.x", before, after, "restart")
    assert leaf_changes("spec.display", before, None, "live") == ref_leaf_changes("spec.display", before, None, "live")


@pytest.mark.parametrize("example", ["examples/openxt-desktop", "examples/server-host", "manifests"])
def test_created_lists_every_set_leaf_of_every_resource(example: str) -> None:
    desired = load_or_raise([str(ROOT / example)])
    kinds: list[tuple[Kind, Any]] = [("VM", desired.vms), ("Disk", desired.disks), ("NIC", desired.nics),
                                     ("PCIPassthrough", desired.pci)]
    count = resources = 0
    for kind, table in kinds:
        for resource in table.values():
            resources += 1
            values = plain(resource.spec)
            assert isinstance(values, dict)
            expected = [f for key, value in values.items() if key not in NOT_FIELDS
                        for f in ref_leaf_changes(f"spec.{key}", None, value, "live")]
            assert list(created(kind, resource.spec)) == expected
            count += len(expected)
    assert count > resources > 0  # every resource has at least its required fields


def test_leaves_share_equal_field_changes_of_one_type_only() -> None:
    leaf = shared_leaves()
    first = leaf("spec.vcpus", None, 1, "live")
    assert leaf("spec.vcpus", None, 1, "live") is first
    assert leaf("spec.vcpus", None, True, "live") == FieldChange("spec.vcpus", None, True, "live")
    assert leaf("spec.vcpus", None, True, "live").after is True and first.after == 1 and first.after is not True
    assert leaf("spec.vcpus", None, 1, "restart").impact == "restart"
    assert leaf("spec.devices", None, [1], "live") == new_leaf("spec.devices", None, [1], "live")
    assert leaf("spec.x", None, 0.0, "live").after == 0.0 and str(leaf("spec.x", None, -0.0, "live").after) == "-0.0"
    hidden = leaf("spec.display.vncPassword", "sha256:a", "sha256:b", "restart")
    assert hidden == FieldChange("spec.display.vncPassword", SENSITIVE, SENSITIVE, "restart", sensitive=True)


def test_a_secret_is_sensitive_at_any_depth() -> None:
    assert is_sensitive("spec.display.vncPassword") and is_sensitive("vncPassword")
    assert not is_sensitive("spec.display.vncListen")


def test_a_rule_is_parsed_once_and_shared_by_its_spellings() -> None:
    written = "  myself->dom-name=fast-path-vm : 80 "
    canonical = v4v.canonical(written)  # what the loader stores in the model
    assert canonical == "myself -> dom-name=fast-path-vm:80"
    assert v4v.parse_rule(canonical) is v4v.parse_rule(written)
    assert v4v.parse_rule(canonical) == v4v.Rule(v4v.Endpoint(v4v.Domain("myself")),
                                                 v4v.Endpoint(v4v.Domain("dom-name", "fast-path-vm"), 80))


def test_firewall_keys_are_the_entries_fields(examples: dict[str, DesiredState], make_mirror: Any) -> None:
    desired = examples["openxt-desktop"]
    running = {name: RunningVM(info.domid, desired.vms[name].spec.type, info.uuid)
               for name, info in make_mirror(desired).domains.items() if name in desired.vms}
    keys = [rule_keys(rule, running) for rule in desired.v4v_rules.values()]
    assert [frozenset(map(entry_key, rule_entries(rule, running))) for rule in desired.v4v_rules.values()] == keys
    assert sum(map(len, keys)) > 5
    assert entry_text(frozenset().union(*keys)) == entry_text(FirewallEntry(*k) for k in frozenset().union(*keys))


def test_an_invalid_rule_fails_every_time() -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="numeric domid '7'"):
            v4v.parse_rule("myself -> 7")


def ref_compare(kind: Kind, desired: BaseModel, observed: BaseModel | None, record: dict[str, Any] | None,
                impacts: dict[str, Impact] | None = None) -> list[FieldChange]:
    """The field table applied to both sides dumped whole."""
    want, have = plain(desired), plain(observed) if observed is not None else None
    assert isinstance(want, dict) and (have is None or isinstance(have, dict))
    seen_keys = shown(observed) if observed is not None else frozenset()
    out: list[FieldChange] = []
    for key, rule in TABLES[kind].items():
        if rule.seen in ("host", "if-shown") and have is not None and (rule.seen == "host" or key in seen_keys):
            current = have.get(key)
        elif rule.seen in ("if-shown", "record") and record is not None and key in record:
            current = record[key]
        else:
            continue
        target = want.get(key)
        if kind == "NIC" and ((key == "mac" and target == "auto") or (key == "type" and target is None)):
            continue
        if kind in ("Disk", "NIC") and key == "script":
            default = xenfmt.DISK_SCRIPT if kind == "Disk" else xenfmt.NIC_SCRIPT
            if (current or default) == (target or default):
                continue
        if kind == "NIC" and key == "ethtool":  # only the keys the manifest sets
            target = {k: v for k, v in (target if isinstance(target, dict) else {}).items() if v is not None}
            current = {k: (current if isinstance(current, dict) else {}).get(k) for k in target}

        def normal(value: object) -> object:
            if kind == "NIC" and key == "rate" and isinstance(value, str):
                try:
                    return xenfmt.rate_to_xenstore(value)
                except ValueError:
                    return value
            return value

        if normal(current) == normal(target):
            continue
        out += ref_leaf_changes(f"spec.{key}", current, target, (impacts or {}).get(key, rule.impact))
    return out


OTHER = st.sampled_from([None, True, False, 0, 1, 1.0, 2048, "", "x", "auto", "vif", "10Mb/s", "1250KB/s", [], ["a"],
                         {}, {"acpi": True}, {"type": "none", "vncListen": "127.0.0.1", "vncPassword": None, "pvVnc": True}])


def pairs(desired: DesiredState, observed: ObservedState) -> list[tuple[Kind, BaseModel, BaseModel, str, str]]:
    """(kind, desired spec, observed spec, vm, manifest name) of every resource both sides show."""
    out: list[tuple[Kind, BaseModel, BaseModel, str, str]] = []
    for name, vm in desired.vms.items():
        if name in observed.vms:
            out.append(("VM", vm.spec, observed.vms[name].spec, name, name))
    for name, disk in desired.disks.items():
        seen = observed.disks.get(f"{disk.spec.vm}-disk-{xenfmt.vdev_to_devid(disk.spec.vdev)}")
        if seen is not None:
            out.append(("Disk", disk.spec, seen.spec, disk.spec.vm, name))
    for name, nic in desired.nics.items():
        found = observed.nics.get(f"{nic.spec.vm}-nic-{nic.spec.index}")
        if found is not None:
            out.append(("NIC", nic.spec, found.spec, nic.spec.vm, name))
    for name, rule in desired.pci.items():
        out += [("PCIPassthrough", rule.spec, p.spec, rule.spec.vm, name) for p in observed.pci.values()
                if p.spec.vm == rule.spec.vm and p.spec.bdf == rule.spec.bdf]
    return out


@pytest.mark.parametrize("example", ["openxt-desktop", "server-host", "manifests"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_compare_is_the_table_on_both_sides_dumped(example: str, data: st.DataObject, examples: dict[str, DesiredState],
                                                   make_mirror: Any) -> None:
    desired = examples[example]
    found = pairs(desired, make_mirror(desired))
    assert found
    kind, want, have, vm, name = data.draw(st.sampled_from(found))
    table = sorted(k for k, r in TABLES[kind].items() if r.seen != "identity")
    record_text = json.loads(applied_record(desired, vm)[0])
    record = record_text["vm"] if kind == "VM" else record_text[{"Disk": "disks", "NIC": "nics"}.get(kind, "pci")].get(name)
    names = {info.alias or n: n for n, info in type(have).model_fields.items()}
    for key in data.draw(st.lists(st.sampled_from(table), max_size=3)):  # drift on the host (any type)
        if key in names:
            have = have.model_copy(update={names[key]: data.draw(OTHER)})
    if record is not None:
        record = dict(record)
        for key in data.draw(st.lists(st.sampled_from(table), max_size=3)):  # and in the record
            record[key] = data.draw(OTHER)
    record = data.draw(st.sampled_from([record, None]))
    impacts: dict[str, Impact] | None = data.draw(st.sampled_from([None, {"memory": "restart"}]))
    assert compare(kind, want, have, record, impacts) == ref_compare(kind, want, have, record, impacts)
    assert compare(kind, want, None, record) == ref_compare(kind, want, None, record)
