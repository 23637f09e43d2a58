"""A VM the plan builds is built with its devices, as xl builds the devices of its cfg:
the create step resolves the PCI addresses (the plan's for a match rule, else the host's
inventory when the plan could not: one made from a dump), and a NIC's promiscuous mode
and ethtool keys, which xl has no key for, go onto the interface the build made.

Real: the simulated host served on its sockets (conftest), the planner and executor."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.execute import execute
from reconciler.ports import HostPorts

from tests.execute.test_execute import NO_WAIT, plan_for

NIC_BDF, GPU_BDF = "0000:00:1f.6", "0000:00:02.0"  # the simulated laptop's I219 Ethernet and UHD Graphics
VM = """\
apiVersion: xen.reconciler/v1
kind: VM
metadata: {name: web}
spec:
  virt: hvm
  memory: 256
  disks: [{target: /srv/web.img, vdev: hda}, {target: /srv/web.iso, vdev: hdc, devtype: cdrom}]
  nics: [{bridge: xenbr0, type: ioemu, model: e1000, promiscuous: true, ethtool: {tso: "off"}}]
  pci:
    - {name: web-nic, match: {class: "0x0200"}, permissive: true}
    - {name: web-gpu, bdf: "0000:00:02.0", guestSlot: 2}
"""


def _pci_of(tree: dict[str, bytes], domid: int) -> dict[str, str]:
    back = f"/local/domain/0/backend/pci/{domid}/0"
    count = int(tree[f"{back}/num_devs"])
    return {tree[f"{back}/dev-{i}"].decode(): tree[f"{back}/opts-{i}"].decode() for i in range(count)}


def test_the_create_step_carries_the_match_and_the_build_takes_every_device(
        served: Callable[..., Any], write_manifest: Callable[[str, str], Path]) -> None:
    folder = write_manifest("web.yaml", VM)
    host = served()

    async def body(ports: HostPorts) -> tuple[Any, Any, dict[str, bytes], int, Any]:
        plan = await plan_for(ports, folder)
        report = await execute(plan, ports, settings=NO_WAIT)
        domid = (await ports.toolstack.list_domains())[0].domid
        netdev = next(d for d in await ports.netdev.list() if d.name == f"vif{domid}.0")
        return plan, report, await ports.xenstore.snapshot("/"), domid, netdev

    plan, report, tree, domid, netdev = host.run(body)
    assert report.ok, [r.line() for r in report.steps]
    create = next(s for s in plan.steps if s.id == "vm/web/create")
    assert dict(create.args) == {"pci": {"web-nic": [NIC_BDF]}}
    assert sorted(s.id for s in plan.steps if s.kind != "VM") == [
        "pci/web-gpu/pci-assignable-add", "pci/web-nic/pci-assignable-add"]
    pci = _pci_of(tree, domid)
    assert sorted(pci) == [GPU_BDF, NIC_BDF] and "permissive=1" in pci[NIC_BDF]
    assert tree[f"/local/domain/0/backend/vbd/{domid}/5632/device-type"] == b"cdrom"
    assert tree[f"/local/domain/0/backend/vif/{domid}/0/type"] == b"vif_ioemu"
    assert (netdev.promiscuous, netdev.ethtool.get("tso")) == (True, "off")  # set on the built interface


def test_a_create_without_the_plans_addresses_matches_the_inventory_itself(
        served: Callable[..., Any], write_manifest: Callable[[str, str], Path]) -> None:
    # A plan made from a dump has no inventory: its create step names no address.
    folder = write_manifest("web.yaml", VM)
    host = served()

    async def body(ports: HostPorts) -> tuple[Any, dict[str, bytes], int]:
        plan = await plan_for(ports, folder)
        steps = tuple(dataclasses.replace(s, args=()) if s.op == "create" else s for s in plan.steps)
        report = await execute(dataclasses.replace(plan, steps=steps), ports, settings=NO_WAIT)
        return report, await ports.xenstore.snapshot("/"), (await ports.toolstack.list_domains())[0].domid

    report, tree, domid = host.run(body)
    assert report.ok, [r.line() for r in report.steps]
    assert sorted(_pci_of(tree, domid)) == [GPU_BDF, NIC_BDF]
