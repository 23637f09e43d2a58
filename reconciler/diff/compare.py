"""Field-by-field comparison of one desired spec with what the host shows and the
last-applied record, following the table in `reconciler.diff.fields`.

Pure. Called by `reconciler.diff.vm`, `devices` and `pci`; returns FieldChanges with
manifest paths (`spec.hvm.acpi`), secrets as "(sensitive)", made by a `Leaf` (the
diff passes its context's `shared_leaves()`, which shares equal ones).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from pydantic import BaseModel

from reconciler import vmdata, xenfmt
from reconciler.diff.fields import SENSITIVE, TABLES, field_names, flatten, is_sensitive, plain, set_values
from reconciler.model.common import Kind
from reconciler.plan.changes import FieldChange, Impact


Leaf = Callable[[str, object, object, Impact], FieldChange]
"""Makes the FieldChange of one leaf (path, before, after, impact); secrets are hidden."""


def new_leaf(path: str, before: object, after: object, impact: Impact) -> FieldChange:
    if is_sensitive(path):
        return FieldChange(path, SENSITIVE, SENSITIVE, impact, sensitive=True)
    return FieldChange(path, before, after, impact)


_SCALARS = frozenset({str, int, bool, type(None)})  # exact types whose equal values are alike


def shared_leaves() -> Leaf:
    """A Leaf that hands out one shared FieldChange per distinct leaf, for one diff: a
    1,000-VM diff makes 30k field changes but only ~4k distinct ones (every new disk's
    `spec.discard`...), and a frozen value can be shared. Values are keyed with their
    types (1 == True, but they print apart); other than str/int/bool/None, not kept.
    A closure, not an object with __call__: it is called 30k times per diff."""
    known: dict[tuple[object, ...], FieldChange] = {}

    def leaf(path: str, before: object, after: object, impact: Impact) -> FieldChange:
        old, new = type(before), type(after)
        if old not in _SCALARS or new not in _SCALARS:
            return new_leaf(path, before, after, impact)
        key = (path, old, before, new, after, impact)
        found = known.get(key)
        if found is None:
            found = known[key] = new_leaf(path, before, after, impact)
        return found

    return leaf


Row = tuple[str, str, Impact, str, str]  # key, seen, impact, desired field name, observed field name


@functools.cache
def _rows(kind: Kind, desired: type[BaseModel], observed: type[BaseModel] | None) -> tuple[Row, ...]:
    """The compared rows of the table, in table order, with each side's Python field
    name for the camelCase key ("" where that side has no such field)."""
    want, have = field_names(desired), field_names(observed) if observed is not None else {}
    return tuple((key, rule.seen, rule.impact, want.get(key, ""), have.get(key, ""))
                 for key, rule in TABLES[kind].items() if rule.seen != "identity")


def compare(kind: Kind, desired: BaseModel, observed: BaseModel | None, record: Mapping[str, object] | None,
            impacts: Mapping[str, Impact] | None = None, leaf: Leaf = new_leaf) -> list[FieldChange]:
    """Every leaf that differs, in table order. `impacts` overrides a field's impact
    class where it depends on the values (memory beyond the running static-max).

    The host's value of a `host` field, of an `if-shown` field the observer set, else
    the last-applied record's value of an `if-shown` or `record` field; a field with
    none of these is not comparable. Values are compared as plain JSON data; the
    models are dumped only when some field's own values differ (equal values dump
    to equal data), which on a converged host is almost never."""
    want_values = vars(desired)  # pydantic keeps field values in __dict__
    have_values: dict[str, object] | None = None
    set_names: set[str] = set()
    if observed is not None:
        have_values, set_names = vars(observed), observed.model_fields_set
    want: dict[str, object] | None = None
    have: dict[str, object] | None = None
    changes: list[FieldChange] = []
    rows = _rows(kind, type(desired), type(observed) if observed is not None else None)
    for key, seen, impact, want_name, have_name in rows:
        if have_values is not None and (seen == "host" or (seen == "if-shown" and have_name in set_names)):
            recorded = False
            current = have_values.get(have_name)
        elif seen != "host" and record is not None and key in record:
            recorded = True
            current = record[key]
        else:
            continue
        target = want_values.get(want_name)
        if current == target or _alike(kind, key, current, target):
            continue
        if want is None:
            want = _plain_dict(desired)
        if not recorded:
            if have is None:
                have = _plain_dict(observed)
            current = have.get(key)
        target = want.get(key)
        if kind == "NIC" and key == "ethtool":
            current, target = _ethtool_pair(current, target)
        if current == target or _alike(kind, key, current, target):
            continue
        if impacts is not None:
            impact = impacts.get(key, impact)
        changes.extend(leaf_changes(f"spec.{key}", current, target, impact, leaf))
    return changes


def _plain_dict(model: BaseModel | None) -> dict[str, object]:
    data = plain(model)
    assert isinstance(data, dict)
    return data


_SCRIPTS: dict[Kind, str] = {"Disk": xenfmt.DISK_SCRIPT, "NIC": xenfmt.NIC_SCRIPT}


def _alike(kind: Kind, key: str, current: object, target: object) -> bool:
    """Different values that are no change (these fields are strings, spelled the same
    in the model and as plain data)."""
    if kind == "VM" and key == "xenstoreData" and isinstance(current, dict) and isinstance(target, dict):
        return vmdata.alike(current, target)  # an empty key with keys below it shows as a directory
    if key == "script" and kind in _SCRIPTS:
        return (current or _SCRIPTS[kind]) == (target or _SCRIPTS[kind])  # unset: the one libxl writes
    if kind != "NIC":
        return False
    if key == "ethtool":
        have, want = _ethtool_pair(current, target)
        return have == want
    if (key == "mac" and target == "auto") or (key == "type" and target is None):
        return True  # type unset: libxl's default for the guest (ioemu on HVM, else vif), what the host shows
    return key == "rate" and _normal_rate(current) == _normal_rate(target)


def _ethtool_pair(current: object, target: object) -> tuple[dict[str, object], dict[str, object]]:
    """(observed, desired) ethtool settings, both limited to the keys the manifest sets:
    a key it leaves unset is the host's to choose (every interface reports them all)."""
    want = {k: v for k, v in _as_dict(target).items() if v is not None}
    have = _as_dict(current)
    return {k: have.get(k) for k in want}, want


