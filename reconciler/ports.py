"""Ports: the narrow interfaces through which the core touches the host.

Stage: boundary. `observe`, `execute` and the watch loop depend on these Protocols only;
`drivers/` implements them (`drivers.xenstore.client.XenstoreClient` for a real or
simulated xenstored). The small value types the ports exchange live here too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

T = TypeVar("T")

Access = Literal["n", "r", "w", "b"]
_ACCESS: tuple[Access, ...] = ("n", "r", "w", "b")


@dataclass(frozen=True)
class Perm:
    """One xenstore permission entry, e.g. `r5` (domain 5 may read).

    The first entry of a node's list names its owner, and its access letter is the
    default for domains not listed later.
    """

    domid: int
    access: Access

    @property
    def can_read(self) -> bool:
        return self.access in ("r", "b")

    @property
    def can_write(self) -> bool:
        return self.access in ("w", "b")

    def __str__(self) -> str:
        return f"{self.access}{self.domid}"

    @classmethod
    def parse(cls, text: str) -> Perm:
        """Parse `n0`/`r5`/`w7`/`b3`; ValueError names what is wrong."""
        letter, digits = text[:1], text[1:]
        for access in _ACCESS:
            if letter == access and digits.isascii() and digits.isdigit():
                return cls(int(digits), access)
        raise ValueError(f"bad xenstore permission {text!r}: expected n|r|w|b followed by a domid")


@dataclass(frozen=True)
class WatchEvent:
    """A watch fired: `path` changed (or is the watch's own path), `token` names the watch."""

    path: str
    token: str


class XenstoreOps(Protocol):
    """Node operations, available on a connection and inside a transaction."""

    async def read(self, path: str) -> bytes: ...

    async def write(self, path: str, value: bytes | str) -> None: ...

    async def mkdir(self, path: str) -> None: ...

    async def rm(self, path: str) -> None: ...

    async def directory(self, path: str) -> list[str]: ...

    async def get_perms(self, path: str) -> list[Perm]: ...

    async def set_perms(self, path: str, perms: Sequence[Perm]) -> None: ...


class WatchStream(Protocol):
    """Events of one registered watch; iterate it, close it to unwatch."""

    path: str
    token: str

    def __aiter__(self) -> AsyncIterator[WatchEvent]: ...

    async def close(self) -> None: ...


class XenstorePort(XenstoreOps, Protocol):
    """What the core needs from xenstore: node ops, bulk reads, watches, transactions."""

    async def snapshot(self, path: str = "/") -> dict[str, bytes]:
        """Every node at and below `path` with its value, read in few round trips."""
        ...

    async def watch(self, path: str, token: str | None = None) -> WatchStream: ...

    async def transaction(self, body: Callable[[XenstoreOps], Awaitable[T]]) -> T:
        """Run `body` in a transaction, committing it; redone on conflict (EAGAIN)."""
        ...

    async def get_domain_path(self, domid: int) -> str: ...

    async def close(self) -> None: ...
