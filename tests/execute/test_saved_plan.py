"""`apply --plan FILE` applies only what was reviewed: a manifest edit after `plan`
(memory, a secret, a new VM) is refused in one line naming what changed, before the
host is opened; malformed plan files are one line, never a traceback. Real: the CLI
entry point, files on disk, the simulated host served over its sockets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.loader import load_or_raise

Cli = Callable[..., tuple[int, str, str]]

DB = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: db}
spec:
  virt: hvm
  memory: 4096
  display: {type: vnc, vncPassword: hunter2-very-secret}
  disks: [{vdev: hda, target: /srv/db.img}]
"""
WEB = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: pvh
  memory: 512
  kernel: /srv/vmlinuz
"""


def _plan(cli: Cli, folder: Path, saved: Path) -> None:
    assert cli("plan", str(folder), "--format", "json", "--out", str(saved))[0] == 0


def test_a_manifest_edit_after_the_plan_is_refused_naming_the_vm(served: Callable[..., Any], cli: Cli, tmp_path: Path,
                                                                  write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("db.yaml", DB)
    host = served()
    saved = tmp_path / "plan.json"
    _plan(cli, folder, saved)  # reviewed: db at 4096 MiB
    write_manifest("db.yaml", DB.replace("memory: 4096", "memory: 3072"))
    code, out, err = cli("apply", str(folder), "--plan", str(saved))
    assert (code, out) == (1, "")
    assert err == "reconciler: error: the manifests changed since the plan was made (VM db changed); run plan again\n"
    assert host.run(lambda p: p.toolstack.list_domains()) == []  # nothing was created


def test_an_added_vm_is_named(served: Callable[..., Any], cli: Cli, tmp_path: Path,
                              write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("db.yaml", DB)
    served()
    saved = tmp_path / "plan.json"
    _plan(cli, folder, saved)
    write_manifest("web.yaml", WEB)
    code, _, err = cli("apply", str(folder), "--plan", str(saved))
    assert code == 1 and "(VM web added)" in err and err.count("\n") == 1


def test_a_changed_secret_is_refused_without_printing_it(served: Callable[..., Any], cli: Cli, tmp_path: Path,
                                                          write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("db.yaml", DB)
    served()
    saved = tmp_path / "plan.json"
    _plan(cli, folder, saved)
    assert "hunter2" not in saved.read_text()
    write_manifest("db.yaml", DB.replace("hunter2-very-secret", "correct-horse"))
    code, out, err = cli("apply", str(folder), "--plan", str(saved))
    assert code == 1 and "a secret (sensitive field) changed" in err
    assert "hunter2" not in out + err and "correct-horse" not in out + err


def test_unchanged_manifests_in_another_order_and_file_layout_apply(served: Callable[..., Any], cli: Cli, tmp_path: Path,
                                                                     write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("db.yaml", DB)
    write_manifest("web.yaml", WEB)
    host = served()
    saved = tmp_path / "plan.json"
    _plan(cli, folder, saved)
    (folder / "web.yaml").unlink()
    (folder / "db.yaml").unlink()
    write_manifest("all.yaml", "# moved into one file, web first\n" + WEB + "---\n" + DB)
    code, out, err = cli("apply", str(folder), "--plan", str(saved))
    assert (code, err) == (0, ""), out
    assert sorted(d.name for d in host.run(lambda p: p.toolstack.list_domains())) == ["db", "web"]


def test_the_digest_covers_secrets_and_is_order_independent(tmp_path: Path) -> None:
    from reconciler.model.digest import desired_digest

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "db.yaml").write_text(DB)
    (tmp_path / "a" / "web.yaml").write_text(WEB)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "all.yaml").write_text(WEB + "---\n" + DB)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "all.yaml").write_text(WEB + "---\n" + DB.replace("hunter2", "hunter3"))
    a, b, c = (desired_digest(load_or_raise([str(tmp_path / n)])) for n in "abc")
    assert a == b
    assert a.total != c.total and a.vms == c.vms  # a secret is in the total only


def test_a_plan_of_another_format_version_is_refused(served: Callable[..., Any], cli: Cli, tmp_path: Path,
                                                     write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("db.yaml", DB)
    host = served()
    saved = tmp_path / "plan.json"
    _plan(cli, folder, saved)
    data = json.loads(saved.read_text())
    data["format_version"] = 1
    del data["desired_digest"]
    saved.write_text(json.dumps(data))
    code, _, err = cli("apply", str(folder), "--plan", str(saved))
    assert code == 1 and "plan format version '1'" in err and err.count("\n") == 1
    assert host.run(lambda p: p.toolstack.list_domains()) == []


@pytest.mark.parametrize("content", ["[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000,
                                     '{"format_version": ' + "9" * 5000 + "}", "\x00\xff not json", ""])
def test_bad_plan_files_are_one_line(cli: Cli, tmp_path: Path, write_manifest: Callable[[str, str], Path],
                                     content: str) -> None:
    folder = write_manifest("db.yaml", DB)
    saved = tmp_path / "plan.json"
    saved.write_bytes(content.encode("utf-8", errors="surrogateescape"))
    code, out, err = cli("apply", str(folder), "--plan", str(saved))
    assert (code, out) == (1, "") and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"reconciler: error: --plan {saved}: ")


def test_a_fifo_as_plan_file_is_refused_without_blocking(state_dir: Path, tmp_path: Path,
                                                         write_manifest: Callable[[str, str], Path]) -> None:
    """A real process: the code before the fix blocked in open() for ever (the timeout
    only keeps that from stalling the suite)."""
    folder = write_manifest("db.yaml", DB)
    fifo = tmp_path / "plan.json"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "reconciler", "apply", str(folder), "--plan", str(fifo),
                           "--host", f"sim:{state_dir}"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"reconciler: error: --plan {fifo}: not a regular file; "
                           "write it with plan --format json --out FILE\n")


def test_a_plan_file_over_the_size_limit_is_refused_unread(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           write_manifest: Callable[[str, str], Path]) -> None:
    monkeypatch.setattr("reconciler.cli.apply.SAVED_PLAN_MAX_BYTES", 1 << 20)  # 256 MiB is slow to write in a test
    folder = write_manifest("db.yaml", DB)
    saved = tmp_path / "plan.json"
    saved.write_text('{"pad": "' + "x" * (2 << 20) + '"}')
    code, _, err = cli("apply", str(folder), "--plan", str(saved))
    assert code == 1 and err == (f"reconciler: error: --plan {saved}: over 1 MiB, not a saved plan; "
                                 "write it with plan --format json --out FILE\n")
