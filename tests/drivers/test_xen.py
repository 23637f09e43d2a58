"""open_xen: the real-host composition, against the simulated xenstored on a Unix socket."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.netdev import IpNetDevices
from drivers.pciback import SysfsPciBack
from drivers.viptables import ViptablesFirewall
from drivers.xen import XenSettings, open_xen
from drivers.xenstore import Store, XenstoreServer
from drivers.xl import XlToolstack
from reconciler.errors import HostError, TerminalHostError


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short temp dir: AF_UNIX socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="xen", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_open_xen_finds_the_socket_like_libxenstore_and_closes_it(
        sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.setenv("XENSTORED_RUNDIR", str(sock_dir))

    async def scenario() -> None:
        store = Store()
        async with XenstoreServer(store, sock_dir / "socket"):
            async with open_xen(XenSettings(sysfs_root=sock_dir / "sys")) as ports:
                assert ports.name == "xen"
                await ports.xenstore.write("/vm/x/name", "web")
                assert await ports.xenstore.read("/vm/x/name") == b"web"
                assert isinstance(ports.toolstack, XlToolstack)
                assert isinstance(ports.pciback, SysfsPciBack) and ports.pciback.root == sock_dir / "sys"
                assert ports.pciback.xenstore is ports.xenstore  # libxl's driver_path goes through it
                assert isinstance(ports.firewall, ViptablesFirewall)
                # ip link/ethtool on dom0's vifs, told apart by the backend nodes of this client;
                # a driver domain's vif is out of reach (tests/drivers/test_netdev.py runs the tools).
                assert isinstance(ports.netdev, IpNetDevices) and ports.netdev.xenstore is ports.xenstore
                with pytest.raises(TerminalHostError, match="backend is domain 3 .a driver domain."):
                    await ports.netdev.set(3, "vif1.0", promiscuous=True)
                client = ports.xenstore
            with pytest.raises(HostError, match="closed"):
                await client.read("/vm/x/name")

    asyncio.run(scenario())


def test_open_xen_without_xenstored_names_the_socket(sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XENSTORED_PATH", str(sock_dir / "none"))

    async def scenario() -> None:
        async with open_xen():
            pass

    with pytest.raises(HostError, match=f"cannot connect to xenstored at {sock_dir}/none"):
        asyncio.run(scenario())
