"""`reconciler reach` on bad input and with --from/--to, through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.cli.main import main
from tests.reach.conftest import vm_doc

DUMP = "tests/data/xenstore-dumps/xen-devel-2022-11-rpi4-pvh-phy-xenstore-ls.txt"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_bad_manifest_prints_validates_lines_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(vm_doc("a", rules=("myself -> nowhere:80",)))
    code, out, err = run(capsys, "validate", str(bad))
    assert code == 1
    shown = [line for line in (out + err).splitlines() if str(bad) in line]
    assert shown
    code, out, err = run(capsys, "reach", str(bad), "--observed", DUMP)
    assert (code, out) == (1, "")
    assert [line for line in err.splitlines() if str(bad) in line] == shown
    assert "Traceback" not in err


def test_an_unknown_vm_is_one_line_naming_the_valid_ones(tmp_path: Path, repo: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for option in ("--from", "--to"):
        code, out, err = run(capsys, "reach", "examples/openxt-desktop", "--observed", DUMP, option, "winl0")
        assert (code, out) == (1, "")
        assert err.splitlines()[-1] == (f"reconciler: error: {option} winl0: no such VM in the manifests or on the host; "
                                        "valid: dom0, guest2, ndvm, uivm, win10, win10-dm, work-linux")  # guest2: the dump's


def test_from_and_to_keep_one_side(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "reach", "examples/openxt-desktop", "--observed", DUMP, "--from", "uivm", "--to", "ndvm",
                       "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert [(p["source"], p["destination"], p["port"]) for p in doc["v4v"]] == [("uivm", "ndvm", 4878), ("uivm", "ndvm", 5555)]
    assert doc["rpc"] == []  # rpc-proxy calls go to dom0's services, not to ndvm
    code, out, _ = run(capsys, "reach", "examples/openxt-desktop", "--observed", DUMP, "--from", "uivm", "--to", "dom0")
    assert code == 0
    assert out.splitlines()[:4] == ["uivm", "  can reach dom0:80  (uivm-v4v-d50a8863)", "  can reach dom0:5555  (uivm-v4v-d4aad3fd)",
                                    "  can reach dom0:5556  (uivm-dbus-signals)"]
    lines = out.splitlines()
    assert "  may not call anything else (5 calls probed)  (global:4: deny all)" in lines
    assert ("  may not call com.citrix.xenclient.xenmgr com.citrix.xenclient.xenmgr.config.Set  (uivm-no-host-config: "
            "deny destination com.citrix.xenclient.xenmgr interface com.citrix.xenclient.xenmgr.config member Set)") in lines


def test_the_readme_examples_are_what_reach_prints(sim_dir: Path, repo: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    readme = (repo / "README.md").read_text().split("### Who can reach whom", 1)[1]
    (tmp_path / "gui.yaml").write_text(readme.split("```yaml\n", 1)[1].split("```", 1)[0])
    for shown_as, argv in (("examples/openxt-desktop --from uivm", ["examples/openxt-desktop", "--from", "uivm"]),
                           ("gui.yaml --from gui", [str(tmp_path / "gui.yaml"), "--from", "gui"])):
        shown = readme.split(f"$ reconciler reach {shown_as}\n", 1)[1].split("```", 1)[0]
        code, out, _ = run(capsys, "reach", *argv, "--host", f"sim:{sim_dir}")
        assert (code, out) == (0, shown)
