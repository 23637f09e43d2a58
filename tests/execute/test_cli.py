"""`reconciler apply` as users call it: `--plan FILE` applies only the reviewed plan,
bad manifests never reach the host, bad flags are one line, secrets are never printed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Cli = Callable[..., tuple[int, str, str]]

WEB = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: hvm
  memory: 512
  maxMemory: 1024
  display: {type: vnc, vncPassword: hunter2-very-secret}
  disks: [{vdev: hda, target: /srv/web.img}]
"""


def test_saved_plan_is_applied_when_the_host_has_not_changed(served: Callable[..., Any], cli: Cli, tmp_path: Path,
                                                              write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("web.yaml", WEB)
    host = served()
    saved = tmp_path / "plan.json"
    assert cli("plan", str(folder), "--format", "json", "--out", str(saved))[0] == 0
    code, out, err = cli("apply", str(folder), "--plan", str(saved))
    assert (code, err) == (0, ""), out
    assert [d.name for d in host.run(lambda p: p.toolstack.list_domains())] == ["web"]


def test_saved_plan_is_refused_once_the_host_changed(served: Callable[..., Any], cli: Cli, tmp_path: Path,
                                                     write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("web.yaml", WEB)
    host = served()
    assert cli("apply", str(folder))[0] == 0
    web = host.run(lambda p: p.toolstack.list_domains())[0].domid
    host.run(lambda p: p.toolstack.mem_set(web, 768))
    saved = tmp_path / "plan.json"
    assert cli("plan", str(folder), "--format", "json", "--out", str(saved))[0] == 0
    host.run(lambda p: p.toolstack.mem_set(web, 640))  # drift after the review
    code, out, err = cli("apply", str(folder), "--plan", str(saved))
    assert code == 1 and out == ""
    assert err == "reconciler: error: the host changed since the plan was made; run plan again\n"
    assert host.run(lambda p: p.toolstack.list_domains())[0].memory_mib == 640  # nothing was done


def test_saved_plan_with_other_actions_is_refused(served: Callable[..., Any], cli: Cli, tmp_path: Path,
                                                  write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("web.yaml", WEB)
    host = served()
    saved = tmp_path / "plan.json"
    assert cli("plan", str(folder), "--format", "json", "--out", str(saved))[0] == 0
    data = json.loads(saved.read_text())
    data["actions"] = data["actions"][:-1]  # the reviewed plan did less than what would run now
    saved.write_text(json.dumps(data))
    code, _, err = cli("apply", str(folder), "--plan", str(saved))
    assert code == 1 and "the host changed since the plan was made; run plan again" in err
    assert host.run(lambda p: p.toolstack.list_domains()) == []


def test_unreadable_saved_plan_is_one_line(cli: Cli, tmp_path: Path, write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("web.yaml", WEB)
    saved = tmp_path / "plan.json"
    saved.write_text("{not json")
    code, _, err = cli("apply", str(folder), "--plan", str(saved))
    assert code == 1 and err.count("\n") == 1 and "cannot read the saved plan" in err


def test_bad_manifest_exits_1_and_never_opens_the_host(cli: Cli, state_dir: Path,
                                                       write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("web.yaml", WEB.replace("memory: 512", "memory: lots"))
    code, out, err = cli("apply", str(folder))
    assert code == 1 and out == ""
    assert err.startswith(f"{folder}/web.yaml:6:") and ": error: " in err and "Traceback" not in err
    assert list(state_dir.iterdir()) == []  # no socket, no state file: the sim host was never started


def test_bad_manifest_leaves_a_running_host_unchanged(served: Callable[..., Any], cli: Cli,
                                                      write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("web.yaml", WEB)
    host = served()
    assert cli("apply", str(folder))[0] == 0
    async def state(ports: Any) -> tuple[object, ...]:  # what apply would change; backends settle on their own
        return (await ports.toolstack.list_domains(), await ports.firewall.list(), await ports.xenstore.snapshot("/vm"))

    before = host.run(state)
    (folder / "web.yaml").write_text(WEB.replace("memory: 512", "memory: 2048"))  # above maxMemory: invalid
    code, out, err = cli("apply", str(folder))
    assert code == 1 and out == "" and "maxMemory" in err
    assert host.run(state) == before


def test_parallelism_below_one_is_refused_in_one_line(cli: Cli, write_manifest: Callable[[str, str], Path]) -> None:
    code, _, err = cli("apply", str(write_manifest("web.yaml", WEB)), "--parallelism", "0")
    assert code == 1
    assert err == "reconciler: error: parallelism must be at least 1, found 0; use --parallelism 1 or more\n"


def test_secrets_never_reach_the_output_or_the_record(served: Callable[..., Any], cli: Cli,
                                                       write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("web.yaml", WEB)
    host = served()
    code, out, err = cli("apply", str(folder))
    assert code == 0
    assert "hunter2" not in out + err
    tree = host.run(lambda p: p.xenstore.snapshot("/vm"))
    applied = b"".join(v for k, v in sorted(tree.items()) if "/reconciler/applied/" in k)
    assert b"hunter2" not in applied and b'"vncPassword":"pbkdf2-sha256:' in applied


def test_apply_on_a_converged_host_does_nothing_and_exits_0(served: Callable[..., Any], cli: Cli,
                                                             write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("web.yaml", WEB)
    host = served()
    assert cli("apply", str(folder))[0] == 0
    before = host.run(lambda p: p.toolstack.list_domains())
    code, out, err = cli("apply", str(folder))
    assert (code, err) == (0, "")
    assert out == "No changes. The host matches the manifests.\nApply complete: no changes.\n"
    assert host.run(lambda p: p.toolstack.list_domains()) == before


def test_every_verb_that_reads_the_host_names_it_first_on_stderr(served: Callable[..., Any], state_dir: Path,
                                                                  capsys: Any, write_manifest: Callable[[str, str], Path]) -> None:
    """DESIGN 6: `host: sim:DIR (how)` is the first stderr line, and says how the host is reached."""
    from reconciler.cli.main import main

    folder = write_manifest("web.yaml", WEB)

    def first_err_line(*argv: str) -> str:
        capsys.readouterr()
        main([*argv, "--host", f"sim:{state_dir}"])
        return str(capsys.readouterr().err).split("\n")[0]

    embedded = f"host: sim:{state_dir} (embedded simulated host)"
    assert first_err_line("apply", str(folder)) == embedded
    assert first_err_line("suspend") == embedded
    assert first_err_line("resume") == embedded
    assert first_err_line("plan", str(folder)) == f"host: sim:{state_dir} (saved simulated host, read only)"
    assert first_err_line("observe") == f"host: sim:{state_dir} (saved simulated host, read only)"
    served()
    assert first_err_line("plan", str(folder)) == f"host: sim:{state_dir} (simulated host served by reconciler sim serve)"
