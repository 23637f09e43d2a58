"""Empty documents are skipped, as kubectl skips them: a leading or trailing `---`, two
`---` in a row, a document of comments only or `null` (issue 15). Real: the CLI entry
point, files, YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli.main import main

VM = "apiVersion: xen.reconciler/v1\nkind: VM\nmetadata:\n  name: {name}\nspec:\n  virt: hvm\n  memory: {memory}\n"


def validate(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str, str]:
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("text", [
    VM.format(name="web", memory="512Mi") + "---\n",  # a trailing ---
    VM.format(name="web", memory="512Mi") + "---\n# retired: db\n",  # a document of comments only
    "---\n" + VM.format(name="web", memory="512Mi") + "---\n---\n",  # leading, and two in a row
    "--- null\n---\n" + VM.format(name="web", memory="512Mi") + "--- ~\n",  # explicit nulls
])
def test_empty_documents_are_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(text)
    assert validate(capsys, path) == (0, "", "valid: 1 file(s), 1 resource(s), 0 warning(s)\n")


def test_a_problem_after_empty_documents_is_at_its_own_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "web.yaml"
    path.write_text("---\n---\n" + VM.format(name="web", memory="lots"))
    code, out, _ = validate(capsys, path)
    assert code == 1 and out.startswith(f"{path}:9:11: error: spec.memory: ")


def test_a_document_that_is_not_a_mapping_is_still_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(VM.format(name="web", memory="512Mi") + "--- 0\n")
    code, out, _ = validate(capsys, path)
    assert code == 1 and out == f"{path}:8:5: error: a document must be a mapping with apiVersion, kind, metadata and spec, found an integer 0\n"
