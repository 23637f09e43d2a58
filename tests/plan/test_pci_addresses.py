"""Plan-time check that every PCI address a rule names exists on the host (the observed
sysfs inventory): plan and apply refuse the manifests in one line at the rule, naming
the missing address and the nearest ones the host has; a dump, which has no inventory,
says the addresses are not checked. Real: the CLI entry point, the simulated host."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main

MANIFEST = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: hvm
  memory: 512
---
apiVersion: xen.reconciler/v1
kind: PCIPassthrough
metadata: {name: nic}
spec: {vm: web, bdf: "BDF"}
"""
# The simulated host's default inventory (drivers.sim.pci.DEFAULT_INVENTORY): 00:1f.7 is
# a mistyped function of its Ethernet controller at 00:1f.6.
MISSING = ("error: PCIPassthrough 'nic' (VM 'web'): the host has no PCI device 0000:00:1f.7; it has "
           "0000:00:02.0, 0000:00:14.0, 0000:00:1f.3, 0000:00:1f.6 and 3 more (lspci -D lists them)")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    (path / "web.yaml").write_text(MANIFEST.replace("BDF", "00:1f.7"))
    return path


@pytest.mark.parametrize("verb", ["plan", "apply"])
def test_a_bdf_the_host_lacks_is_one_line_at_the_rule(folder: Path, tmp_path: Path, verb: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "sim"
    code, out, err = run(capsys, verb, str(folder), "--host", f"sim:{state}")
    lines = [line for line in err.splitlines() if not line.startswith("host: ")]
    assert (code, out, lines) == (1, "", [f"{folder}/web.yaml:10:18: {MISSING}"])
    code, out, _ = run(capsys, "plan", str(folder), "--host", f"sim:{state}")
    assert code == 1 and out == ""  # apply built nothing: the plan still refuses


def test_an_address_the_host_has_plans_and_applies(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "web.yaml").write_text(MANIFEST.replace("BDF", "00:1f.6"))
    state = f"sim:{tmp_path / 'sim'}"
    code, out, err = run(capsys, "apply", str(folder), "--host", state)
    assert code == 0, err
    assert run(capsys, "plan", str(folder), "--host", state, "--detailed-exitcode")[0] == 0


def test_a_dump_has_no_inventory_so_the_address_is_not_checked(folder: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    dump = tmp_path / "dump.txt"
    dump.write_text('/local = ""\n')
    code, out, _ = run(capsys, "plan", str(folder), "--observed", str(dump))
    assert code == 0
    assert ("  - the host PCI inventory is not in this source (a captured dump?): the addresses "
            "PCIPassthrough rules name are not checked against the host\n") in out
