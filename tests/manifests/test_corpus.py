"""The invalid-manifest corpus: each case's exact `validate` output is a syrupy snapshot,
and each case must fail with at least one error (so a snapshot can never bless a case
that stopped failing). Plus hostile inputs generated at test time."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
INVALID = sorted(p.name for p in (CORPUS / "invalid").iterdir() if p.suffix in (".yaml", ".yml") or p.is_dir())
WARNINGS = sorted(p.name for p in (CORPUS / "warnings").iterdir())


def run_validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 40


@pytest.mark.parametrize("case", INVALID)
def test_invalid_case(case: str, repo: Path, capsys: pytest.CaptureFixture[str], snapshot: object) -> None:
    code, out, err = run_validate(capsys, f"tests/corpus/invalid/{case}")
    assert code == 1
    lines = out.splitlines()
    assert any(": error: " in line for line in lines), out
    assert all(line.startswith("tests/corpus/invalid/") for line in lines), out
    assert "Traceback" not in out + err
    assert out == snapshot


@pytest.mark.parametrize("case", WARNINGS)
def test_warning_case(case: str, repo: Path, capsys: pytest.CaptureFixture[str], snapshot: object) -> None:
    code, out, _ = run_validate(capsys, f"tests/corpus/warnings/{case}")
    assert code == 0
    assert out and all(": warning: " in line for line in out.splitlines())
    assert out == snapshot


def test_all_errors_at_once_sorted(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_validate(capsys, "tests/corpus/invalid")
    lines = out.splitlines()
    assert code == 1
    assert len(lines) >= len(INVALID)

    def key(line: str) -> tuple[str, int, int]:
        file, row, col = line.split(":", 3)[:3]
        return file, int(row), int(col)

    assert [key(line) for line in lines] == sorted(key(line) for line in lines)


def test_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"apiVersion: xen.reconciler/v1\nkind: VM\nmetadata:\n  name: caf\xe9\n")
    code, out, _ = run_validate(capsys, str(bad))
    assert code == 1
    assert out == f"{bad}:4:12: error: file is not valid UTF-8 (byte 0xe9); save it as UTF-8\n"


def test_oversized_file_refused_before_parsing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# padding\n" * (17 * 1024 * 1024 // 10))
    code, out, _ = run_validate(capsys, str(big))
    assert code == 1
    assert "over the 16 MiB limit" in out


def test_deep_nesting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("spec: " + "[" * 5000 + "]" * 5000 + "\n")
    code, out, err = run_validate(capsys, str(deep))
    assert code == 1
    assert "deeper than" in out and "Traceback" not in err


def test_recursive_alias(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    loop = tmp_path / "loop.yaml"
    loop.write_text("apiVersion: xen.reconciler/v1\nkind: VM\nmetadata: &m\n  name: a\n  labels: *m\nspec: {}\n")
    code, out, _ = run_validate(capsys, str(loop))
    assert code == 1
    assert "recursive alias" in out


def test_missing_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run_validate(capsys, str(tmp_path / "nope"))
    assert code == 1
    assert out == f"{tmp_path / 'nope'}:1:1: error: no such file or directory\n"
