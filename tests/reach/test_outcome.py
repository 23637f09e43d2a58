"""`reach` follows what the plan will do, not only what the manifests say: a VM whose
restart-only change waits (updatePolicy live) keeps the domain it runs, stub domain
included; a domain that holds a desired VM's name unmanaged is a conflict, said in a note.
Real: the CLI's apply and reach on the embedded simulated host, `sim create`."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main
from tests.reach.conftest import vm_doc
from reconciler.loader.normalize import v4v_rule_name


def test_a_pending_restart_keeps_the_running_build_and_its_stub_domain(sim_dir: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "w.yaml"
    host = ["--host", f"sim:{sim_dir}"]
    path.write_text(vm_doc("w", virt="hvm", stubdom=True, rules=("my-stubdom -> 0:4001",)))
    assert main(["apply", str(path), *host]) == 0
    path.write_text(vm_doc("w", virt="hvm", rules=("my-stubdom -> 0:4001",)))  # stubdom off: a restart, pending
    capsys.readouterr()
    assert main(["plan", str(path), *host]) == 0
    assert "pending until w restarts" in capsys.readouterr().out
    assert main(["reach", str(path), *host, "--from", "w-dm"]) == 0
    assert capsys.readouterr().out == f"w-dm\n  can reach dom0:4001  ({v4v_rule_name('w', 'my-stubdom -> 0:4001')})\n  may not call anything (30 calls probed)  (default deny)\n"


def test_an_unmanaged_domain_holding_a_vms_name_is_noted(sim_dir: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "create", "w", "--state", str(sim_dir), "--virt", "pv", "--memory", "64", "--kernel", "/k"]) == 0
    path = tmp_path / "w.yaml"
    path.write_text(vm_doc("w"))
    capsys.readouterr()
    assert main(["reach", str(path), "--host", f"sim:{sim_dir}"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note: ")]
    assert notes == ["note: VM 'w': domain 1 ('w') holds its name but was not made by the reconciler (no managed "
                     "marker): plan and apply refuse until it is resolved"]
