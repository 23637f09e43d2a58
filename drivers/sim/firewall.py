"""The simulated v4v firewall table, as `viptables` keeps it (openxt.md 4.2-4.3).

Stage: simulated host. A list of `FirewallEntry` in match order; it starts as xenmgr's
`reworkRules` leaves it (dom0<->dom0 ACCEPT, then REJECT: default deny). Insert at a
1-based position, insert many at the top (one call: a VM start's batch), append,
delete many (a stopped VM's entries), delete the first equal entry (an absent entry is an error,
as `viptables -D` reports), list. Like viptables it holds any list: copies of an entry,
entries below the REJECT, no REJECT at all; keeping its shape is the reconciler's job. Used by `drivers.sim.host`.
"""

from __future__ import annotations

import builtins
from collections import Counter
from collections.abc import Iterable
from typing import Any

from reconciler.errors import TerminalHostError
from reconciler.model.host import FirewallEntry

INITIAL: tuple[FirewallEntry, ...] = (
    FirewallEntry(dom_in=0, dom_out=0, target="ACCEPT"),  # dom0<->dom0 for the v4v proxy
    FirewallEntry(target="REJECT"),  # default deny
)
_FIELDS = ("dom_in", "dom_out", "port_in", "port_out")


class FirewallTable:
    def __init__(self, entries: Iterable[FirewallEntry] = INITIAL) -> None:
        self.entries: list[FirewallEntry] = list(entries)

    def list(self) -> list[FirewallEntry]:
        return list(self.entries)

    def insert(self, entry: FirewallEntry, position: int = 1) -> None:
        """`viptables -I POSITION ...`: 1 is the top; one past the end appends."""
        if not 1 <= position <= len(self.entries) + 1:
            raise TerminalHostError(
                f"viptables: index {position} is out of range; the table has {len(self.entries)} "
                f"entries, so insert at 1..{len(self.entries) + 1}"
            )
        self.entries.insert(position - 1, entry)

    def insert_many(self, entries: Iterable[FirewallEntry]) -> None:
        """`viptables -I 1 ...` of each entry in order, at once: the last ends on top."""
        self.entries[0:0] = reversed(list(entries))

    def append(self, entry: FirewallEntry) -> None:
        """`viptables -A ...`: below every entry."""
        self.entries.append(entry)

    def delete(self, entry: FirewallEntry) -> None:
        """`viptables -D ...`: the first equal entry goes."""
        try:
            self.entries.remove(entry)
        except ValueError:
            raise TerminalHostError(f"viptables: no entry `{entry}` in the table to delete; list it with `sim fw`") from None

    def delete_many(self, entries: Iterable[FirewallEntry]) -> None:
        """`delete` of each entry at once (the first equal copy each), in one pass; an
        entry the table does not hold (as many times as asked) fails the whole call."""
        going = Counter(entries)
        held = Counter(e for e in self.entries if e in going)
        for entry, count in going.items():
            if held[entry] < count:
                raise TerminalHostError(f"viptables: no entry `{entry}` in the table to delete; list it with `sim fw`")
        kept: list[FirewallEntry] = []
        for entry in self.entries:
            if going[entry] > 0:
                going[entry] -= 1
            else:
                kept.append(entry)
        self.entries = kept

    def dump(self) -> "builtins.list[dict[str, Any]]":
        return [entry_to_json(e) for e in self.entries]


def entry_to_json(entry: FirewallEntry) -> dict[str, Any]:
    return {**{f: getattr(entry, f) for f in _FIELDS}, "target": entry.target}


def entry_from_json(doc: Any) -> FirewallEntry:
    """A FirewallEntry from its JSON form; ValueError says what is wrong."""
    if not isinstance(doc, dict) or set(doc) - {*_FIELDS, "target"}:
        raise ValueError(f"expected a firewall entry object, found {doc!r}")
    values: dict[str, int | None] = {}
    for name in _FIELDS:
        value = doc.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"firewall entry {name} must be a non-negative integer or null, found {value!r}")
        values[name] = value
    target = doc.get("target", "ACCEPT")
    if target not in ("ACCEPT", "REJECT"):
        raise ValueError(f"firewall entry target must be ACCEPT or REJECT, found {target!r}")
    return FirewallEntry(values["dom_in"], values["dom_out"], values["port_in"], values["port_out"], target)
