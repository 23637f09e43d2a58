"""Devices stranded by a backend domain that is gone (issue 12, OXT-1011), on the simulated
host as xl would leave and treat them (reference xen.md 2.3): destroying the backend
domain leaves the guest's frontend and /libxl copy; an attach of the same device is
refused (ERROR_DEVICE_EXISTS); a detach finds no backend state and only cleans up;
detaching again, with nothing left, is refused. Real: the simulated host over its sockets."""

from __future__ import annotations

from typing import Any

import pytest

from drivers.sim.host import SimHost
from reconciler.errors import TerminalHostError
from reconciler.observe import observe_tree
from reconciler.ports import HostPorts


@pytest.mark.parametrize("kind", ["vif", "vbd"])
def test_detach_of_a_device_whose_backend_domain_is_gone_cleans_up(sim: Any, vm: Any, nic: Any, disk: Any, kind: str) -> None:
    async def body(ports: HostPorts, host: SimHost) -> None:
        ts = ports.toolstack
        net = await ts.create(vm("net", providesNetworkBackend=True), paused=False)
        guest = await ts.create(vm("guest"), paused=False)
        devid = 0 if kind == "vif" else 51712
        if kind == "vif":
            await ts.attach_nic(guest, nic("guest", backendVM="net"))
        else:
            await ts.attach_disk(guest, disk("guest", backendVM="net"))
        front, libxl = f"/local/domain/{guest}/device/{kind}/{devid}", f"/libxl/{guest}/device/{kind}/{devid}"
        await ts.destroy(net)
        tree = await ports.xenstore.snapshot("/")
        assert f"{front}/state" in tree and f"{libxl}/backend" in tree  # stranded
        assert not any(p.startswith(f"/local/domain/{net}/") for p in tree)
        seen = observe_tree({p: v.decode() for p, v in tree.items()})
        name = f"guest-{'nic' if kind == 'vif' else 'disk'}-{devid}"
        assert list(seen.stranded) == [name] and not seen.nics and not seen.disks
        assert (seen.stranded[name].backend_domid, seen.stranded[name].vdev) == (net, None if kind == "vif" else "xvda")
        await ts.create(vm("net", providesNetworkBackend=True), paused=False)
        with pytest.raises(TerminalHostError, match="ERROR_DEVICE_EXISTS"):
            if kind == "vif":
                await ts.attach_nic(guest, nic("guest", backendVM="net"))
            else:
                await ts.attach_disk(guest, disk("guest", backendVM="net"))
        if kind == "vif":
            await ts.detach_nic(guest, devid)
        else:
            await ts.detach_disk(guest, "xvda")
        tree = await ports.xenstore.snapshot("/")
        assert not any(p.startswith((front, libxl)) for p in tree)
        with pytest.raises(TerminalHostError, match="nothing to detach"):
            if kind == "vif":
                await ts.detach_nic(guest, devid)
            else:
                await ts.detach_disk(guest, "xvda")
        if kind == "vif":  # and it plugs again into the new backend domain
            await ts.attach_nic(guest, nic("guest", backendVM="net"))
        else:
            await ts.attach_disk(guest, disk("guest", backendVM="net"))

    sim(body)
