"""VM hooks run as DESIGN 4 says, through the real CLI on a served simulated host.

Real: hook scripts written into tmp (chmod +x) and run by `drivers.hooks.LocalHooks` as
`reconciler apply` runs them; each looks at the served host with Xen's own
`xenstore-list`/`xenstore-read` to say which domains exist while it runs. Faked: nothing.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Cli = Callable[..., tuple[int, str, str]]
HOOKS = ("preBoot", "postCreate", "onStateChange", "preDelete")


def _script(folder: Path, name: str, sock: Path, body: str = "") -> Path:
    """A hook that appends `NAME ARGS...|DOMAINS` to folder/calls.log (DOMAINS: the names
    of the domains xenstore has while it runs), writes its environment to
    folder/NAME.env, then runs `body`."""
    path = folder / name
    path.write_text(f"""#!/bin/sh
names=""
for d in $(XENSTORED_PATH={sock} xenstore-list /local/domain); do
  names="$names $(XENSTORED_PATH={sock} xenstore-read /local/domain/$d/name)"
done
echo "{name} $*|$names" >> {folder}/calls.log
env > {folder}/{name}.env
{body}
""")
    path.chmod(0o755)
    return path


def _manifest(folder: Path, hooks: dict[str, Path], name: str = "web", state: str = "running") -> Path:
    lines = "".join(f"    {hook}: {path}\n" for hook, path in hooks.items()) or "    {}\n"
    (folder / f"{name}.yaml").write_text(f"""apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: {name}}}
