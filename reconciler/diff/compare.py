"""Field-by-field comparison of one desired spec with what the host shows and the
last-applied record, following the table in `reconciler.diff.fields`.

Pure. Called by `reconciler.diff.vm` and `reconciler.diff.devices`; returns
FieldChanges with manifest paths (`spec.hvm.acpi`), secrets as "(sensitive)".
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel

from reconciler import xenfmt
from reconciler.diff.fields import NOT_FIELDS, SENSITIVE, TABLES, FieldRule, flatten, is_sensitive, plain, shown
from reconciler.model.common import Kind
from reconciler.plan.changes import FieldChange, Impact


def _normal(kind: Kind, key: str, value: object) -> object:
    """Spellings that mean the same to Xen compare equal: a NIC rate by the
    `<bytes>,<usecs>` pair netback gets (`10Mb/s` == `1250KB/s`)."""
    if kind == "NIC" and key == "rate" and isinstance(value, str):
        try:
            return xenfmt.rate_to_xenstore(value)
        except ValueError:
            return value
    return value


def _current(key: str, rule: FieldRule, observed: Mapping[str, object] | None,
             seen_keys: frozenset[str], record: Mapping[str, object] | None) -> tuple[bool, object]:
    """(comparable, value) of one top-level field on the host side."""
    if rule.seen == "host" and observed is not None:
        return True, observed.get(key)
    if rule.seen == "if-shown" and observed is not None and key in seen_keys:
        return True, observed.get(key)
    if rule.seen in ("if-shown", "record") and record is not None and key in record:
        return True, record[key]
    return False, None


def compare(kind: Kind, desired: BaseModel, observed: BaseModel | None,
            record: Mapping[str, object] | None, impacts: Mapping[str, Impact] | None = None) -> list[FieldChange]:
    """Every leaf that differs, in table order. `impacts` overrides a field's impact
    class where it depends on the values (memory beyond the running static-max)."""
    table = TABLES[kind]
    want = plain(desired)
    have = plain(observed) if observed is not None else None
    assert isinstance(want, dict) and (have is None or isinstance(have, dict))
    seen_keys = shown(observed) if observed is not None else frozenset()
    changes: list[FieldChange] = []
    for key, rule in table.items():
        if rule.seen == "identity":
            continue
        comparable, current = _current(key, rule, have, seen_keys, record)
        target = want.get(key)
        if not comparable or (kind == "NIC" and key == "mac" and target == "auto"):
            continue
        if kind == "NIC" and key == "type" and target is None:
            continue  # unset: libxl's default for the guest (ioemu on HVM, else vif), what the host shows
        if _normal(kind, key, current) == _normal(kind, key, target):
            continue
        impact = (impacts or {}).get(key, rule.impact)
        changes.extend(leaf_changes(f"spec.{key}", current, target, impact))
    return changes


def leaf_changes(path: str, before: object, after: object, impact: Impact) -> list[FieldChange]:
    """FieldChanges for the leaves of two values that differ (nested maps flattened)."""
    old, new = flatten(path, before), flatten(path, after)
    out: list[FieldChange] = []
    for leaf in sorted(set(old) | set(new)):
        a, b = old.get(leaf), new.get(leaf)
        if a == b:
            continue
        if is_sensitive(leaf):
            out.append(FieldChange(leaf, SENSITIVE, SENSITIVE, impact, sensitive=True))
        else:
            out.append(FieldChange(leaf, a, b, impact))
    return out


def created(kind: Kind, desired: BaseModel) -> tuple[FieldChange, ...]:
    """The fields of a resource being created: every set desired value, before None."""
    values = plain(desired)
    assert isinstance(values, dict)
    out: list[FieldChange] = []
    for key, value in values.items():
        if key not in NOT_FIELDS:
            out.extend(leaf_changes(f"spec.{key}", None, value, "live"))
    return tuple(out)
