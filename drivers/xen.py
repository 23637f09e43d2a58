"""open_xen: the real-host HostPorts, composed from the xenstore, xl, pciback and viptables drivers.

The network-device port (`ip link`/`ethtool` in the vif's backend domain) has no real
driver yet: `reconciler.ports.NoNetDevices` shows no interface (so MTU is read from the
vif's xenstore node, promiscuous and ethtool from the last-applied record, as before)
and fails, naming what is missing, any step that would set one.

Stage: driver composition. Called only by `reconciler.cli` for `--host xen`, as
`async with open_xen() as ports: ...`. Connects one xenstore client (socket found as
libxenstore finds it: $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket, else
/run/xenstored/socket; `drivers.xenstore.connection.socket_path`), builds the other
drivers (which hold no connection) and closes the client on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from drivers.hooks import LocalHooks
from drivers.pciback import SysfsPciBack
from drivers.viptables import ViptablesFirewall, ViptablesSettings
from drivers.xenstore import ClientSettings, XenstoreClient
from drivers.xl import XlSettings, XlToolstack
from reconciler.ports import HostPorts, NoNetDevices


@dataclass(frozen=True)
class XenSettings:
    """Everything needed to reach a real Xen dom0; the defaults are a stock Debian/OpenXT dom0."""

    xenstore: ClientSettings = field(default_factory=ClientSettings)  # path None: libxenstore's lookup
    xl: XlSettings = field(default_factory=XlSettings)
    sysfs_root: Path = Path("/sys")  # where sysfs is mounted; tests point it at a fake tree
    viptables: ViptablesSettings = field(default_factory=ViptablesSettings)


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
            pciback=SysfsPciBack(settings.sysfs_root),
            firewall=ViptablesFirewall(settings=settings.viptables),
            netdev=NoNetDevices(),
            hooks=LocalHooks(),
        )
    finally:
        await client.close()
