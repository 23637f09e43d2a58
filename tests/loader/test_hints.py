"""`hints.close_match`: which misspellings find their word, and which guesses are refused."""

from __future__ import annotations

import pytest

from reconciler.loader.hints import close_match, did_you_mean, missing_vm

SPEC = ("virt", "memory", "maxMemory", "vcpus", "kernel", "disks", "nics")
DISK = ("target", "format", "vdev", "access", "devtype", "backendVM", "script", "discard", "name")


@pytest.mark.parametrize(
    ("word", "choices", "expected"),
    [
        ("memroy", SPEC, "memory"),  # two letters swapped
        ("maxmem", SPEC, "maxMemory"),  # a cut word, case ignored
        ("Memory", SPEC, "memory"),  # only the case differs
        ("hvn", ("pv", "pvh", "hvm"), "hvm"),  # one letter in three
        ("Vm", ("VM", "Disk", "NIC"), "VM"),
        ("shared", DISK, None),  # difflib's 0.6 would say 'discard'
        ("namespace", ("name", "labels"), None),  # ... and 'name'
        ("annotations", ("apiVersion", "kind", "metadata", "spec"), None),
    ],
)
def test_close_match(word: str, choices: tuple[str, ...], expected: str | None) -> None:
    assert close_match(word, choices) == expected


def test_did_you_mean_is_empty_for_no_match() -> None:
    assert did_you_mean("memroy", SPEC) == " (did you mean 'memory'?)"
    assert did_you_mean("zzz", SPEC) == ""


def test_missing_vm_lists_names_only_without_a_close_one() -> None:
    assert missing_vm("vm", "dbb", ["web", "db"]) == "vm: no VM named 'dbb' (did you mean 'db'?)"
    assert missing_vm("vm", "nope", ["web", "db"]) == "vm: no VM named 'nope' (VMs: db, web)"
    assert missing_vm("vm", "nope", []) == "vm: no VM named 'nope' (VMs: none defined)"
