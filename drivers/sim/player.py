"""Plays layout `Op` lists into the simulated xenstored, and tells whether they show.

Stage: simulated host. `play(store, ops)` applies one Op list as one transaction of
dom0 (what libxl or a backend writes at once), so watchers see it atomically.
`shows(store, op)` says whether an op's effect is already in the store; the backends
use it to resume a device half-way after a restart. Pure apart from the store.
"""

from __future__ import annotations

from collections.abc import Iterable

from drivers.sim.ops import Op
from drivers.xenstore.nodes import NodeOps, parent_of
from drivers.xenstore.store import Store
from reconciler.ports import Perm

# Never pruned by rm_tidy even when empty: the tree's fixed skeleton.
_KEEP = frozenset({"/", "/local", "/local/domain", "/vm", "/libxl"})


def play(store: Store, ops: Iterable[Op]) -> None:
    tx = store.transaction()
    for op in ops:
        apply(tx, op)
    tx.commit()  # cannot conflict: nothing else runs between begin and commit


def apply(node_ops: NodeOps, op: Op) -> None:
    if op.kind == "write":
        node_ops.write(op.path, op.value)
    elif op.kind == "mkdir":
        node_ops.mkdir(op.path)
    elif op.kind == "set_perms":
        node_ops.set_perms(op.path, [Perm.parse(p) for p in op.perms])
    elif node_ops.exists(op.path):
        node_ops.rm(op.path)
        if op.kind == "rm_tidy":
            _prune(node_ops, parent_of(op.path))


def _prune(node_ops: NodeOps, path: str) -> None:
    """libxl__xs_path_cleanup: drop ancestors left with no value and no children.
    Top-level directories and a domain's own `/local/domain/<D>` / `/libxl/<D>` stay."""
    while not _protected(path):
        node = node_ops.lookup(path)
        if node.value or node.children:
            return
        node_ops.rm(path)
        path = parent_of(path)


def _protected(path: str) -> bool:
    depth = path.count("/")
    return path in _KEEP or depth <= 2 or (depth == 3 and path.startswith("/local/domain/"))


def shows(store: Store, op: Op) -> bool:
    node = store.peek(op.path)
    if op.kind == "write":
        return node is not None and node.value == op.value.encode()
    if op.kind == "mkdir":
        return node is not None
    if op.kind == "set_perms":
        return node is not None and tuple(str(p) for p in node.perms) == op.perms
    return node is None
