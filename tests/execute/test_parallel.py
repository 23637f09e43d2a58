"""What lets `execute` run many VMs' steps at once without extra host reads: one PCI
inventory read per run and binds that overlap (never one device bound twice), domain
lookups that do not list every domain per step, and a listing read while a domain is
being built that is not kept as the host's state after the build.

Real: the simulated host served on its sockets (conftest), with a latency on every
toolstack/PCI/firewall call (faults.yaml) so calls of concurrent steps overlap. Ports
are wrapped only to count calls or to hold one answer back until a step has ended."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.execute import ExecuteSettings, execute
from reconciler.execute.devices import pci_assignable_add
from reconciler.execute.runtime import Runtime
from reconciler.plan.steps import Step
from reconciler.ports import HostPorts

from tests.execute.test_execute import plan_for, vm

SETTINGS = ExecuteSettings(parallelism=4, initial_backoff_s=0, shutdown_timeout_s=1, sentinel_timeout_s=2)
LATENCY = "operations:\n  '*': {latency_ms: 400}\n"  # 8 ms per call at the tests' delay scale


def bdf(i: int) -> str:
    return f"0000:{i + 1:02x}:00.0"


def inventory(n: int) -> str:
    rows = "".join(f"  - {{bdf: '{bdf(i)}', class: 0x0200, vendor: 0x8086, device: 0x10d3, driver: e1000e}}\n"
                   for i in range(n))
    return "devices:\n" + rows


class Calls:
    """A port counting its calls by method name, and the most calls of one method at once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.count: dict[str, int] = {}
        self.now: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.count[name] = self.count.get(name, 0) + 1
            self.now[name] = self.now.get(name, 0) + 1
            self.peak[name] = max(self.peak.get(name, 0), self.now[name])
            try:
                return await method(*args, **kwargs)
            finally:
                self.now[name] -= 1

        return call


def counted(ports: HostPorts) -> tuple[HostPorts, Calls, Calls]:
    toolstack, pciback = Calls(ports.toolstack), Calls(ports.pciback)
    return HostPorts(ports.name, ports.xenstore, toolstack, pciback, ports.firewall), toolstack, pciback  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [2, 5])
def test_pci_inventory_is_read_once_per_run_and_binds_overlap(
        n: int, served: Callable[..., Any], state_dir: Path, write_manifest: Callable[[str, str], Path]) -> None:
    (state_dir / "pci.yaml").write_text(inventory(n))
    (state_dir / "faults.yaml").write_text(LATENCY)
    for i in range(n):
        folder = write_manifest(f"v{i}.yaml", vm(f"v{i}", f"  pci: [{{bdf: '{bdf(i)}'}}]\n"))
    host = served()

    async def body(ports: HostPorts) -> tuple[bool, Calls, list[str | None]]:
        wrapped, _, pciback = counted(ports)
        report = await execute(await plan_for(ports, folder), wrapped, settings=SETTINGS)
        return report.ok, pciback, [d.driver for d in await ports.pciback.inventory()]

    ok, pciback, drivers = host.run(body)
    assert ok and drivers == ["pciback"] * n
    assert pciback.count["inventory"] == 1  # not one per VM
    assert pciback.count["assignable_add"] == n
    assert pciback.peak["assignable_add"] > 1  # no lock held across the bind: other VMs' binds ran meanwhile


def test_two_steps_binding_one_device_bind_it_once(served: Callable[..., Any], state_dir: Path,
                                                    write_manifest: Callable[[str, str], Path]) -> None:
    (state_dir / "pci.yaml").write_text(inventory(2))
    (state_dir / "faults.yaml").write_text(LATENCY)
    folder = write_manifest("a.yaml", vm("a"))
    host = served()
    steps = [Step(f"PCIPassthrough/{name}:pci-assignable-add", "pci-assignable-add", "PCIPassthrough", name, "a",
                  (("devices", [bdf(0), bdf(1)] if name == "both" else [bdf(0)]),)) for name in ("one", "both", "again")]

    async def body(ports: HostPorts) -> tuple[list[str | None], Calls, list[str | None]]:
        wrapped, _, pciback = counted(ports)
        rt = Runtime(wrapped, (await plan_for(ports, folder)).desired, SETTINGS)
        notes = await asyncio.gather(*(pci_assignable_add(rt, step, False) for step in steps))
        return list(notes), pciback, [d.driver for d in await ports.pciback.inventory()]

    notes, pciback, drivers = host.run(body)
    assert drivers == ["pciback", "pciback"]
    assert pciback.count["assignable_add"] == 2  # bdf(0) once, though three steps name it
    assert notes == [None, None, "already on pciback"]  # `both` waited for `one`'s bind, then bound bdf(1)
