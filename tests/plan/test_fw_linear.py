"""A plan's size is linear in the VMs for every v4v rule shape: one firewall step per
starting VM (`fw-start`, two edges), never one step per (rule, VM it names). Measured
on the real loader and diff against an empty host, at N, 2N and 3N VMs: the growth
between sizes is constant (a rule naming every VM of a type made N^2 steps before)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.loader import load
from reconciler.model.observed import ObservedState
from reconciler.plan.build import Plan, plan_for

UUID = "00000000-0000-4000-8000-{:012d}"

VM = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: {name}}}
spec:
  virt: hvm
  uuid: {uuid}
  memory: 256
  stubdom: {{enabled: true}}
  v4vRules: [{rules}]
"""

SHAPES = {  # the rule each VM carries; {next}/{uuid0}: another VM's name/uuid
    "any": "'myself -> *:80'",
    "dom-type": "'myself -> dom-type=svm:80'",
    "dom-type-both-sides": "{{rule: 'dom-type=svm -> dom-type=svm:80', bidirectional: true}}",
    "dom-name": "'myself -> dom-name={next}:80', '0 -> dom-name=vm0000:22'",
    "uuid": "'myself -> {uuid0}:80', '{next_uuid} -> myself:81'",
    "my-stubdom": "'my-stubdom -> myself:80'",
    "myself": "'myself -> myself:80', 'myself -> 0:80'",
    "dom0": "'0 -> myself:22'",
}


def _plan(tmp_path: Path, shape: str, n: int) -> Plan:
    folder = tmp_path / f"{shape}-{n}"
    folder.mkdir()
    for i in range(n):
        rules = SHAPES[shape].format(next=f"vm{(i + 1) % n:04d}", uuid0=UUID.format(0),
                                     next_uuid=UUID.format((i + 1) % n))
        (folder / f"vm{i:04d}.yaml").write_text(VM.format(name=f"vm{i:04d}", uuid=UUID.format(i), rules=rules))
    state = load([str(folder)]).state
    assert state is not None
    return plan_for(state, ObservedState(firewall=(), host_pci=()))


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_steps_and_edges_grow_linearly_for_every_rule_shape(tmp_path: Path, shape: str) -> None:
    sizes = [(len(p.steps), len(p.dependencies)) for p in (_plan(tmp_path, shape, n) for n in (6, 12, 18))]
    (s1, e1), (s2, e2), (s3, e3) = sizes
    assert s3 - s2 == s2 - s1 and e3 - e2 == e2 - e1, sizes  # constant growth: linear
    assert s2 - s1 == 6 * 4  # per VM: create, record, unpause and one fw-start
    plan = _plan(tmp_path, shape, 3)
    starts = sorted(s.id for s in plan.steps if s.op == "fw-start")
    assert starts == [f"v4v/vm{i:04d}-firewall/fw-start" for i in range(3)]
    assert not [s for s in plan.steps if s.op == "fw-apply"]

