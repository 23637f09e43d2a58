"""IpNetDevices: the NetDevicePort on a real dom0, through the `ip` and `ethtool` commands.

Stage: driver (vif network interfaces, xen.md 8). Called by observe/execute through
`reconciler.ports.NetDevicePort`; composed by `drivers.xen.open_xen`. Argv lists only,
run by `drivers.xl.command.run_tool` (timeout, error mapping).

Reading (`list`): one `ip -d -j link show` (JSON), then per vif interface `ethtool -k DEV`
(offloads rx, tx, sg, tso, ufo, gso from rx-checksumming, tx-checksumming, scatter-gather,
tcp-segmentation-offload, udp-fragmentation-offload, generic-segmentation-offload) and
`ethtool DEV` (Speed, Duplex, Auto-negotiation), a few at a time. Which interfaces are
vifs: those the backend nodes in xenstore name (`/local/domain/0/backend/vif/D/N`: its
`vifname`, else `vif<D>.<N>`, as libxl and vif-bridge name them), those named
`vif<D>.<N>`, and those whose parent device is a netback one (`parentbus xen-backend`,
`parentdev vif-D-N`, shown by kernels from 5.15). Promiscuous mode is the PROMISC flag,
the one `ip link set promisc` sets: a bridge port's `promiscuity` counter is not it.
A key the device does not report is left out (netback has no link settings: `ethtool
vifD.N` says "No data available" or prints Unknown speed, so speed/duplex/autoneg are
unknown there). An interface gone between `ip` and `ethtool` (unplugged) is left out.
Without `ethtool` installed, MTU and promiscuous mode are still read (ethtool settings
unknown, a warning logged), so only a NIC that sets ethtool keys needs it.

Writing (`set`): checked first, so a refused call runs nothing; then `ip link set dev
DEV [mtu N] [promisc on|off]`, `ethtool -K DEV rx off tso on ...`, `ethtool -s DEV
[speed N] [duplex D] [autoneg on|off]`; the offloads are read back with `ethtool -k`
and a switch the kernel did not change (fixed, or held by another feature) is an error
naming it, since the next plan would ask for it again.

Driver domains: a vif whose backend is a domain other than dom0 (`backendVM`) has its
interface in that domain, which dom0's `ip` and `ethtool` cannot reach. `list` shows
only dom0's interfaces, so such a NIC is observed as NoNetDevices observes every NIC
(MTU from the vif's xenstore node, promiscuous and ethtool from the last-applied
record); `set` on one is refused with a one-line error saying to set it inside the
driver domain or change `mtu` by re-plugging the NIC.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drivers.xl.command import run_tool
from reconciler.errors import TerminalHostError
from reconciler.model.host import ETHTOOL_KEYS, NetDevice
from reconciler.ports import XenstorePort

# `ethtool -k` feature names for the keys a manifest sets (`ethtool -K` takes the short ones).
OFFLOADS = {"rx-checksumming": "rx", "tx-checksumming": "tx", "scatter-gather": "sg",
            "tcp-segmentation-offload": "tso", "udp-fragmentation-offload": "ufo",
            "generic-segmentation-offload": "gso"}
_SWITCHES = ("rx", "tx", "sg", "tso", "ufo", "gso", "autoneg")
_LINK = ("speed", "duplex", "autoneg")  # `ethtool -s`; the rest is `ethtool -K`
log = logging.getLogger(__name__)
_VIF_NAME = re.compile(r"^vif(\d+)\.(\d+)$")
GONE = re.compile(r"no such device|cannot find device|does not exist", re.IGNORECASE)
_NO_SETTINGS = re.compile(r"no data available|operation not supported|not supported", re.IGNORECASE)
VIF_BACKENDS = "/local/domain/0/backend/vif"


@dataclass(frozen=True)
class NetDevSettings:
    ip: str = "ip"  # PATH lookup; iproute2 installs /usr/sbin/ip (or /sbin/ip)
    ethtool: str = "ethtool"  # PATH lookup; Debian package `ethtool`
    timeout: float = 10.0  # seconds per command: each is one netlink/ioctl round, anything slower is stuck
    parallel: int = 8  # ethtool reads at once during `list` (two per interface)


def parse_links(text: str, where: str = "ip -d -j link show") -> builtins.list[dict[str, Any]]:
    """`ip -j link` output -> its interface objects; TerminalHostError for anything else. Pure."""
    try:
        data = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise TerminalHostError(f"`{where}` printed no JSON ({exc.msg} at line {exc.lineno}); "
                                "is it iproute2's ip (-j needs iproute2 4.14 or later)?") from None
    if not isinstance(data, list) or not all(isinstance(link, dict) and isinstance(link.get("ifname"), str)
                                             and isinstance(link.get("mtu"), int) for link in data):
        raise TerminalHostError(f"`{where}` printed JSON that is not a list of interfaces with ifname and mtu")
    return data


def is_vif(link: Mapping[str, Any], names: frozenset[str] = frozenset()) -> bool:
    """Whether this `ip -d -j` interface is a vif's backend interface. Pure."""
    name = str(link["ifname"])
    if name in names or _VIF_NAME.match(name):
        return True
    return link.get("parentbus") == "xen-backend" and str(link.get("parentdev", "")).startswith("vif-")


