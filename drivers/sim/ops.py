"""xenstore operations as data, libxl's permission shorthands and path helpers.

Pure values and functions, shared by `layout` (domains) and `devices` (devices).
An `Op` list is what one libxl transaction (or one backend step) writes; the
simulated host plays it into its xenstored, tests compare it with real dumps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "NOPERM",
    "Op",
    "OpKind",
    "Virt",
    "dom_path",
    "libxl_path",
    "mkdir",
    "roperm",
    "rwperm",
    "vm_path",
    "writes",
]

OpKind = Literal["write", "mkdir", "rm", "rm_tidy", "set_perms"]
Virt = Literal["pv", "pvh", "hvm"]


@dataclass(frozen=True)
class Op:
    """One xenstore operation.

    `write` sets `value` (creating missing parents, as xenstored does); `mkdir`
    creates an empty node; `rm` deletes a subtree; `rm_tidy` deletes it and then each
    ancestor left with an empty value and no children (libxl__xs_path_cleanup);
    `set_perms` replaces
    the node's permissions with `perms`, e.g. `("n0", "r5")`.
    """

    kind: OpKind
    path: str
    value: str = ""
    perms: tuple[str, ...] = ()


NOPERM: tuple[str, ...] = ("n0",)
"""dom0 only: `/libxl/<D>` and the libxl device copies."""


def roperm(domid: int, owner: int = 0) -> tuple[str, ...]:
    """Owned by `owner` (dom0 by default), readable by `domid`: libxl's roperm."""
    return (f"n{owner}", f"r{domid}")


def rwperm(domid: int) -> tuple[str, ...]:
    """Owned by the guest, so the guest may write: libxl's rwperm."""
    return (f"n{domid}",)


def dom_path(domid: int) -> str:
    return f"/local/domain/{domid}"


def vm_path(uuid: str) -> str:
    return f"/vm/{uuid}"


def libxl_path(domid: int) -> str:
    return f"/libxl/{domid}"


def mkdir(path: str, perms: tuple[str, ...]) -> list[Op]:
    return [Op("mkdir", path), Op("set_perms", path, perms=perms)]


def writes(base: str, items: Iterable[tuple[str, str]]) -> list[Op]:
    return [Op("write", f"{base}/{key}", value) for key, value in items]
