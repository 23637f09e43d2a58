"""`reconciler plan` through the real entry point, in-process, from the repo root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli.main import main

DUMP = "tests/data/xenstore-dumps/xen-devel-2019-06-hvm-qdisk-xenstore-ls.txt"


def test_plan_prints_text_and_exits_0(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "manifests", "--observed", DUMP]) == 0
    out = capsys.readouterr().out
    assert out.endswith("Plan: 3 to create, 0 to change live, 0 needs restart, 0 to destroy.\n")
    assert "\x1b[" not in out  # not a terminal: no colour


def test_detailed_exitcode_is_2_when_there_are_changes(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "manifests", "--observed", DUMP, "--detailed-exitcode"]) == 2


def test_detailed_exitcode_is_0_without_changes(tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stopped = tmp_path / "idle.yaml"
    stopped.write_text("apiVersion: xen.reconciler/v1\nkind: VM\nmetadata: {name: idle}\n"
                       "spec: {virt: pv, kernel: /k, memory: 256, state: stopped}\n")
    assert main(["plan", str(stopped), "--observed", DUMP, "--detailed-exitcode"]) == 0
    assert "No changes. The host matches the manifests." in capsys.readouterr().out


def test_out_writes_the_json_plan_atomically_and_prints_nothing(tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "plan.json"
    assert main(["plan", "examples/openxt-desktop", "--observed", DUMP, "--format", "json", "--out", str(target)]) == 0
    assert capsys.readouterr().out == ""
    data = json.loads(target.read_text())
    assert data["format_version"] == 2 and len(data["observed_fingerprint"]) == 64
    assert data["unmanaged"] == ["guest_centos7"]
    assert [p.name for p in tmp_path.iterdir()] == ["plan.json"]  # no temp file left behind


@pytest.mark.parametrize("fmt,start,step", [("dot", "digraph plan {", '"vm/demo/create" [label="create"'),
                                             ("mermaid", "flowchart TB", 's0["create"]')])
def test_graph_formats(fmt: str, start: str, step: str, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "manifests", "--observed", DUMP, "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert out.startswith(start) and '"VM demo"' in out and step in out


def test_same_inputs_byte_identical_output(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = set()
    for _ in range(2):
        assert main(["plan", "examples/server-host", "--observed", DUMP, "--format", "json"]) == 0
        outputs.add(capsys.readouterr().out)
    assert len(outputs) == 1


def test_bad_manifest_prints_file_line_col_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: xen.reconciler/v1\nkind: VM\nmetadata: {name: web}\nspec: {virt: xen, memory: 256}\n")
    assert main(["plan", str(bad), "--observed", str(Path(__file__).parents[2] / DUMP), "--detailed-exitcode"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines and all(line.startswith(f"{bad}:4:") for line in lines)
    assert "Traceback" not in captured.err


def test_unreadable_dump_is_one_line_and_exit_1(tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "manifests", "--observed", str(tmp_path / "missing.txt")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("reconciler: error: ") and len(err.splitlines()) == 1


@pytest.mark.parametrize(("env", "coloured"), [
    ({"TERM": "xterm"}, True),
    ({"TERM": "xterm", "NO_COLOR": ""}, True),  # no-color.org: only a non-empty value disables colour
    ({"TERM": "xterm", "NO_COLOR": "1"}, False),
    ({"TERM": "dumb"}, False),
])
def test_colour_on_a_terminal_follows_no_color_and_term(repo: Path, env: dict[str, str], coloured: bool) -> None:
    # A real pseudo-terminal as stdout, the CLI as a process, as a user runs it.
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    try:
        base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
        proc = subprocess.run([sys.executable, "-m", "reconciler", "plan", "manifests", "--observed", DUMP],
                              stdout=follower, stderr=subprocess.DEVNULL, env={**base, **env}, timeout=120, check=False)
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0
    assert b"Plan: 3 to create" in out
    assert (b"\x1b[" in out) is coloured
