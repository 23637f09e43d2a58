"""Control characters in what a diagnostic quotes (a YAML key, a file name) never reach
the output raw: text and github lines write them as escapes, so each problem stays one
line and no terminal escape is sent; json keeps them, as JSON escapes (issue 15).
Real: `python -m reconciler` as a process (its real stdout encoding), files, YAML."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# A key holding a newline, a tab, ESC (a colour sequence), DEL, a C1 control (NEL, which
# str.splitlines also breaks on), the Unicode line separator and a right-to-left override.
KEY = "a\nb\tc\x1b[31md\x7fe\x85f\u2028g\u202eh"
SHOWN = r"a\nb\tc\x1b[31md\x7fe\x85f\u2028g\u202eh"
RAW = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]")


def manifest(key: str = KEY) -> str:
    return ("apiVersion: xen.reconciler/v1\nkind: VM\nmetadata:\n  name: web\nspec:\n  virt: hvm\n  memory: 512Mi\n"
            f"  {json.dumps(key)}: 1\n")


def reconciler(*argv: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("RECONCILER_HOST", "NO_COLOR")}
    return subprocess.run([sys.executable, "-m", "reconciler", *argv], capture_output=True, timeout=120,
                          env={**env, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": ""})


def lines(data: bytes) -> list[str]:
    text = data.decode("utf-8")
    assert text.endswith("\n") and "Traceback" not in text, text
    return text[:-1].split("\n")


def test_text_output_escapes_control_characters(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(manifest(), encoding="utf-8")
    done = reconciler("validate", str(path))
    assert done.returncode == 1
    (line,) = lines(done.stdout)
    assert line.startswith(f"{path}:8:3: error: spec: unknown field '{SHOWN}'"), line
    assert not RAW.search(line)


def test_plan_prints_the_same_escaped_line(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(manifest(), encoding="utf-8")
    done = reconciler("plan", str(path), "--host", f"sim:{tmp_path / 'sim'}")
    assert done.returncode == 1
    said = lines(done.stderr)
    problems = [line for line in said if line.startswith(str(path))]
    assert len(problems) == 1 and SHOWN in problems[0] and not any(RAW.search(line) for line in said)


def test_github_annotations_stay_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "a,b:c"  # a file property escapes ',' and ':' (GitHub's escapeProperty)
    folder.mkdir()
    (folder / "web.yaml").write_text(manifest(KEY + "%"), encoding="utf-8")
    done = reconciler("validate", "--format", "github", str(folder))
    assert done.returncode == 1
    (line,) = lines(done.stdout)
    file = str(folder / "web.yaml").replace(",", "%2C").replace(":", "%3A")
    assert line == f"::error file={file},line=8,col=3::spec: unknown field '{SHOWN}%25'; valid fields: " + line.split("valid fields: ")[1]
    assert not RAW.search(line)


def test_json_keeps_the_key_exactly(tmp_path: Path) -> None:
    path = tmp_path / "web.yaml"
    path.write_text(manifest(), encoding="utf-8")
    done = reconciler("validate", "--format", "json", str(path))
    (row,) = json.loads(done.stdout)
    assert row["message"].startswith(f"spec: unknown field '{KEY}'")


@pytest.mark.skipif(sys.platform != "linux", reason="a file name that is not UTF-8 needs a bytes file system")
def test_a_file_name_that_is_not_utf8_is_shown_by_its_bytes(tmp_path: Path) -> None:
    name = os.fsencode(tmp_path) + b"/caf\xe9.yaml"
    with open(name, "w", encoding="utf-8") as handle:
        handle.write(manifest("memroy"))
    done = reconciler("validate", str(tmp_path))
    assert done.returncode == 1
    (line,) = lines(done.stdout)
    assert line.startswith(f"{tmp_path}/caf\\xe9.yaml:8:3: error: spec: unknown field 'memroy'"), line


def test_other_errors_escape_what_they_quote(tmp_path: Path) -> None:
    """Not only diagnostics: every `reconciler: error:` line (here a usage error naming
    an --out path) is one line without a terminal escape."""
    path = tmp_path / "web.yaml"
    path.write_text(manifest("memory2"), encoding="utf-8")
    done = reconciler("plan", str(path), "--out", str(tmp_path / "no\x1b[31mdir" / "plan.txt"))
    assert done.returncode == 1
    (line,) = lines(done.stderr)
    assert line.startswith(f"reconciler: error: --out {tmp_path}/no\\x1b[31mdir/plan.txt: no directory"), line
