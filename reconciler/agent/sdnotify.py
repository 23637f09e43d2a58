"""systemd's notification protocol (sd_notify(3)), without a library: one datagram on $NOTIFY_SOCKET.

The watch loop sends `READY=1` after its first pass, `STATUS=...` after each pass,
`WATCHDOG=1` every `watchdog_interval()` seconds when the unit sets `WatchdogSec=`, and
`STOPPING=1` on SIGTERM. Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op
returning False. Supported addresses: a filesystem path and `@name` (the abstract
namespace); the `vsock:` form of VMs is not (False, logged at DEBUG).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def _address(value: str) -> str | None:
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # abstract namespace: a leading NUL byte instead of '@'
    if value.startswith("/"):
        return value
    return None


def notify(*fields: str) -> bool:
    """Send `fields` ("READY=1", "STATUS=...", "WATCHDOG=1", "STOPPING=1") in one datagram.
    A newline inside a field would start an assignment of its own (a STATUS naming a
    file called "x\\nREADY=1"): it is sent as a space. False when there is no socket or
    sending failed (the agent goes on either way: the notification is advice to systemd)."""
    where = os.environ.get("NOTIFY_SOCKET", "")
    if not where or not fields:
        return False
    address = _address(where)
    if address is None:
        log.debug("NOTIFY_SOCKET=%r: not a path nor @abstract name; not notifying", where)
        return False
    message = "\n".join(field.replace("\n", " ").replace("\r", " ") for field in fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError as exc:
        log.debug("sd_notify to %s failed: %s", where, exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between `WATCHDOG=1` pings: half of $WATCHDOG_USEC (systemd's advice), or
    None when the watchdog is off for this process: $WATCHDOG_USEC unset, not a positive
    integer, or $WATCHDOG_PID set to another process's pid (sd_watchdog_enabled(3))."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    if not usec.isascii() or not usec.isdigit() or int(usec) <= 0:
        return None
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and (not pid.isascii() or not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2 / 1_000_000