def promiscuous(link: Mapping[str, Any]) -> bool:
    """`ip link set promisc on` as `ip -j link` shows it: the PROMISC flag. Pure."""
    return "PROMISC" in link.get("flags", ())


def parse_features(text: str) -> dict[str, str]:
    """`ethtool -k DEV` output -> the offload keys it reports (`on`/`off`). Pure."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, rest = line.strip().partition(":")
        key = OFFLOADS.get(name)
        value = rest.split()[0] if sep and rest.split() else ""
        if key is not None and value in ("on", "off"):
            out[key] = value
    return out


def parse_settings(text: str) -> dict[str, str | int]:
    """`ethtool DEV` output -> speed (Mb/s), duplex, autoneg where the device reports them. Pure."""
    out: dict[str, str | int] = {}
    for line in text.splitlines():
        name, sep, rest = line.strip().partition(":")
        value = rest.strip()
        if not sep:
            continue
        if name == "Speed" and (match := re.fullmatch(r"(\d+)\s*Mb/s", value)):
            out["speed"] = int(match[1])
        elif name == "Duplex" and value.lower() in ("half", "full"):
            out["duplex"] = value.lower()
        elif name == "Auto-negotiation" and value in ("on", "off"):
            out["autoneg"] = value
    return out


def vif_names(nodes: Mapping[str, bytes], base: str = VIF_BACKENDS) -> frozenset[str]:
    """The interface names dom0's vif backends give (xenstore nodes under `base`). Pure."""
    names = set()
    for path in nodes:
        parts = path[len(base):].strip("/").split("/")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            vifname = nodes.get(f"{path}/vifname", b"").decode("utf-8", errors="replace").strip("\0")
            names.add(vifname or f"vif{parts[0]}.{parts[1]}")
    return frozenset(names)


def check_settings(name: str, mtu: int | None, ethtool: Mapping[str, str | int]) -> None:
    """What `set` would pass, checked before anything runs; TerminalHostError naming it. Pure."""
    if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535):
        raise TerminalHostError(f"ip link set dev {name} mtu {mtu!r}: expected an integer 68..65535")
    for key, value in ethtool.items():
        ok = (value in ("on", "off") if key in _SWITCHES else value in (10, 100, 1000) if key == "speed"
              else value in ("half", "full") if key == "duplex" else False)
        if not ok:
            raise TerminalHostError(f"ethtool {name}: bad setting {key} {value!r}; expected one of "
                                    f"{', '.join(ETHTOOL_KEYS)} with on/off, speed 10/100/1000, duplex half/full")


