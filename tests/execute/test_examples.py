"""Every example set applied to an empty simulated host converges: exit 0, every step
done, and `plan --detailed-exitcode` then exits 0 with "No changes" (idempotence)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import HostError
from tests.conftest import with_runnable_hooks

EXAMPLES = ("examples/openxt-desktop", "examples/server-host", "manifests")  # the simulated NDVM writes its sentinel
# The hooks each example's apply runs, once each: (VM, hook, state argument).
HOOKS = {"examples/openxt-desktop": (
    ("win10", "check-igd-boot-vga", ""), ("win10", "register-switcher-slot", ""), ("win10", "notify-switcher", " running"),
    ("work-linux", "unlock-user-disks", ""), ("work-linux", "notify-switcher", " running"))}


@pytest.mark.parametrize("path", EXAMPLES)
def test_example_converges_and_plan_is_empty_after(path: str, served: Callable[..., Any],
                                                    cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    host = served()
    (tmp_path / "hooks").mkdir()
    copy = str(with_runnable_hooks(path, tmp_path / "m", tmp_path / "hooks"))  # each hook logs its call
    code, out, err = cli("apply", copy)
    assert (code, err) == (0, ""), out
    done = re.search(r"^Apply complete: \d+ created, 0 failed \((\d+) steps done\)\.$", out, re.M)
    assert done and int(done.group(1)) > 0, out
    assert "Not applied" not in out
    code, out, _ = cli("plan", copy, "--detailed-exitcode")
    assert code == 0, f"not idempotent: plan after apply still shows changes:\n{out}"
    assert "No changes. The host matches the manifests." in out
    running = host.run(lambda ports: ports.toolstack.list_domains())
    assert running and all(d.power == "running" for d in running)
    calls = (tmp_path / "hooks" / "calls.log").read_text().splitlines() if path in HOOKS else []
    uuid = {d.name: d.uuid for d in running}
    assert sorted(calls) == sorted(f"{hook} {uuid[vm]}{state}" for vm, hook, state in HOOKS.get(path, ()))


class DevicesAtUnpause:
    """The toolstack port; at each unpause it reads what devices the domain has then
    (libxl's `/libxl/<domid>/device` copies and pciback's device count)."""

    def __init__(self, inner: Any, xenstore: Any) -> None:
        self.inner, self.xenstore = inner, xenstore
        self.seen: dict[int, dict[str, list[int]]] = {}
        self.creates: list[str] = []

    async def create(self, vm: Any, build: Any, **kwargs: Any) -> int:
        self.creates.append(vm.metadata.name)
        domid: int = await self.inner.create(vm, build, **kwargs)
        return domid

    async def unpause(self, domid: int) -> None:
        tree = await self.xenstore.snapshot(f"/libxl/{domid}/device")
        found: dict[str, list[int]] = {}
        for path in tree:
            parts = path.split("/")  # /libxl/<domid>/device/<kind>/<devid>
            if len(parts) == 6:
                found.setdefault(parts[4], []).append(int(parts[5]))
        try:
            count = await self.xenstore.read(f"/local/domain/0/backend/pci/{domid}/0/num_devs")
            found["pci"] = list(range(int(count)))
        except HostError:  # no pci backend: no PCI device
            pass
        self.seen[domid] = {kind: sorted(devids) for kind, devids in found.items() if kind != "console"}
        await self.inner.unpause(domid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("path", EXAMPLES)
def test_every_vm_is_built_with_its_devices_before_it_runs(path: str, served: Callable[..., Any],
                                                             cli: Callable[..., tuple[int, str, str]], tmp_path: Any) -> None:
    # As xl builds: disks, NICs and PCI devices are in the domain when `create` returns,
    # no step hot-plugs them, and the guest is unpaused with all of them there.
    from pathlib import Path

    from reconciler.execute import ExecuteSettings, execute
    from reconciler.ports import HostPorts
    from reconciler.xenfmt import vdev_to_devid
    from tests.execute.test_execute import plan_for

    host = served()
    copy = with_runnable_hooks(path, tmp_path / "m")  # its hooks run /bin/true

    async def body(ports: HostPorts) -> tuple[Any, DevicesAtUnpause, dict[str, int]]:
        plan = await plan_for(ports, copy)
        watch = DevicesAtUnpause(ports.toolstack, ports.xenstore)
        wrapped = HostPorts(ports.name, ports.xenstore, watch, ports.pciback, ports.firewall,  # type: ignore[arg-type]
                            ports.netdev, ports.hooks, ports.rpc)
        result = await execute(plan, wrapped, settings=ExecuteSettings(initial_backoff_s=0))
        domids = {d.name: d.domid for d in await ports.toolstack.list_domains()}
        return (plan, result), watch, domids

    (plan, result), watch, domids = host.run(body)
    assert not [s.id for s in plan.steps if s.op == "attach"]
    assert result.ok, [(r.step.id, r.outcome) for r in result.steps]
    desired = plan.desired
    built = sorted(s.name for s in plan.steps if s.op == "create")  # a `state: stopped` VM is not
    assert built and sorted(watch.creates) == built
    for name in built:
        wanted: dict[str, list[int]] = {}
        for disk in (d for d in desired.disks.values() if d.spec.vm == name):
            wanted.setdefault("vbd", []).append(vdev_to_devid(disk.spec.vdev))
        for nic in (n for n in desired.nics.values() if n.spec.vm == name):
            wanted.setdefault("vif", []).append(nic.spec.index or 0)
        pci = [r for r in desired.pci.values() if r.spec.vm == name]
        got = dict(watch.seen[domids[name]])
        if pci:
            assert got.pop("pci"), f"{name}: no PCI device at unpause"
        assert got == {kind: sorted(devids) for kind, devids in wanted.items()}, name
    code, out, _ = cli("plan", str(copy), "--detailed-exitcode")
    assert code == 0, f"not converged after the build:\n{out}"
