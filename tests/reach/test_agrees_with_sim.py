"""Property: the v4v pairs `reach` computes before an apply are exactly the pairs the
simulated host's v4v table allows after it (every pair reach allows is in the table,
and the table allows no other), names mapped from the domains the host then runs; and
its rpc-proxy decisions are those the host's policy then makes (`reach.in_force`).

Generated: 2-4 VMs of a few types, pv or hvm (some with a stub domain), running, paused
or stopped, updatePolicy live or restart (a pv/hvm or stub domain change then waits or
rebuilds), each with 0-3 v4v rules over every endpoint shape (`*`, `myself`,
`my-stubdom`, `0`, `dom-type=`, `dom-name=` of a VM, a stub domain, an unmanaged
domain or nothing, a uuid), ports or none, bidirectional or not; maybe an unmanaged
domain made with `reconciler sim create`, maybe a first manifest set applied before (so
the host the pairs are computed from already runs VMs that the second apply keeps,
stops, rebuilds or deletes). Real: the loader, the CLI's apply on the embedded
simulated host, its toolstack and v4v table, the observer.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from drivers.sim import open_sim
from reconciler import v4v
from reconciler.cli.main import main
from reconciler.diff import diff
from reconciler.loader import load
from reconciler.model import default_vm_uuid
from reconciler.model.observed import ObservedState
from reconciler.observe.host import observe_host
from reconciler.reach import after_apply, in_force

NAMES = ("a", "b", "c", "d")
UNMANAGED = "other"
TYPES = ("svm", "web", "ndvm")
PORTS = (None, "*", 22, 80)


@st.composite
def _endpoint(draw: Any) -> str:
    kind = draw(st.sampled_from(["*", "myself", "my-stubdom", "0", "dom-type", "dom-name", "uuid"]))
    domain = {
        "dom-type": lambda: f"dom-type={draw(st.sampled_from([*TYPES, 'nope']))}",
        "dom-name": lambda: f"dom-name={draw(st.sampled_from([*NAMES, UNMANAGED, 'a-dm', 'ghost']))}",
        "uuid": lambda: default_vm_uuid(draw(st.sampled_from([*NAMES, UNMANAGED]))),
    }.get(kind, lambda: kind)()
    port = draw(st.sampled_from(PORTS))
    return domain if port is None else f"{domain}:{port}"


@st.composite
def manifests(draw: Any) -> list[dict[str, Any]]:
    count = draw(st.integers(2, len(NAMES)))
    docs: list[dict[str, Any]] = []
    for name in NAMES[:count]:
        virt = draw(st.sampled_from(["pv", "hvm"]))
        spec: dict[str, Any] = {"type": draw(st.sampled_from(TYPES)), "virt": virt, "memory": 64,
                                "state": draw(st.sampled_from(["running", "running", "paused", "stopped"])),
                                "updatePolicy": draw(st.sampled_from(["live", "restart"]))}
        if virt == "hvm":
            spec["stubdom"] = {"enabled": draw(st.booleans())}
        else:
            spec["kernel"] = "/boot/vmlinuz"
        texts = draw(st.lists(st.builds(lambda a, b: f"{a} -> {b}", _endpoint(), _endpoint()), max_size=3,
                              unique_by=v4v.canonical))  # the same rule twice in one VM is an error
        spec["v4vRules"] = [{"rule": text, "bidirectional": draw(st.booleans())} for text in texts]
        docs.append({"apiVersion": "xen.reconciler/v1", "kind": "VM", "metadata": {"name": name}, "spec": spec})
    return docs


@dataclass
class Scenario:
    first: list[dict[str, Any]] | None  # applied before, when drawn
    second: list[dict[str, Any]]
    unmanaged: bool


@pytest.fixture(scope="module", autouse=True)
def fast_sim() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECONCILER_SIM_DELAY_SCALE", "0.02")
        patch.setenv("RECONCILER_RETRY_BACKOFF_S", "0")
        patch.setenv("RECONCILER_SHUTDOWN_TIMEOUT_S", "2")
        patch.delenv("RECONCILER_HOST", raising=False)
        yield


def _observe(state_dir: Path) -> ObservedState:
    async def run() -> ObservedState:
        async with open_sim(state_dir, read_only=True) as ports:
            return await observe_host(ports)
    return asyncio.run(run())


def _write(path: Path, docs: list[dict[str, Any]]) -> str:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.builds(Scenario, st.none() | manifests(), manifests(), st.booleans()))
def test_reach_pairs_are_the_pairs_the_simulated_table_allows_after_apply(scenario: Scenario) -> None:
    work = Path(tempfile.mkdtemp(prefix="reach-"))
    try:
        host = ["--host", f"sim:{work / 's'}"]
        if scenario.unmanaged:
            assert main(["sim", "create", UNMANAGED, "--state", str(work / "s"), "--virt", "pv", "--memory", "64",
                         "--kernel", "/boot/vmlinuz"]) == 0
        if scenario.first is not None:
            note(f"first:\n{yaml.safe_dump_all(scenario.first, sort_keys=False)}")
            assert main(["apply", _write(work / "first.yaml", scenario.first), *host]) == 0
        note(f"second:\n{yaml.safe_dump_all(scenario.second, sort_keys=False)}")
        path = _write(work / "second.yaml", scenario.second)
        loaded = load([path])
        assert loaded.state is not None, [str(d) for d in loaded.diagnostics]
        before = _observe(work / "s")
        computed = after_apply(loaded.state, before)
        assert after_apply(loaded.state, before, diff=diff(loaded.state, before)) == computed  # the planner's way
        expected = {pair.key() for pair in computed.v4v}
        assert main(["apply", path, *host]) == 0
        table = in_force(_observe(work / "s"))
        assert table is not None
        found = {pair.key() for pair in table.v4v}
        assert expected - found == set(), "reach allows pairs the table does not"
        assert found - expected == set(), "the table allows pairs reach does not show"
        assert table.rpc == computed.rpc  # and rpc-proxy decides every call as reach said
    finally:
        shutil.rmtree(work, ignore_errors=True)
