"""The plan's Reachability section against a real simulated host: the desktop example
applied once, then planned with its manifests edited (a v4v rule's port, a VM stopped),
and with the host's table opened by hand; a converged plan has no section, and a
captured dump says once that it cannot compare.

Real: the CLI (`apply`, `plan`, `sim fw`), the embedded simulated host in a temp dir,
the loader, observer, diff and renderers. `--parallelism 1` keeps domids, and so every
rendered plan, byte-identical from run to run. Plans only read the saved host, so one
applied host serves every edit.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from syrupy.assertion import SnapshotAssertion

from drivers.sim import open_sim
from reconciler.cli.main import main
from reconciler.loader import load_or_raise
from reconciler.observe.host import observe_host
from reconciler.plan.plan_schema import SCHEMA
from reconciler.plan.reachability import reachability, text_lines
from reconciler.plan.render_json import render_json
from tests.conftest import REPO, with_runnable_hooks
from tests.plan.test_snapshots import HOSTS, SETS, plan_of

EXAMPLE = "examples/openxt-desktop"
DUMP = REPO / "tests/data/xenstore-dumps/xen-devel-2019-06-hvm-qdisk-xenstore-ls.txt"


@pytest.fixture(scope="module")
def applied() -> Iterator[tuple[Path, Path]]:
    """(state dir of a sim host with the desktop example applied, the manifests applied)."""
    root = Path(tempfile.mkdtemp(prefix="sim-"))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECONCILER_SIM_DELAY_SCALE", "0.02")
        env.chdir(REPO)
        manifests = with_runnable_hooks(EXAMPLE, root / "m")
        assert main(["apply", str(manifests), "--host", f"sim:{root / 'host'}", "--parallelism", "1"]) == 0
        yield root / "host", manifests
    shutil.rmtree(root, ignore_errors=True)


def edited(manifests: Path, tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of the manifests with `old` replaced by `new` (once) in `file`."""
    copy = tmp_path / "edited"
    shutil.copytree(manifests, copy)
    path = copy / file
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not once in {file}"
    path.write_text(text.replace(old, new))
    return copy


