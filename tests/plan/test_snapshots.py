"""Text and JSON plans of every example set against an empty host and against the three
real captured dumps, through the real loader, observer and diff. Snapshots: review the
diff of tests/plan/__snapshots__/ after `pytest tests/plan --snapshot-update`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from drivers.dump import load_dump
from reconciler.loader import load_or_raise
from reconciler.model import ObservedState
from reconciler.observe import observe_tree
from reconciler.plan.build import Plan, plan_for
from reconciler.plan.render_graph import render_dot, render_mermaid
from reconciler.plan.render_json import render_json
from reconciler.plan.render_text import render_text

REPO = Path(__file__).resolve().parents[2]
SETS = ["examples/openxt-desktop", "examples/server-host", "manifests"]
DUMPS = sorted(p.name for p in (REPO / "tests/data/xenstore-dumps").glob("*.txt"))
HOSTS = ["empty", *DUMPS]


def observed_of(host: str) -> ObservedState:
    if host == "empty":
        return ObservedState()
    dump = load_dump(str(REPO / "tests/data/xenstore-dumps" / host))
    return observe_tree(dump.nodes, truncated=frozenset(dump.truncated))


def plan_of(manifests: str, host: str) -> Plan:
    desired = load_or_raise([manifests])
    observed = observed_of(host)
    return plan_for(desired, observed)


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("manifests", SETS)
def test_text_plan(manifests: str, host: str, repo: Path, snapshot: SnapshotAssertion) -> None:
    assert render_text(plan_of(manifests, host)) == snapshot


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("manifests", SETS)
def test_json_plan(manifests: str, host: str, repo: Path, snapshot: SnapshotAssertion) -> None:
    text = render_json(plan_of(manifests, host))
    data = json.loads(text)
    assert data["format_version"] == 2
    ids = {a["id"] for a in data["actions"]}
    assert {i for g in data["generations"] for i in g} == ids
    assert text == snapshot


def test_graphs_of_the_desktop_example(repo: Path, snapshot: SnapshotAssertion) -> None:
    plan = plan_of("examples/openxt-desktop", "empty")
    assert render_dot(plan) == snapshot(name="dot")
    assert render_mermaid(plan) == snapshot(name="mermaid")


def test_the_desktop_starts_ndvm_then_uivm_then_the_guests(repo: Path) -> None:
    plan = plan_of("examples/openxt-desktop", "empty")
    at = {sid: i for i, generation in enumerate(plan.generations) for sid in generation}
    assert at["vm/ndvm/wait-sentinel"] < at["vm/uivm/create"] < at["vm/uivm/unpause"] < at["vm/work-linux/create"]
    assert at["vm/uivm/unpause"] < at["vm/win10/create"]
    text = render_text(plan)
    assert "change-me" not in text and "change-me" not in render_json(plan)
    assert text.endswith("Plan: 36 to create, 0 to change live, 0 needs restart, 0 to destroy.\n")


def test_the_captured_hvm_guest_is_listed_once_as_unmanaged(repo: Path) -> None:
    text = render_text(plan_of("manifests", "xen-devel-2019-06-hvm-qdisk-xenstore-ls.txt"))
    assert text.count("guest_centos7") == 1
    assert "Unmanaged domains (listed once, never touched): guest_centos7" in text
