"""`reconciler reach` through the CLI, snapshot-tested: every example against an empty
simulated host and after `apply`, and against every captured dump in tests/data
(`--observed`). The JSON is checked against schemas/reach.schema.json; after apply,
the v4v pairs reach computes are those the simulated host's table holds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import jsonschema
import pytest
from syrupy.assertion import SnapshotAssertion

from drivers.sim import open_sim
from reconciler.cli.main import main
from reconciler.observe.host import observe_host
from reconciler.reach import in_force
from tests.conftest import REPO, with_runnable_hooks

EXAMPLES = sorted(str(p.relative_to(REPO)) for p in (REPO / "examples").iterdir() if p.is_dir())
DUMPS = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests/data/xenstore-dumps").iterdir())
SCHEMA = json.loads((REPO / "schemas/reach.schema.json").read_text())


def reach(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    """Both formats of one `reach` call; stderr must name the host first."""
    outputs: dict[str, object] = {}
    for fmt in ("text", "json"):
        assert main(["reach", *args, "--format", fmt]) == 0
        out, err = capsys.readouterr()
        assert err.startswith("host: "), err
        outputs[fmt] = json.loads(out) if fmt == "json" else out
    jsonschema.validate(outputs["json"], SCHEMA)
    return outputs


def compact(outputs: dict[str, object]) -> dict[str, object]:
    """For the snapshot: each JSON item on one line (the rpc half lists every probed call)."""
    doc = outputs["json"]
    assert isinstance(doc, dict)
    items = {part: [json.dumps(item, sort_keys=True) for item in doc[part]] for part in ("v4v", "rpc")}
    return {**outputs, "json": {**doc, **items}}


def test_every_example_and_dump_is_covered() -> None:
    assert EXAMPLES == ["examples/openxt-desktop", "examples/server-host"] and len(DUMPS) == 3


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_on_an_empty_host_then_after_apply(example: str, sim_dir: Path, repo: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    host = ["--host", f"sim:{sim_dir}"]
    empty = reach(capsys, example, *host)
    copy = str(with_runnable_hooks(example, tmp_path / "m"))  # its hooks run /bin/true
    assert main(["apply", copy, *host, "--parallelism", "1"]) == 0
    capsys.readouterr()
    applied = reach(capsys, copy, *host)
    assert applied == empty  # the plan's outcome, computed before it ran, is what runs after
    assert {"empty host": compact(empty), "after apply": compact(applied)} == snapshot

    async def table() -> set[tuple[str, str, int | None, int | None]]:
        async with open_sim(sim_dir, read_only=True) as ports:
            now = in_force(await observe_host(ports))
        assert now is not None
        return {pair.key() for pair in now.v4v}
    pairs = applied["json"]["v4v"]  # type: ignore[index]
    assert {(p["source"], p["destination"], p["source_port"], p["port"]) for p in pairs} == asyncio.run(table())


@pytest.mark.parametrize("dump", DUMPS)
@pytest.mark.parametrize("example", EXAMPLES)
def test_example_against_a_captured_dump(example: str, dump: str, repo: Path, capsys: pytest.CaptureFixture[str],
                                         snapshot: SnapshotAssertion) -> None:
    outputs = compact(reach(capsys, example, "--observed", dump))
    assert main(["reach", example, "--observed", dump]) == 0
    assert {**outputs, "stderr": capsys.readouterr().err} == snapshot
