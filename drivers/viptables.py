"""ViptablesFirewall: the FirewallPort on an OpenXT host, through the `viptables` command.

Stage: driver (v4v firewall). Called by observe/execute through `reconciler.ports.FirewallPort`.
Commands (openxt.md 4.2-4.3): `viptables -L`, `viptables -I <pos> <rule>`, `viptables -A <rule>`,
`viptables -D <rule>` with rule = `[--dom-in N] [--dom-out N] [--port-in N] [--port-out N] -j T`.
viptables has no batch syntax (openxt.md names none): `insert_many` runs one `-I 1` per
entry, in order, and stops at the first that fails (those before it are in).

Deletes go by position (`viptables -D<n>`, the attached form: `-D <n>` would leave the
number as a stray argument and delete by rule), never by rule: the hypervisor's
`v4v_viptables_del` compares a rule's endpoints only, not its target, so
`viptables -D -j ACCEPT` (a foreign `* -> *` ACCEPT) deletes the first `* -> *` entry,
which may be the default REJECT, and `-D -j REJECT` may delete a wildcard ACCEPT above
it: v4v is then open (its default, with no entry matching, is ACCEPT). `delete` and
`delete_many` list the table, find each entry's own position (target included: the
port's "first equal entry") and delete from the bottom up so positions do not shift.
Every change runs under one lock, so this process's own inserts cannot move an entry
between the listing and its delete (another writer, xenmgr, could: own the table).

Assumed `-L` output (openxt.md gives argument shapes only; this is the format of
libv4v's `v4v_viptables_list` in OpenXT's v4v tree): one rule per line,
    `<n> : <ACCEPT|REJECT> <dom-in>:<port-in> -> <dom-out>:<port-out>`
e.g. `1 : ACCEPT 3:* -> 0:5555`, with `*` for any. The parser is tolerant: the
`<n> :` prefix is optional, spacing and target case are free, `-1` and 32756
(DOMID_INVALID) also mean any, blank lines and `Chain`/`num` headers are skipped.
Lines it still cannot read are reported: `list()` raises naming them (a partly read
table would make the diff re-insert or miss rules), or, with `strict=False`, logs them.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from drivers.xl.command import run_tool
from reconciler.errors import TerminalHostError
from reconciler.model.host import FirewallEntry, FirewallTarget

log = logging.getLogger(__name__)

DOMID_INVALID = 0x7FF4  # what libv4v stores for "any domain"
_ANY = {"*", "-1", str(DOMID_INVALID)}
_ENDPOINT = r"(?P<{0}dom>\*|-?\d+)\s*:\s*(?P<{0}port>\*|-?\d+)"
_LINE = re.compile(
    r"^\s*(?:\d+\s*:\s*)?(?P<target>ACCEPT|REJECT)\s+"
    + _ENDPOINT.format("src") + r"\s*->\s*" + _ENDPOINT.format("dst") + r"\s*$",
    re.IGNORECASE,
)
_HEADER = re.compile(r"^\s*(chain\b|num\b|target\b)", re.IGNORECASE)


@dataclass(frozen=True)
class ViptablesSettings:
    executable: str = "viptables"  # PATH lookup; OpenXT installs /usr/bin/viptables
    timeout: float = 10.0  # seconds per command: each is one hypercall, anything slower is stuck
    strict: bool = True  # unreadable `-L` lines fail list(); False: log them and skip


def _field(text: str) -> int | None:
    return None if text in _ANY else int(text)


def parse_entry(line: str) -> FirewallEntry | None:
    """One `-L` line as a FirewallEntry, or None if it is not a rule line. Pure."""
    match = _LINE.match(line)
    if match is None:
        return None
    target: FirewallTarget = "ACCEPT" if match["target"].upper() == "ACCEPT" else "REJECT"
    return FirewallEntry(
        dom_in=_field(match["srcdom"]), dom_out=_field(match["dstdom"]),
        port_in=_field(match["srcport"]), port_out=_field(match["dstport"]), target=target,
    )


def parse_listing(text: str) -> tuple[list[FirewallEntry], list[tuple[int, str]]]:
    """`viptables -L` output -> (entries in order, unreadable (line number, line)). Pure."""
    entries: list[FirewallEntry] = []
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or _HEADER.match(line):
            continue
        entry = parse_entry(line)
        if entry is None:
            problems.append((number, line.strip()))
        else:
            entries.append(entry)
    return entries, problems


class ViptablesFirewall:
    """`viptables` behind FirewallPort."""

    def __init__(self, executable: str | None = None, settings: ViptablesSettings | None = None) -> None:
        base = settings or ViptablesSettings()
        self.settings = base if executable is None else replace(base, executable=executable)
        self._changing = asyncio.Lock()  # one change at a time: positions stay true from -L to -D<n>

    async def _run(self, *args: str) -> str:
        return await run_tool([self.settings.executable, *args], timeout=self.settings.timeout)

    async def list(self) -> builtins.list[FirewallEntry]:
        entries, problems = parse_listing(await self._run("-L"))
        if problems:
            shown = "; ".join(f"line {n}: {text!r}" for n, text in problems[:3])
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            message = (f"cannot read {len(problems)} line(s) of `viptables -L`: {shown}{more}; "
                       "expected '<n> : ACCEPT|REJECT <dom>:<port> -> <dom>:<port>'")
            if self.settings.strict:
                raise TerminalHostError(message)
            log.warning("%s", message)
        return entries

    async def insert(self, entry: FirewallEntry, position: int = 1) -> None:
        if position < 1:
            raise TerminalHostError(f"viptables positions start at 1, got {position}")
        async with self._changing:
            await self._run("-I", str(position), *entry.argv())

    async def insert_many(self, entries: Sequence[FirewallEntry]) -> None:
        """One `viptables -I 1 <rule>` per entry, in order: the tool takes one rule per
        call, so a batch here saves the caller's round trips, not the host's."""
        async with self._changing:
            for entry in entries:
                await self._run("-I", "1", *entry.argv())

    async def append(self, entry: FirewallEntry) -> None:
        async with self._changing:
            await self._run("-A", *entry.argv())

    async def delete(self, entry: FirewallEntry) -> None:
        """The first equal entry, by its position (see the module docstring); an absent
        entry is an error (libv4v's delete reports nothing for one)."""
        await self.delete_many([entry])

    async def delete_many(self, entries: Sequence[FirewallEntry]) -> None:
        """One `-L` to find every entry (the first copies, in table order; all must be
        there or nothing is deleted), then one `viptables -D<n>` per entry, the lowest
        in the table first, so the positions still to delete do not move."""
        async with self._changing:
            table = await self.list()
            positions: list[int] = []
            for entry, count in Counter(entries).items():
                found = [n for n, held in enumerate(table, start=1) if held == entry][:count]
                if len(found) < count:
                    raise TerminalHostError(f"no v4v firewall rule `{entry}` to delete (viptables -L does not list it)")
                positions += found
            for position in sorted(positions, reverse=True):
                await self._run(f"-D{position}")
