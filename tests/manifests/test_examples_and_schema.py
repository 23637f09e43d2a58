"""Every example validates (fast), the committed JSON Schemas match the models and accept
every example document, and the CLI output formats are what CI tools parse."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from reconciler.cli.main import main
from reconciler.loader import load
from reconciler.schema import all_schemas

REPO = Path(__file__).resolve().parents[2]
SETS = ["manifests", *sorted(f"examples/{p.name}" for p in (REPO / "examples").iterdir() if p.is_dir())]


@pytest.mark.parametrize("path", SETS)
def test_example_validates(path: str, repo: Path) -> None:
    started = time.perf_counter()
    result = load([path])
    elapsed = time.perf_counter() - started
    assert result.state is not None, [str(d) for d in result.diagnostics]
    assert result.diagnostics == []
    assert len(result.state.vms) >= 1
    assert elapsed < 5  # generous: catches pathological slowness, not a benchmark


def test_examples_cover_the_issue() -> None:
    desktop = load([str(REPO / "examples/openxt-desktop")]).state
    assert desktop is not None
    types = {vm.spec.type for vm in desktop.vms.values()}
    assert {"ndvm", "uivm", "svm"} <= types
    assert any(p.spec.match and p.spec.match.class_ == "0x0200" for p in desktop.pci.values())
    assert any(p.spec.bdf for p in desktop.pci.values())
    assert any(vm.spec.stubdom and vm.spec.stubdom.enabled for vm in desktop.vms.values())
    assert any(d.spec.devtype == "cdrom" for d in desktop.disks.values())
    assert any(d.spec.format == "vhd" for d in desktop.disks.values())
    server = load([str(REPO / "examples/server-host")]).state
    assert server is not None
    assert {vm.spec.virt for vm in server.vms.values()} >= {"pv", "pvh"}
    assert {d.spec.format for d in server.disks.values()} >= {"qcow2", "raw"}
    assert any(n.spec.mtu != 1500 for n in server.nics.values())
    assert any(n.spec.ethtool for n in server.nics.values())
    assert any(n.spec.rate for n in server.nics.values())


def test_schemas_match_models() -> None:
    for name, text in all_schemas().items():
        assert (REPO / "schemas" / name).read_text() == text, f"schemas/{name} drifted: run 'reconciler schema'"


def test_schema_check_detects_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--out", str(tmp_path)]) == 0
    assert main(["schema", "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "vm.schema.json").write_text("{}\n")
    assert main(["schema", "--out", str(tmp_path), "--check"]) == 1
    assert "vm.schema.json: differs from the models" in capsys.readouterr().err


def _documents() -> list[tuple[str, object]]:
    docs = []
    for path in sorted(REPO.glob("examples/**/*.y*ml")) + sorted(REPO.glob("manifests/*.y*ml")):
        docs.extend((path.name, d) for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def test_document_schema_accepts_examples_and_rejects_bad() -> None:
    schema = json.loads((REPO / "schemas/document.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    docs = _documents()
    assert len(docs) >= 10
    for name, doc in docs:
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, (name, errors)
    bad = {"apiVersion": "xen.reconciler/v1", "kind": "VM", "metadata": {"name": "x"}, "spec": {"virt": "xen", "memory": 1}}
    assert list(validator.iter_errors(bad))


def test_every_example_file_points_editors_at_the_schema() -> None:
    for path in sorted(REPO.glob("examples/**/*.y*ml")) + sorted(REPO.glob("manifests/*.y*ml")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=") and first.endswith("schemas/document.schema.json"), path
        target = (path.parent / first.split("=", 1)[1]).resolve()
        assert target == (REPO / "schemas/document.schema.json").resolve(), path


def test_formats(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = "tests/corpus/invalid/12-virt-xen.yaml"
    assert main(["validate", "--format", "json", case]) == 1
    rows = json.loads(capsys.readouterr().out)
    assert rows == [{"file": case, "line": 7, "col": 9, "severity": "error", "message": rows[0]["message"]}]
    assert "'pv', 'pvh', 'hvm'" in rows[0]["message"]
    assert main(["validate", "--format", "github", case]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"::error file={case},line=7,col=9::spec.virt: expected one of")
    assert main(["validate", "examples/server-host"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("valid: ")
