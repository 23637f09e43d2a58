"""open_xen: the real-host HostPorts, composed from the xenstore, xl, pciback, viptables and netdev drivers.

The network-device port is `drivers.netdev.IpNetDevices` (`ip link`/`ethtool` on dom0's
vif interfaces, told apart by the vif backend nodes this xenstore client reads); a vif
served by a driver domain is out of its reach (see that module). The rpc-proxy policy port
is `drivers.rpcproxy.DbRpcPolicy` (the OpenXT config DB through `db-cmd`, then SIGHUP to
rpc-proxy) when `db-cmd` is on this host, else `NoRpcPolicy`: a dom0 without OpenXT's dbd
has no rpc-proxy, so its policy is shown as unknown and rpcRules are refused.

Stage: driver composition. Called only by `reconciler.cli` for `--host xen`, as
`async with open_xen() as ports: ...`. Connects one xenstore client (socket found as
libxenstore finds it: $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket, else
/run/xenstored/socket; `drivers.xenstore.connection.socket_path`; pciback shares it for
libxl's `/libxl/pci/<bdf>/driver_path`), builds the other
drivers (which hold no connection) and closes the client on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from drivers.hooks import LocalHooks
from drivers.netdev import IpNetDevices, NetDevSettings
from drivers.pciback import SysfsPciBack
from drivers.rpcproxy import DbRpcPolicy, RpcProxySettings
from drivers.viptables import ViptablesFirewall, ViptablesSettings
from drivers.xenstore import ClientSettings, XenstoreClient
from drivers.xl import XlSettings, XlToolstack
from reconciler.ports import HostPorts, NoRpcPolicy


@dataclass(frozen=True)
class XenSettings:
    """Everything needed to reach a real Xen dom0; the defaults are a stock Debian/OpenXT dom0."""

    xenstore: ClientSettings = field(default_factory=ClientSettings)  # path None: libxenstore's lookup
    xl: XlSettings = field(default_factory=XlSettings)
    sysfs_root: Path = Path("/sys")  # where sysfs is mounted; tests point it at a fake tree
    viptables: ViptablesSettings = field(default_factory=ViptablesSettings)
    netdev: NetDevSettings = field(default_factory=NetDevSettings)
    rpcproxy: RpcProxySettings = field(default_factory=RpcProxySettings)


@contextlib.asynccontextmanager
async def open_xen(settings: XenSettings | None = None) -> AsyncIterator[HostPorts]:
    """HostPorts named `xen`; raises the xenstore driver's DaemonUnavailable (a
    HostError) with the socket path when xenstored cannot be reached."""
    settings = settings or XenSettings()
    client = await XenstoreClient.connect(settings.xenstore)
    try:
        yield HostPorts(
            name="xen",
            xenstore=client,
            toolstack=XlToolstack(settings.xl),
            pciback=SysfsPciBack(settings.sysfs_root, client),  # client: libxl's /libxl/pci driver_path
            firewall=ViptablesFirewall(settings=settings.viptables),
            netdev=IpNetDevices(settings.netdev, xenstore=client),
            hooks=LocalHooks(),
            rpc=DbRpcPolicy(settings.rpcproxy) if DbRpcPolicy.available(settings.rpcproxy) else NoRpcPolicy(),
        )
    finally:
        await client.close()
