"""Persistence of the simulated xenstored's tree: one JSON file, written atomically.

Stage: simulated host. `save(store, file)` writes a header line (format, version, body
length, sha256) and the body; `load(file) -> Store` (or `load_values` for a read-only
snapshot) refuses a truncated, corrupted or foreign file with `StateFileError` instead
of starting empty. Called by `sim serve` and the simulated host, so one CLI run sees
what the previous one left.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from drivers.xenstore.nodes import ROOT_PERMS, Node
from drivers.xenstore.store import Store
from drivers.xenstore.wire import ABS_PATH_MAX, SPECIAL_PATHS, path_problem
from reconciler.atomic import write_bytes_atomic
from reconciler.errors import StateFileError
from reconciler.ports import Perm

FORMAT = "xen-reconciler/xenstore-state"
VERSION = 1
STATE_FILE = "xenstore.json"
T = TypeVar("T")
# wire._PATH_CHARS, plus the newline that joins saved paths for the bulk check
_PATH_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_@-\n"


def _perms_text(perms: tuple[Perm, ...]) -> str:
    return ",".join(str(p) for p in perms)


def _body(store: Store) -> bytes:
    """Nodes in parent-first order (sibling order kept); values as latin-1 text,
    which maps every byte to one character and back."""
    doc = {
        "nodes": [[path, node.value.decode("latin-1"), _perms_text(node.perms)] for path, node in store.items()],
        "special": {path: _perms_text(perms) for path, perms in sorted(store.special_perms.items())},
        "introduced": sorted(store.introduced),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def save(store: Store, file: str | os.PathLike[str]) -> None:
    """Write `store` to `file` atomically (reconciler.atomic: temp file, fsync, rename)."""
    target = Path(file)
    target.parent.mkdir(parents=True, exist_ok=True)
    body = _body(store)
    header = {"format": FORMAT, "version": VERSION, "length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    write_bytes_atomic(str(target), json.dumps(header).encode() + b"\n" + body, mode=0o600)


def load(file: str | os.PathLike[str]) -> Store:
    """Read a saved store; StateFileError says what is wrong and how to recover."""
    return _decoded(file, _restore)


def load_values(file: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every saved path with its value, checked like `load` but without building the
    tree: what a read-only view of a saved host needs for a snapshot."""
    return _decoded(file, _values)


def _decoded(file: str | os.PathLike[str], build: Callable[[Any], T]) -> T:
    path = Path(file)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read the xenstore state: {exc.strerror}") from exc
    head, sep, body = raw.partition(b"\n")
    try:
        header = json.loads(head)
        if not sep or not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError("not a xenstore state file")
        if header.get("version") != VERSION:
            raise ValueError(f"format version {header.get('version')!r}, this build reads {VERSION}")
        if header.get("length") != len(body):
            raise ValueError(f"truncated: body is {len(body)} bytes, header says {header.get('length')}")
        if header.get("sha256") != hashlib.sha256(body).hexdigest():
            raise ValueError("checksum mismatch: the file is corrupted")
        return build(json.loads(body))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise StateFileError(
            f"{path}: refusing a bad xenstore state file ({exc}); move it away to start with an empty store"
        ) from exc


def _values(doc: Any) -> dict[str, bytes]:
    entries = doc["nodes"]
    paths = [path for path, _, _ in entries]
    _check_paths(paths)
    values = {path: value.encode("latin-1") for path, value, _ in entries}
    if len(values) != len(entries):
        raise ValueError("duplicate node paths")
    return values


def load_or_new(file: str | os.PathLike[str]) -> Store:
    """The saved store, or an empty one when no file exists yet (never when it is bad)."""
    return load(file) if Path(file).exists() else Store()


def _perms(text: Any) -> tuple[Perm, ...]:
    if not isinstance(text, str) or not text:
        raise ValueError(f"bad permission list {text!r}")
    return tuple(Perm.parse(t) for t in text.split(","))


def _check_paths(paths: list[str]) -> None:
    """Every saved path is absolute and obeys xenstore's rules, checked in bulk: a few
    scans of all paths joined by newlines (which no path contains), not 115k calls."""
    if paths[:1] != ["/"]:
        raise ValueError("the first saved node is not '/'")
    rest = ("\n" + "\n".join(paths[1:]) + "\n").encode("utf-8")
    if (rest.count(b"\n/") != len(paths) - 1 or b"/\n" in rest or b"//" in rest
            or rest.translate(None, _PATH_BYTES) or max(map(len, paths)) > ABS_PATH_MAX):
        bad = next(p for p in paths[1:] if not p.startswith("/") or path_problem(p))
        raise ValueError(f"bad node path {bad!r}: {path_problem(bad) or 'not absolute'}")


def _restore(doc: Any) -> Store:
    """Rebuild the tree; parents come before children in a saved file. A host of
    1,000 guests has ~115k nodes sharing ~1,500 permission lists, so each list is
    parsed once, paths are checked in bulk and each node is built once (children
    filled in before the store is published)."""
    entries = doc["nodes"]
    paths = [path for path, _, _ in entries]
    _check_paths(paths)
    parsed: dict[str, tuple[Perm, ...]] = {}
    nodes: dict[str, Node] = {}
    for gen, (path, value, perms) in enumerate(entries, start=1):
        acl = parsed.get(perms)
        if acl is None:
            acl = parsed[perms] = _perms(perms)
        nodes[path] = Node(value.encode("latin-1"), acl, (), gen)
    if len(nodes) != len(entries):
        raise ValueError("duplicate node paths")
    children: dict[str, list[str]] = {}
    for path in paths[1:]:
        parent, _, name = path.rpartition("/")
        parent = parent or "/"
        if parent not in nodes:
            raise ValueError(f"orphaned node {path!r}: its parent is not saved")
        children.setdefault(parent, []).append(name)
    for path, names in children.items():
        nodes[path].children = tuple(names)
    special = {p: _perms(t) for p, t in doc["special"].items() if p in SPECIAL_PATHS}
    store = Store()
    store.restore(nodes, special or {p: ROOT_PERMS for p in SPECIAL_PATHS}, {int(d) for d in doc["introduced"]})
    return store
