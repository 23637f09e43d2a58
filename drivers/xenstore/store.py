"""The simulated xenstored's live tree: nodes, watches, transactions, domains.

Stage: simulated host. Python callers (the simulated host, tests) and the socket
server (`server.py`) both mutate it through the same `NodeOps` methods, so a Python
write fires watches for socket clients exactly like a socket write. Persisted by
`persist.py`. Single-threaded: call it from the event loop's thread only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from drivers.xenstore import errors
from drivers.xenstore.nodes import DOM0, ROOT_PERMS, Caller, Change, Node, NodeOps, allows, ancestors
from drivers.xenstore.txn import Transaction
from drivers.xenstore.wire import SPECIAL_PATHS
from reconciler.ports import Perm, WatchEvent

WATCH_QUOTA = 128  # watches per unprivileged domain (C daemon default, -W)


class Watcher(Protocol):
    """Whoever owns watches: a socket connection, or an in-process callback."""

    @property
    def caller(self) -> Caller: ...

    def deliver(self, path: str, token: str) -> None: ...


@dataclass(eq=False)
class Watch:
    owner: Watcher
    path: str  # absolute (or special) path watched
    token: str
    prefix: str | None = None  # for a relative watch: the implicit /local/domain/<id>

    def event_path(self, changed: str) -> str:
        """The path as this watch reports it (relative for a relative watch)."""
        if self.prefix is None:
            return changed
        return changed[len(self.prefix) + 1 :]


class CallbackWatcher:
    """Adapter so in-process code can watch the store: calls `fn(WatchEvent)`."""

    def __init__(self, fn: Callable[[WatchEvent], None], caller: Caller = DOM0) -> None:
        self._fn = fn
        self._caller = caller

    @property
    def caller(self) -> Caller:
        return self._caller

    def deliver(self, path: str, token: str) -> None:
        self._fn(WatchEvent(path, token))


class Store(NodeOps):
    """The whole tree. `changes` counts mutations, so savers know when to persist."""

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {"/": Node(b"", ROOT_PERMS, (), 1)}
        self._gen = 1
        self._next_tx = 1
        self.special_perms = {p: ROOT_PERMS for p in SPECIAL_PATHS}
        self.introduced: set[int] = set()
        # Introduced domains already reported shut down or crashed (C xenstored's
        # `domain->shutdown`): @releaseDomain fires once on the shutdown, once on release.
        self._shut_down: set[int] = set()
        self.changes = 0
        # Called after each change (a node, a permission, a domain introduced or
        # released): the simulated host schedules a save from it instead of polling.
        self.on_change: Callable[[], None] | None = None
        # Watches indexed by path (firing walks the changed path's ancestors) and by
        # owner and (path, token) (add/remove/duplicate checks): no step scans them all.
        # Dicts as ordered sets: events go out in registration order, removal is O(1).
        self._watches: dict[str, dict[Watch, None]] = {}
        self._by_owner: dict[Watcher, dict[tuple[str, str], Watch]] = {}
        # Fault injection (the simulated host sets it from faults.yaml): asked at each
        # client's commit whether another writer got in first; True answers EAGAIN.
        self.commit_fault: Callable[[], bool] | None = None

    # -- storage used by NodeOps and Transaction -----------------------------------

    def _get(self, path: str) -> Node | None:
        return self._nodes.get(path)

    def peek(self, path: str) -> Node | None:
        """The live node at `path`, no checks (for transactions and persistence)."""
        return self._nodes.get(path)

    def next_generation(self) -> int:
        self._gen += 1
        return self._gen

    def _put(self, path: str, value: bytes, perms: tuple[Perm, ...], children: tuple[str, ...]) -> Node:
        self._gen += 1
        node = self._nodes[path] = Node(value, perms, children, self._gen)
        self._changed()
        return node

    def _drop(self, path: str) -> None:
        del self._nodes[path]
        self._changed()

    def _changed(self) -> None:
        self.changes += 1
        if self.on_change is not None:
            self.on_change()

    def _note_special(self) -> None:
        self._changed()

    def _emit(self, change: Change) -> None:
        if not self._watches:
            return
        paths: Iterator[str] | tuple[str] = (change.path,) if change.exact else ancestors(change.path)
        for wpath in paths:
            for watch in tuple(self._watches.get(wpath, ())):
                caller = watch.owner.caller
                if caller.privileged or allows(change.perms, caller, write=False):
                    watch.owner.deliver(watch.event_path(change.path), watch.token)

    def items(self) -> Iterator[tuple[str, Node]]:
        """Every (path, node), parents before children."""
        stack = ["/"]
        while stack:
            path = stack.pop()
            node = self._nodes[path]
            yield path, node
            base = "" if path == "/" else path
            stack.extend(f"{base}/{name}" for name in reversed(node.children))

    def values(self) -> dict[str, bytes]:
        """Every path with its value, in no particular order: the fast bulk read."""
        return {path: node.value for path, node in self._nodes.items()}

    def restore(self, nodes: Mapping[str, Node], special: Mapping[str, tuple[Perm, ...]], introduced: set[int]) -> None:
        """Replace the whole tree (used when loading a saved state)."""
        self._nodes = dict(nodes)
        self._gen = max(n.gen for n in self._nodes.values())
        self.special_perms.update(special)
        self.introduced = set(introduced)
        self._shut_down = set()

    def __len__(self) -> int:
        return len(self._nodes)

    # -- transactions -------------------------------------------------------------

    def transaction(self, caller: Caller = DOM0) -> Transaction:
        tx_id = self._next_tx
        self._next_tx = tx_id % 0xFFFFFFFE + 1  # never 0, which means "no transaction"
        return Transaction(self, tx_id, caller)

    def client_commit(self, tx: Transaction) -> None:
        """A client's commit (socket or in-process port): EAGAIN when `commit_fault`
        says another writer changed what the transaction accessed (nothing of it is
        applied, as in a real conflict), else `commit`."""
        tx.closed = True
        if tx.accessed and self.commit_fault is not None and self.commit_fault():
            raise errors.Again(f"transaction {tx.tx_id} conflicted with another writer (injected); redo it")
        self.commit(tx)

    def commit(self, tx: Transaction) -> None:
        nodes = self._nodes
        for path, gen in tx.accessed.items():
            cur = nodes.get(path)
            if (None if cur is None else cur.gen) != gen:
                raise errors.Again(f"transaction {tx.tx_id} conflicted on {path}; redo it", path=path)
        for path in tx.written:
            node = tx.overlay[path]
            if node is None:
                if nodes.pop(path, None) is not None:
                    self._changed()
            else:
                self._put(path, node.value, node.perms, node.children)
        for change in tx.changes:
            self._emit(change)

    # -- watches ------------------------------------------------------------------

    def add_watch(self, owner: Watcher, path: str, token: str, prefix: str | None = None) -> Watch:
        """Register a watch (no initial event: the caller sends it after its reply)."""
        mine = self._by_owner.setdefault(owner, {})
        if (path, token) in mine:
            raise errors.AlreadyExists(f"a watch on {path} with token {token!r} exists", path=path)
        if not owner.caller.privileged and len(mine) >= WATCH_QUOTA:
            raise errors.TooBig(f"domain {owner.caller.domid} has {WATCH_QUOTA} watches already")
        watch = Watch(owner, path, token, prefix)
        mine[(path, token)] = watch
        self._watches.setdefault(path, {})[watch] = None
        return watch

    def remove_watch(self, owner: Watcher, path: str, token: str) -> None:
        watch = self._by_owner.get(owner, {}).pop((path, token), None)
        if watch is None:
            raise errors.NoEntry(f"no watch on {path} with token {token!r}", path=path)
        self._unindex(watch)

    def remove_watches(self, owner: Watcher) -> None:
        for watch in self._by_owner.pop(owner, {}).values():
            self._unindex(watch)

    def watch_count(self) -> int:
        """Watches registered, all owners (for stats and tests)."""
        return sum(len(mine) for mine in self._by_owner.values())

    def _unindex(self, watch: Watch) -> None:
        same = self._watches[watch.path]
        del same[watch]
        if not same:
            del self._watches[watch.path]

    # -- domains ------------------------------------------------------------------

    def is_introduced(self, domid: int) -> bool:
        return domid == 0 or domid in self.introduced

    def introduce_domain(self, domid: int) -> None:
        """A domain appeared: fire @introduceDomain (as after XS_INTRODUCE)."""
        self.introduced.add(domid)
        self._changed()
        self._emit(Change("@introduceDomain", self.special_perms["@introduceDomain"]))

    def shutdown_domain(self, domid: int) -> None:
        """The hypervisor reports the domain shut down or crashed (VIRQ_DOM_EXC, the
        dominfo shutdown flag set): fire @releaseDomain, once per domain, as C
        xenstored's check_domains does the first time it sees the flag. The domain and
        its nodes stay; `release_domain` fires the watch again when it is destroyed.
        A domain never introduced (or dom0) fires nothing, as in the C daemon."""
        if domid == 0 or domid not in self.introduced or domid in self._shut_down:
            return
        self._shut_down.add(domid)
        self._emit(Change("@releaseDomain", self.special_perms["@releaseDomain"]))

    def release_domain(self, domid: int) -> None:
        """A domain died: remove the nodes it owns, drop perm entries naming it,
        fire @releaseDomain (as the C daemon without --keep-orphans)."""
        if domid == 0 or domid not in self.introduced:
            raise errors.NoEntry(f"domain {domid} is not introduced")
        self.introduced.discard(domid)
        self._shut_down.discard(domid)
        self._changed()
        owned = sorted((p for p, n in self._nodes.items() if n.perms[0].domid == domid), key=len)
        for path in owned:
            if path in self._nodes and path != "/":
                self.rm(path)
        for path, node in list(self._nodes.items()):
            if any(p.domid == domid for p in node.perms[1:]):
                kept = node.perms[:1] + tuple(p for p in node.perms[1:] if p.domid != domid)
                self._put(path, node.value, kept, node.children)
        self._emit(Change("@releaseDomain", self.special_perms["@releaseDomain"]))
