"""`Site`: a served simulated host, a manifest folder and the CLI, as the drift and
ownership tests drive them. Drift is made the way an operator would: Xen's own
`xenstore-write`/`xenstore-rm` on the served xenstored socket (`xs`), `reconciler sim ...`
in a process of its own (`sim`), or the host's ports (`host.run`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.model.host import DomainStatus, FirewallEntry
from reconciler.ports import HostPorts

Cli = Callable[..., tuple[int, str, str]]


class Site:
    def __init__(self, host: Any, folder: Path, cli: Cli, state: Path) -> None:
        self.host, self.folder, self.cli, self.state = host, folder, cli, state

    def xs(self, *argv: str) -> None:
        env = {**os.environ, "XENSTORED_PATH": str(self.state / "xenstored.sock")}
        done = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr

    def sim(self, *argv: str) -> str:
        """`reconciler sim ... --state DIR` in a process of its own, against the served host."""
        done = subprocess.run([sys.executable, "-m", "reconciler", "sim", *argv, "--state", str(self.state)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def domains(self) -> dict[str, DomainStatus]:
        return {d.name: d for d in self.host.run(lambda p: p.toolstack.list_domains())}

    def domid(self, name: str) -> int:
        return self.domains()[name].domid

    def firewall(self) -> list[FirewallEntry]:
        listed: list[FirewallEntry] = self.host.run(lambda p: p.firewall.list())
        return listed

    def driver(self, bdf: str) -> str | None:
        async def read(ports: HostPorts) -> str | None:
            return next(d.driver for d in await ports.pciback.inventory() if d.bdf == bdf)
        found: str | None = self.host.run(read)
        return found

    def vm_data(self, name: str) -> dict[str, bytes]:
        base = f"/local/domain/{self.domid(name)}/vm-data"
        nodes: dict[str, bytes] = self.host.run(lambda p: p.xenstore.snapshot(base))
        return {path[len(base) + 1:]: value for path, value in nodes.items() if value}

    def drifted(self, *named: str) -> str:
        """`plan --detailed-exitcode` says changes (2) and names each of `named`."""
        code, out, err = self.cli("plan", str(self.folder), "--detailed-exitcode")
        assert code == 2, out + err
        for text in named:
            assert text in out, out
        return out

    def apply(self) -> str:
        code, out, err = self.cli("apply", str(self.folder))
        assert code == 0 and "error" not in err, out + err  # warnings (a rule naming no VM) are fine
        return out

    def assert_converged(self) -> None:
        code, out, _ = self.cli("plan", str(self.folder), "--detailed-exitcode")
        assert code == 0 and "No changes." in out, out