spec:
  virt: pvh
  memory: 128
  kernel: /srv/vmlinuz
  state: {state}
  hooks:
{lines}""")
    return folder


def _calls(folder: Path) -> list[str]:
    log = folder / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def hooks_dir(tmp_path: Path) -> Path:
    path = tmp_path / "hooks"
    path.mkdir()
    return path


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    path = tmp_path / "manifests"
    path.mkdir()
    return path


def test_hooks_get_their_argv_and_a_minimal_environment_and_a_converged_plan_runs_none(
        served: Callable[..., Any], cli: Cli, state_dir: Path, hooks_dir: Path, manifests: Path) -> None:
    host = served()
    sock = state_dir / "xenstored.sock"
    hooks = {hook: _script(hooks_dir, hook, sock) for hook in HOOKS}
    _manifest(manifests, hooks)
    code, out, _ = cli("plan", str(manifests))
    uuid = re.search(r'spec.uuid = "([0-9a-f-]+)"', out)
    assert code == 0 and uuid, out
    vm_uuid = uuid.group(1)
    # Each hook step is a plan line of its own: argv, timeout, when, what a failure does.
    assert (f'  hook vm/web/pre-boot: preBoot runs ["{hooks["preBoot"]}", "{vm_uuid}"] (timeout 30 s) '
            "before the domain is built; a failure fails the start") in out.splitlines()
    assert f'  hook vm/web/on-running: onStateChange runs ["{hooks["onStateChange"]}", "{vm_uuid}", "running"]' in out
    assert "vm/web/post-create" in out and "pre-delete" not in out  # preDelete: only for a VM removed
    code, out, err = cli("apply", str(manifests))
    assert (code, err) == (0, ""), out
    assert "0 failed (6 steps done)." in out
    assert _calls(hooks_dir) == [
        f"preBoot {vm_uuid}| Domain-0",  # before the build: no domain yet
        f"postCreate {vm_uuid}| Domain-0 web",  # built (paused), before it runs
        f"onStateChange {vm_uuid} running| Domain-0 web",
    ]
    env = dict(line.split("=", 1) for line in (hooks_dir / "preBoot.env").read_text().splitlines())
    env.pop("PWD", None)  # the shell's own
    assert env == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    assert "RECONCILER_RETRY_BACKOFF_S" in os.environ  # set for this test, and not passed on
    # Converged: nothing to plan, nothing to apply, no hook runs again.
    code, out, _ = cli("plan", str(manifests), "--detailed-exitcode")
    assert code == 0 and "No changes." in out, out
    code, out, _ = cli("apply", str(manifests))
    assert code == 0 and "Apply complete: no changes." in out
    assert len(_calls(hooks_dir)) == 3
    assert [d.name for d in host.run(lambda p: p.toolstack.list_domains())] == ["web"]


def test_hook_output_goes_to_the_step_log(served: Callable[..., Any], cli: Cli, state_dir: Path, hooks_dir: Path,
                                         manifests: Path) -> None:
    served()
    hook = _script(hooks_dir, "preBoot", state_dir / "xenstored.sock", "echo checked the IGD; echo 'warn: slow' >&2")
    _manifest(manifests, {"preBoot": hook})
    code, out, err = cli("apply", str(manifests), "-v")
    assert code == 0, out
    line = next(line for line in err.splitlines() if "reconciler.execute.hooks" in line)
    assert line.startswith(f"INFO reconciler.execute.hooks: hook {hook} ")
    assert "step=vm/web/pre-boot" in line and "status=0" in line
    assert "stdout=checked the IGD\\n" in line and "stderr=warn: slow\\n" in line


def test_a_failing_pre_boot_fails_the_start_and_the_next_plan_still_creates(
        served: Callable[..., Any], cli: Cli, state_dir: Path, hooks_dir: Path, manifests: Path) -> None:
    host = served()
    sock = state_dir / "xenstored.sock"
    hooks = {"preBoot": _script(hooks_dir, "preBoot", sock, "echo 'no IGD on this host' >&2; exit 3"),
             "postCreate": _script(hooks_dir, "postCreate", sock)}
    _manifest(manifests, hooks)
    code, out, _ = cli("apply", str(manifests))
    assert code == 1
    assert re.search(rf"^  vm/web/pre-boot: hook preBoot {hooks['preBoot']} of VM 'web' exited with status 3: "
                     r"no IGD on this host$", out, re.M), out
    assert "vm/web/create: skipped (vm/web/pre-boot failed)" in out and "  VM `web`: failed (step vm/web/pre-boot)\n" in out
    assert host.run(lambda p: p.toolstack.list_domains()) == []
    assert [c.split("|")[0].split()[0] for c in _calls(hooks_dir)] == ["preBoot"]  # postCreate never ran
    code, out, _ = cli("plan", str(manifests), "--detailed-exitcode")
    assert code == 2 and "  + VM web [live]: not on the host: created and started" in out
    assert "hook vm/web/pre-boot:" in out


def test_a_hook_past_its_timeout_is_killed_with_its_children(
        served: Callable[..., Any], cli: Cli, state_dir: Path, hooks_dir: Path, manifests: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    host = served()
    monkeypatch.setenv("RECONCILER_HOOK_TIMEOUT_S", "1")
    hook = hooks_dir / "preBoot"  # its pids first: the timeout is short
    hook.write_text(f"#!/bin/sh\necho $$ > {hooks_dir}/hook.pid\nsleep 600 &\necho $! > {hooks_dir}/child.pid\nwait\n")
    hook.chmod(0o755)
    _manifest(manifests, {"preBoot": hook})
    code, out, _ = cli("plan", str(manifests))
    assert f'preBoot runs ["{hook}", ' in out and "(timeout 1 s)" in out
    code, out, _ = cli("apply", str(manifests))
    assert code == 1
    assert re.search(rf"^  vm/web/pre-boot: hook preBoot {hook} of VM 'web' did not finish within its 1 s timeout "
                     r"and was killed \(SIGTERM\); raise RECONCILER_HOOK_TIMEOUT_S or fix the hook$", out, re.M), out
    assert host.run(lambda p: p.toolstack.list_domains()) == []
    for name in ("hook.pid", "child.pid"):  # the hook and the sleep it started: both gone
        pid = int((hooks_dir / name).read_text())
        assert _gone(pid), f"{name} {pid} still runs"


def _gone(pid: int) -> bool:
    """Has process `pid` ended? (A zombie no one reaped yet counts as ended.) Waits up to 10 s
    for the kernel to finish a SIGKILL: the runner signals, it does not reap others' children."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_a_failing_state_change_hook_is_noted_and_the_apply_goes_on(
        served: Callable[..., Any], cli: Cli, state_dir: Path, hooks_dir: Path, manifests: Path) -> None:
    host = served()
    hook = _script(hooks_dir, "onStateChange", state_dir / "xenstored.sock", "echo 'switcher is down' >&2; exit 1")
    _manifest(manifests, {"onStateChange": hook})
    code, out, err = cli("apply", str(manifests))
    assert code == 0, out
    assert re.search(rf"^\[\d/\d\] vm/web/on-running: done \([0-9.]+ s\); hook onStateChange {hook} of VM 'web' "
                     r"exited with status 1: switcher is down; logged, the apply goes on$", out, re.M), out
    assert "WARNING reconciler.execute.hooks:" in err and "step=vm/web/on-running" in err
    assert [d.power for d in host.run(lambda p: p.toolstack.list_domains())] == ["running"]


