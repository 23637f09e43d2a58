"""A transaction of the simulated xenstored: a private overlay with a read set.

Stage: simulated host. Node ops (from `NodeOps`) run against a snapshot of each node
taken at its first access, as the 4.17 C daemon does; writes stay private and their
watch events wait. `Store.commit` checks that every accessed node still has the
generation it had (else EAGAIN), then applies the overlay and fires the events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.xenstore.nodes import Caller, Change, Node, NodeOps
from reconciler.ports import Perm

if TYPE_CHECKING:
    from drivers.xenstore.store import Store


class Transaction(NodeOps):
    """One open transaction; obtain it with `Store.transaction()`."""

    def __init__(self, store: Store, tx_id: int, caller: Caller) -> None:
        self.store = store
        self.tx_id = tx_id
        self.caller = caller
        self.special_perms = store.special_perms
        # path -> node as this transaction sees it (None: absent or removed)
        self.overlay: dict[str, Node | None] = {}
        # path -> generation at first access (None: did not exist); checked at commit
        self.accessed: dict[str, int | None] = {}
        self.written: set[str] = set()
        self.changes: list[Change] = []
        self.closed = False

    def _get(self, path: str) -> Node | None:
        overlay = self.overlay
        if path in overlay:
            return overlay[path]
        node = self.store.peek(path)
        overlay[path] = node
        self.accessed[path] = None if node is None else node.gen
        return node

    def _put(self, path: str, value: bytes, perms: tuple[Perm, ...], children: tuple[str, ...]) -> Node:
        self._get(path)
        node = Node(value, perms, children, self.store.next_generation())
        self.overlay[path] = node
        self.written.add(path)
        return node

    def _drop(self, path: str) -> None:
        self._get(path)
        self.overlay[path] = None
        self.written.add(path)

    def _emit(self, change: Change) -> None:
        self.changes.append(change)

    def _note_special(self) -> None:
        self.store._note_special()  # special perms are shared with the store, even in a transaction

    def commit(self) -> None:
        """Apply the transaction; raises `Again` (EAGAIN) if it conflicted."""
        self.closed = True
        self.store.commit(self)

    def abort(self) -> None:
        self.closed = True
