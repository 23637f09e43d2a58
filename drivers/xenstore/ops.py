"""Request handlers of the simulated xenstored: one function per message type.

Stage: simulated host. Input: a decoded `Frame` and the `Connection` it came on.
Output: the reply payload, or a `XenstoreError` whose name becomes an ERROR reply.
Called by `server.Connection.handle`; the node semantics themselves live in the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from drivers.xenstore import errors
from drivers.xenstore.nodes import NodeOps
from drivers.xenstore.wire import OK, PAYLOAD_MAX, Frame, Op, path_problem, split_strings, strings
from reconciler.ports import Perm

if TYPE_CHECKING:
    from drivers.xenstore.server import Connection

Handler = Callable[["Connection", Frame], bytes]
MAX_TRANSACTIONS = 10  # open transactions per unprivileged domain (C default, -t)


def _args(frame: Frame, count: int | None = None) -> list[str]:
    try:
        parts = [p.decode("ascii") for p in split_strings(frame.payload)]
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument(f"malformed request payload: {exc}") from exc
    if count is not None and len(parts) != count:
        raise errors.InvalidArgument(f"expected {count} arguments, got {len(parts)}")
    return parts


def _path(conn: Connection, raw: str, *, special_ok: bool = False) -> str:
    """Validate `raw` and make it absolute (relative paths hang off /local/domain/<id>)."""
    problem = path_problem(raw, special_ok=special_ok)
    if problem is not None:
        raise errors.InvalidPath(f"path {raw!r} {problem}", path=raw)
    if raw.startswith(("/", "@")):
        return raw
    return f"{conn.prefix}/{raw}"


def _int(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise errors.InvalidArgument(f"expected a decimal number, got {text!r}")
    return int(text)


def _view(conn: Connection, frame: Frame) -> NodeOps:
    if frame.tx_id == 0:
        return conn.store
    tx = conn.transactions.get(frame.tx_id)
    if tx is None:
        raise errors.NoEntry(f"no transaction {frame.tx_id} on this connection")
    return tx


def _privileged(conn: Connection) -> None:
    if not conn.caller.privileged:
        raise errors.AccessDenied(f"domain {conn.caller.domid} is not privileged")


def read(conn: Connection, frame: Frame) -> bytes:
    (raw,) = _args(frame, 1)
    return _view(conn, frame).read(_path(conn, raw), conn.caller)


def write(conn: Connection, frame: Frame) -> bytes:
    cut = frame.payload.find(b"\0")
    if cut < 0:
        raise errors.InvalidArgument("WRITE payload has no path terminator")
    try:
        raw = frame.payload[:cut].decode("ascii")
    except UnicodeDecodeError as exc:
        raise errors.InvalidArgument("path is not ASCII") from exc
    _view(conn, frame).write(_path(conn, raw), frame.payload[cut + 1 :], conn.caller)
    return OK


def mkdir(conn: Connection, frame: Frame) -> bytes:
    (raw,) = _args(frame, 1)
    _view(conn, frame).mkdir(_path(conn, raw), conn.caller)
    return OK


def rm(conn: Connection, frame: Frame) -> bytes:
    (raw,) = _args(frame, 1)
    _view(conn, frame).rm(_path(conn, raw), conn.caller)
    return OK


def directory(conn: Connection, frame: Frame) -> bytes:
    (raw,) = _args(frame, 1)
    reply = strings(*_view(conn, frame).directory(_path(conn, raw), conn.caller))
    if len(reply) > PAYLOAD_MAX:
        raise errors.TooBig("directory listing exceeds 4096 bytes; use DIRECTORY_PART")
    return reply


def directory_part(conn: Connection, frame: Frame) -> bytes:
    """`<gen>|` then whole child names from byte `offset` of the listing; the last
    chunk carries one extra NUL. The client restarts if `gen` changes."""
    raw, offset_text = _args(frame, 2)
    node = _view(conn, frame).lookup(_path(conn, raw), conn.caller)
    offset = _int(offset_text)
    head = b"%d\0" % node.gen
    listing = strings(*node.children)
    room = PAYLOAD_MAX - len(head) - 1
    end = offset
    while end < len(listing):
        after = listing.index(b"\0", end) + 1
        if after - offset > room:
            break
        end = after
    chunk = listing[offset:end]
    return head + chunk + (b"\0" if end >= len(listing) else b"")


def get_perms(conn: Connection, frame: Frame) -> bytes:
    (raw,) = _args(frame, 1)
    perms = _view(conn, frame).get_perms(_path(conn, raw, special_ok=True), conn.caller)
    return strings(*(str(p) for p in perms))


def set_perms(conn: Connection, frame: Frame) -> bytes:
    raw, *texts = _args(frame)
    try:
        perms = [Perm.parse(t) for t in texts]
    except ValueError as exc:
        raise errors.InvalidArgument(str(exc)) from exc
    _view(conn, frame).set_perms(_path(conn, raw, special_ok=True), perms, conn.caller)
    return OK


def watch(conn: Connection, frame: Frame) -> bytes:
    raw, token = _args(frame, 2)
    path = _path(conn, raw, special_ok=True)
    prefix = None if raw.startswith(("/", "@")) else conn.prefix
    conn.store.add_watch(conn, path, token, prefix)
    conn.after_reply.append((raw, token))  # the immediate event follows the OK
    return OK


def unwatch(conn: Connection, frame: Frame) -> bytes:
    raw, token = _args(frame, 2)
    conn.store.remove_watch(conn, _path(conn, raw, special_ok=True), token)
    return OK


def transaction_start(conn: Connection, frame: Frame) -> bytes:
    if frame.tx_id != 0:
        raise errors.Busy("cannot start a transaction inside a transaction")
    if not conn.caller.privileged and len(conn.transactions) >= MAX_TRANSACTIONS:
        raise errors.NoSpace(f"domain {conn.caller.domid} has {MAX_TRANSACTIONS} open transactions")
    tx = conn.store.transaction(conn.caller)
    conn.transactions[tx.tx_id] = tx
    return strings(str(tx.tx_id))


def transaction_end(conn: Connection, frame: Frame) -> bytes:
    (verdict,) = _args(frame, 1)
    if verdict not in ("T", "F"):
        raise errors.InvalidArgument("TRANSACTION_END takes T (commit) or F (abort)")
    tx = conn.transactions.pop(frame.tx_id, None)
    if tx is None:
        raise errors.NoEntry(f"no transaction {frame.tx_id} on this connection")
    if verdict == "T":
        conn.store.client_commit(tx)
    else:
        tx.abort()
    return OK


def get_domain_path(conn: Connection, frame: Frame) -> bytes:
    (domid,) = _args(frame, 1)
    return strings(f"/local/domain/{_int(domid)}")


def is_domain_introduced(conn: Connection, frame: Frame) -> bytes:
    (domid,) = _args(frame, 1)
    return b"T\0" if conn.store.is_introduced(_int(domid)) else b"F\0"


def introduce(conn: Connection, frame: Frame) -> bytes:
    _privileged(conn)
    domid, _gfn, port = _args(frame, 3)
    conn.store.introduce_domain(_int(domid))
    return OK


def release(conn: Connection, frame: Frame) -> bytes:
    _privileged(conn)
    (domid,) = _args(frame, 1)
    conn.store.release_domain(_int(domid))
    return OK


def resume(conn: Connection, frame: Frame) -> bytes:
    _privileged(conn)
    (domid,) = _args(frame, 1)
    if not conn.store.is_introduced(_int(domid)):
        raise errors.NoEntry(f"domain {domid} is not introduced")
    return OK


def set_target(conn: Connection, frame: Frame) -> bytes:
    _privileged(conn)
    domid, target = _args(frame, 2)
    _int(domid), _int(target)
    return OK


def reset_watches(conn: Connection, frame: Frame) -> bytes:
    conn.store.remove_watches(conn)
    conn.transactions.clear()
    return OK


def control(conn: Connection, frame: Frame) -> bytes:
    """The few xenstore-control commands that make sense here: check, help, and
    `stats` (ours: requests served, connections, nodes; the benchmark reads it)."""
    _privileged(conn)
    cmd, *_rest = _args(frame)
    if cmd == "check":
        return OK
    if cmd == "help":
        return strings("Available commands:\ncheck\nhelp\nstats\n")
    if cmd == "stats":
        server = conn.server
        return strings(f"requests={server.requests} connections={len(server.connections)} nodes={len(conn.store)}")
    raise errors.InvalidArgument(f"unknown control command {cmd!r}")


HANDLERS: dict[int, Handler] = {
    Op.CONTROL: control,
    Op.DIRECTORY: directory,
    Op.READ: read,
    Op.GET_PERMS: get_perms,
    Op.WATCH: watch,
    Op.UNWATCH: unwatch,
    Op.TRANSACTION_START: transaction_start,
    Op.TRANSACTION_END: transaction_end,
    Op.INTRODUCE: introduce,
    Op.RELEASE: release,
    Op.GET_DOMAIN_PATH: get_domain_path,
    Op.WRITE: write,
    Op.MKDIR: mkdir,
    Op.RM: rm,
    Op.SET_PERMS: set_perms,
    Op.IS_DOMAIN_INTRODUCED: is_domain_introduced,
    Op.RESUME: resume,
    Op.SET_TARGET: set_target,
    Op.RESET_WATCHES: reset_watches,
    Op.DIRECTORY_PART: directory_part,
}
