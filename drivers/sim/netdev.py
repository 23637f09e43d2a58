"""The simulated host's vif interfaces: MTU, promiscuous mode and ethtool settings (xen.md 8).

Stage: simulated host. `NetDevTable` holds one interface per plugged vif, in its backend
domain, as `ip -d link show` and `ethtool -k` would show it: plugged by network-attach
with the vif's configured MTU (what vif-bridge applies), promiscuous off and the
offloads netback starts with; changed by `set` (`ip link set`, `ethtool -K/-s`); gone on
detach or when either domain is destroyed. Saved in DIR/host.json. Used by
`drivers.sim.attach`, `toolstack` and `dispatch`.

Not modelled: netback answers `ethtool -s` (speed, duplex, autoneg) with EOPNOTSUPP on
a real host; here it is accepted and shown back, as the manifests (XenServer's keys) ask.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import TerminalHostError
from reconciler.model.host import ETHTOOL_KEYS, NetDevice

# What a fresh vif reports (`ethtool -k vifD.N` on a Linux netback): checksums,
# scatter-gather and segmentation offloads on; UFO is gone from current kernels.
FRESH_ETHTOOL: Mapping[str, str | int] = {"rx": "on", "tx": "on", "sg": "on", "tso": "on", "ufo": "off", "gso": "on",
                                          "autoneg": "off"}
_SWITCHES = ("rx", "tx", "sg", "tso", "ufo", "gso", "autoneg")


@dataclass
class Interface:
    """One vif's interface: where it lives, whose vif it is, and its settings."""

    backend_domid: int
    name: str
    domid: int  # the guest whose vif this is
    devid: int
    mtu: int
    promiscuous: bool = False
    ethtool: dict[str, str | int] = field(default_factory=lambda: dict(FRESH_ETHTOOL))

    def view(self) -> NetDevice:
        return NetDevice(self.backend_domid, self.name, self.mtu, self.promiscuous, dict(sorted(self.ethtool.items())))


class NetDevTable:
    def __init__(self, interfaces: Iterable[Interface] = ()) -> None:
        self.interfaces: dict[tuple[int, str], Interface] = {(i.backend_domid, i.name): i for i in interfaces}

    def plug(self, backend_domid: int, name: str, *, domid: int, devid: int, mtu: int) -> None:
        """A vif came up (its hotplug script ran): a fresh interface, whatever was there."""
        self.interfaces[(backend_domid, name)] = Interface(backend_domid, name, domid, devid, mtu)

    def unplug(self, domid: int, devid: int) -> None:
        """Guest `domid`'s vif `devid` is gone, and its interface with it."""
        for key, iface in list(self.interfaces.items()):
            if (iface.domid, iface.devid) == (domid, devid):
                del self.interfaces[key]

    def forget_domain(self, domid: int) -> None:
        """A destroyed domain takes its vifs' interfaces, and those it served as a backend."""
        for key, iface in list(self.interfaces.items()):
            if domid in (iface.domid, iface.backend_domid):
                del self.interfaces[key]

    def shown(self) -> list[NetDevice]:
        return [self.interfaces[k].view() for k in sorted(self.interfaces)]

    def set(self, backend_domid: int, name: str, *, mtu: int | None, promiscuous: bool | None,
            ethtool: Mapping[str, Any] | None) -> None:
        """`ip link set` / `ethtool -K -s`: checked first, so a refused call changes nothing."""
        iface = self.interfaces.get((backend_domid, name))
        if iface is None:
            raise TerminalHostError(f"Cannot find device \"{name}\" in domain {backend_domid} (no such vif interface)")
        if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int) or not 68 <= mtu <= 65535):
            raise TerminalHostError(f"ip link set dev {name} mtu {mtu!r}: expected 68..65535")
        settings = dict(ethtool or {})
        for key, value in settings.items():
            if key not in ETHTOOL_KEYS or not _valid(key, value):
                raise TerminalHostError(f"ethtool {name}: bad setting {key} {value!r}")
        if mtu is not None:
            iface.mtu = mtu
        if promiscuous is not None:
            iface.promiscuous = bool(promiscuous)
        iface.ethtool.update(settings)

    def dump(self) -> list[dict[str, Any]]:
        return [vars(self.interfaces[k]) | {"ethtool": dict(sorted(self.interfaces[k].ethtool.items()))}
                for k in sorted(self.interfaces)]

    @classmethod
    def restore(cls, rows: Any) -> NetDevTable:
        """The saved table; ValueError/KeyError/TypeError for a malformed one."""
        if not isinstance(rows, list):
            raise ValueError("netdevs is not a list")
        out = []
        for row in rows:
            iface = Interface(int(row["backend_domid"]), str(row["name"]), int(row["domid"]), int(row["devid"]),
                              int(row["mtu"]), bool(row["promiscuous"]), dict(row["ethtool"]))
            out.append(iface)
        return cls(out)


def _valid(key: str, value: object) -> bool:
    if key in _SWITCHES:
        return value in ("on", "off")
    if key == "speed":
        return value in (10, 100, 1000)
    return value in ("half", "full")
