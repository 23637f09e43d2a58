"""Priority gates on the simulated host: a plan whose start and stop priorities join
through gate steps applies in that order and converges, and the stops do too."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.execute.site import Cli, Site

VM = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: {name}}}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 128
  state: {state}
  startPriority: {start}
  shutdownPriority: {stop}
"""


def _write(write_manifest: Callable[[str, str], Path], state: str) -> Path:
    folder = Path()
    for i in range(6):
        high = i < 3
        text = VM.format(name=f"vm{i}", state=state, start=10 if high else 0, stop=0 if high else 5)
        folder = write_manifest(f"vm{i}.yaml", text)
    return folder


def test_gated_starts_and_stops_apply_in_priority_order_and_converge(
        served: Callable[..., Any], cli: Cli, write_manifest: Callable[[str, str], Path], state_dir: Path) -> None:
    site = Site(served(), _write(write_manifest, "running"), cli, state_dir)
    out = site.apply()
    done = re.findall(r"^\[\d+/\d+\] (\S+): done", out, re.M)  # the steps in the order they finished
    assert "vm/(start-priority-10)/gate" in done, out
    gate = done.index("vm/(start-priority-10)/gate")
    assert {f"vm/vm{i}/unpause" for i in range(3)} <= set(done[:gate])
    assert {f"vm/vm{i}/create" for i in range(3, 6)} <= set(done[gate + 1:])
    site.assert_converged()

    _write(write_manifest, "stopped")
    out = site.apply()
    done = re.findall(r"^\[\d+/\d+\] (\S+): done", out, re.M)
    gate = done.index("vm/(stop-priority-5)/gate")
    assert {f"vm/vm{i}/destroy" for i in range(3, 6)} <= set(done[:gate])  # shutdownPriority 5 first
    assert {f"vm/vm{i}/shutdown" for i in range(3)} <= set(done[gate + 1:])
    assert not {f"vm{i}" for i in range(6)} & set(site.domains())  # every VM stopped
    site.assert_converged()