def _as_dict(value: object) -> dict[str, object]:
    if isinstance(value, BaseModel):
        data = plain(value)
        return data if isinstance(data, dict) else {}
    return dict(value) if isinstance(value, dict) else {}


def _normal_rate(value: object) -> object:
    """Spellings that mean the same to Xen compare equal: a NIC rate by the
    `<bytes>,<usecs>` pair netback gets (`10Mb/s` == `1250KB/s`)."""
    if isinstance(value, str):
        try:
            return xenfmt.rate_to_xenstore(value)
        except ValueError:
            return value
    return value


def leaf_changes(path: str, before: object, after: object, impact: Impact, leaf: Leaf = new_leaf) -> list[FieldChange]:
    """FieldChanges for the leaves of two values that differ (nested maps flattened)."""
    if not isinstance(before, dict) and not isinstance(after, dict):  # one leaf at most
        a = None if before == [] else before
        b = None if after == [] else after
        return [] if a == b else [leaf(path, a, b, impact)]
    old, new = flatten(path, before), flatten(path, after)
    out: list[FieldChange] = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a != b:
            out.append(leaf(name, a, b, impact))
    return out


def created(kind: Kind, desired: BaseModel, leaf: Leaf = new_leaf) -> tuple[FieldChange, ...]:
    """The fields of a resource being created: every set desired value, before None."""
    out: list[FieldChange] = []
    for key, value in set_values(desired).items():
        if isinstance(value, dict):
            flat = flatten(f"spec.{key}", value)
            out += [leaf(name, None, flat[name], "live") for name in sorted(flat)]
        elif value != []:
            out.append(leaf(f"spec.{key}", None, value, "live"))
    return tuple(out)
