"""`reconciler watch` keeps a simulated host converged (issue 12): an edited manifest is
applied, a domain destroyed or a disk unplugged behind the agent's back comes back,
an invalid manifest is reported once and never acted on (then its fix converges),
SIGHUP makes a pass, and `reconciler status` shows it in text and in JSON valid against
schemas/status.schema.json. Real processes and files: see `watchsite`.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from reconciler.xenfmt import vdev_to_devid
from tests.agent.watchsite import REPO, Agent, reconciler, settled, vm

DISK = """\
apiVersion: xen.reconciler/v1
kind: Disk
metadata: {name: web-data}
spec: {vm: web, vdev: xvdb, target: /srv/web-data.img}
"""


@pytest.fixture
def agent() -> Iterator[Agent]:
    site = Agent({"web.yaml": vm("web"), "db.yaml": vm("db")})
    try:
        yield site
    finally:
        site.close()


def _validate(status: dict[str, Any]) -> None:
    schema = json.loads((REPO / "schemas" / "status.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(status)


def _plan_is_clean(site: Agent) -> None:
    done = reconciler("plan", str(site.folder), "--host", site.host, "--detailed-exitcode")
    assert (done.returncode, "No changes." in done.stdout) == (0, True), done.stdout + done.stderr


def test_an_edit_is_applied_and_status_tells(agent: Agent) -> None:
    agent.start()
    first = agent.converged()
    assert agent.names() == ["db", "web"]
    _validate(first)
    agent.edit("web.yaml", vm("web", 768))  # temp file renamed over, as editors save
    (agent.folder / "cache.yaml").write_text(vm("cache"))  # a new file beside
    after = agent.wait_pass(first["lastPass"]["number"], "the edit applied",
                            lambda s: s["desiredDigest"] != first["desiredDigest"] and settled(s))
    assert agent.names() == ["cache", "db", "web"]
    _plan_is_clean(agent)
    _validate(after)
    assert set(after["resources"]) == {"VM/web", "VM/db", "VM/cache"}
    text = reconciler("status", "--host", agent.host)
    assert text.returncode == 0 and "all 3 resources Ready" in text.stdout, text.stdout + text.stderr
    assert agent.stop() == 0
    stopped = agent.status()
    assert stopped is not None and stopped["agent"]["state"] == "stopped"
    _validate(stopped)


def test_a_destroyed_domain_and_an_unplugged_disk_come_back() -> None:
    site = Agent({"web.yaml": vm("web"), "disk.yaml": DISK})  # resync 300 s: xenstore events drive it
    try:
        site.start()
        number = site.converged()["lastPass"]["number"]
        site.sim("destroy", "web")  # the simulated toolstack, as `xl destroy` behind the agent's back
        number = site.wait_pass(number, "web restarted", lambda s: settled(s) and site.names() == ["web"])["lastPass"]["number"]
        assert site.stderr.count("vm/web/create: done") == 2  # started, restarted: the agent did it
        observed = json.loads(reconciler("observe", "--host", site.host, "--format", "json").stdout)
        domid, devid = observed["domains"]["web"]["domid"], vdev_to_devid("xvdb")
        libxl = f"/libxl/{domid}/device/vbd/{devid}"
        backend = site.xs("xenstore-read", f"{libxl}/backend").strip()
        # what xl block-detach leaves, in one transaction (Xen's client makes one per call)
        site.xs("xenstore-rm", backend, f"/local/domain/{domid}/device/vbd/{devid}", libxl)
        plugged = site.stderr.count("disk/web-data/attach: done")

        def replugged(status: dict[str, Any]) -> bool:  # by a pass the unplug's xenstore events made
            err = site.stderr
            return (err.count("disk/web-data/attach: done") > plugged and settled(status)
                    and re.search(r"pass \d+ \(xenstore\): changed", err.split("disk/web-data/attach: done")[-1]) is not None)

        site.wait_pass(number, "the disk re-plugged", replugged)
        _plan_is_clean(site)
        assert site.stop() == 0
    finally:
        site.close()


def test_a_domain_whose_xenstore_tree_is_removed_with_xens_tools_is_rebuilt(agent: Agent) -> None:
    """`xenstore-rm /local/domain/<domid>` (Xen's own client) behind the agent's back: the
    @releaseDomain-less removal reaches it through its /local/domain watch, and the pass
    rebuilds the domain (the hypervisor still lists it, its record survives)."""
    agent.start()
    number = agent.converged()["lastPass"]["number"]
    observed = json.loads(reconciler("observe", "--host", agent.host, "--format", "json").stdout)
    domid = observed["domains"]["db"]["domid"]
    agent.xs("xenstore-rm", f"/local/domain/{domid}")

    def rebuilt(status: dict[str, Any]) -> bool:
        return settled(status) and agent.stderr.count("vm/db/create: done") == 2

    agent.wait_pass(number, "db rebuilt", rebuilt)
    assert agent.names() == ["db", "web"]  # one db: the old domain was destroyed, not left beside it
    after = json.loads(reconciler("observe", "--host", agent.host, "--format", "json").stdout)
    assert after["domains"]["db"]["domid"] != domid and not after["domains"]["db"].get("xenstore_gone")
    _plan_is_clean(agent)
    assert agent.stop() == 0


def test_invalid_manifest_never_acts_is_said_once_and_its_fix_converges(agent: Agent) -> None:
    agent.start()
    number = agent.converged()["lastPass"]["number"]
    good = (agent.folder / "db.yaml").read_text()
    (agent.folder / "db.yaml").write_text(good.replace("kind: VM", "kind: VM\n  bad: [") + "\n")  # db gone from a parse
    broken = agent.wait_pass(number, "the invalid manifest seen", lambda s: s["invalid"] != [])
    assert broken["lastPass"]["outcome"] == "invalid" and broken["desiredDigest"] is not None
    assert all(problem.startswith(str(agent.folder / "db.yaml") + ":") for problem in broken["invalid"]), broken["invalid"]
    problem = broken["invalid"][0]
    agent.signal(signal.SIGHUP)  # another pass on the same broken input: nothing said again
    again = agent.wait_pass(broken["lastPass"]["number"], "a pass on SIGHUP", lambda s: s["lastPass"]["trigger"] == "signal")
    assert again["lastPass"]["outcome"] == "invalid"
    assert agent.names() == ["db", "web"]  # the last good desired state is still in force: db runs
    assert agent.stderr.count(problem) == 1, agent.stderr
    text = reconciler("status", "--host", agent.host).stdout
    assert "invalid manifests (the last good desired state stays in force):" in text and problem in text, text
    (agent.folder / "db.yaml").write_text(good.replace("memory: 512", "memory: 640"))
    fixed = agent.wait_pass(again["lastPass"]["number"], "the fix applied",
                            lambda s: s["invalid"] == [] and settled(s))
    assert fixed["desiredDigest"] != broken["desiredDigest"]
    _plan_is_clean(agent)
    assert agent.stop() == 0


def test_before_a_first_good_load_nothing_is_applied_then_the_fix_converges() -> None:
    site = Agent({"web.yaml": vm("web") + "  cpus: many\n"})
    try:
        site.start()
        seen = site.wait(lambda s: s["lastPass"]["outcome"] == "invalid", "the invalid start")
        assert seen["desiredDigest"] is None and seen["invalid"] and site.names() == []
        assert "nothing is applied until they load" in reconciler("status", "--host", site.host).stdout
        site.edit("web.yaml", vm("web"))
        site.wait_pass(seen["lastPass"]["number"], "converged after the fix",
                       lambda s: settled(s) and s["desiredDigest"] is not None)
        assert site.names() == ["web"]
        assert site.stop() == 0
    finally:
        site.close()


def test_status_without_an_agent_says_so(tmp_path: Any) -> None:
    text = reconciler("status", "--host", f"sim:{tmp_path}")
    assert (text.returncode, text.stdout) == (0, f"host: sim:{tmp_path}: no agent has run on this host "
                                                f"(no {tmp_path / 'agent-status.json'})\n")
    assert reconciler("status", "--host", f"sim:{tmp_path}", "--format", "json").stdout == "null\n"


NDVM = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: net}
spec: {virt: pv, kernel: /boot/vmlinuz, memory: 64, providesNetworkBackend: true, lifecycle: {onCrash: restart}}
---
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: guest}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 64
  nics: [{backendVM: net}]
"""


@pytest.mark.parametrize("how", [(), ("--unhandled", "--resync", "3600")])
def test_a_crashed_backend_vm_is_restarted_and_its_frontends_replugged_by_the_agent(how: tuple[str, ...]) -> None:
    """OpenXT's "Reconnect vifs on ndvm reboot" (OXT-1011), with no one running apply.
    Handled: xl destroys the crashed domain (@releaseDomain wakes the agent). Unhandled:
    the crashed domain stays, and xenstored fires @releaseDomain for the crash itself
    (check_domains on VIRQ_DOM_EXC): with an hour's resync, that event is what wakes the
    agent to restart it."""
    site = Agent({"set.yaml": NDVM}, *how[1:])
    try:
        site.start()
        number = site.converged()["lastPass"]["number"]
        plugged = site.stderr.count("nic/guest-nic0/attach: done")
        site.sim("crash", "net", *how[:1])
        site.wait_pass(number, "net back and the vif re-plugged", lambda s: settled(s) and "crashed" not in site.sim("list")
                       and site.stderr.count("nic/guest-nic0/attach: done") > plugged)
        _plan_is_clean(site)
        assert site.names() == ["guest", "net"]
        assert site.stop() == 0
    finally:
        site.close()


def test_a_preserved_poweroff_behind_the_agents_back_wakes_it() -> None:
    """A guest powered off through Xen's own `xenstore-write control/shutdown` with
    `onPoweroff: preserve`: the domain stays, shut down, and nothing but xenstored's
    @releaseDomain for the shutdown (the resync is an hour away) tells the agent, which
    starts the VM again as its manifest says. The guest takes its real time (0.5 s to
    acknowledge, 1.5 s more to power off) so that the pass its acknowledgement wakes has
    come and gone before it stops."""
    site = Agent({"web.yaml": vm("web", extra="  lifecycle: {onPoweroff: preserve}\n")}, "--resync", "3600",
                 env={"RECONCILER_SIM_DELAY_SCALE": "10"})
    try:
        site.start()
        number = site.converged()["lastPass"]["number"]
        domid = json.loads(reconciler("observe", "--host", site.host, "--format", "json").stdout)["domains"]["web"]["domid"]
        site.xs("xenstore-write", f"/local/domain/{domid}/control/shutdown", "poweroff")
        site.wait_pass(number, "web started again", lambda s: settled(s) and site.stderr.count("vm/web/create: done") == 2
                       and "shutdown" not in site.sim("list"))
        assert site.names() == ["web"]
        _plan_is_clean(site)
        assert site.stop() == 0
    finally:
        site.close()


def test_bad_input_to_watch_and_status_is_one_line_and_exit_1(tmp_path: Any) -> None:
    missing = reconciler("watch", str(tmp_path / "nowhere"), "--host", f"sim:{tmp_path / 'h'}")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1, missing.stderr
    assert "nowhere: no such file or directory" in missing.stderr
    bad = reconciler("watch", str(tmp_path), "--host", f"sim:{tmp_path / 'h'}", "--debounce", "-1")
    assert bad.returncode == 1 and "--debounce: -1 is out of range" in bad.stderr, bad.stderr
    (tmp_path / "agent-status.json").write_text("{not json")
    garbled = reconciler("status", "--host", f"sim:{tmp_path}")
    assert garbled.returncode == 1 and garbled.stderr.count("\n") == 1, garbled.stderr
    assert "cannot read the agent's status" in garbled.stderr and "Traceback" not in garbled.stderr
