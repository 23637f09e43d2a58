"""`reconciler observe` through the real entry point, in-process, from the repo root."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from syrupy.assertion import SnapshotAssertion

from reconciler.cli.main import main
DUMP_DIR = "tests/data/xenstore-dumps"
DUMPS = sorted(p.name for p in (Path(__file__).resolve().parents[2] / DUMP_DIR).glob("*.txt"))
HVM_2019 = "xen-devel-2019-06-hvm-qdisk-xenstore-ls.txt"


def test_the_three_real_dumps_are_there() -> None:
    assert len(DUMPS) == 3 and HVM_2019 in DUMPS


@pytest.mark.parametrize("dump", DUMPS)
def test_observe_yaml_snapshot(
    dump: str, repo: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion
) -> None:
    assert main(["observe", "--observed", f"{DUMP_DIR}/{dump}", "--format", "yaml"]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"host: {DUMP_DIR}/{dump} (captured xenstore dump)\n"  # named, and read without line problems
    assert captured.out == snapshot


def test_json_is_the_same_data_as_yaml(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{DUMP_DIR}/{HVM_2019}"
    assert main(["observe", "--observed", path]) == 0  # yaml is the default
    as_yaml = yaml.safe_load(capsys.readouterr().out)
    assert main(["observe", "--observed", path, "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == as_yaml
    assert out == json.dumps(as_yaml, indent=2, sort_keys=True) + "\n"
    assert as_yaml["nics"]["guest_centos7-nic-0"]["mac"] == "22:16:3e:00:9f:a7"


def test_dump_problems_go_to_stderr_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("d.txt").write_text(
        'local = ""\n domain = ""\n  3 = ""\n   name = "web"\nthis is not xenstore-ls\n'
        '   memory = ""\n    static-max = "1048576\n'
    )
    assert main(["observe", "--observed", "d.txt", "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "host: d.txt (captured xenstore dump)",
        "d.txt:5: not a xenstore-ls line: 'this is not xenstore-ls'",
        "d.txt:7: value has no closing quote; kept what the line shows",
    ]
    data = json.loads(captured.out)
    assert data["vms"]["web"]["maxMemory"] == 1024
    assert "/local/domain/3/vm is missing: it names /vm/<uuid>, the domain's identity" in data["problems"]


def test_unreadable_dump_is_one_line(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["observe", "--observed", "no/such/dump.txt"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("reconciler: error: no/such/dump.txt: cannot read the dump") and err.count("\n") == 1
