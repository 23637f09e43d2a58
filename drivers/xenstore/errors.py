"""Typed xenstore errors, shared by the client and the simulated xenstored.

Input: an error name from the wire (`EAGAIN`, `ENOENT`, ...) or a local failure.
Output: an exception in the project's tree, so the core decides retry versus fail
by type alone. Raised by `drivers.xenstore.client` and the simulated store.

    HostError
    └── XenstoreError                 .errno_name = the xenstore error name
        ├── TransientHostError side: Again (EAGAIN), Busy (EBUSY),
        │                            XenstoreTimeout, ConnectionLost, DaemonUnavailable
        └── TerminalHostError side:  NoEntry (ENOENT), AccessDenied (EACCES),
                                     InvalidArgument (EINVAL) ← InvalidPath, PayloadTooLarge,
                                     AlreadyExists, TooBig, NotSupported, ... ProtocolError
"""

from __future__ import annotations

from reconciler.errors import HostError, TerminalHostError, TransientHostError


class XenstoreError(HostError):
    """A xenstore request failed; `errno_name` is the name xenstored answered with."""

    errno_name = "EIO"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class Again(XenstoreError, TransientHostError):
    """EAGAIN: a transaction conflicted with another writer; redo the whole transaction."""

    errno_name = "EAGAIN"


class Busy(XenstoreError, TransientHostError):
    """EBUSY: xenstored is busy (or a transaction was started inside a transaction)."""

    errno_name = "EBUSY"


class XenstoreTimeout(XenstoreError, TransientHostError):
    """No reply arrived in time."""

    errno_name = "ETIMEDOUT"


class ConnectionLost(XenstoreError, TransientHostError):
    """The connection to xenstored dropped while a request was outstanding."""

    errno_name = "ECONNRESET"


class DaemonUnavailable(XenstoreError, TransientHostError):
    """xenstored's socket could not be connected to."""

    errno_name = "ECONNREFUSED"


class InvalidArgument(XenstoreError, TerminalHostError):
    """EINVAL: a malformed path or argument."""

    errno_name = "EINVAL"


class InvalidPath(InvalidArgument):
    """A path broke xenstore's path rules; refused before anything was sent."""


class PayloadTooLarge(InvalidArgument):
    """A request would exceed the 4096-byte payload limit; refused before sending."""


class AccessDenied(XenstoreError, TerminalHostError):
    """EACCES: the caller's domain lacks the permission."""

    errno_name = "EACCES"


class AlreadyExists(XenstoreError, TerminalHostError):
    """EEXIST: e.g. a watch with the same path and token is already registered."""

    errno_name = "EEXIST"


class IsDirectory(XenstoreError, TerminalHostError):
    errno_name = "EISDIR"


class NoEntry(XenstoreError, TerminalHostError):
    """ENOENT: the node (or transaction, or watch) does not exist."""

    errno_name = "ENOENT"


class OutOfMemory(XenstoreError, TerminalHostError):
    errno_name = "ENOMEM"


class NoSpace(XenstoreError, TerminalHostError):
    """ENOSPC: a quota of the C daemon was hit."""

    errno_name = "ENOSPC"


class XenstoreIOError(XenstoreError, TerminalHostError):
    errno_name = "EIO"


class NotEmpty(XenstoreError, TerminalHostError):
    errno_name = "ENOTEMPTY"


class NotSupported(XenstoreError, TerminalHostError):
    """ENOSYS: the daemon does not implement this message type."""

    errno_name = "ENOSYS"


class ReadOnly(XenstoreError, TerminalHostError):
    errno_name = "EROFS"


class AlreadyConnected(XenstoreError, TerminalHostError):
    errno_name = "EISCONN"


class TooBig(XenstoreError, TerminalHostError):
    """E2BIG: a reply would exceed 4096 bytes (or the watch quota was hit)."""

    errno_name = "E2BIG"


class NotPermitted(XenstoreError, TerminalHostError):
    """EPERM: e.g. an unprivileged domain tried to change a node's owner."""

    errno_name = "EPERM"


class ProtocolError(XenstoreError, TerminalHostError):
    """The peer broke the wire protocol (unknown error name, malformed reply)."""

    errno_name = "EPROTO"


_BY_NAME: dict[str, type[XenstoreError]] = {
    cls.errno_name: cls
    for cls in (
        Again, Busy, InvalidArgument, AccessDenied, AlreadyExists, IsDirectory, NoEntry,
        OutOfMemory, NoSpace, XenstoreIOError, NotEmpty, NotSupported, ReadOnly,
        AlreadyConnected, TooBig, NotPermitted,
    )
}


_MEANING = {
    "ENOENT": "no such node, transaction or watch",
    "EACCES": "this domain lacks the permission",
    "EINVAL": "malformed path or argument",
    "EAGAIN": "transaction conflict; redo the whole transaction",
    "EEXIST": "a watch with this path and token already exists",
    "E2BIG": "reply over 4096 bytes, or too many watches",
    "ENOSYS": "not supported by this xenstored",
    "EPERM": "only dom0 may change a node's owner",
    "ENOSPC": "a xenstored quota is exhausted",
}


def error_for(name: str, *, op: str = "request", path: str | None = None) -> XenstoreError:
    """The typed exception for an error name received from xenstored."""
    where = f" on {path}" if path else ""
    cls = _BY_NAME.get(name)
    if cls is None:
        return ProtocolError(f"xenstored answered {op}{where} with unknown error {name!r}")
    meaning = _MEANING.get(name)
    return cls(f"xenstore {op}{where} failed: {name}" + (f" ({meaning})" if meaning else ""), path=path)
