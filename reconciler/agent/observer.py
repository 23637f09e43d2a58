"""Live observation for the agent: the host's ObservedState kept current from xenstore
watch events, so an idle host costs no request and a one-VM change costs that VM's nodes.

Stage: observe (reads the host through `reconciler.ports.HostPorts` only). Called by the
watch loop (`reconciler.agent.loop`) once per pass; `changed` wakes the loop.

How:
- `start()` walks the whole tree once (as `observe_host` does) into a local mirror
  `{path: str}` and registers six watches: `/local/domain`, `/vm`, `/libxl`,
  `/reconciler`, `@introduceDomain`, `@releaseDomain`. Few broad watches rather than
  per-domain ones: the count does not grow with the host (xenstored's watch quota,
  128 by default, binds unprivileged domains only, dom0 is exempt in C xenstored
  and in drivers/xenstore/server.py, yet ~8 per domain would be 8,000 at 1,000
  domains), registering costs 6 requests instead of ~8 per domain and none when a
  domain appears, and C xenstored matches every write against every watch of every
  connection, so thousands of watches would tax every write on the host (with 8,000
  watches registered our simulated xenstored takes 5.6x as long for 1,000 writes,
  bench/xenstore_watches.py). The price: every write under the four roots reaches
  the agent as an event, a guest's own `data/` writes too; filtering one by path
  costs about 12 us of CPU and no request (bench/agent_observe.py).
- Each event names a changed node; `_unit` maps it to the smallest subtree the
  observer reads it through (a backend device dir, `/local/domain/<d>/memory`,
  `/vm/<uuid>`, `/libxl/<d>`...) and marks that dirty; events on nodes the observer
  never reads (a guest's own `data/`, `attr/`, `drivers/`, its frontend dirs) are
  dropped by path, so a chatty guest costs neither requests nor a pass. Under
  `/local/domain/<d>` the children read are `_READ` plus the top of the boot sentinel
  the domain's last-applied record names (which may be anywhere under it).
- A watch's first event (xenstored fires each watch once when registered) is not a
  change. A later event on a watch's own root (re-registration after the client
  reconnected to a restarted daemon, or the root itself rewritten) means events may
  have been lost: the next `observe()` re-reads everything.
- `@introduceDomain`/`@releaseDomain`: one DIRECTORY of `/local/domain` finds the
  domains that came or went; their subtrees are re-read (a gone one reads as absent).
  Power states are not in xenstore (xen.md 2.9), see below.
- `observe()` re-reads only the dirty units (one pipelined snapshot each), then
  rebuilds the ObservedState through the pure `observe_tree` and
  `reconciler.observe.host.fold_tree` that `observe_host` uses, so both are equal
  whenever the events have been applied (tests/agent/test_observer.py checks this
  after random changes). The rebuild is pure CPU over the kept nodes (about 25 ms at
  200 VMs, bench/agent_observe.py) and is skipped when no node changed. `full=True`
  walks everything again and replaces the mirror (the resync). A read that fails
  leaves what it was to read named for the next call.
- The toolstack listing, PCI inventory, firewall table and vif interfaces are not in
  xenstore and have no events to keep a copy honest (a pause changes only the
  hypervisor's list; `viptables` and sysfs change silently), so every `observe()`
  reads each of them once, as `observe_host` does (about 2 ms at 200 VMs on the
  simulated host); they cost no xenstore request. A domain that shuts down or crashes
  fires `@releaseDomain` in xenstored (it watches VIRQ_DOM_EXC), which sets `changed`;
  a pause or unpause made behind the agent's back fires nothing and waits for the
  resync.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging

from reconciler.errors import TerminalHostError
from reconciler.model.observed import ObservedState
from reconciler.observe.domains import _recorded_sentinel
from reconciler.observe import observe_tree
from reconciler.observe.host import decode, fold_tree, read_rpc
from reconciler.ports import HostPorts, WatchStream
from reconciler.retry import RetryPolicy, retried

log = logging.getLogger(__name__)

ROOTS = ("/local/domain", "/vm", "/libxl", "/reconciler")
SPECIAL = ("@introduceDomain", "@releaseDomain")
# Children of /local/domain/<d> that observe_tree reads (reconciler.observe), plus
# `control` (the toolstack's shutdown requests) and dom0's `reconciler` (the agent's
# suspension record): a write elsewhere under a domain is the guest's own business.
_READ = frozenset({"name", "vm", "memory", "cpu", "vm-data", "hvmloader", "error", "backend", "control",
                   "reconciler"})
_DOMAINS = "/local/domain"


class LiveObserver:
    """The host's ObservedState, kept current from xenstore watch events."""

    def __init__(self, ports: HostPorts, retry: RetryPolicy) -> None:
        self.changed = asyncio.Event()
        self._ports = ports
        self._retry = retry
        self._mirror: dict[str, str] = {}
        self._kids: dict[str, set[str]] = {}  # child names by parent path, so a unit costs its size
        self._dirty: set[str] = set()
        self._relist = False  # a domain came or went: list /local/domain
        self._full = False  # events may have been lost: walk everything
        self._sentinels: dict[str, str] = {}  # domid -> top child of its boot sentinel node
        self._streams: list[WatchStream] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._tree: ObservedState | None = None  # observe_tree(mirror), while the mirror is unchanged

    # -- the contract -------------------------------------------------------------

    async def start(self) -> ObservedState:
        """The first full observation, with the watches registered before the walk, so
        no change made during it is missed (one made before is seen by the walk)."""
        if self._started:
            raise RuntimeError("LiveObserver.start() called twice")
        self._started = True
        xs = self._ports.xenstore
        for path in (*ROOTS, *SPECIAL):
            stream = await retried(self._retry, functools.partial(xs.watch, path))
            self._streams.append(stream)
            self._tasks.append(asyncio.get_running_loop().create_task(self._follow(stream)))
        return await self.observe(full=True)

    async def observe(self, *, full: bool = False) -> ObservedState:
        """The current state: re-reads what events named (everything when `full`)."""
        self.changed.clear()
        xs = self._ports.xenstore
        full, self._full = full or self._full or self._tree is None, False
        dirty, self._dirty = self._dirty, set()
        relist, self._relist = self._relist, False
        others = asyncio.gather(
            retried(self._retry, self._ports.toolstack.list_domains),
            retried(self._retry, self._ports.pciback.inventory),
            retried(self._retry, self._ports.firewall.list),
            retried(self._retry, self._ports.netdev.list),
            read_rpc(self._ports, self._retry),
        )
        try:
            if full:
                self._load(decode(await retried(self._retry, lambda: xs.snapshot("/"))))
            else:
                if relist:
                    dirty |= await self._domains_changed()
                await self._reread(dirty)
        except BaseException:
            # Nothing read is lost: what this call was to re-read stays named for the next.
            self._dirty |= dirty
            self._relist |= relist
            self._full |= full
            others.cancel()
            with contextlib.suppress(BaseException):
                await others
            raise
        domains, pci, firewall, netdevs, rpc = await others
        if full or dirty or self._tree is None:
            self._tree = observe_tree(self._mirror)
            moved = self._track_sentinels(self._tree)
            if moved:
                # A record now names a sentinel under a child not followed so far: its
                # events were dropped and its nodes not kept, so read it now (once per
                # record change, and once per such domain after the first walk).
                await self._reread(moved)
                self._tree = observe_tree(self._mirror)
        return fold_tree(self._tree, domains, pci, firewall, netdevs, rpc)

    def xenstore_requests(self) -> int:
        """Requests sent on the host's xenstore port so far (by anyone using it)."""
        count = getattr(self._ports.xenstore, "requests", 0)
        return count if isinstance(count, int) else 0

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for stream in self._streams:
            with contextlib.suppress(Exception):
                await stream.close()
        self._streams.clear()

    # -- events -------------------------------------------------------------------

    async def _follow(self, stream: WatchStream) -> None:
        first = True
        async for event in stream:
            if first:
                first = False  # fired on registration: not a change
                continue
            if self._note(event.path, stream.path):
                self.changed.set()
        # The client ended the stream (closed, or gave up reconnecting): events are
        # lost from here, so say so and let the next observation read everything.
        log.warning("xenstore watch on %s ended; the next observation re-reads everything", stream.path)
        self._full = True
        self.changed.set()

    def _note(self, path: str, root: str) -> bool:
        """Mark what the event at `path` names; True if the state may have changed."""
        if path in SPECIAL:
            self._relist = True
            return True
        if path == root:
            log.info("xenstore watch on %s fired again (reconnect?): next observation re-reads everything", root)
            self._full = True
            return True
        unit = self._unit(path)
        if unit is None:
            return False
        self._dirty.add(unit)
        return True

    def _unit(self, path: str) -> str | None:
        """The subtree re-read for a change at `path`, or None when no observation reads it."""
        parts = path.split("/")  # "", "local", "domain", d, top, ...
        if path.startswith(_DOMAINS + "/"):
            if len(parts) <= 4:
                return path  # the domain's own node: it came or went
            top = parts[4]
            if top == "backend":
                return "/".join(parts[:8])  # .../backend/<kind>/<frontend domid>/<devid>
            if top in _READ or top == self._sentinels.get(parts[3]):
                return "/".join(parts[:5])
            return None
        if path.startswith(("/libxl/pci/", "/libxl/pciback/", "/reconciler/")):
            return "/".join(parts[:4])  # one PCI function's record, one building intent
        if path.startswith(("/vm/", "/libxl/")):
            return "/".join(parts[:3])  # /vm/<uuid>, /libxl/<domid>
        return path

    # -- reads --------------------------------------------------------------------

    async def _domains_changed(self) -> set[str]:
        """One DIRECTORY of /local/domain: the subtrees of domains that came or went."""
        xs = self._ports.xenstore
        listed = set(await retried(self._retry, lambda: xs.directory(_DOMAINS)))
        moved = listed ^ self._kids.get(_DOMAINS, set())
        return {f"{_DOMAINS}/{d}" for d in moved} | {f"/libxl/{d}" for d in moved if d.isdigit()}

    async def _reread(self, units: set[str]) -> None:
        """Snapshot each unit (one inside another is read with it) into the mirror."""
        xs = self._ports.xenstore
        kept = [u for u in units if not any(a in units for a in _ancestors(u))]

        async def one(unit: str) -> dict[str, bytes]:
            try:
                return await retried(self._retry, lambda: xs.snapshot(unit))
            except TerminalHostError as exc:
                if getattr(exc, "errno_name", None) == "ENOENT":
                    return {}
                raise

        results = await asyncio.gather(*(one(u) for u in kept))
        for unit, nodes in zip(kept, results, strict=True):
            self._drop(unit)
            for path, value in decode(nodes).items():
                self._put(path, value)
            if nodes:
                # xenstore creates a written node's missing parents with empty values
                for parent in _ancestors(unit):
                    if parent in self._mirror:
                        break
                    self._put(parent, "")

    # -- the mirror -----------------------------------------------------------------

    def _load(self, nodes: dict[str, str]) -> None:
        self._mirror, self._kids = {}, {}
        for path, value in nodes.items():
            self._put(path, value)

    def _put(self, path: str, value: str) -> None:
        """Keep the node, unless it lies where no observation reads (a guest's own
        `data/`, `attr/`, frontend dirs...): the rebuild then walks fewer nodes."""
        if path.startswith(_DOMAINS + "/"):
            parts = path.split("/", 5)
            if len(parts) > 4 and parts[4] not in _READ and parts[4] != self._sentinels.get(parts[3]):
                return
        if path not in self._mirror and path != "/":
            parent, _, name = path.rpartition("/")
            self._kids.setdefault(parent or "/", set()).add(name)
        self._mirror[path] = value

    def _drop(self, unit: str) -> None:
        """Forget `unit` and everything below it (walking the index: its size, not the host's)."""
        pending = [unit]
        while pending:
            path = pending.pop()
            self._mirror.pop(path, None)
            pending += [f"{path}/{name}" for name in self._kids.pop(path, ())]
        parent, _, name = unit.rpartition("/")
        self._kids.get(parent or "/", set()).discard(name)

    def _track_sentinels(self, state: ObservedState) -> set[str]:
        """Follow each managed domain's boot sentinel; the units newly followed."""
        tops: dict[str, str] = {}
        for info in state.domains.values():
            node = _recorded_sentinel(info.applied) if info.managed else None
            if node:
                tops[str(info.domid)] = node.strip("/").split("/")[0]
        moved = {f"{_DOMAINS}/{d}/{top}" for d, top in tops.items()
                 if top not in _READ and self._sentinels.get(d) != top}
        self._sentinels = tops
        return moved


def _ancestors(path: str) -> list[str]:
    """`/a/b/c` -> [`/a/b`, `/a`] (the root left out: no unit is `/`)."""
    out: list[str] = []
    while True:
        path = path.rpartition("/")[0]
        if not path:
            return out
        out.append(path)
