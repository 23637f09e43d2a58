"""The v4v firewall table as a whole: what viptables holds that no desired rule derives.

Pure. The reconciler owns the table (DESIGN 7). Besides the entries the rules resolve to
(`reconciler.diff.rules`) it holds only xenmgr's baseline (openxt.md 4.3): the dom0<->dom0
ACCEPT once, and the default `-j REJECT` once and last. Everything else is drift: foreign
entries, entries of domains that died, second copies. The table is compared as an
ordered multiset, because `viptables -D` deletes one copy (the first equal one) and an
entry below the default REJECT never matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.diff.firewall import EntryKey, entry_key
from reconciler.model.host import FirewallEntry

DEFAULT: EntryKey = entry_key(FirewallEntry(target="REJECT"))  # default deny, the last entry
DOM0: EntryKey = entry_key(FirewallEntry(0, 0))  # dom0<->dom0, for the v4v proxy
DEFAULT_TEXT = str(FirewallEntry(target="REJECT"))
DEFAULT_AFTER = f"{DEFAULT_TEXT}, last"


@dataclass(frozen=True)
class TableDrift:
    """`foreign`: the copies to delete, in table order (one key per copy); `below`: the
    foreign keys with a copy under the last default REJECT; `default`: None when the
    default is once and last, else how it stands (`""` when it is missing)."""

    foreign: tuple[EntryKey, ...]
    below: frozenset[EntryKey]
    default: str | None

    def __bool__(self) -> bool:
        return bool(self.foreign) or self.default is not None


def table_drift(table: Sequence[EntryKey], explained: frozenset[EntryKey]) -> TableDrift:
    """Compare the listed table with the entries the desired rules explain. The first
    copy of an explained (or baseline) entry is kept; every other entry but the default
    REJECT is foreign. A kept entry under the last REJECT is shadowed: the REJECT moves."""
    last = max((i for i, key in enumerate(table) if key == DEFAULT), default=None)
    kept: set[EntryKey] = set()
    foreign: list[EntryKey] = []
    below: set[EntryKey] = set()
    shadowed = False
    for position, key in enumerate(table):
        if key == DEFAULT:
            continue  # judged as a whole below
        under = last is not None and position > last
        if (key in explained or key == DOM0) and key not in kept:
            kept.add(key)
            shadowed |= under
        else:
            foreign.append(key)
            if under:
                below.add(key)
    positions = [i + 1 for i, key in enumerate(table) if key == DEFAULT]
    default: str | None = None
    if last is None:
        default = ""
    elif shadowed or len(positions) > 1:
        default = f"{DEFAULT_TEXT} at {', '.join(map(str, positions))} of {len(table)}"
    return TableDrift(tuple(foreign), frozenset(below), default)
