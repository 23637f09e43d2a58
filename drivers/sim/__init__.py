"""The embedded simulated Xen host: what libxl, hotplug scripts, backends and guests would do.

Entry point: `open_sim(state_dir)` -> `HostPorts` (the same ports the real drivers
implement). Everything lives in the state directory: `xenstore.json` and `host.json`
(state), `pci.yaml` (host PCI inventory, optional), `faults.yaml` (fault injection,
optional), `rpc-proxy.rules` (the global rpc-proxy rules, seeded with OpenXT's stock ones), `xenstored.sock` (Xen's `xenstore-*` tools work on it) and `host.sock`.
Modules: `layout`/`devices`/`progress`/`ops` (libxl's xenstore writes as data), `host`
(the process side), `toolstack`/`builder`/`stubdom`/`attach`/`pcidev`/`guests`/`backends` (behaviour),
`domains`/`pci`/`firewall`/`netdev`/`rpcpolicy`/`faults` (tables), `rpc`/`client`/`dispatch` (transport),
`direct` (the in-process xenstore port used when the host is embedded), `frozen` (the
read-only view of a saved host that plan and observe use when no `sim serve` runs).

What it does NOT model: no guest OS runs (a guest only answers `control/shutdown` and
connects its frontends); no event channels, grant tables or rings (ring-ref/port
values are placeholders); no QEMU (no device-model nodes, no emulated devices: which
devices QEMU would emulate is only known to refuse their hot-plug, see `attach`; a CD's
media is only its backend's `params`; HVM cdroms with a target keep a `phy` backend
where libxl would choose qdisk); stub domains only as domains (`<vm>-dm`, built and destroyed with an HVM
guest whose `stubdom.enabled`, with libxl's `target`/`image/device-model-domid` nodes;
not their device copies, `image/dmargs` or xenstored's SET_TARGET privilege: see
`stubdom`); no ballooning (`memory/target` is obeyed at once), no CPU time or
scheduling; no xl monitor rebuilds a rebooted guest (it stays shut down with reason
reboot, as under `xl create -e`; the reconciler rebuilds it), and xl's rebuild of a domain whose
onCrash is a restart kind is not done (it is destroyed, or kept renamed for
rename-restart; the reconciler builds it again), nor a core dump (`sim crash` crashes one);
a guest that powers off, or crashes with a destroy onCrash, is reaped as xl's monitor
would reap it, where the xl driver's `xl create -e` leaves the domain shut down (or
crashed) for the reconciler to destroy (it handles both: `reconciler.diff.vm`);
no rpc-proxy runs (no DBus message is filtered: the policy table is what a real rpc-proxy
would enforce after its SIGHUP, and `if-boolean` reads the entry's properties, not xenmgr);
`xenstoreData`, hooks and v4v rules are not applied by the toolstack (the reconciler
does that through the ports; hooks run as processes of this machine, `drivers.hooks`); PCI per-device pciback keys (`vdev-i`, `root-i`) and
resuming a PCI hot-plug interrupted by a restart; pciback's sticky `permissive` flag
(pciback's sysfs only sets it, so on a real host unbinding the device from pciback clears
it; here it follows the attach options); netback's refusal of `ethtool -s` (speed, duplex, autoneg are accepted
here); xenstore quotas only partly (the
xenstored's watch quota); xenstore's transient failures only as injected commit EAGAINs
(faults.yaml; no injected connection drops or daemon restarts). A client of an embedded host loses its connection when the
process that embeds it exits; run `reconciler sim serve` to share one host for long.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from reconciler.ports import HostPorts

__all__ = ["open_sim"]

_BUSY_WAIT_S = 5.0  # how long to wait for another process that is starting or stopping its host


@contextlib.asynccontextmanager
async def open_sim(state_dir: Path, *, delay_scale: float | None = None,
                   read_only: bool = False) -> AsyncIterator[HostPorts]:
    """The simulated host of `state_dir` as ports: a `sim serve` already serving it, or an
    embedded host in this process (saved and released on exit), or with `read_only` its
    saved state as it is (`frozen`: nothing runs, nothing is written). `delay_scale` (only
    for an embedded host) speeds up every simulated delay, e.g. 0.02 in tests."""
    from drivers.sim import settings as names
    from drivers.hooks import LocalHooks
    from drivers.sim.client import SimFirewall, SimNetDevices, SimPciBack, SimRpcPolicy, SimToolstack
    from drivers.sim.direct import DirectXenstore
    from drivers.sim.frozen import open_frozen
    from drivers.sim.host import DirectoryBusy, SimHost
    from drivers.sim.rpc import RpcClient
    from drivers.xenstore.server import socket_answers
    from drivers.xenstore import ClientSettings, XenstoreClient

    state_dir = Path(state_dir).resolve()
    host: SimHost | None = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _BUSY_WAIT_S
    if read_only and not socket_answers(state_dir / names.HOST_SOCKET):
        async with open_frozen(state_dir, wait_s=_BUSY_WAIT_S) as ports:
            yield ports
        return
    while not socket_answers(state_dir / names.HOST_SOCKET):
        try:
            host = await SimHost.open(state_dir, delay_scale=delay_scale)
            break
        except DirectoryBusy:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.05)
    settings = host.core.settings if host else names.HostSettings()
    xs: XenstoreClient | DirectXenstore | None = None
    rpc: RpcClient | None = None
    try:
        if host is not None:  # same process: skip the wire (a big walk is 60x faster), see `direct`
            xs = DirectXenstore(host.store)
        else:
            xs = await XenstoreClient.connect(ClientSettings(path=str(state_dir / names.XENSTORE_SOCKET)))
        rpc = await RpcClient.connect(state_dir / names.HOST_SOCKET, settings.rpc_timeout_s)
        yield HostPorts(f"sim:{state_dir}", xs, SimToolstack(rpc), SimPciBack(rpc), SimFirewall(rpc), SimNetDevices(rpc),
                        hooks=LocalHooks(), rpc=SimRpcPolicy(rpc))  # hooks run on this machine, as on a real host
    finally:
        if rpc is not None:
            await rpc.close()
        if xs is not None:
            await xs.close()
        if host is not None:
            await host.close()
