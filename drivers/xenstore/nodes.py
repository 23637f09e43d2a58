"""Node semantics of the simulated xenstored (Xen 4.17 C daemon), over any node view.

Stage: simulated host. `NodeOps` implements read/write/mkdir/rm/directory/perms with
implicit parents, inherited perms and permission checks once, over `_get/_put/_drop`;
`Store` (the live tree) and `Transaction` (a private overlay) supply those. Mutations
report `Change`s, which the store turns into watch events. Absolute paths only here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from drivers.xenstore import errors
from drivers.xenstore.wire import PAYLOAD_MAX, SPECIAL_PATHS, path_problem
from reconciler.ports import Perm


class Node:
    """One node, treated as immutable: a change replaces the object (transactions
    keep references to the versions they saw). `gen` changes with every replacement."""

    __slots__ = ("value", "perms", "children", "gen")

    def __init__(self, value: bytes, perms: tuple[Perm, ...], children: tuple[str, ...], gen: int):
        self.value = value
        self.perms = perms
        self.children = children
        self.gen = gen


@dataclass(frozen=True)
class Caller:
    """Who sends a request: a domain id; domain 0 (the socket, the toolstack) is privileged."""

    domid: int = 0

    @property
    def privileged(self) -> bool:
        return self.domid == 0


DOM0 = Caller(0)
ROOT_PERMS = (Perm(0, "n"),)


class Change(NamedTuple):
    """A modification to report to watches. `exact`: only watches on this very path
    fire (a node removed as part of a subtree); otherwise watches on it and ancestors."""

    path: str
    perms: tuple[Perm, ...]
    exact: bool = False


def parent_of(path: str) -> str:
    cut = path.rfind("/")
    return "/" if cut <= 0 else path[:cut]


def ancestors(path: str) -> Iterator[str]:
    """`path` itself, then each parent up to `/` (special paths have no ancestors)."""
    yield path
    if path.startswith("@"):
        return
    while path != "/":
        path = parent_of(path)
        yield path


def allows(perms: tuple[Perm, ...], caller: Caller, *, write: bool) -> bool:
    """Whether `caller` may read (or write) a node with these perms (xenstore 1.6 rules)."""
    if caller.privileged or perms[0].domid == caller.domid:
        return True
    entry = next((p for p in perms[1:] if p.domid == caller.domid), perms[0])
    return entry.can_write if write else entry.can_read


def check_path(path: str, *, special_ok: bool = False) -> None:
    problem = path_problem(path, special_ok=special_ok)
    if problem is None and not path.startswith(("/", "@")):
        problem = "is not absolute"
    if problem is not None:
        raise errors.InvalidPath(f"xenstore path {path!r} {problem}", path=path)


def check_payload(path: str, data: bytes) -> None:
    """A WRITE's payload (path, NUL, value) over XENSTORE_PAYLOAD_MAX is refused as the
    wire client refuses it before sending (EINVAL, `PayloadTooLarge`, same message): no
    xenstored takes it (the C daemon drops the connection, oxenstored answers E2BIG),
    so an in-process caller (the embedded host, the sim's own writes) must not either."""
    size = len(path.encode()) + 1 + len(data)
    if size > PAYLOAD_MAX:
        raise errors.PayloadTooLarge(
            f"WRITE {path} needs {size} payload bytes, over xenstore's {PAYLOAD_MAX}-byte limit", path=path)


class NodeOps:
    """The node operations; subclasses provide storage and event handling."""

    special_perms: dict[str, tuple[Perm, ...]]

    def _get(self, path: str) -> Node | None:
        raise NotImplementedError

    def _put(self, path: str, value: bytes, perms: tuple[Perm, ...], children: tuple[str, ...]) -> Node:
        raise NotImplementedError

    def _drop(self, path: str) -> None:
        raise NotImplementedError

    def _emit(self, change: Change) -> None:
        raise NotImplementedError

    def _note_special(self) -> None:
        """A special path's permissions changed (they live in the store, not in a node)."""

    # -- lookups -------------------------------------------------------------------

    def _node(self, path: str, caller: Caller, *, write: bool = False) -> Node:
        """The node at `path` if `caller` may access it; ENOENT / EACCES otherwise.

        As in the C daemon, a missing node under a parent the caller cannot access
        is reported as EACCES, so existence does not leak."""
        node = self._get(path)
        if node is None:
            if not caller.privileged:
                parent = parent_of(path)
                found = self._get(parent)
                while found is None and parent != "/":
                    parent = parent_of(parent)
                    found = self._get(parent)
                if found is not None and not allows(found.perms, caller, write=write):
                    raise errors.AccessDenied(f"domain {caller.domid} may not access {path}", path=path)
            raise errors.NoEntry(f"xenstore node {path} does not exist", path=path)
        if not caller.privileged and not allows(node.perms, caller, write=write):
            raise errors.AccessDenied(f"domain {caller.domid} may not access {path}", path=path)
        return node

    # -- reads ---------------------------------------------------------------------

    def lookup(self, path: str, caller: Caller = DOM0) -> Node:
        """The node itself (value, perms, children, generation), permission-checked."""
        check_path(path)
        return self._node(path, caller)

    def read(self, path: str, caller: Caller = DOM0) -> bytes:
        check_path(path)
        return self._node(path, caller).value

    def directory(self, path: str, caller: Caller = DOM0) -> list[str]:
        check_path(path)
        return list(self._node(path, caller).children)

    def exists(self, path: str, caller: Caller = DOM0) -> bool:
        try:
            self._node(path, caller)
        except (errors.NoEntry, errors.AccessDenied):
            return False
        return True

    def get_perms(self, path: str, caller: Caller = DOM0) -> list[Perm]:
        check_path(path, special_ok=True)
        if path.startswith("@"):
            return list(self._special(path))
        return list(self._node(path, caller).perms)

    # -- writes --------------------------------------------------------------------

    def write(self, path: str, value: bytes | str, caller: Caller = DOM0) -> None:
        check_path(path)
        data = value.encode() if isinstance(value, str) else value
        check_payload(path, data)
        node = self._get(path)
        if node is None:
            node = self._create(path, data, caller)
        else:
            self._node(path, caller, write=True)
            node = self._put(path, data, node.perms, node.children)
        self._emit(Change(path, node.perms))

    def mkdir(self, path: str, caller: Caller = DOM0) -> None:
        check_path(path)
        if self._get(path) is not None:
            self._node(path, caller, write=True)
            return
        node = self._create(path, b"", caller)
        self._emit(Change(path, node.perms))

    def _create(self, path: str, value: bytes, caller: Caller) -> Node:
        """Create `path` and any missing parents (value "", perms inherited)."""
        missing = [path]
        parent = parent_of(path)
        pnode = self._get(parent)
        while pnode is None:
            missing.append(parent)
            parent = parent_of(parent)
            pnode = self._get(parent)
        if not caller.privileged and not allows(pnode.perms, caller, write=True):
            raise errors.AccessDenied(f"domain {caller.domid} may not create {path}", path=path)
        perms = pnode.perms
        if not caller.privileged:
            perms = (Perm(caller.domid, perms[0].access),) + perms[1:]
        for child in reversed(missing):
            self._put(parent, pnode.value, pnode.perms, pnode.children + (child.rsplit("/", 1)[1],))
            pnode = self._put(child, value if child == path else b"", perms, ())
            parent = child
        return pnode

    def rm(self, path: str, caller: Caller = DOM0) -> None:
        check_path(path)
        if path == "/":
            raise errors.InvalidArgument("the xenstore root cannot be removed", path=path)
        node = self._get(path)
        if node is None:
            if self._get(parent_of(path)) is None:
                raise errors.NoEntry(f"neither {path} nor its parent exists", path=path)
            return
        self._node(path, caller, write=True)
        parent = parent_of(path)
        pnode = self._get(parent)
        assert pnode is not None, "a node's parent always exists"
        name = path.rsplit("/", 1)[1]
        self._put(parent, pnode.value, pnode.perms, tuple(c for c in pnode.children if c != name))
        self._emit(Change(path, node.perms))
        self._drop_subtree(path, node)

    def _drop_subtree(self, path: str, node: Node) -> None:
        stack = [(path, node)]
        while stack:
            here, cur = stack.pop()
            base = here.rstrip("/")
            for name in cur.children:
                child_path = f"{base}/{name}"
                child = self._get(child_path)
                if child is not None:
                    stack.append((child_path, child))
                    self._emit(Change(child_path, child.perms, exact=True))
            self._drop(here)

    def set_perms(self, path: str, perms: Sequence[Perm], caller: Caller = DOM0) -> None:
        check_path(path, special_ok=True)
        new = tuple(perms)
        if not new:
            raise errors.InvalidArgument("a permission list needs at least the owner entry", path=path)
        if path.startswith("@"):
            if not caller.privileged:
                raise errors.AccessDenied(f"domain {caller.domid} may not change {path}", path=path)
            self._special(path)
            self.special_perms[path] = new
            self._note_special()
            return
        node = self._node(path, caller, write=True)
        if not caller.privileged:
            if node.perms[0].domid != caller.domid:
                raise errors.AccessDenied(f"only the owner may change perms of {path}", path=path)
            if new[0].domid != node.perms[0].domid:
                raise errors.NotPermitted(f"domain {caller.domid} may not change the owner of {path}", path=path)
        self._put(path, node.value, new, node.children)
        self._emit(Change(path, node.perms))

    def _special(self, path: str) -> tuple[Perm, ...]:
        if path not in SPECIAL_PATHS:
            raise errors.NoEntry(f"{path} is not a special xenstore path", path=path)
        return self.special_perms[path]
