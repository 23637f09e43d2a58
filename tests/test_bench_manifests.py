"""The benchmark's generated manifests (bench/manifests.py) stay valid and plannable, so
`bench/plan_scale.py` cannot silently rot: 45 VMs of each shape validate with no warning
but lint's redundant-rule ones, and plan against an empty simulated host (with the PCI
inventory the bench writes) through the real CLI, every PCI rule finding its one device.
No timing here."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from reconciler import v4v
from reconciler.loader import load

REPO = Path(__file__).resolve().parents[1]
N = 45  # two whole groups of 20 (mixed) and a part of one


def bench_manifests() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_manifests", REPO / "bench" / "manifests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_HOST"}
    return subprocess.run([sys.executable, "-m", "reconciler", *argv], capture_output=True, text=True, timeout=120,
                          env={**env, "RECONCILER_SIM_DELAY_SCALE": "0.02"}, cwd=REPO)


@pytest.mark.parametrize("shape", ["basic", "mixed", "domtype-all"])
def test_every_shape_validates_and_plans_against_an_empty_host(shape: str, tmp_path: Path, sim_dir: Path) -> None:
    gen = bench_manifests()
    assert shape in gen.SHAPES
    manifests = gen.generate(N, tmp_path / "manifests", shape)
    gen.write_inventory(sim_dir, N, shape)
    validated = cli("validate", str(manifests))
    assert validated.returncode == 0, validated.stderr
    # The shapes repeat rules on purpose (a backend's bidirectional `dom-type=grpN -> myself:*`
    # covers its group's rules to it, `myself -> 0:*` covers `myself -> 0:5000`, dom-type=svm
    # covers dom-name=<neighbour>): lint's redundancy warnings are expected, no other warning.
    redundant = ("does not already allow; remove it", "(a duplicate); remove one of them")
    assert all(any(words in line for words in redundant) for line in validated.stdout.splitlines()), validated.stdout
    planned = cli("plan", str(manifests), "--host", f"sim:{sim_dir}", "--format", "json")
    assert planned.returncode == 0, planned.stderr
    changes = json.loads(planned.stdout)["changes"]
    assert sorted(c["name"] for c in changes if c["kind"] == "VM" and c["action"] == "create") == [gen.vm_name(i) for i in range(N)]
    devices = {c["vm"]: f["after"] for c in changes if c["kind"] == "PCIPassthrough" for f in c["fields"] if f["path"] == "devices"}
    assert devices == {gen.vm_name(i): [gen.bdf(i)] for i in range(N)}


def test_mixed_shape_holds_every_rule_shape_and_kind_of_vm(tmp_path: Path) -> None:
    """What issue 11 asks the benchmark to include: every domain kind of the v4v grammar,
    with and without ports, both directions and not; PCI by class match; dependsOn
    chains; network backend VMs serving other VMs' NICs; HVM VMs with a stub domain."""
    gen = bench_manifests()
    state = load([str(gen.generate(N, tmp_path, "mixed"))]).state
    assert state is not None
    rules = [v4v.parse_rule(r.spec.rule) for r in state.v4v_rules.values()]
    kinds = {end.domain.kind for rule in rules for end in (rule.client, rule.server)}
    assert kinds == {"any", "myself", "my-stubdom", "dom-type", "dom-name", "dom0", "uuid"}
    assert {end.port is None for rule in rules for end in (rule.client, rule.server)} == {True, False}
    assert {r.spec.bidirectional for r in state.v4v_rules.values()} == {True, False}
    assert any(p.spec.match is not None and p.spec.match.class_ != "any" for p in state.pci.values())
    assert any(vm.spec.depends_on for vm in state.vms.values())
    backends = {vm.metadata.name for vm in state.vms.values() if vm.spec.provides_network_backend}
    assert backends and any(nic.spec.backend_vm in backends for nic in state.nics.values())
    assert any(vm.spec.virt == "hvm" and vm.spec.stubdom and vm.spec.stubdom.enabled for vm in state.vms.values())
    assert 1 < len({vm.spec.type for vm in state.vms.values()}) < N
