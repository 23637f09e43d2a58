"""The vm-data/ subtree rules shared by observe, diff and execute (reconciler.vmdata)."""

from __future__ import annotations

import pytest

from reconciler import vmdata


def test_keys_are_nodes_with_a_value_or_without_children() -> None:
    nodes = {"vm-data": "", "vm-data/a": "1", "vm-data/dir": "", "vm-data/dir/c": "3", "vm-data/empty": ""}
    assert vmdata.keys(nodes) == {"vm-data/a": "1", "vm-data/dir/c": "3", "vm-data/empty": ""}


@pytest.mark.parametrize(("have", "want", "same"), [
    ({"vm-data/a": "1"}, {"vm-data/a": "1"}, True),
    ({"vm-data/a": "x"}, {"vm-data/a": "1"}, False),
    ({"vm-data/a": "1", "vm-data/b": "2"}, {"vm-data/a": "1"}, False),
    # a desired empty key with keys below it is a directory: xenstore shows no key there
    ({"vm-data/d/e": "1"}, {"vm-data/d": "", "vm-data/d/e": "1"}, True),
])
def test_alike(have: dict[str, str], want: dict[str, str], same: bool) -> None:
    assert vmdata.alike(have, want) is same


def test_sync_removes_the_parents_a_removed_key_leaves_empty() -> None:
    """Without it `vm-data/openxt` stayed as an empty leaf, read back as a key "": the
    plan after apply showed `- spec.xenstoreData.vm-data/openxt` (found by
    tests/convergence/test_edit.py)."""
    have = {"vm-data/openxt/os": "windows", "vm-data/openxt/deep/x": "1", "vm-data/n/keep": "k", "vm-data/n/go": "g"}
    removes, writes = vmdata.sync(have, {"vm-data/n/keep": "k"})
    assert (removes, writes) == (["vm-data/n/go", "vm-data/openxt"], {})


def test_sync_removes_extra_keys_writes_what_differs_and_keeps_the_rest() -> None:
    have = {"vm-data/a": "tampered", "vm-data/keep": "k", "vm-data/extra": "x", "vm-data/d": "v", "vm-data/d/e": "1"}
    want = {"vm-data/a": "1", "vm-data/keep": "k", "vm-data/b": "2", "vm-data/d/e": "1"}
    removes, writes = vmdata.sync(have, want)
    assert removes == ["vm-data/extra"]  # vm-data/d holds a desired key: emptied, not removed with it
    assert writes == {"vm-data/a": "1", "vm-data/b": "2", "vm-data/d": ""}
