"""Fixtures for `reconciler reach`. What is real: the loader on manifests written to
temp files, the v4v resolver, rpc-proxy's evaluation, the CLI entry point, the embedded
simulated host (its toolstack and v4v table) and the captured dumps in tests/data.
What is hand-built: ObservedStates for the pure tests (a domain list and a firewall
table, exactly the facts `reach` reads)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.loader import load
from reconciler.model.state import DesiredState

API = "apiVersion: xen.reconciler/v1\n"


def vm_doc(name: str, *, type_: str = "svm", state: str = "running", virt: str = "pv", stubdom: bool = False,
           rules: tuple[str, ...] = (), extra: str = "") -> str:
    """One VM document (pv with a kernel unless hvm), its v4v rules nested as shorthand."""
    lines = [API + "kind: VM", f"metadata: {{name: {name}}}", "spec:", f"  type: {type_}", f"  virt: {virt}",
             f"  state: {state}", "  memory: 128"]
    if virt != "hvm":
        lines.append("  kernel: /boot/vmlinuz")
    if stubdom:
        lines.append("  stubdom: {enabled: true}")
    if rules:
        lines.append("  v4vRules:")
        lines += [f'    - "{rule}"' for rule in rules]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def desired(tmp_path: Path) -> Callable[..., DesiredState]:
    """Load the given documents (joined with `---`) from a temp file; fails on any error."""
    def make(*docs: str) -> DesiredState:
        path = tmp_path / f"m{len(list(tmp_path.glob('m*.yaml')))}.yaml"
        path.write_text("---\n".join(docs))
        loaded = load([str(path)])
        assert loaded.state is not None, [str(d) for d in loaded.diagnostics]
        return loaded.state
    return make
