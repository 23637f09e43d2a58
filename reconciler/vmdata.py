"""The `vm-data/` subtree of a managed domain, which the reconciler owns whole (DESIGN 7).

Pure domain rules shared by the observer (what the subtree holds, as `xenstoreData`),
the diff (which holdings are alike) and execute (what to write and remove). Input is
the subtree as flat `{"vm-data/...": value}` nodes, relative to `/local/domain/<domid>`.

xenstore creates every missing parent of a written node with an empty value, so an
empty node with children is a directory, not a key; an empty node without children
is a key whose value is "".
"""

from __future__ import annotations

from collections.abc import Mapping

ROOT = "vm-data"


def keys(nodes: Mapping[str, str]) -> dict[str, str]:
    """The `xenstoreData` keys a subtree holds: every node below `vm-data` that has a
    value or no children, sorted."""
    parents = {path.rpartition("/")[0] for path in nodes}
    return {path: value for path, value in sorted(nodes.items())
            if path.startswith(ROOT + "/") and (value or path not in parents)}


def _directories(data: Mapping[str, str]) -> set[str]:
    """Every proper ancestor of the keys (`vm-data/a/b/c` -> `vm-data/a/b`, `vm-data/a`...)."""
    out: set[str] = set()
    for path in data:
        parts = path.split("/")
        out.update("/".join(parts[:n]) for n in range(1, len(parts)))
    return out


def alike(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    """Equal holdings, where a desired empty key that other keys sit below counts as
    present: xenstore shows it as a directory."""
    dirs = _directories(want) | _directories(have)
    return ({k: v for k, v in have.items() if v or k not in dirs}
            == {k: v for k, v in want.items() if v or k not in dirs})


def sync(have: Mapping[str, str], want: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """(nodes to remove, keys to write) that turn `have` into `want`; matching values are
    kept. A key with desired keys below it is emptied instead of removed (xenstore-rm
    takes the whole subtree). A removed key's parents that would be left holding
    nothing go with it: an empty node without children reads back as a key."""
    dirs = _directories(want)
    gone = [k for k in have if k not in want and k not in dirs]
    kept = set(want) | (set(have) - set(gone))
    removes = _outermost({_emptied(k, kept) for k in gone})
    writes = {k: v for k, v in sorted(want.items()) if have.get(k) != v}
    writes.update({k: "" for k in have if k not in want and k in dirs and have[k]})
    return removes, dict(sorted(writes.items()))


def _emptied(path: str, kept: set[str]) -> str:
    """The outermost ancestor of `path` below `vm-data` that no kept key is or sits in
    (removing it removes `path`), or `path` itself."""
    parts = path.split("/")
    for n in range(2, len(parts)):
        ancestor = "/".join(parts[:n])
        if ancestor not in kept and not any(k.startswith(ancestor + "/") for k in kept):
            return ancestor
    return path


def _outermost(paths: set[str]) -> list[str]:
    """`paths` without those inside another one (gone with it), sorted."""
    return sorted(p for p in paths if not any(p.startswith(q + "/") for q in paths))
