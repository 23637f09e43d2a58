"""Logs: `-v`/`-q` on every verb (before or after it), the drivers' log lines shown with
`-v`, one line per event in text and JSON, secrets never logged."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import logs
from reconciler.cli.main import VERBS, build_parser, verbosity
from reconciler.model.common import SECRET_FIELDS
from reconciler.secrets import REDACTED
from tests.obs.conftest import SECRET, Run

DRIVER_LINE = re.compile(r"^INFO drivers\.sim\.host: simulated host in \S+: \d+ domains, \d+ devices resumed$", re.M)


class Stderr:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Stderr]:
    """What `logs.setup`'s handler wrote on stderr; the root logger restored afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield Stderr(capsys)
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_secret_names_are_the_models() -> None:
    # logs.py spells them out to keep pydantic out of every verb's start-up.
    assert logs.SECRET_FIELDS == SECRET_FIELDS and logs.REDACTED == REDACTED


@pytest.mark.parametrize(("argv", "expected"), [
    ([], 0), (["-v"], 1), (["-vv"], 2), (["-v", "-v"], 2), (["-q"], -1), (["-v", "-q"], 0),
])
def test_flags_count_before_and_after_the_verb(argv: list[str], expected: int) -> None:
    parser = build_parser()
    for where in ("before", "after", "split"):
        if where == "before":
            line = [*argv, "validate", "m"]
        elif where == "after":
            line = ["validate", "m", *argv]
        else:
            line = [*argv[:1], "validate", "m", *argv[1:]]
        assert verbosity(parser.parse_args(line)) == expected, (where, line)


def test_every_verb_and_nested_verb_takes_v_and_q() -> None:
    parser = build_parser()
    for verb in VERBS:
        assert verbosity(parser.parse_args([verb, "-v", *_required(verb)])) == 1, verb
    assert verbosity(parser.parse_args(["sim", "list", "-vv"])) == 2
    assert verbosity(parser.parse_args(["-q", "sim", "list"])) == -1


def _required(verb: str) -> list[str]:
    return {"validate": ["m"], "plan": ["m"], "apply": ["m"], "sim": ["list"], "xl-config": ["m"], "reach": ["m"]}.get(verb, [])


@pytest.mark.parametrize(("verbosity_", "level"), [(-3, "CRITICAL"), (-1, "ERROR"), (0, "WARNING"), (1, "INFO"),
                                                   (2, "DEBUG"), (5, "DEBUG")])
def test_levels(verbosity_: int, level: str) -> None:
    assert logging.getLevelName(logs.level_for(verbosity_)) == level


def test_text_is_one_line_with_control_characters_escaped(stderr: Stderr) -> None:
    logs.setup(1)
    log = logging.getLogger("drivers.test")
    log.info("a\nWARNING forged: line\r\x1b[31m\u2028end", extra={"fields": {"vm": "we\nb", "n": 3}})
    log.debug("not shown at -v")
    try:
        raise ValueError("boom\nagain")
    except ValueError:
        log.exception("failed")
    lines = stderr.getvalue().splitlines()
    assert lines[0] == r"INFO drivers.test: a\nWARNING forged: line\r\x1b[31m\u2028end vm=we\nb n=3"
    assert len(lines) == 2 and lines[1].startswith("ERROR drivers.test: failed exc=Traceback (most recent call")
    assert r"ValueError: boom\nagain" in lines[1]


def test_json_is_one_object_per_line_with_fields(stderr: Stderr) -> None:
    logs.setup(0, "json")
    log = logging.getLogger("reconciler.agent")
    log.warning("pass %s", "done", extra={"fields": {"trigger": "manifest", "msg": "clash", "seconds": 0.5}})
    log.info("not shown by default")
    (line,) = stderr.getvalue().splitlines()
    data = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data.pop("ts"))
    assert data == {"level": "warning", "logger": "reconciler.agent", "msg": "pass done", "trigger": "manifest",
                    "field_msg": "clash", "seconds": 0.5}


def test_setup_again_replaces_its_handler(stderr: Stderr) -> None:
    logs.setup(1)
    logs.setup(1, "json")
    logging.getLogger("x").info("once")
    (line,) = stderr.getvalue().splitlines()
    assert json.loads(line)["msg"] == "once"


@pytest.mark.parametrize("text", [
    f"vncpasswd={SECRET}", f'vncpasswd="{SECRET}"', f'"vncPassword": "{SECRET}"', f"VNCPASSWD = '{SECRET}'",
])
def test_secret_spellings_in_messages_and_fields_are_redacted(stderr: Stderr, text: str) -> None:
    logs.setup(2, "json")
    logging.getLogger("drivers.xl").debug("cfg: %s, more", text, extra={"fields": {"vncPassword": SECRET}})
    logs.setup(2, "text")
    logging.getLogger("drivers.xl").debug("cfg: %s, more", text, extra={"fields": {"vncPassword": SECRET}})
    out = stderr.getvalue()
    assert out and SECRET not in out and out.count(REDACTED) == 4 and len(out.splitlines()) == 2


def test_drivers_log_lines_show_with_v_before_or_after_the_verb(reconciler: Run, manifests: Path,
                                                                state: Path) -> None:
    quiet = reconciler("apply", str(manifests), "--host", f"sim:{state}")
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert not DRIVER_LINE.search(quiet.stderr) and "INFO" not in quiet.stderr  # WARNING by default
    for argv in (["-v", "apply", str(manifests)], ["apply", str(manifests), "-v"]):
        shown = reconciler(*argv, "--host", f"sim:{state}")
        assert shown.returncode == 0 and DRIVER_LINE.search(shown.stderr), shown.stderr
    hushed = reconciler("apply", str(manifests), "-q", "--host", f"sim:{state}")
    assert hushed.returncode == 0 and hushed.stderr == f"host: sim:{state} (embedded simulated host)\n"  # DESIGN 6: always named


def test_json_log_lines_from_a_real_apply(reconciler: Run, manifests: Path, state: Path) -> None:
    done = reconciler("--log-format", "json", "apply", "-v", str(manifests), "--host", f"sim:{state}")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert any(r["logger"] == "drivers.sim.host" and r["level"] == "info" for r in records), done.stderr


def test_no_secret_in_any_output_at_debug(reconciler: Run, manifests: Path, state: Path) -> None:
    # Every driver log call at DEBUG, through create, a restart (the password changes
    # need one) and destroy: the vncPassword is in no line, stdout or stderr.
    runs = [reconciler("-vv", "apply", str(manifests), "--host", f"sim:{state}")]
    web = manifests / "web.yaml"
    web.write_text(web.read_text().replace(SECRET, SECRET + "-2"))
    runs.append(reconciler("-vv", "apply", str(manifests), "--host", f"sim:{state}"))
    web.unlink()
    runs.append(reconciler("-vv", "--log-format", "json", "apply", str(manifests), "--host", f"sim:{state}"))
    for done in runs:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "DEBUG" in done.stderr or '"debug"' in done.stderr
        assert SECRET not in done.stdout + done.stderr
