"""Property tests over generated manifest sets: a host that mirrors the manifests has
no changes, an empty host gets one CREATE per resource of a running VM, and the diff
is deterministic (equal inputs, equal Diff; no dependence on mapping order)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.diff import diff
from reconciler.loader import load_or_raise
from reconciler.model import DesiredState, ObservedState
from reconciler.model.host import HostPciDevice
from reconciler.plan.changes import Action
from tests.diff.conftest import BASELINE

RULES = ["myself -> 0:5555", "0 -> myself:2222", "myself -> dom-type=svc:80", "dom-type=svm -> myself:*",
         "myself -> dom-name=vm0:22", "my-stubdom -> 0:4001", "* -> myself:8080"]


@st.composite
def vm_docs(draw: Any, index: int) -> dict[str, Any]:
    virt = draw(st.sampled_from(["pv", "pvh", "hvm"]))
    memory = draw(st.integers(64, 4096))
    spec: dict[str, Any] = {
        "virt": virt, "memory": memory, "maxMemory": memory + draw(st.integers(0, 1024)),
        "vcpus": draw(st.integers(1, 4)), "type": draw(st.sampled_from(["svm", "svc"])),
        "state": draw(st.sampled_from(["running", "running", "paused", "stopped"])),
        "updatePolicy": draw(st.sampled_from(["live", "restart"])),
        "xenstoreData": {"vm-data/n": str(draw(st.integers(0, 9)))},
        "hooks": {"preBoot": "/usr/libexec/h"} if draw(st.booleans()) else {},
        "disks": [{"target": f"/img/{index}-{d}", "vdev": f"xvd{'abcd'[d]}", "format": draw(st.sampled_from(["raw", "qcow2"]))}
                  for d in range(draw(st.integers(0, 3)))],
        "nics": [{"bridge": "xenbr0", "rate": draw(st.sampled_from(["10Mb/s", "1MB/s@20ms", "1250KB/s"])), "mtu": 1500 + n}
                 for n in range(draw(st.integers(0, 2)))],
        "pci": [{"bdf": f"0000:{index + 1:02x}:00.{f}", "permissive": draw(st.booleans())} for f in range(draw(st.integers(0, 2)))],
        "v4vRules": draw(st.lists(st.sampled_from(RULES), max_size=3, unique=True)),
    }
    if virt == "hvm":
        spec["stubdom"] = {"enabled": draw(st.booleans())}
        spec["display"] = {"type": "vnc", "vncPassword": draw(st.sampled_from(["a-secret", "b-secret"]))}
    else:
        spec["kernel"] = "/boot/vmlinuz"
        spec["cmdline"] = draw(st.sampled_from(["ro", "ro quiet"]))
    return {"apiVersion": "xen.reconciler/v1", "kind": "VM", "metadata": {"name": f"vm{index}"}, "spec": spec}


@st.composite
def desired_states(draw: Any) -> DesiredState:
    count = draw(st.integers(1, 4))
    docs = [draw(vm_docs(i)) for i in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gen.yaml"
        path.write_text(yaml.safe_dump_all(docs))
        return load_or_raise([str(path)])


def _reversed(state: ObservedState) -> ObservedState:
    """The same observed state with every mapping in reverse insertion order."""
    flip = {f.name: dict(reversed(list(getattr(state, f.name).items())))
            for f in dataclasses.fields(state) if isinstance(getattr(state, f.name), dict)}
    return dataclasses.replace(state, **flip)


@settings(max_examples=60, deadline=None)
@given(desired_states())
def test_mirror_of_the_manifests_has_no_changes(make_mirror: Any, desired: DesiredState) -> None:
    result = diff(desired, make_mirror(desired))
    assert result.changes == () and result.notes == () and result.unmanaged == ()


@settings(max_examples=40, deadline=None)
@given(desired_states())
def test_empty_host_creates_each_resource_of_running_vms_once(desired: DesiredState) -> None:
    # xenmgr's empty table; the host has the functions the rules name (an address it lacks is refused)
    inventory = tuple(HostPciDevice(bdf, "0x8086", "0x10d3", "0x0200", "e1000e")
                      for bdf in sorted({r.spec.bdf for r in desired.pci.values() if r.spec.bdf}))
    changes = diff(desired, ObservedState(firewall=BASELINE, host_pci=inventory)).changes
    running = {n for n, vm in desired.vms.items() if vm.spec.state != "stopped"}
    names = [(c.kind, c.name) for c in changes]
    assert len(names) == len(set(names))
    assert {c.action for c in changes} <= {Action.CREATE}
    assert {n for k, n in names if k == "VM"} == running


@settings(max_examples=40, deadline=None)
@given(desired_states(), st.integers(0, 5))
def test_diff_is_deterministic(make_mirror: Any, desired: DesiredState, drop: int) -> None:
    observed = make_mirror(desired)
    drifted = dataclasses.replace(observed, firewall=observed.firewall[drop:], nics=dict(list(observed.nics.items())[drop:]))
    first = diff(desired, drifted)
    assert diff(desired, drifted) == first
    assert diff(desired, _reversed(drifted)) == first