def plans(manifests: Path, host: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, Any]]:
    capsys.readouterr()
    assert main(["plan", str(manifests), *host]) == 0
    text = capsys.readouterr().out
    assert main(["plan", str(manifests), *host, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    return text, data["reachability"]


def section(text: str) -> list[str]:
    """The lines of the text plan's Reachability section (none: no section)."""
    lines = text.splitlines()
    if "Reachability:" not in lines:
        return []
    start = lines.index("Reachability:") + 1
    return lines[start:lines.index("", start)]


def pair_lines(text: str) -> list[str]:
    return [line for line in section(text) if line.startswith(("  +", "  -"))]


def test_a_converged_plan_has_no_reachability_section(applied: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    state, manifests = applied
    text, data = plans(manifests, ["--host", f"sim:{state}"], capsys)
    assert text.startswith("No changes.") and "Reachability" not in text
    assert data == {"allowed": [], "denied": [], "notes": []}
    # Not only because nothing runs: what the host enforces is what the manifests allow.

    async def compare() -> None:
        async with open_sim(state) as ports:
            found = reachability(load_or_raise([str(manifests)]), await observe_host(ports))
        assert (found.allowed, found.denied) == ((), ())

    asyncio.run(compare())


def test_a_v4v_rule_moved_to_another_port(applied: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    state, manifests = applied
    changed = edited(manifests, tmp_path, "uivm.yaml", "myself -> dom-type=ndvm:5555", "myself -> dom-type=ndvm:5557")
    text, data = plans(changed, ["--host", f"sim:{state}"], capsys)
    lines = pair_lines(text)
    assert "  + uivm can now reach ndvm:5557  (rule uivm-to-ndvm)" in lines
    assert "  - uivm can no longer reach ndvm:5555  (no rule allows it once applied)" in lines
    assert "  + ndvm can now reach uivm from port 5557  (rule uivm-to-ndvm)" in lines  # bidirectional: the replies
    assert len(lines) == 4
    assert {"section": section(text), "json": data} == snapshot


def test_a_vm_stopped(applied: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      snapshot: SnapshotAssertion) -> None:
    state, manifests = applied
    changed = edited(manifests, tmp_path, "user-vms/work-linux.yaml", "  updatePolicy: live",
                     "  updatePolicy: live\n  state: stopped")
    text, data = plans(changed, ["--host", f"sim:{state}"], capsys)
    lines = pair_lines(text)
    assert "  - work-linux can no longer reach dom0:5559  (work-linux stops)" in lines
    assert "  - uivm can no longer reach work-linux (any port)  (work-linux stops)" in lines
    assert all(line.startswith("  - ") and line.endswith("(work-linux stops)") for line in lines)
    assert data["allowed"] == [] and isinstance(data["denied"], list)
    assert {(d["source"], d["destination"]) for d in data["denied"]} == {
        ("work-linux", "dom0"), ("work-linux", "uivm"), ("uivm", "work-linux")}
    assert {"section": section(text), "json": data} == snapshot


RPC_RULE = """  rpcRules:
    - rule: allow destination com.citrix.xenclient.networkdaemon interface com.citrix.xenclient.networkdaemon member list_networks
      name: work-linux-netd
  properties: {usb-control: true}
  v4vRules:"""


def test_an_rpc_rule_and_a_property_added(applied: tuple[Path, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    """work-linux's own rule opens one call; `usb-control: true` opens the stock rule that
    tests it. Alone they change only the rpc-proxy policy; the v4v edit beside them makes
    the plan run steps here whatever its rpc steps are."""
    state, manifests = applied
    changed = edited(manifests, tmp_path, "user-vms/work-linux.yaml", "  v4vRules:", RPC_RULE)

    async def compare() -> None:  # the rpc edit alone, as the plan compares it
        async with open_sim(state) as ports:
            found = reachability(load_or_raise([str(changed)]), await observe_host(ports))
        assert [line.split("  (")[0] for line in text_lines(found)] == [
            "+ work-linux may now call com.citrix.xenclient.networkdaemon com.citrix.xenclient.networkdaemon.list_networks",
            "+ work-linux may now call com.citrix.xenclient.usbdaemon"]

    asyncio.run(compare())
    both = tmp_path / "both"
    shutil.copytree(changed, both)
    vm = both / "user-vms/work-linux.yaml"
    vm.write_text(vm.read_text().replace("rule: myself -> 0:5559", "rule: myself -> 0:5560"))
    text, data = plans(both, ["--host", f"sim:{state}"], capsys)
    lines = pair_lines(text)
    assert "  + work-linux may now call com.citrix.xenclient.networkdaemon com.citrix.xenclient.networkdaemon.list_networks" \
           "  (work-linux-netd: allow destination com.citrix.xenclient.networkdaemon interface " \
           "com.citrix.xenclient.networkdaemon member list_networks)" in lines
    assert any(line.startswith("  + work-linux may now call com.citrix.xenclient.usbdaemon  (global:") for line in lines)
    assert "  + work-linux can now reach dom0:5560  (rule work-linux-events)" in lines
    assert "  - work-linux can no longer reach dom0:5559  (no rule allows it once applied)" in lines
    assert len(lines) == 4  # one-way rule: no reply pairs
    assert {"section": section(text), "json": data} == snapshot


def test_a_vm_stopped_takes_its_stub_domain_with_it(applied: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    state, manifests = applied
    changed = edited(manifests, tmp_path, "user-vms/win10.yaml", "  type: svm", "  type: svm\n  state: stopped")
    text, data = plans(changed, ["--host", f"sim:{state}"], capsys)
    lines = pair_lines(text)
    assert "  - win10-dm can no longer reach dom0:5555  (win10 stops)" in lines
    assert all(line.startswith("  - ") and line.endswith("(win10 stops)") for line in lines), lines
    assert data["allowed"] == [] and len(data["denied"]) == len(lines)


def test_a_table_opened_by_hand_is_closed_by_the_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Without its default REJECT the table lets every domain reach every other: the plan
    puts it back, which closes `* -> *`, and an entry missing from the open table is
    not "now allowed" (it was, through the wildcard)."""
    monkeypatch.setenv("RECONCILER_SIM_DELAY_SCALE", "0.02")
    monkeypatch.chdir(REPO)
    state = tmp_path / "host"
    manifests = with_runnable_hooks(EXAMPLE, tmp_path / "m")
    assert main(["apply", str(manifests), "--host", f"sim:{state}", "--parallelism", "1"]) == 0
    capsys.readouterr()
    assert main(["sim", "fw", "--state", str(state), "--delete", "-j REJECT"]) == 0
    domids = _domids(state)
    entry = f"--dom-in {domids['uivm']} --dom-out {domids['ndvm']} --port-out 5555 -j ACCEPT"
    assert main(["sim", "fw", "--state", str(state), "--delete", entry]) == 0
    text, data = plans(manifests, ["--host", f"sim:{state}"], capsys)
    assert pair_lines(text) == ["  - any domain can no longer reach any domain (any port)  (no rule allows it once applied)"]
    assert data["allowed"] == []
    assert data["denied"] == [{"source": "*", "destination": "*", "source_port": None, "port": None, "rules": []}]


def _domids(state: Path) -> dict[str, int]:
    async def read() -> dict[str, int]:
        async with open_sim(state) as ports:
            return {name: info.domid for name, info in (await observe_host(ports)).domains.items()}

    return asyncio.run(read())


def test_a_dump_says_once_that_it_cannot_compare(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    text, data = plans(REPO / "manifests", ["--observed", str(DUMP)], capsys)
    assert section(text) == ["  not compared: this source (a captured dump?) shows neither the v4v firewall table nor "
                             "the rpc-proxy policy, so what the plan changes there is unknown; `reconciler reach` "
                             "lists what the manifests allow once applied"]
    assert data["allowed"] is None and data["denied"] is None and len(data["notes"]) == 1


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("manifests", SETS)
def test_json_plans_follow_the_plan_schema(manifests: str, host: str, repo: Path) -> None:
    """schemas/plan.schema.json (`reconciler schema`) describes every snapshot plan."""
    jsonschema.Draft202012Validator(SCHEMA).validate(json.loads(render_json(plan_of(manifests, host))))
