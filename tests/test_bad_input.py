"""Bad input is one line and exit 1, before anything touches the host, never a traceback
(DESIGN 6): huge numbers, unwritable `--out`s, state paths that are files, FIFOs among
the manifests, control characters in what reaches xl.cfg and scripts, xenstoreData over
xenstore's message size, argparse's usage errors (exit 1, not 2: 2 is "changes").
Real: the CLI entry point (in process, or `python -m reconciler` where a process must be
watched or could hang), files, FIFOs and the simulated host's state directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli.main import main

WEB = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: pvh
  memory: 512
  kernel: /srv/vmlinuz
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    (path / "web.yaml").write_text(WEB)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def process(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m reconciler ARGV`; the timeout only keeps a hang from stalling the suite."""
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_HOST"}
    return subprocess.run([sys.executable, "-m", "reconciler", *argv], capture_output=True, text=True,
                          timeout=timeout, env={**env, "RECONCILER_SIM_DELAY_SCALE": "0.02"})


def one_line(err: str) -> None:
    assert err.count("\n") == 1 and err.startswith("reconciler") and "Traceback" not in err, err


# ---- numbers -------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("9" * 5000, "web.yaml:6:11: error: an integer of 5000 characters; no manifest field takes a number over 100 digits (Xen's largest values fit in 64 bits: 20 digits)"),
    ('"' + "9" * 5000 + 'Mi"', "web.yaml:6:11: error: spec.memory: expected at most 16777216 MiB, found a number of 5002 characters"),
])
def test_a_5000_digit_memory_is_one_line_at_its_place(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      value: str, expected: str) -> None:
    (folder / "web.yaml").write_text(WEB.replace("memory: 512", f"memory: {value}"))
    code, out, err = run(capsys, "validate", str(folder))
    assert code == 1 and out == f"{folder}/{expected}\n" and "Traceback" not in err
    state = tmp_path / "sim"
    code, out, err = run(capsys, "apply", str(folder), "--host", f"sim:{state}")
    assert code == 1 and err == f"{folder}/{expected}\n"
    assert not state.exists()  # the host was never opened


# ---- --out, --state, --host paths ----------------------------------------------------


