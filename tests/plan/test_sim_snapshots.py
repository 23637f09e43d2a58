"""Plans against a real simulated host: converged after apply, then with drift.

Real: the CLI (`apply`, `plan`), the embedded simulated host in a temp dir, its
toolstack, pciback and firewall used to cause the drift. `--parallelism 1` keeps domid
allocation, and so every rendered plan, byte-identical from run to run.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from drivers.sim import open_sim
from reconciler.cli.main import main
from reconciler.observe.host import observe_host
from tests.conftest import with_runnable_hooks

EXAMPLES = ["examples/openxt-desktop", "examples/server-host", "manifests"]


async def drift(state_dir: Path) -> list[str]:
    """Memory changed, a PV NIC unplugged, a firewall entry gone, a PCI device handed back
    to its host driver: each where the example has one. Returns what was done."""
    done: list[str] = []
    async with open_sim(state_dir) as ports:
        seen = await observe_host(ports)
        name, vm = sorted(seen.vms.items())[0]
        domid = seen.domains[name].domid
        await ports.toolstack.mem_set(domid, vm.spec.memory // 2)
        done.append(f"mem-set {name}")
        # A PV NIC: an emulated one (type ioemu) goes back only with a restart (QEMU has it from the build).
        pv_nics = [n for n in seen.nics.values() if n.spec.type != "ioemu"]
        if pv_nics:
            nic = sorted(pv_nics, key=lambda n: n.metadata.name)[0]
            await ports.toolstack.detach_nic(seen.domains[nic.spec.vm].domid, nic.spec.index or 0)
            done.append(f"detach {nic.metadata.name}")
        entries = [e for e in await ports.firewall.list() if e.target == "ACCEPT" and e.dom_in not in (0, None)]
        if entries:
            await ports.firewall.delete(entries[0])
            done.append(f"fw delete {entries[0]}")
        if seen.pci:
            dev = sorted(seen.pci.values(), key=lambda p: p.metadata.name)[0]
            assert dev.spec.bdf is not None
            await ports.toolstack.detach_pci(seen.domains[dev.spec.vm].domid, dev.spec.bdf)
            await ports.pciback.assignable_remove(dev.spec.bdf, rebind=True)
            done.append(f"rebind {dev.spec.bdf}")
    return done


@pytest.mark.parametrize("example", EXAMPLES)
def test_converged_then_drifted(example: str, sim_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str],
                                snapshot: SnapshotAssertion, tmp_path: Path) -> None:
    host = ["--host", f"sim:{sim_dir}"]
    example = str(with_runnable_hooks(example, tmp_path / "m"))  # its hooks run /bin/true
    assert main(["apply", example, *host, "--parallelism", "1"]) == 0
    capsys.readouterr()
    assert main(["plan", example, *host, "--detailed-exitcode"]) == 0
    converged = capsys.readouterr().out
    assert converged.startswith("No changes.")
    done = asyncio.run(drift(sim_dir))
    assert main(["plan", example, *host, "--detailed-exitcode"]) == 2
    text = capsys.readouterr().out
    assert main(["plan", example, *host, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format_version"] == 2 and data["observed_fingerprint"]
    assert {"converged": converged, "drift": done, "text": text, "json": data} == snapshot
    assert main(["apply", example, *host]) == 0  # and the drift is repaired
    capsys.readouterr()
    assert main(["plan", example, *host, "--detailed-exitcode"]) == 0
