"""xl device spec strings for block-attach, network-attach and pci-attach: pure.

In: Disk / NIC models or a BDF with options. Out: the argv tokens xl parses
(reference xen.md 3.3-3.5). Every disk and vif option is its own `key=value` token,
which xl accepts as well as one comma-joined string; a disk's `target=` comes last
because xl lets it swallow the rest of its token (commas in paths stay intact).
`backendVM` names pass as `backend=<name>`: xl resolves domain names itself.
Called by `drivers.xl.toolstack.XlToolstack`; tests check the exact tokens.
"""

from __future__ import annotations

from reconciler import xenfmt
from reconciler.errors import TerminalHostError
from reconciler.model.devices import NIC, Disk


class SpecValueError(TerminalHostError):
    """A manifest value cannot be written into an xl spec string."""


def _plain(key: str, value: str, *, forbid: str = ",") -> str:
    """A spec value; xl spec strings have no escaping, so separators are refused."""
    bad = [ch for ch in forbid if ch in value]
    if bad or any(ord(ch) < 0x20 for ch in value):
        raise SpecValueError(
            f"xl spec key {key}: value {value!r} contains {bad[0] if bad else 'a control character'!r}, "
            "which xl's device spec grammar cannot escape; change it in the manifest"
        )
    return value


def disk_spec(disk: Disk) -> list[str]:
    """`xl block-attach` tokens, e.g. `['format=raw', 'vdev=xvda', 'access=rw', 'target=/dev/vg/x']`."""
    spec = disk.spec
    cdrom = spec.devtype == "cdrom"
    access = spec.access or ("ro" if cdrom else "rw")
    tokens = [f"format={spec.format}", f"vdev={spec.vdev}", f"access={access}"]
    if cdrom:
        tokens.append("devtype=cdrom")
    if spec.backend_vm is not None:
        tokens.append(f"backend={spec.backend_vm}")
    if spec.script is not None:
        tokens.append(f"script={_plain('script', spec.script)}")
    tokens.append("discard" if spec.discard else "no-discard")
    if any(ord(ch) < 0x20 for ch in spec.target):
        raise SpecValueError(f"disk target {spec.target!r} contains a control character; rename the image")
    tokens.append(f"target={spec.target}")
    return tokens


def vif_spec(nic: NIC) -> list[str]:
    """`xl network-attach` tokens; index and MAC must be resolved (the loader does both).

    `promiscuous` and `ethtool` have no xl key: they are not passed (the caller applies
    them through the backend, if at all).
    """
    spec = nic.spec
    if spec.mac == "auto":
        raise SpecValueError(
            f"NIC {nic.metadata.name}: mac is still 'auto'; resolve it with "
            "reconciler.xenfmt.auto_mac before attaching"
        )
    if spec.index is None:
        raise SpecValueError(f"NIC {nic.metadata.name}: index is unset; the loader assigns it before planning")
    tokens = [f"devid={spec.index}", f"mac={xenfmt.validate_mac(spec.mac)}", f"bridge={spec.bridge}"]
    if spec.backend_vm is not None:
        tokens.append(f"backend={spec.backend_vm}")
    for key, value in (("type", spec.type), ("model", spec.model), ("vifname", spec.vifname),
                       ("rate", spec.rate), ("ip", spec.ip), ("script", spec.script)):
        if value is not None:
            tokens.append(f"{key}={_plain(key, value)}")
    tokens.append(f"mtu={spec.mtu}")
    return tokens


def pci_spec(bdf: str, *, permissive: bool = False, msitranslate: bool = False,
             power_mgmt: bool = False, guest_slot: int | None = None) -> str:
    """`xl pci-attach` spec, e.g. `0000:03:00.0@05,permissive=1`; only non-default keys."""
    try:
        text = str(xenfmt.parse_bdf(bdf))
    except ValueError as exc:
        raise SpecValueError(str(exc)) from exc
    if guest_slot is not None:
        if not 0 <= guest_slot <= 0x1F:
            raise SpecValueError(f"guest PCI slot must be 0x00-0x1f, found {guest_slot:#x}")
        text += f"@{guest_slot:02x}"
    for key, flag in (("permissive", permissive), ("msitranslate", msitranslate), ("power_mgmt", power_mgmt)):
        if flag:
            text += f",{key}=1"
    return text
