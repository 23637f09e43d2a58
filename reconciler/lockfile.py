"""Lock files opened safely: `open_lock_file(path, what, maker)`.

Used by the agent lock of `apply` (`reconciler.cli.hostlock`) and by the simulated
host's own `host.lock`. A lock file is opened read-write and made 0600 if missing, never
through a symlink (O_NOFOLLOW: a link planted there would make the holder truncate and
write the file it points to, as root), and only if it is a regular file. Each refusal is
one `UsageError` line naming the path and the way out.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from reconciler.errors import UsageError


def open_lock_file(path: Path, what: str, maker: str) -> int:
    """The open descriptor of `path` ("{path}: {what} is a symlink; ... ({maker} makes its own)")."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{path}: {what} is a symlink; refusing to follow it (remove it: {maker} makes its own)") from None
        raise UsageError(f"{path}: cannot open {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{path}: {what} is not a regular file; remove it")
    return fd
