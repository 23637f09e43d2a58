"""rpc-proxy entries converge (DESIGN 7): the OpenXT desktop example with rpc rules is
applied to a simulated host and plans nothing more; an entry changed or removed behind
the reconciler is named by `plan` and set back by `apply`; an apply killed right after
(or instead of) a VM's `rpc-set` leaves a plan that names what is left and an apply that
finishes it; a VM that stops or leaves the manifests loses its entry; a rule edited on a
running VM is changed live; an entry of a uuid the reconciler does not manage stays.

Real: the simulated host served on its sockets from a thread (`served`), `reconciler
apply`/`plan` through the CLI entry point (and, to be killed, `apply` in a process of its
own), drift made through the host's rpc-proxy port over the same sockets, as another
writer of rpc-proxy's policy would. The only instrument: the served host's operation
table wrapped to send SIGKILL at an exact point (tests/execute/test_crash_safe.py).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import HostError
from reconciler.loader import load_or_raise
from reconciler.model.host import RpcVmPolicy
from reconciler.ports import HostPorts
from tests.conftest import with_runnable_hooks
from tests.execute.conftest import cli, quick_retries, served, state_dir  # noqa: F401  (fixtures)
from tests.execute.site import Cli, Site
from tests.execute.test_crash_safe import SignalAt, _apply_process

UIVM = "00000000-0000-0000-0000-000000000001"  # examples/openxt-desktop/uivm.yaml
FOREIGN = "00000000-0000-0000-0000-0000000000ff"  # no manifest, no domain: not the reconciler's
# uivm's rules in the example, in the order written (nested first, then the standalone uivm-surfman).
XENMGR = "allow destination com.citrix.xenclient.xenmgr"
NO_CONFIG = "deny destination com.citrix.xenclient.xenmgr interface com.citrix.xenclient.xenmgr.config member Set"
NETD = "allow destination com.citrix.xenclient.networkdaemon"
SURFMAN = "allow destination com.citrix.xenclient.surfman"
UIVM_ENTRY = RpcVmPolicy((XENMGR, NO_CONFIG, NETD, SURFMAN), (("domstore-read-access", True), ("usb-control", True)))
NDVM_ENTRY = RpcVmPolicy(("allow destination org.freedesktop.DBus interface org.freedesktop.DBus",
                          "allow destination com.citrix.xenclient.xenmgr interface org.freedesktop.DBus.Properties member Get",
                          NETD), (("domstore-read-access", True), ("domstore-write-access", True)))


def _folder(tmp_path: Path) -> Path:
    """The desktop example (ndvm's and uivm's rules and properties), hooks runnable here,
    with work-linux given a property: an entry without rules."""
    folder = with_runnable_hooks("examples/openxt-desktop", tmp_path / "desktop")
    linux = folder / "user-vms" / "work-linux.yaml"
    linux.write_text(linux.read_text().replace("\nspec:\n", "\nspec:\n  properties: {usb-control: true}\n", 1))
    return folder


def _entries(site: Site) -> dict[str, RpcVmPolicy]:
    async def read(ports: HostPorts) -> dict[str, RpcVmPolicy]:
        return dict((await ports.rpc.read()).vms)

    found: dict[str, RpcVmPolicy] = site.host.run(read)
    return found


def _uuid(folder: Path, vm: str) -> str:
    uuid = load_or_raise([str(folder)]).vms[vm].spec.uuid
    assert uuid is not None
    return uuid


@pytest.fixture
def site(served: Callable[..., Any], cli: Cli, tmp_path: Path, state_dir: Path) -> Site:
    made = Site(served(), _folder(tmp_path), cli, state_dir)
    made.apply()
    made.assert_converged()
    return made


def test_the_desktop_converges_with_each_vms_entry_in_force(site: Site) -> None:
    entries = _entries(site)
    assert entries == {UIVM: UIVM_ENTRY, _uuid(site.folder, "ndvm"): NDVM_ENTRY,
                       _uuid(site.folder, "work-linux"): RpcVmPolicy((), (("usb-control", True),))}


@pytest.mark.parametrize("drift", ["changed", "removed"])
def test_an_entry_changed_or_removed_behind_the_reconciler_is_named_and_set_back(site: Site, drift: str) -> None:
    if drift == "changed":
        site.host.run(lambda p: p.rpc.set(UIVM, RpcVmPolicy(("allow all", NO_CONFIG))))
        site.drifted("+ RPCRule uivm-surfman [live]: in force now, uivm is up",
                     "~ RPCRule uivm-rpc-entry [live]: 1 rule no RPCRule of uivm says go")
    else:
        site.host.run(lambda p: p.rpc.clear(UIVM))
        site.drifted("+ RPCRule uivm-surfman [live]", "+ RPCRule uivm-no-host-config [live]",
                     "+ RPCRule uivm-rpc-entry [live]: its if-boolean properties")
    domid = site.domid("uivm")
    out = site.apply()
    # Every RPCRule change is counted with its VM's one rpc-proxy step: none is left "unchanged".
    counted = "3 created, 1 updated" if drift == "changed" else "5 created"
    assert out.endswith(f"\nApply complete: {counted}, 0 failed (1 step done).\n"), out
    site.assert_converged()
    assert _entries(site)[UIVM] == UIVM_ENTRY
    assert site.domid("uivm") == domid  # live: the VM kept running


def test_an_entry_the_reconciler_does_not_manage_is_left_alone(site: Site) -> None:
    site.host.run(lambda p: p.rpc.set(FOREIGN, RpcVmPolicy(("allow all",))))
    site.assert_converged()
    site.apply()
    assert _entries(site)[FOREIGN] == RpcVmPolicy(("allow all",))


def test_a_rule_edited_on_a_running_vm_changes_live(site: Site) -> None:
    edited = SURFMAN + " member ShowGuest"
    uivm = site.folder / "uivm.yaml"
    uivm.write_text(uivm.read_text().replace(f"rule: {SURFMAN}\n", f"rule: {edited}\n"))
    code, out, _ = site.cli("plan", str(site.folder))
    assert code == 0 and "+ RPCRule uivm-surfman [live]: in force now, uivm is up (rpc-proxy reloads)" in out, out
    assert "rpc/uivm-rpc/rpc-set" in out and "vm/uivm/" not in out, out  # one live step, no restart
    domid = site.domid("uivm")
    site.apply()
    site.assert_converged()
    assert _entries(site)[UIVM] == RpcVmPolicy((XENMGR, NO_CONFIG, NETD, edited), UIVM_ENTRY.properties)
    assert site.domid("uivm") == domid


def test_a_vm_that_stops_or_leaves_the_manifests_loses_its_entry(site: Site) -> None:
    linux = _uuid(site.folder, "work-linux")
    uivm = site.folder / "uivm.yaml"
    uivm.write_text(uivm.read_text().replace("\nspec:\n", "\nspec:\n  state: stopped\n", 1))
    (site.folder / "user-vms" / "work-linux.yaml").unlink()
    out = site.drifted("- RPCRule uivm-surfman [live]: removed when uivm stops",
                       "- RPCRule uivm-no-host-config [live]: removed when uivm stops",
                       "- RPCRule work-linux-rpc-entry [live]: removed when work-linux stops")
    assert "rpc/uivm-rpc/rpc-clear" in out and "rpc/work-linux-rpc/rpc-clear" in out
    site.apply()
    site.assert_converged()
    assert UIVM not in _entries(site) and linux not in _entries(site)
    assert "uivm" not in site.domains() and "work-linux" not in site.domains()


# The apply is killed right after the host set uivm's entry (the VM still paused), or
# instead (the request never reached the host: the VM built and paused without its rules).
@pytest.mark.parametrize("when", ["after", "instead"])
def test_an_apply_killed_at_rpc_set_leaves_a_plan_of_the_rest_and_apply_finishes(
        served: Callable[..., Any], cli: Cli, tmp_path: Path, repo: Path, state_dir: Path, when: str) -> None:
    folder = _folder(tmp_path)
    host = served()
    trap = SignalAt(host, "rpc_set", 1, signal.SIGKILL, when=when)
    proc = _apply_process(repo, folder, state_dir, "--parallelism", "1")
    trap.pid = proc.pid
    out, err = proc.communicate(timeout=120)
    trap.restore()
    assert proc.returncode == -signal.SIGKILL, out + err
    site = Site(host, folder, cli, state_dir)
    # The NDVM (startPriority 10) is the first VM built, and it has an entry.
    ndvm = _uuid(folder, "ndvm")
    assert site.domains()["ndvm"].power == "paused"
    plan = site.drifted("~ VM ndvm")
    code, text, _ = cli("plan", str(folder), "--format", "json")
    edges = {(d["before"], d["after"]) for d in json.loads(text)["dependencies"]}
    if when == "after":  # in force already: the plan only unpauses it
        assert _entries(site)[ndvm] == NDVM_ENTRY and "rpc/ndvm-rpc/" not in plan, plan
    else:  # built and paused without its entry: set before its unpause
        assert ndvm not in _entries(site) and "+ RPCRule ndvm-rpc-entry [live]" in plan, plan
        assert ("rpc/ndvm-rpc/rpc-set", "vm/ndvm/unpause") in edges
    site.apply()
    site.assert_converged()
    assert _entries(site)[UIVM] == UIVM_ENTRY and _entries(site)[ndvm] == NDVM_ENTRY


def _apply_killed_after_the_first_shutdown(site: Site, repo: Path, state_dir: Path) -> None:
    """Run `apply` as a process (one step at a time) and SIGKILL it once the host has
    answered its first shutdown: the domain is gone, the steps after it never ran."""
    trap = SignalAt(site.host, "shutdown", 1, signal.SIGKILL, when="after")
    proc = _apply_process(repo, site.folder, state_dir, "--parallelism", "1")
    trap.pid = proc.pid
    out, err = proc.communicate(timeout=120)
    trap.restore()
    assert proc.returncode == -signal.SIGKILL, out + err


def test_an_apply_killed_between_a_stop_and_its_rpc_clear_leaves_the_clear_to_the_next(
        site: Site, repo: Path, state_dir: Path) -> None:
    uivm = site.folder / "uivm.yaml"
    uivm.write_text(uivm.read_text().replace("\nspec:\n", "\nspec:\n  state: stopped\n", 1))
    _apply_killed_after_the_first_shutdown(site, repo, state_dir)  # uivm gone (reaped), its entry not yet
    assert "uivm" not in site.domains() and UIVM in _entries(site)
    site.drifted("- RPCRule uivm-surfman [live]: removed: uivm does not run", "rpc/uivm-rpc/rpc-clear")
    site.apply()
    site.assert_converged()
    assert UIVM not in _entries(site)


def test_an_apply_killed_between_a_removed_vms_stop_and_its_rpc_clear_leaves_the_clear_to_the_next(
        site: Site, repo: Path, state_dir: Path) -> None:
    # work-linux leaves the manifests: once its domain is gone, only the reconciler's mark
    # (/reconciler/rpc/<uuid>) says the entry left behind is its own.
    linux = _uuid(site.folder, "work-linux")
    assert site.host.run(_mark_of(linux)) == b"work-linux"
    (site.folder / "user-vms" / "work-linux.yaml").unlink()
    _apply_killed_after_the_first_shutdown(site, repo, state_dir)  # the domain gone, its entry not yet
    assert "work-linux" not in site.domains() and linux in _entries(site)
    site.drifted("- RPCRule work-linux-rpc-entry [live]: removed: work-linux does not run", "rpc/work-linux-rpc/rpc-clear")
    site.apply()
    site.assert_converged()
    assert linux not in _entries(site)
    assert site.host.run(_mark_of(linux)) is None  # cleared with the entry


def _mark_of(uuid: str) -> Callable[[HostPorts], Any]:
    async def read(ports: HostPorts) -> bytes | None:
        try:
            return await ports.xenstore.read(f"/reconciler/rpc/{uuid}")
        except HostError:
            return None

    return read