@pytest.mark.parametrize("out", ["missing/plan.json", ".", "special"])
def test_plan_out_that_cannot_be_written_is_refused_before_observing(folder: Path, tmp_path: Path, out: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`special` stands for /dev/null (a FIFO here: the old code, run as root, replaced
    /dev/null itself with a regular file by its atomic rename)."""
    state = tmp_path / "sim"
    target = tmp_path / out
    if out == "special":
        os.mkfifo(target)
    code, stdout, err = run(capsys, "plan", str(folder), "--host", f"sim:{state}", "--out", str(target))
    assert (code, stdout) == (1, "") and err.startswith(f"reconciler: error: --out {target}: ")
    one_line(err)
    assert not state.exists()
    assert out != "special" or target.is_fifo()


def test_apply_on_a_sim_directory_that_cannot_exist_is_one_line(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "apply", str(folder), "--host", "sim:/proc/nope")
    assert (code, out) == (1, "")
    assert err == ("reconciler: error: --host sim:/proc/nope: cannot use /proc/nope (No such file or directory); "
                   "name a directory you can write, e.g. sim:.reconciler/sim\n")


@pytest.mark.parametrize("verb", ["plan", "apply"])
def test_a_sim_host_path_that_is_a_file_is_one_line(folder: Path, tmp_path: Path, verb: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "passwd"
    file.write_text("root:x:0:0::/root:/bin/sh\n")
    code, out, err = run(capsys, verb, str(folder), "--host", f"sim:{file}")
    assert (code, out) == (1, "") and str(file) in err and "not a directory" in err
    one_line(err)
    assert file.read_text() == "root:x:0:0::/root:/bin/sh\n"


def test_sim_serve_on_a_file_is_one_line_and_exit_1(tmp_path: Path) -> None:
    file = tmp_path / "passwd"
    file.write_text("root:x:0:0::/root:/bin/sh\n")
    done = process("sim", "serve", "--state", str(file))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"reconciler: error: {file}: cannot use it as the simulated host's state directory "
                           "(not a directory); name a directory, e.g. .reconciler/sim\n")
    assert file.read_text() == "root:x:0:0::/root:/bin/sh\n"


@pytest.mark.parametrize("check", [[], ["--check"]])
def test_schema_out_on_an_existing_file_is_refused_and_the_file_untouched(tmp_path: Path, check: list[str],
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "passwd"
    file.write_text("root:x:0:0::/root:/bin/sh\n")
    code, out, err = run(capsys, "schema", "--out", str(file), *check)
    assert (code, out) == (1, "")
    assert err == (f"reconciler: error: --out {file}: exists and is not a directory; "
                   "--out names the schema directory, e.g. schemas\n")
    assert file.read_text() == "root:x:0:0::/root:/bin/sh\n"


# ---- FIFOs among the manifests -------------------------------------------------------


@pytest.mark.parametrize("verb", ["validate", "plan", "apply"])
def test_a_fifo_in_a_manifest_directory_is_refused_not_waited_on(folder: Path, tmp_path: Path, verb: str) -> None:
    os.mkfifo(folder / "pipe.yaml")
    state = tmp_path / "sim"
    done = process(verb, str(folder), *(["--host", f"sim:{state}"] if verb != "validate" else []))
    printed = done.stdout if verb == "validate" else done.stderr  # validate prints findings on stdout
    assert done.returncode == 1
    assert printed.startswith(f"{folder}/pipe.yaml:1:1: error: a FIFO, not a regular file; "
                              "manifests are read from regular files only"), printed
    assert "Traceback" not in done.stderr
    assert not state.exists()


def test_a_fifo_named_directly_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    code, out, _ = run(capsys, "validate", str(tmp_path / "pipe.yaml"))
    assert code == 1 and out.startswith(f"{tmp_path}/pipe.yaml:1:1: error: a FIFO, not a regular file")


# ---- control characters, xenstoreData size -------------------------------------------

CONTROL = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: pvh
  memory: 512
  kernel: "/srv/vm\\nlinuz"
  cmdline: "root=/dev/xvda1\\0 ro"
  hooks: {preBoot: "/usr/bin/x\\ey", postCreate: "/usr/bin/a\\tb"}
  disks:
    - {vdev: xvda, target: /srv/a.img, script: "block\\nrm -rf /"}
  nics:
    - {bridge: xenbr0, script: "vif-bridge\\a"}
---
apiVersion: xen.reconciler/v1
kind: Disk
metadata: {name: data}
spec: {vm: web, vdev: xvdb, target: "/srv/data\\r.img"}
"""


def test_control_characters_fail_validate_at_their_place(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "web.yaml").write_text(CONTROL)
    code, out, _ = run(capsys, "validate", str(folder))
    tail = "; xl.cfg, xenstore and hotplug scripts take it as one line of printable text"
    assert code == 1
    assert out.splitlines() == [f"{folder}/web.yaml:{place}: error: {what}{tail}" for place, what in [
        ("7:11", "spec.kernel: a newline at character 8"),
        ("8:12", "spec.cmdline: a NUL at character 16"),
        ("9:20", "spec.hooks.preBoot: control character 0x1b at character 11"),
        ("9:49", "spec.hooks.postCreate: a tab at character 11"),
        ("11:48", "spec.disks[0].script: a newline at character 6"),
        ("13:32", "spec.nics[0].script: control character 0x07 at character 11"),
        ("18:37", "spec.target: a carriage return at character 10"),
    ]]


def test_a_xenstore_data_value_over_the_message_size_fails_validate(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    room = 4096 - len("/local/domain/32751/vm-data/blob") - 1
    fits, over = "x" * room, "é" * (room // 2 + 1)  # the limit is in bytes, not characters
    (folder / "web.yaml").write_text(WEB + f"  xenstoreData:\n    vm-data/blob: {over}\n    vm-data/ok: {fits[:4000]}\n")
    code, out, _ = run(capsys, "validate", str(folder))
    assert code == 1
    assert out == (f"{folder}/web.yaml:9:19: error: spec.xenstoreData[vm-data/blob]: the value is {len(over.encode())} "
                   f"bytes; xenstore takes at most 4096 bytes per write, path included, so at most {room} here "
                   "(split it over several keys)\n")
    (folder / "web.yaml").write_text(WEB + f"  xenstoreData:\n    vm-data/blob: {fits}\n")
    assert run(capsys, "validate", str(folder))[0] == 0


# ---- usage errors ----------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["plan"], "reconciler plan: error: the following arguments are required: PATH; see 'reconciler plan --help'"),
    (["plan", "m", "--detailed-exitcode", "--format", "yaml"], "reconciler plan: error: argument --format: invalid choice"),
    (["apply", "m", "--parallelism", "many"], "reconciler apply: error: argument --parallelism: invalid int value: 'many'"),
    (["frobnicate"], "reconciler: error: argument VERB: invalid choice: 'frobnicate'"),
    (["sim", "create", "web", "--virt", "pvh", "--memory", "9" * 5000], "reconciler sim create: error: argument --memory: invalid int value"),
])
def test_usage_errors_exit_1_in_one_line(argv: list[str], message: str) -> None:
    done = process(*argv)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
