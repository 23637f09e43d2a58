"""The diff's fast paths give what the plain definitions give: leaf comparison of
nested values, the fields of a created resource, and the v4v parse memo. The
reference functions here are the straightforward definitions (flatten both sides,
compare every leaf); generated values and the example manifests are real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import v4v
from reconciler.diff.compare import Leaves, created, leaf_changes, new_leaf
from reconciler.diff.fields import NOT_FIELDS, SENSITIVE, is_sensitive, plain
from reconciler.loader import load_or_raise
from reconciler.model.common import Kind
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
    leaf = Leaves()
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


def test_an_invalid_rule_fails_every_time() -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="numeric domid '7'"):
            v4v.parse_rule("myself -> 7")