class IpNetDevices:
    """`ip link` and `ethtool` behind NetDevicePort, on dom0's vif interfaces.

    `xenstore` (optional) tells which interfaces are vifs by their backend nodes, so a
    NIC's `vifname` is found; without it only `vif<D>.<N>` names and netback parents are."""

    def __init__(self, settings: NetDevSettings | None = None, *, xenstore: XenstorePort | None = None) -> None:
        self.settings = settings or NetDevSettings()
        self.xenstore = xenstore

    async def _run(self, *argv: str) -> str:
        return await run_tool(list(argv), timeout=self.settings.timeout)

    async def _vifnames(self) -> frozenset[str]:
        if self.xenstore is None:
            return frozenset()
        return vif_names(await self.xenstore.snapshot(VIF_BACKENDS))  # absent: no node, no name

    async def list(self) -> builtins.list[NetDevice]:
        links_text, names = await asyncio.gather(self._run(self.settings.ip, "-d", "-j", "link", "show"),
                                                 self._vifnames())
        vifs = [link for link in parse_links(links_text) if is_vif(link, names)]
        gate = asyncio.Semaphore(max(1, self.settings.parallel))
        read_ethtool = shutil.which(self.settings.ethtool) is not None
        if vifs and not read_ethtool:
            log.warning("%s not found: the vif interfaces' ethtool settings are unknown (install ethtool)",
                        self.settings.ethtool)
        shown = await asyncio.gather(*(self._device(link, gate, read_ethtool) for link in vifs))
        return sorted((d for d in shown if d is not None), key=lambda d: (d.backend_domid, d.name))

    async def _device(self, link: Mapping[str, Any], gate: asyncio.Semaphore, read_ethtool: bool) -> NetDevice | None:
        name = str(link["ifname"])
        if not read_ethtool:  # MTU and promiscuous mode still read; setting ethtool keys fails naming the tool
            return NetDevice(0, name, int(link["mtu"]), promiscuous(link), {})
        async with gate:
            try:
                features = parse_features(await self._run(self.settings.ethtool, "-k", name))
            except TerminalHostError as exc:
                if GONE.search(str(exc)):
                    return None  # unplugged since `ip` listed it
                raise
            try:
                settings = parse_settings(await self._run(self.settings.ethtool, name))
            except TerminalHostError as exc:
                if not (_NO_SETTINGS.search(str(exc)) or GONE.search(str(exc))):
                    raise
                settings = {}  # netback: no link settings to report
        ethtool = dict(sorted({**features, **settings}.items()))
        return NetDevice(0, name, int(link["mtu"]), promiscuous(link), ethtool)

    async def set(self, backend_domid: int, name: str, *, mtu: int | None = None, promiscuous: bool | None = None,
                  ethtool: Mapping[str, str | int] | None = None) -> None:
        if backend_domid != 0:
            raise TerminalHostError(
                f"cannot set MTU, promiscuous mode or ethtool settings of {name}: its backend is domain "
                f"{backend_domid} (a driver domain), whose interfaces dom0's ip/ethtool cannot reach; set them "
                "inside that domain by hand, or leave promiscuous and ethtool unset and change mtu by re-plugging "
                "the NIC")
        settings = dict(ethtool or {})
        check_settings(name, mtu, settings)
        link = [*(["mtu", str(mtu)] if mtu is not None else []),
                *(["promisc", "on" if promiscuous else "off"] if promiscuous is not None else [])]
        if link:
            await self._run(self.settings.ip, "link", "set", "dev", name, *link)
        offloads = {k: str(v) for k, v in settings.items() if k not in _LINK}
        if offloads:
            await self._run(self.settings.ethtool, "-K", name, *(w for k, v in offloads.items() for w in (k, v)))
            now = parse_features(await self._run(self.settings.ethtool, "-k", name))
            kept = {k: now[k] for k, v in offloads.items() if k in now and now[k] != v}
            if kept:
                shown = ", ".join(f"{k} {v}" for k, v in kept.items())
                raise TerminalHostError(f"`ethtool -K {name}`: the device kept {shown} (fixed, or held by another "
                                        "offload: see `ethtool -k`); change the NIC's ethtool settings to match")
        negotiation = {k: str(v) for k, v in settings.items() if k in _LINK}
        if negotiation:
            await self._run(self.settings.ethtool, "-s", name, *(w for k, v in negotiation.items() for w in (k, v)))
