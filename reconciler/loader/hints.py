"""Hints for misspelt words ("did you mean"): the closest valid field, enum value, kind or
VM name.

Pure. `close_match` ignores case first (`Vm` is `VM`), then asks difflib for a ratio of
at least 0.65: one letter wrong in three (`hvn` finds `hvm`, 0.67), a swap (`memroy`,
0.83) or a cut word (`maxmem` finds `maxMemory`, 0.8) pass, while `namespace` -> `name`
and `shared` -> `discard` (0.62 each: wrong guesses) do not; then the valid list is shown.
Used by `documents` (unknown fields, enum values, kinds) and `partial` / `checks` (VM
names in references).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

CUTOFF = 0.65  # difflib's default 0.6 suggests `name` for `namespace`


def close_match(word: str, choices: Iterable[str]) -> str | None:
    """The valid choice `word` most likely misspells, or None when none is close."""
    folded: dict[str, str] = {}
    for choice in choices:
        folded.setdefault(choice.casefold(), choice)
    same_but_case = folded.get(word.casefold())
    if same_but_case is not None:
        return same_but_case
    hits = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=CUTOFF)
    return folded[hits[0]] if hits else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """The hint " (did you mean 'X'?)" for the closest choice, else ''; the wording of rpc rule
    and VM property errors."""
    match = close_match(word, choices)
    return f" (did you mean '{match}'?)" if match is not None and match != word else ""


def missing_vm(field: str, target: str, names: Iterable[str]) -> str:
    """A reference to a VM no manifest defines: the closest name if one is close, else
    every VM name (the same words wherever a reference is checked)."""
    names = sorted(set(names))
    hint = did_you_mean(target, names)
    if hint:
        return f"{field}: no VM named '{target}'{hint}"
    return f"{field}: no VM named '{target}' (VMs: {', '.join(names) or 'none defined'})"
