"""`reconciler xl-config` through the real entry point, its output read by Xen's own code.

stdout must be the cfg `create` renders with every secret `<redacted>` and still parse
with libxlutil; `--out DIR` must write exactly what create uses (0600, secrets in
clear), which the real `xl create -n` accepts; bad input is one line and exit 1.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.xl.cfg import render_cfg
from reconciler.build import build_of
from reconciler.cli.main import main
from tests.xen import expect, xlutil
from tests.xen.conftest import DryRun

DESKTOP = "examples/openxt-desktop"
PASSWORD = "change-me"  # win10's vncPassword in examples/openxt-desktop/user-vms/win10.yaml
PV_VNC = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: kiosk}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 256
  display: {type: vnc, vncPassword: 's3"cr\\et'}
"""


def _sections(out: str) -> dict[str, str]:
    """stdout split per VM: each cfg starts with its header line."""
    sections: dict[str, str] = {}
    for chunk in out.split("# xl.cfg for VM ")[1:]:
        name = chunk.split(",", 1)[0]
        sections[name] = "# xl.cfg for VM " + chunk
    return sections


@pytest.mark.parametrize("example", sorted(p.name for p in expect.EXAMPLES.iterdir() if p.is_dir()))
def test_prints_every_vm_and_each_cfg_parses_with_libxlutil(example: str, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["xl-config", f"examples/{example}"]) == 0
    out = capsys.readouterr().out
    state = expect.example_state(example)
    sections = _sections(out)
    assert sorted(sections) == sorted(state.vms)
    for name, text in sections.items():
        with xlutil.parse(text, f"{name}.cfg") as cfg:
            assert cfg.string("name") == name
            assert len(cfg.items("disk")) == len(expect.manifest(example, name).disks)


def test_secret_is_redacted_on_stdout_and_the_cfg_still_parses(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["xl-config", DESKTOP, "--vm", "win10"]) == 0
    captured = capsys.readouterr()
    assert PASSWORD not in captured.out + captured.err
    with xlutil.parse(captured.out, "win10.cfg") as cfg:
        assert cfg.string("vncpasswd") == "<redacted>"
        assert cfg.items("pci") == ["0000:00:02.0@02,power_mgmt=1"]
    # apart from the secret, it is the text create renders
    state = expect.example_state("openxt-desktop")
    text, _ = render_cfg(state.vms["win10"], build_of(state, "win10"))
    assert captured.out == text.replace(f'"{PASSWORD}"', '"<redacted>"')


def test_pv_framebuffer_password_is_redacted_inside_the_vfb_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "kiosk.yaml"
    manifest.write_text(PV_VNC)
    assert main(["xl-config", str(manifest)]) == 0
    out = capsys.readouterr().out
    assert "s3" not in out
    with xlutil.parse(out, "kiosk.cfg") as cfg:
        assert cfg.items("vfb") == ["vnc=1,vnclisten=127.0.0.1,vncpasswd=<redacted>"]


def test_out_writes_what_create_uses_0600_atomically(tmp_path: Path, repo: Path, xl_dry_run: DryRun,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cfgs"
    assert main(["xl-config", DESKTOP, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and PASSWORD not in captured.err
    state = expect.example_state("openxt-desktop")
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}.cfg" for name in state.vms)  # no temp file left
    for name in state.vms:
        path = out / f"{name}.cfg"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        if not any(rule.spec.bdf is None for rule in expect.manifest("openxt-desktop", name).pci):
            assert path.read_text() == render_cfg(state.vms[name], build_of(state, name))[0]
    config = xl_dry_run((out / "win10.cfg").read_text())  # what an operator runs by hand
    assert config["b_info"]["type.hvm"]["vnc"]["passwd"] == PASSWORD


def test_pci_match_rule_is_a_comment_and_a_stderr_line_never_a_guess(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["xl-config", DESKTOP, "--vm", "ndvm"]) == 0
    captured = capsys.readouterr()
    rules = sorted(rule.metadata.name for rule in expect.manifest("openxt-desktop", "ndvm").pci if rule.spec.bdf is None)
    assert rules == ["ndvm-ethernet", "ndvm-wireless"]
    comments = [line for line in captured.out.splitlines() if line.startswith("# PCIPassthrough ")]
    assert [line.split()[2] for line in comments] == rules
    assert all("PCI inventory" in line and "not in pci = [...]" in line for line in comments)
    err = captured.err.splitlines()
    assert [line.split()[4] for line in err] == rules and all(line.startswith("xl-config: VM ndvm: ") for line in err)
    with xlutil.parse(captured.out, "ndvm.cfg") as cfg:
        assert cfg.items("pci") == [] and cfg.string("passthrough") is None


def test_unknown_vm_is_one_line_naming_the_valid_ones(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["xl-config", DESKTOP, "--vm", "win11"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "reconciler: error: --vm win11: no such VM in the manifests; valid: ndvm, uivm, win10, work-linux\n"


def test_vm_given_twice_is_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["xl-config", DESKTOP, "--vm", "win10", "--vm", "ndvm"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--vm given twice" in err


def test_invalid_manifest_prints_validates_lines_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: xen.reconciler/v1\nkind: VM\nmetadata: {name: web}\nspec: {virt: xen, memory: 256}\n")
    assert main(["validate", str(bad)]) == 1
    validate_lines = capsys.readouterr().out.splitlines()
    assert main(["xl-config", str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.splitlines() == validate_lines and validate_lines[0].startswith(f"{bad}:4:")


def test_out_that_is_a_file_is_refused_and_left_alone(tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("keep")
    assert main(["xl-config", DESKTOP, "--out", str(target)]) == 1
    assert target.read_text() == "keep"
    err = capsys.readouterr().err
    assert err.startswith(f"reconciler: error: --out {target}: exists and is not a directory") and len(err.splitlines()) == 1


def test_console_entry_point_runs_the_verb(tmp_path: Path, repo: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "reconciler", "xl-config", DESKTOP, "--vm", "uivm"],
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# xl.cfg for VM uivm,") and done.stderr == ""