def test_pre_delete_runs_from_the_record_before_the_domain_goes_and_a_failure_keeps_it(
        served: Callable[..., Any], cli: Cli, state_dir: Path, hooks_dir: Path, manifests: Path,
        tmp_path: Path) -> None:
    host = served()
    sock = state_dir / "xenstored.sock"
    gate = hooks_dir / "refuse"
    gate.touch()
    hooks = {"preDelete": _script(hooks_dir, "preDelete", sock, f"if [ -e {gate} ]; then echo 'still in use' >&2; exit 4; fi"),
             "onStateChange": _script(hooks_dir, "onStateChange", sock)}
    _manifest(manifests, hooks)
    assert cli("apply", str(manifests))[0] == 0
    uuid = host.run(lambda p: p.toolstack.list_domains())[0].uuid
    other = tmp_path / "other"
    other.mkdir()
    _manifest(other, {}, name="db")  # web is no longer in the manifests: only its record names its hooks
    code, out, _ = cli("plan", str(other))
    assert (f'  hook vm/web/pre-delete: preDelete runs ["{hooks["preDelete"]}", "{uuid}"] (timeout 30 s) before the '
            "VM removed from the manifests is shut down (path from its last-applied record); a failure keeps it") in out
    code, out, _ = cli("apply", str(other))
    assert code == 1 and "vm/web/shutdown: skipped (vm/web/pre-delete failed)" in out, out
    assert "exited with status 4: still in use" in out
    assert sorted(d.name for d in host.run(lambda p: p.toolstack.list_domains())) == ["db", "web"]
    gate.unlink()
    code, out, _ = cli("apply", str(other))
    assert code == 0, out
    assert [d.name for d in host.run(lambda p: p.toolstack.list_domains())] == ["db"]
    # (db is built beside web's preDelete: whether that hook sees it depends on timing)
    seen = [(call.split("|")[0], "web" in call.split("|")[1].split()) for call in _calls(hooks_dir)[1:]]
    assert seen == [
        (f"preDelete {uuid}", True),  # refused: web stays
        (f"preDelete {uuid}", True),  # the domain is still there when the hook runs
        (f"onStateChange {uuid} stopped", False),  # and gone once it says stopped
    ]


def test_a_failing_post_create_destroys_what_it_built_and_the_next_apply_runs_both_again(
        served: Callable[..., Any], cli: Cli, state_dir: Path, hooks_dir: Path, manifests: Path) -> None:
    host = served()
    sock = state_dir / "xenstored.sock"
    gate = hooks_dir / "refuse"
    gate.touch()
    hooks = {"preBoot": _script(hooks_dir, "preBoot", sock),
             "postCreate": _script(hooks_dir, "postCreate", sock, f"if [ -e {gate} ]; then exit 2; fi")}
    _manifest(manifests, hooks)
    code, out, _ = cli("apply", str(manifests))
    assert code == 1
    assert re.search(rf"^  vm/web/post-create: hook postCreate {hooks['postCreate']} of VM 'web' exited with status 2; "
                     r"the domain it built was destroyed, so the next apply builds it again$", out, re.M), out
    assert "vm/web/unpause: skipped (vm/web/post-create failed)" in out
    assert host.run(lambda p: p.toolstack.list_domains()) == []  # never runs without its postCreate
    code, out, _ = cli("plan", str(manifests), "--detailed-exitcode")
    assert code == 2 and "  + VM web [live]: not on the host: created and started" in out, out
    gate.unlink()
    code, out, _ = cli("apply", str(manifests))
    assert code == 0, out
    assert [c.split("|")[0].split()[0] for c in _calls(hooks_dir)] == ["preBoot", "postCreate", "preBoot", "postCreate"]
    assert [d.power for d in host.run(lambda p: p.toolstack.list_domains())] == ["running"]
    assert cli("plan", str(manifests), "--detailed-exitcode")[0] == 0
