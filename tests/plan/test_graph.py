"""The dot and Mermaid graphs, read back by Graphviz's real `dot` (Debian graphviz, which
scripts/test installs): it parses them without a warning, draws every step inside its
VM's box, and the legend and edge labels say what they mean. `--format svg` through the
CLI as a process, with `dot` on PATH and without."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from reconciler.loader import load_or_raise
from reconciler.model import ObservedState
from reconciler.plan.build import Plan, plan_for
from reconciler.plan.changes import HOST, Action, FieldChange
from reconciler.plan.render_graph import ACTIONS, render_dot, render_mermaid
from reconciler.plan.rules import LABELS, RULES, STEP_ORDER

if TYPE_CHECKING:
    from conftest import Builder

DUMP = "tests/data/xenstore-dumps/xen-devel-2019-06-hvm-qdisk-xenstore-ls.txt"


def desktop() -> Plan:
    return plan_for(load_or_raise(["examples/openxt-desktop"]), ObservedState())


def mixed(build: Builder) -> Plan:
    """A restart, a delete, a live change and a create in one plan, on a host with VMs."""
    build.vm("net", type="ndvm", bootSentinel="data/ready")
    build.running("net", 1, type="ndvm")
    build.change("VM", "net", "net", Action.RESTART, FieldChange("spec.vcpus", 1, 2, "restart"))
    build.running("old", 2, shutdownPriority=10)  # stops before net: an order-only edge
    build.change("VM", "old", "old", Action.DELETE)
    build.vm("app")
    build.running("app", 3)
    build.change("VM", "app", "app", Action.UPDATE, FieldChange("spec.memory", 256, 512, "live"))
    build.vm("web")
    build.nic("web-eth", "web", backendVM="net")
    build.change("VM", "web", "web", Action.CREATE)
    build.change("NIC", "web-eth", "web", Action.CREATE)
    return build.plan()


def layout(dot: str) -> dict[str, Any]:
    """Graphviz's own reading of the dot text: its layout as JSON; no warning allowed."""
    done = subprocess.run(["dot", "-Tjson"], input=dot, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def clusters(drawn: dict[str, Any]) -> dict[str, tuple[set[str], list[float]]]:
    """cluster name -> (the names of its nodes, its box [x0, y0, x1, y1])."""
    objects = drawn["objects"]
    return {o["name"]: ({objects[i]["name"] for i in o.get("nodes", [])}, [float(v) for v in o["bb"].split(",")])
            for o in objects if o["name"].startswith("cluster")}


def check_boxes(plan: Plan) -> dict[str, tuple[set[str], list[float]]]:
    drawn = layout(render_dot(plan))
    boxes = clusters(drawn)
    where = {o["name"]: [float(v) for v in o["pos"].split(",")] for o in drawn["objects"] if "pos" in o}
    for step in plan.steps:
        inside = {name for name, (nodes, _) in boxes.items() if step.id in nodes}
        if step.vm == HOST:
            assert inside == set(), step.id  # host-wide: in no VM's box
            continue
        assert inside == {f"cluster_{step.vm}"}, step.id
        x, y = where[step.id]
        x0, y0, x1, y1 = boxes[f"cluster_{step.vm}"][1]
        assert x0 <= x <= x1 and y0 <= y <= y1, f"{step.id} drawn outside the box of VM {step.vm}"
    assert {name for name in boxes if name != "cluster_legend"} == {f"cluster_{s.vm}" for s in plan.steps if s.vm != HOST}
    return boxes


def test_dot_draws_each_step_of_the_desktop_inside_its_vms_box(repo: Path) -> None:
    check_boxes(desktop())


def test_dot_draws_each_step_of_a_restart_and_a_delete_inside_its_vms_box(build: Builder) -> None:
    plan = mixed(build)
    assert {s.op for s in plan.steps} >= {"shutdown", "destroy", "create", "mem-set"}
    check_boxes(plan)


def test_a_priority_gate_stands_outside_every_vms_box(build: Builder) -> None:
    for i in range(3):  # three VMs then three: one gate joins the levels, instead of nine edges
        build.vm(f"hi{i}", startPriority=10)
        build.vm(f"lo{i}", startPriority=5)
    build.create_all()
    plan = build.plan()
    assert [s.vm for s in plan.steps if s.op == "gate"] == [HOST]
    boxes = check_boxes(plan)
    assert {"legend/gate", "legend/host-wide"} <= boxes["cluster_legend"][0]
    assert '"vm/(start-priority-10)/gate" [label="start priority 10", shape=diamond' in render_dot(plan)


def test_the_desktop_graph_is_drawn_at_a_readable_size(repo: Path) -> None:
    # Before issue 15 it was 5003 x 516 pt, one long row; top to bottom, a VM per column.
    width, height = (float(v) for v in layout(render_dot(desktop()))["bb"].split(",")[2:])
    assert width < 1600 and height < 1600, (width, height)


def test_the_legend_shows_each_fill_shape_and_line_the_graph_uses(build: Builder) -> None:
    dot = render_dot(mixed(build))
    nodes, _ = clusters(layout(dot))["cluster_legend"]
    assert {f"legend/{ACTIONS[a].word}" for a in Action if a is not Action.ADOPT} <= nodes  # create, change live, restart, delete
    assert {"legend/up", "legend/live", "legend/down", "legend/requires", "legend/orders"} <= nodes
    assert "legend/hook" not in nodes and "legend/gate" not in nodes  # this plan has neither
    assert 'fillcolor="#fad4d4", color="#c62828"];' in dot  # delete: red, on its step


def test_edges_carry_short_reasons_never_rule_names(build: Builder) -> None:
    for plan in (desktop(), mixed(build)):
        dot = render_dot(plan)
        labels = {line.split('label="', 1)[1].split('"', 1)[0] for line in dot.splitlines()
                  if " -> " in line and 'label="' in line and "legend/" not in line}
        assert labels and labels <= set(LABELS.values())
        assert not {d.rule for d in plan.dependencies} & labels
        assert all(f'label="{rule}"' not in dot for rule in LABELS)
    assert 'label="backend VM first"' in render_dot(desktop())


def test_every_edge_rule_has_a_short_label() -> None:
    assert set(LABELS) == {rule.__name__ for rule in RULES} | {STEP_ORDER}
    assert all(0 < len(LABELS[rule.__name__]) <= 30 and "_" not in LABELS[rule.__name__] for rule in RULES)


def test_mermaid_has_the_same_boxes_colours_and_a_legend(build: Builder) -> None:
    plan = mixed(build)
    text = render_mermaid(plan)
    number = {step.id: i for i, step in enumerate(plan.steps)}
    groups: dict[str, set[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("  subgraph "):
            current = line.split('["', 1)[1].split('"', 1)[0]
            groups[current] = set()
        elif line == "  end":
            current = None
        elif current is not None:
            groups[current].add(line.strip().split("[", 1)[0].split("{", 1)[0].split("(", 1)[0])
    for step in plan.steps:
        assert f"s{number[step.id]}" in groups[f"VM {step.vm}"]
    assert "Legend" in groups
    assert {f"classDef {a.name.lower()} " for a in Action if a is not Action.ADOPT} <= {line[2:].split("fill")[0] for line in text.splitlines()}
    assert "step_order" not in text and "backends_up" not in text


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True, text=True,
                          env=env, timeout=300, check=False)


def test_svg_is_drawn_by_dot_and_written_atomically(repo: Path, tmp_path: Path) -> None:
    target = tmp_path / "plan.svg"
    done = run_cli("plan", "examples/openxt-desktop", "--observed", DUMP, "--format", "svg", "--out", str(target))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    root = ET.fromstring(target.read_text())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "VM ndvm" in target.read_text() and "backend VM first" in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["plan.svg"]  # no temp file left behind


def test_svg_without_dot_says_to_install_graphviz(repo: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # a PATH with no dot on it
    target = tmp_path / "plan.svg"
    done = run_cli("plan", "examples/openxt-desktop", "--observed", DUMP, "--format", "svg", "--out", str(target),
                   env=env)
    assert done.returncode == 1
    assert done.stdout == "" and not target.exists()
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "apt-get install graphviz" in lines[0] and "--format dot" in lines[0]


def test_svg_when_dot_fails_is_one_line_with_dots_words(repo: Path, tmp_path: Path) -> None:
    # Graphviz never fails on our dot; a dot that does (a broken install) must not print a traceback.
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho 'Error: <stdin>: syntax error in line 1' >&2\necho 'near here' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    done = run_cli("plan", "examples/openxt-desktop", "--observed", DUMP, "--format", "svg", env=env)
    assert done.returncode == 1 and done.stdout == ""
    last = done.stderr.splitlines()[-1]
    assert last == f"reconciler: error: --format svg: {fake} failed: Error: <stdin>: syntax error in line 1 near here"
