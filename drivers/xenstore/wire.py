"""The xenstore wire protocol: constants, frame codec and path rules (xs_wire.h, 4.17).

Pure functions and values, no I/O. Bytes in, frames out (`FrameReader`), and frames
to bytes (`encode`). Shared by `client` and the simulated `server`, so both sides
agree on framing, limits and what a valid path is.
"""

from __future__ import annotations

import enum
import re
import struct
from typing import NamedTuple

HEADER = struct.Struct("<IIII")  # type, req_id, tx_id, len; Xen platforms are little-endian
PAYLOAD_MAX = 4096  # XENSTORE_PAYLOAD_MAX, both directions
ABS_PATH_MAX = 3072  # XENSTORE_ABS_PATH_MAX
REL_PATH_MAX = 2048  # XENSTORE_REL_PATH_MAX
SPECIAL_PATHS = ("@introduceDomain", "@releaseDomain")
OK = b"OK\0"


class Op(enum.IntEnum):
    """Message types of Xen 4.17 (`enum xsd_sockmsg_type`); 20 (RESTRICT) is gone."""

    CONTROL = 0
    DIRECTORY = 1
    READ = 2
    GET_PERMS = 3
    WATCH = 4
    UNWATCH = 5
    TRANSACTION_START = 6
    TRANSACTION_END = 7
    INTRODUCE = 8
    RELEASE = 9
    GET_DOMAIN_PATH = 10
    WRITE = 11
    MKDIR = 12
    RM = 13
    SET_PERMS = 14
    WATCH_EVENT = 15
    ERROR = 16
    IS_DOMAIN_INTRODUCED = 17
    RESUME = 18
    SET_TARGET = 19
    RESET_WATCHES = 21
    DIRECTORY_PART = 22


# xsd_errors[] order; new names are only ever appended.
ERROR_NAMES = (
    "EINVAL", "EACCES", "EEXIST", "EISDIR", "ENOENT", "ENOMEM", "ENOSPC", "EIO",
    "ENOTEMPTY", "ENOSYS", "EROFS", "EBUSY", "EAGAIN", "EISCONN", "E2BIG", "EPERM",
)


class Frame(NamedTuple):
    """One message: header fields plus the raw payload."""

    op: int
    req_id: int
    tx_id: int
    payload: bytes


class OversizeFrame(Exception):
    """A peer announced a payload longer than PAYLOAD_MAX; the connection must be dropped."""


def encode(op: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """One frame as bytes. The caller checks the payload length against PAYLOAD_MAX."""
    return HEADER.pack(op, req_id, tx_id, len(payload)) + payload


class FrameReader:
    """Incremental decoder: feed it socket bytes, get whole frames back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """Append `data`; return every complete frame. Raises OversizeFrame on a bad length."""
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos, end = 0, len(buf)
        unpack = HEADER.unpack_from
        while end - pos >= 16:
            op, req_id, tx_id, length = unpack(buf, pos)
            if length > PAYLOAD_MAX:
                raise OversizeFrame(f"payload length {length} exceeds {PAYLOAD_MAX}")
            if end - pos - 16 < length:
                break
            frames.append(Frame(op, req_id, tx_id, bytes(buf[pos + 16 : pos + 16 + length])))
            pos += 16 + length
        if pos:
            del buf[:pos]
        return frames

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buf)


def strings(*parts: str | bytes) -> bytes:
    """NUL-terminated strings joined, the common payload shape (`a|b|`)."""
    return b"".join((p.encode() if isinstance(p, str) else p) + b"\0" for p in parts)


def split_strings(payload: bytes) -> list[bytes]:
    """Split a `a|b|` payload into its strings; the trailing NUL is required.

    Raises ValueError on a payload that is not NUL-terminated.
    """
    if not payload.endswith(b"\0"):
        raise ValueError("payload is not NUL-terminated")
    return payload[:-1].split(b"\0")


_PATH_CHARS = re.compile(r"[A-Za-z0-9/_@-]*")


def path_problem(path: str, *, special_ok: bool = False) -> str | None:
    """Why `path` breaks xenstore's rules, or None if it is valid.

    Absolute paths start with `/`; relative ones are resolved by the daemon against
    the caller's /local/domain/<domid>. Special `@...` paths only where `special_ok`.
    """
    if not path:
        return "is empty"
    if _PATH_CHARS.fullmatch(path) is None:
        return "contains characters other than A-Z a-z 0-9 - / _ @"
    if path.startswith("@"):
        if not special_ok:
            return "is a special watch path, not a node"
        return "is longer than %d bytes" % REL_PATH_MAX if len(path) > REL_PATH_MAX else None
    if "//" in path:
        return "contains //"
    if path != "/" and path.endswith("/"):
        return "ends with /"
    limit = ABS_PATH_MAX if path.startswith("/") else REL_PATH_MAX
    if len(path) > limit:
        return f"is longer than {limit} bytes"
    return None
