"""One agent per host: the exclusive lock `apply` and `watch` hold while they work.

CLI layer (it decides where a host's lock lives). `agent_lock(spec, verb)` takes an flock
on the host's lock file and writes `PID reconciler VERB` into it, or fails at once with a
UsageError naming the holder ("pid 123 (reconciler watch)"); the
kernel drops an flock when its holder exits however it exits, so a killed apply never
leaves a stale lock. The file is opened with O_NOFOLLOW and must be a regular file: a
symlink planted at the lock path is refused, never written through.

Where the lock (and beside it the agent's status file) lives:
  sim:DIR  DIR/agent.lock, DIR/agent-status.json (the directory is the host; made if missing)
  xen      /run/xen-reconciler/agent.lock, status.json (/run is per boot and root's; 0700 directory)
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
SIM_STATUS_FILE = "agent-status.json"
XEN_STATUS_FILE = "status.json"


def lock_path(spec: HostSpec) -> Path:
    """The lock file of the host `spec` names (its directory is made on locking)."""
    if spec.kind == "xen":
        return XEN_LOCK_DIR / LOCK_FILE
    assert spec.state_dir is not None
    return spec.state_dir / LOCK_FILE


def status_path(spec: HostSpec) -> Path:
    """Where the agent of host `spec` writes its status, next to its lock."""
    if spec.kind == "xen":
        return XEN_LOCK_DIR / XEN_STATUS_FILE
    assert spec.state_dir is not None
    return spec.state_dir / SIM_STATUS_FILE


XEN_GIT_DIR = Path("/var/lib/xen-reconciler/git")


def git_dir(spec: HostSpec) -> Path:
    """Where `watch --git` keeps its clone: under the host's state directory (sim), or
    under /var/lib on a real host (it outlives a reboot, unlike /run)."""
    if spec.kind == "xen":
        return XEN_GIT_DIR
    assert spec.state_dir is not None
    return spec.state_dir / "git"


def _directory(path: Path, spec: HostSpec) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        why = "not a directory" if path.parent.exists() else exc.strerror or str(exc)
        raise UsageError(f"--host {spec}: cannot use {path.parent} ({why}); "
                         "name a directory you can write, e.g. sim:.reconciler/sim") from None
    if not path.parent.is_dir():
        raise UsageError(f"--host {spec}: {path.parent} is not a directory")




def read_holder(fd: int) -> tuple[str, str]:
    """(pid, verb) written by the holder; ("", "") for a holder that has not written yet.
    A file of an older version holds the pid alone: its verb was `apply`."""
    try:
        text = os.pread(fd, 64, 0).decode("ascii", errors="replace").strip()
    except OSError:
        text = ""
    pid, _, rest = text.partition(" ")
    if not pid.isdigit():
        return "", ""
    verb = rest.removeprefix("reconciler ").strip()
    return pid, verb if verb.isidentifier() else "apply"


def _busy(spec: HostSpec, path: Path, fd: int) -> UsageError:
    pid, verb = read_holder(fd)
    if not pid:
        return UsageError(f"host {spec} is busy: a process that has not written its pid yet holds {path}; "
                          "wait for it to finish")
    hint = ("the agent keeps this host converged; stop it (SIGTERM) to change the host by hand, "
            "or let it apply your manifests") if verb == "watch" else "wait for it to finish"
    return UsageError(f"host {spec} is busy: pid {pid} (reconciler {verb}) holds {path}; {hint}")


@contextmanager
def agent_lock(spec: HostSpec, verb: str = "apply") -> Iterator[Path]:
    """Hold the host's agent lock for the block as `reconciler VERB`; UsageError at once,
    naming the holder, if another process holds it."""
    path = lock_path(spec)
    _directory(path, spec)
    fd = open_lock_file(path, f"the lock file of host {spec}", verb)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(spec, path, fd) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} reconciler {verb}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)
