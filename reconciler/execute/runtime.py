"""What the step handlers share during one execution: the ports, the plan's desired
state, the domids known so far, and the locks that keep concurrent steps consistent.

Touches the host through `reconciler.ports.HostPorts` only. Built by
`reconciler.execute.run.execute`; read by the op table in `reconciler.execute.ops`.
Domids come from the host (`list_domains` at start, refreshed on a miss once a step
changed the domains) and from `create` for the domains this run builds, never from the
plan (STYLE 4). The listing is kept current with the run's own creates, pauses and
destroys (replayed onto a listing read meanwhile); a change the run cannot know (a
shutdown, a failed step) drops it, and a listing read across such a change is not kept;
the PCI inventory likewise (`reconciler.execute.pcicopy`). What v4v
rules resolve against (the running set, the table) is read once and kept until a
step may have changed it, so a run stays linear in the number of rules. Reads of the
host (`read`) are retried where they are made, under the run's retry policy: a read
is safe to repeat, and a step of many reads would otherwise rarely get one whole try
through when transient errors are frequent; the step's own retry covers its writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from reconciler.diff.firewall import RuleIndex, RunningIndex, RunningVM
from reconciler.errors import HostError, TerminalHostError
from reconciler.execute.pcicopy import PciCopy
from reconciler.execute.settings import ExecuteSettings
from reconciler.model.host import BUILDING, DomainPower, DomainStatus, FirewallEntry
from reconciler.model.state import DesiredState
from reconciler.plan.steps import Step
from reconciler.ports import HostPorts, Perm, XenstoreOps
from reconciler.retry import retried

LIVE = ("running", "paused")  # powers in which a domain holds devices and firewall entries
T = TypeVar("T")
RECORD = "reconciler"  # /vm/<uuid>/reconciler/{managed,digest,applied/<i>}, written by `record`


class TableCopy:
    """The v4v table as listed, kept current with this run's changes: entries in match
    order, copies included (a `deque`: inserts go on top), and a count per entry."""

    def __init__(self, entries: Iterable[FirewallEntry]) -> None:
        self.entries = deque(entries)
        self.counts = Counter(self.entries)

    def __contains__(self, entry: FirewallEntry) -> bool:
        return self.counts[entry] > 0

    def __len__(self) -> int:
        return len(self.entries)

    def last(self) -> FirewallEntry | None:
        return self.entries[-1] if self.entries else None

    def add(self, entry: FirewallEntry, *, top: bool = True) -> None:
        """`viptables -I 1` (top) or an append below everything."""
        if top:
            self.entries.appendleft(entry)
        else:
            self.entries.append(entry)
        self.counts[entry] += 1

    def remove(self, entry: FirewallEntry) -> None:
        """`viptables -D`: the first equal entry goes."""
        self.entries.remove(entry)
        self.counts[entry] -= 1


@dataclass
class Runtime:
    ports: HostPorts
    desired: DesiredState
    settings: ExecuteSettings
    domids: dict[str, int] = field(default_factory=dict)  # VM name -> domid, as last seen
    built: set[str] = field(default_factory=set)  # VMs this run created: ours before `record` ran
    # VMs the plan destroys (stops, restarts): until this run builds one again, its old
    # domain is on its way out and no firewall entry is resolved against it.
    leaving: frozenset[str] = frozenset()
    firewall_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # list-then-insert is one unit
    pci: PciCopy = field(default_factory=PciCopy)  # the PCI inventory, read once, with this run's binds
    # `xl list` as last read plus this run's own changes; None once a step may have
    # changed the domains in a way the run does not know.
    listing: list[DomainStatus] | None = None
    uuids: dict[int, str] = field(default_factory=dict)  # domid -> uuid of every domain seen this run
    _generation: int = 0  # bumped by `domains_changed`: a listing read across it is not kept
    _edits: list[Callable[[list[DomainStatus]], list[DomainStatus]]] = field(default_factory=list)  # this run's changes
    managed_marks: dict[str, tuple[int, bool]] = field(default_factory=dict)  # uuid -> (domid, marker) as read
    # The v4v table as last listed plus this run's own changes; None after a failed change.
    fw_table: TableCopy | None = None
    # Firewall: entries decided under `firewall_lock` and being inserted (deleted) outside
    # it, which a new listing counts in (out); the desired rules by what they name; the
    # index of the running set last resolved against.
    fw_inflight: Counter[FirewallEntry] = field(default_factory=Counter)
    fw_leaving: Counter[FirewallEntry] = field(default_factory=Counter)  # likewise, being deleted
    fw_rules: RuleIndex | None = None
    fw_index: tuple[dict[str, RunningVM], RunningIndex] | None = None
    _running: tuple[list[DomainStatus], dict[str, RunningVM]] | None = None  # `running()` of one listing

    async def read(self, call: Callable[[], Awaitable[T]]) -> T:
        """`await call()`, a read of the host, retried on a transient error."""
        return await retried(self.settings.retry, call)

    async def domains(self) -> list[DomainStatus]:
        """`xl list` now, with the changes this run's steps made while it was read. Kept
        as the run's listing (and its name -> domid table) unless a step changed the
        domains in a way the run cannot replay (`domains_changed`) while it was read: a
        listing taken then may miss that change, and must not stand for the host after it."""
        generation, seen = self._generation, len(self._edits)
        listed = await self.read(self.ports.toolstack.list_domains)
        self.uuids.update((d.domid, d.uuid) for d in listed)  # a domain's uuid never changes
        for edit in self._edits[seen:]:
            listed = edit(listed)
        if generation == self._generation:
            self.domids = {d.name: d.domid for d in listed}
            self.listing = listed
        return listed

    def domains_changed(self) -> None:
        """A step changed the domains, or may have, in a way the run cannot know (a shutdown
        whose guest may stay or go, a step that failed): list them again when needed,
        and do not keep a listing being read right now."""
        self._generation += 1
        self.listing = None

    def built_domain(self, status: DomainStatus) -> None:
        """This run built the domain `status` (so the listing need not be read for it)."""
        self.domids[status.name] = status.domid
        self.uuids[status.domid] = status.uuid
        self._edit(lambda listed: [d for d in listed if d.domid != status.domid] + [status])

    def powered(self, domid: int, power: DomainPower) -> None:
        """This run paused or unpaused domain `domid`."""
        self._edit(lambda listed: [dataclasses.replace(d, power=power) if d.domid == domid else d for d in listed])

    def gone(self, name: str, domid: int | None) -> None:
        """This run destroyed VM `name`'s domain `domid` (None: it was gone already)."""
        self.domids.pop(name, None)
        self._edit(lambda listed: [d for d in listed if d.domid != domid and d.name != name])

    def _edit(self, edit: Callable[[list[DomainStatus]], list[DomainStatus]]) -> None:
        """Apply a change of this run to the listing, and to any listing being read now.
        A new list each time: `running()` is computed once per listing object."""
        self._edits.append(edit)
        if self.listing is not None:
            self.listing = edit(self.listing)

    async def firewall(self) -> TableCopy:
        """The v4v table (call under `firewall_lock`; keep it current with your changes)."""
        if self.fw_table is None:
            table = TableCopy(await self.read(self.ports.firewall.list))
            for entry in self.fw_inflight:  # on their way in: another step holds them
                if entry not in table:
                    table.add(entry)
            for entry in self.fw_leaving:  # on their way out
                if entry in table:
                    table.remove(entry)
            self.fw_table = table
        return self.fw_table

    async def domid(self, vm: str) -> int:
        """The domid of VM `vm`'s domain; TerminalHostError when the host has none. A miss
        lists the domains again only if a step changed them since the last listing."""
        if vm not in self.domids and self.listing is None:
            await self.domains()
        if vm not in self.domids:
            raise TerminalHostError(f"VM {vm!r} has no domain on {self.ports.name}; it was stopped or destroyed "
                                    "outside the reconciler since the plan was made: run apply again")
        return self.domids[vm]

    async def live_domid(self, vm: str, *, fresh: bool = False) -> int | None:
        """The domid of `vm` if its domain exists right now, else None. The domain this run
        knows is confirmed by its xenstore name (libxl removes /local/domain/<domid> with
        the domain), so no step lists every domain to ask about one; a VM the run knows
        no domain of is looked up in the listing (`fresh`: a new one, for a create whose
        answer was lost)."""
        if fresh:
            return next((d.domid for d in await self.domains() if d.name == vm), None)
        domid = self.domids.get(vm)
        if domid is not None:
            name = await read_or_empty(self, f"/local/domain/{domid}/name")
            return domid if name.decode("utf-8", "replace") == vm else None
        listing = self.listing if self.listing is not None else await self.domains()
        return next((d.domid for d in listing if d.name == vm), None)

    async def running(self) -> dict[str, RunningVM]:
        """The running set the v4v resolver needs, as the host shows it at this moment:
        stub domains (`<guest>-dm`) folded into their guest, manifest types only for
        domains the reconciler manages (as the diff does, `reconciler.diff.rules`).
        Computed once per listing (and again after `forget_managed`)."""
        listing = self.listing if self.listing is not None else await self.domains()
        if self._running is not None and self._running[0] is listing:
            return self._running[1]
        listed = [d for d in listing if d.power in LIVE]
        names = {d.name for d in listed}
        stubs = {d.name.removesuffix("-dm"): d.domid for d in listed
                 if d.name.endswith("-dm") and d.name.removesuffix("-dm") in names and d.name not in self.desired.vms}
        guests = [d for d in listed if not (d.name.endswith("-dm") and d.name.removesuffix("-dm") in stubs)]
        await asyncio.gather(*(self._read_mark(d) for d in guests if self._unknown_mark(d)))
        out: dict[str, RunningVM] = {}
        for status in guests:
            if status.name in self.leaving and status.name not in self.built:
                continue  # an entry naming it would outlive it: the destroy step removes none
            vm = self.desired.vms.get(status.name)
            kind = vm.spec.type if vm is not None and self._managed(status) else None
            out[status.name] = RunningVM(status.domid, kind, status.uuid, stubs.get(status.name))
        self._running = (listing, out)
        return out

    def forget_managed(self, uuid: str | None) -> None:
        """The managed marker of `uuid` was just written: read it again when needed."""
        if uuid is not None:
            self.managed_marks.pop(uuid, None)
        self._running = None

    def _unknown_mark(self, status: DomainStatus) -> bool:
        return status.name in self.desired.vms and self._mark(status) is None and not self._built_now(status)

    def _built_now(self, status: DomainStatus) -> bool:
        return self.domids.get(status.name) == status.domid and status.name in self.built

    def _managed(self, status: DomainStatus) -> bool:
        if status.name not in self.desired.vms:
            return False  # only the type of a desired VM matters
        if self._built_now(status):
            return True  # built by this run; its record may still be on its way
        return self._mark(status) is True

    def _mark(self, status: DomainStatus) -> bool | None:
        """The marker read for this very domain (a rebuilt domain has a new domid), or None."""
        domid, mark = self.managed_marks.get(status.uuid, (None, False))
        return mark if domid == status.domid else None

    async def _read_mark(self, status: DomainStatus) -> None:
        """Ours: the managed marker, or the build intent an interrupted apply left for it."""
        mark = (await read_or_empty(self, f"/vm/{status.uuid}/{RECORD}/managed")).strip() == b"1"
        if not mark:
            mark = (await read_or_empty(self, f"{BUILDING}/{status.uuid}")).decode("utf-8", "replace") == status.name
        self.managed_marks[status.uuid] = (status.domid, mark)


def missing(exc: HostError) -> bool:
    """Did xenstore answer ENOENT? (Drivers tag their errors with the xenstore name.)"""
    return getattr(exc, "errno_name", None) == "ENOENT"


def arg(step: Step, key: str) -> object:
    """One of the step's plan arguments (None when absent)."""
    return dict(step.args).get(key)


def int_arg(step: Step, key: str) -> int:
    value = arg(step, key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TerminalHostError(f"step {step.id} has no integer {key!r}; the plan is malformed: run plan again")
    return value


async def read_or_empty(rt: Runtime, path: str) -> bytes:
    """A xenstore node's value, b"" when it does not exist."""
    try:
        return await rt.ports.xenstore.read(path)
    except HostError as exc:
        if missing(exc):
            return b""
        raise


DOM0_ONLY = (Perm(0, "n"),)  # owner dom0, every other domain: no access (the guest cannot read it)


async def rm_quiet(tx: XenstoreOps, path: str) -> None:
    """Remove `path`; one already gone is fine."""
    try:
        await tx.rm(path)
    except HostError as exc:
        if not missing(exc):
            raise
