"""What the benchmarks share: a baseline worktree and stopping a served host.

Not a test. `worktree(REV, ROOT)` is the detached checkout `--baseline REV` times side
by side (the caller removes it); `stop(proc)` ends a `sim serve` as an operator would,
SIGTERM first and SIGKILL after two minutes.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def worktree(rev: str, root: Path) -> Path:
    """A detached checkout of `rev` under `root` (removed by the caller)."""
    path = root / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), rev], check=True)
    return path


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within two minutes."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
