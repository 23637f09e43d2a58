"""A VM's start inserts what it resolves in one batch (`fw-start`), and concurrent
starts still cover every pair: of two VMs starting at once, the batch decided later
sees both. Through the real CLI against the served simulated host, with latency on
the toolstack so builds and listings overlap at parallelism 8."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.errors import TransientHostError
from reconciler.execute import ExecuteSettings, execute
from reconciler.loader import load
from reconciler.model.host import DomainStatus, FirewallEntry
from reconciler.observe.host import observe_host
from reconciler.plan.build import plan_for
from reconciler.ports import HostPorts
from tests.execute.site import Cli, Site

VM = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {{name: {name}}}
spec:
  virt: pv
  kernel: /boot/vmlinuz
  memory: 256
  state: {state}
  v4vRules: ['myself -> dom-type=svm:80']
"""
INITIAL = {FirewallEntry(0, 0), FirewallEntry(target="REJECT")}


def _write(write_manifest: Callable[[str, str], Path], names: list[str], state: str = "running") -> Path:
    folder = Path()
    for name in names:
        folder = write_manifest(f"{name}.yaml", VM.format(name=name, state=state))
    return folder


def _pairs(site: Site) -> set[FirewallEntry]:
    """Every ordered pair of the running VMs to port 80, and the replies (rules are
    bidirectional by default): what the rules resolve to."""
    ids = [d.domid for d in site.domains().values() if d.domid != 0]
    return {FirewallEntry(a, b, *ports) for a in ids for b in ids if a != b for ports in ((None, 80), (80, None))}


def test_all_pairs_rules_started_at_parallelism_8_cover_every_pair(
        served: Callable[..., Any], cli: Cli, write_manifest: Callable[[str, str], Path], state_dir: Path) -> None:
    # Slow builds and listings: a listing read while another build is under way, and
    # batches decided while other VMs are still being built.
    (state_dir / "faults.yaml").write_text(
        "operations:\n  create: {latency_ms: 700}\n  list_domains: {latency_ms: 1500}\n")
    # Paused VMs: no unpause step lists the domains again between two batches.
    names = [f"vm{i:02d}" for i in range(16)]
    site = Site(served(), _write(write_manifest, names, "paused"), cli, state_dir)
    code, out, err = cli("apply", str(site.folder), "--parallelism", "8")
    assert code == 0, out + err
    assert len(re.findall(r"^\[\d+/\d+\] v4v/vm\d\d-firewall/fw-start: done", out, re.M)) == 16  # one batch per VM
    table = site.firewall()
    assert len(table) == len(set(table))  # no entry twice
    assert set(table) == _pairs(site) | INITIAL  # every pair, and nothing else
    site.assert_converged()


def test_a_rule_waiting_for_many_starts_is_one_line_and_they_converge(
        served: Callable[..., Any], cli: Cli, write_manifest: Callable[[str, str], Path], state_dir: Path) -> None:
    site = Site(served(), _write(write_manifest, ["keep"]), cli, state_dir)
    site.apply()
    _write(write_manifest, [f"vm{i:02d}" for i in range(12)])
    out = site.drifted("applied when 12 VMs start: vm00, vm01, vm02 and 9 more")
    line, following = out.split("V4VRule keep-v4v-77496fd9", 1)[1].split("\n", 2)[:2]
    assert "vm03" not in line  # one line with a count, not 12 names
    assert "entries" not in following  # nor the entries it keeps (one per running VM)
    site.apply()
    # Drift on top: entries of a kept VM's rule deleted, one foreign added.
    keep, first = site.domid("keep"), site.domid("vm00")
    site.host.run(lambda p: p.firewall.delete(FirewallEntry(keep, first, None, 80)))
    site.host.run(lambda p: p.firewall.delete(FirewallEntry(first, keep, None, 80)))
    site.host.run(lambda p: p.firewall.insert(FirewallEntry(keep, 0, None, 9), 1))
    site.drifted("keep-v4v-77496fd9", "vm00-v4v-77496fd9")
    site.apply()
    assert set(site.firewall()) == _pairs(site) | INITIAL
    site.assert_converged()


class StaleListing:
    """The toolstack port, arranging the race a listing cache invites. `a`'s build
    answers with a transient error after building (a lost answer), so its retry lists
    the domains; that listing shows `a` but not `b`, is held until `b`'s build (and its
    step) has ended, and only then answered; `b` is built only once it is under way.
    A run that trusted that listing would resolve `a`'s start without `b`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.listing_read, self.b_built = asyncio.Event(), asyncio.Event()
        self.lost = self.held = False

    async def list_domains(self) -> list[DomainStatus]:
        listed: list[DomainStatus] = await self.inner.list_domains()
        names = {d.name for d in listed}
        if not self.held and "a" in names and "b" not in names:
            self.held = True
            self.listing_read.set()
            await self.b_built.wait()
            await asyncio.sleep(0.2)  # b's create step ends (its vm-data written) meanwhile
        return listed

    async def create(self, vm: Any, build: Any, *, paused: bool) -> int:
        if vm.metadata.name == "b":
            await self.listing_read.wait()
        domid: int = await self.inner.create(vm, build, paused=paused)
        if vm.metadata.name == "b":
            self.b_built.set()
        if vm.metadata.name == "a" and not self.lost:
            self.lost = True
            raise TransientHostError("create: the answer was lost (the domain was built)")
        return domid

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_listing_read_during_another_build_does_not_hide_it_from_its_batch(
        served: Callable[..., Any], write_manifest: Callable[[str, str], Path]) -> None:
    folder = _write(write_manifest, ["a", "b"], "paused")  # paused: no unpause lists again
    host = served()

    async def body(ports: HostPorts) -> tuple[bool, list[FirewallEntry], list[DomainStatus], int]:
        stale = StaleListing(ports.toolstack)
        wrapped = HostPorts(ports.name, ports.xenstore, stale, ports.pciback, ports.firewall)  # type: ignore[arg-type]
        state = load([str(folder)]).state
        assert state is not None
        report = await execute(plan_for(state, await observe_host(ports)), wrapped,
                               settings=ExecuteSettings(initial_backoff_s=0, parallelism=8))
        again = plan_for(state, await observe_host(ports))
        assert stale.held  # the race happened
        return report.ok, await ports.firewall.list(), await ports.toolstack.list_domains(), len(again.steps)

    ok, table, domains, left = host.run(body)
    ids = {d.name: d.domid for d in domains}
    a, b = ids["a"], ids["b"]
    assert ok
    assert {FirewallEntry(a, b, None, 80), FirewallEntry(b, a, None, 80)} <= set(table)
    assert left == 0
