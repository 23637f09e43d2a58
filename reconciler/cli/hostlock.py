"""One agent per host: the exclusive lock `apply` (and later `watch`) holds while it works.

CLI layer (it decides where a host's lock lives). `agent_lock(spec)` takes an flock on
the host's lock file or fails at once with a UsageError naming the holder's pid; the
kernel drops an flock when its holder exits however it exits, so a killed apply never
leaves a stale lock. The file is opened with O_NOFOLLOW and must be a regular file: a
symlink planted at the lock path is refused, never written through.

Where the lock lives:
  sim:DIR  DIR/agent.lock (the directory is the host; it is created if missing)
  xen      /run/xen-reconciler/agent.lock (/run is per boot and root's; 0700 directory)
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler.cli.hosts import HostSpec
from reconciler.errors import UsageError
from reconciler.lockfile import open_lock_file

LOCK_FILE = "agent.lock"
XEN_LOCK_DIR = Path("/run/xen-reconciler")


def lock_path(spec: HostSpec) -> Path:
    """The lock file of the host `spec` names (its directory is made on locking)."""
    if spec.kind == "xen":
        return XEN_LOCK_DIR / LOCK_FILE
    assert spec.state_dir is not None
    return spec.state_dir / LOCK_FILE


def _directory(path: Path, spec: HostSpec) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        why = "not a directory" if path.parent.exists() else exc.strerror or str(exc)
        raise UsageError(f"--host {spec}: cannot use {path.parent} ({why}); "
                         "name a directory you can write, e.g. sim:.reconciler/sim") from None
    if not path.parent.is_dir():
        raise UsageError(f"--host {spec}: {path.parent} is not a directory")




def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "a process that has not written its pid yet"


@contextmanager
def agent_lock(spec: HostSpec) -> Iterator[Path]:
    """Hold the host's agent lock for the block; UsageError at once if another holds it."""
    path = lock_path(spec)
    _directory(path, spec)
    fd = open_lock_file(path, f"the lock file of host {spec}", "apply")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"host {spec} is busy: another apply ({_holder(fd)}) holds {path}; "
                             "wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
