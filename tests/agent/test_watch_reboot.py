"""`reconciler watch` and a guest that reboots (issue 13): no xl monitor rebuilds it
(domains are built as with `xl create -e`), so the domain stays shut down with reason
reboot; xenstored's @releaseDomain for that shutdown wakes the agent (the resync is an
hour away), which carries out `lifecycle.onReboot: restart`: the VM comes back with a
new domid, still managed, and a plan of the same manifests is empty. Real processes and
files: see `watchsite`."""

from __future__ import annotations

import json

from tests.agent.watchsite import Agent, reconciler, settled, vm


def _domain(site: Agent, name: str) -> dict[str, object]:
    done = reconciler("observe", "--host", site.host, "--format", "json")
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout)["domains"][name]
    return found


def test_a_rebooted_guest_is_rebuilt_by_the_agent() -> None:
    site = Agent({"web.yaml": vm("web"), "db.yaml": vm("db")}, "--resync", "3600")
    try:
        site.start()
        number = site.converged()["lastPass"]["number"]
        before = _domain(site, "web")
        site.sim("reboot", "web")
        site.wait_pass(number, "web rebuilt after its reboot",
                       lambda s: settled(s) and site.stderr.count("vm/web/create: done") == 2
                       and "rebooted" not in site.sim("list"))
        after = _domain(site, "web")
        assert after["domid"] != before["domid"] and after["power"] == "running", after
        assert after["managed"] is True and after["digest"] == before["digest"], after
        assert site.names() == ["db", "web"]
        done = reconciler("plan", str(site.folder), "--host", site.host, "--detailed-exitcode")
        assert (done.returncode, "No changes." in done.stdout) == (0, True), done.stdout + done.stderr
        assert site.stop() == 0
    finally:
        site.close()
