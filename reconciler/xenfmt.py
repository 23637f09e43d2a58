"""Xen's small grammars: virtual disk names, vif rates, PCI BDFs, MACs, XenbusState.

Pure functions (no I/O, no state): strings in, values out, `ValueError` with a
sentence saying what is valid for bad input. Called by the manifest models
(validation), the simulated host (what libxl would write) and the observer
(mapping xenstore values back). Each grammar follows Xen's own parser; where we
deliberately differ, the docstring says so.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "Bdf",
    "XenbusState",
    "auto_mac",
    "describe_state",
    "devid_to_vdev",
    "emulated_disk",
    "emulated_nic",
    "kib_from_mib",
    "parse_bdf",
    "parse_rate",
    "rate_from_xenstore",
    "rate_to_xenstore",
    "script_path",
    "validate_mac",
    "validate_vdev",
    "vdev_to_devid",
    "vif_ifname",
]

# --- virtual block devices (xen-vbd-interface(7), libxl__device_disk_dev_number) ---

_XVD_MAJOR, _SD_MAJOR, _HD_MAJORS = 202, 8, (3, 22)
_EXTENDED = 1 << 28
_VDEV_EXPECTED = "expected xvdX[N], hdX[N] (a-d), sdX[N] (a-p) or dNpM"
_MANIFEST_VDEV_EXPECTED = "expected xvdX[N], hdX[N] (X a-d) or sdX[N] (X a-p), e.g. xvda or hdc"
_DP_RE = re.compile(r"d(\d+)p(\d+)")
# prefix, max disk index, max partition (as libxl checks them)
_LETTER_FORMS = (("xvd", (1 << 20) - 1, 255), ("hd", 3, 63), ("sd", 15, 15))


def _letters_to_index(letters: str) -> int:
    """`a`->0 ... `z`->25, `aa`->26: bijective base 26, as libxl decodes drive letters."""
    index = -1
    for ch in letters:
        index = (index + 1) * 26 + (ord(ch) - ord("a"))
    return index


def _index_to_letters(index: int) -> str:
    letters = ""
    index += 1
    while index > 0:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return letters


def _split_letter_form(vdev: str, prefix: str) -> tuple[int, int] | None:
    """(disk, partition) for `<prefix><letters>[<N>]`, or None if the shape does not match.

    Like libxl: at least one lower-case letter (libxl itself accepts a bare `xvd` as
    disk -1, which we reject), partition without leading zeros.
    """
    m = re.fullmatch(re.escape(prefix) + r"([a-z]+)([1-9][0-9]*)?", vdev)
    if m is None:
        return None
    return _letters_to_index(m.group(1)), int(m.group(2) or 0)


def _xvd_number(disk: int, part: int) -> int:
    if disk <= 15 and part <= 15:
        return (_XVD_MAJOR << 8) | (disk << 4) | part
    return _EXTENDED | (disk << 8) | part


def vdev_to_devid(vdev: str) -> int:
    """The devid libxl uses for a virtual disk name (xvda -> 51712, hda -> 768, sda -> 2048).

    Accepts `xvdX[N]` (multi-letter, disk < 2**20, partition <= 255), `hdX[N]` (a-d,
    partition <= 63), `sdX[N]` (a-p, partition <= 15) and `dNpM`. libxl also takes a
    bare integer literally; we do not, as no manifest should name a disk that way.
    """
    m = _DP_RE.fullmatch(vdev)
    if m is not None and int(m.group(1)) < (1 << 20) and int(m.group(2)) < 256:
        return _xvd_number(int(m.group(1)), int(m.group(2)))
    for prefix, max_disk, max_part in _LETTER_FORMS:
        parsed = _split_letter_form(vdev, prefix)
        if parsed is None:
            continue
        disk, part = parsed
        if disk > max_disk or part > max_part:
            raise ValueError(
                f"{_VDEV_EXPECTED}, found {vdev!r} "
                f"({prefix} allows disks up to {_index_to_letters(max_disk)!r} "
                f"and partitions up to {max_part})"
            )
        if prefix == "xvd":
            return _xvd_number(disk, part)
        if prefix == "hd":
            return ((_HD_MAJORS[disk >> 1]) << 8) | ((disk & 1) << 6) | part
        return (_SD_MAJOR << 8) | (disk << 4) | part
    raise ValueError(f"{_VDEV_EXPECTED}, found {vdev!r}")


_EMULATED_VDEV = re.compile(r"(hd|sd)[a-z]+")


def emulated_disk(virt: str, vdev: str, devtype: str | None) -> bool:
    """Does QEMU emulate this disk for the guest (a BIOS-visible disk or CD drive)?

    Only on HVM. xen-vbd-interface(7): each whole-disk `hd*` (IDE, or AHCI with
    hdtype=ahci) and `sd*` (SCSI) is given both emulated and as a Xen VBD; a cdrom is
    QEMU's `ide-cd` (libxl_dm.c). Partitions (`hda1`) and `xvd*` names are Xen VBDs
    for the guest's PV drivers (qemu-xen also shows xvd[a-d] as IDE at boot, but a guest
    that names them xvd uses its PV drivers). QEMU takes its drives from the config when
    the domain is built: `xl block-attach` of an emulated disk gives the PV view only
    (xl(1)), and a media change of a cdrom is `xl cd-insert`/`cd-eject`.
    """
    return virt == "hvm" and (devtype == "cdrom" or _EMULATED_VDEV.fullmatch(vdev) is not None)


def emulated_nic(virt: str, nic_type: str | None, model: str | None) -> bool:
    """Does QEMU emulate this NIC for the guest? On HVM, `type: ioemu`, or no type with a
    `model` (xl-network-configuration(5): `model` is for ioemu NICs, and a NIC without a
    type in an HVM config is ioemu). `xl network-attach` supports PV NICs only: libxl
    gives a hot-plugged NIC without a type `vif`, and QEMU never sees a hot-plugged one."""
    return virt == "hvm" and (nic_type == "ioemu" or (nic_type is None and model is not None))


def validate_vdev(vdev: str) -> str:
    """Check a manifest `vdev` (only `xvdX[N]`, `hdX[N]`, `sdX[N]`); return it unchanged."""
    if not re.fullmatch(r"(xvd|hd|sd)[a-z]+([1-9][0-9]*)?", vdev):
        raise ValueError(f"{_MANIFEST_VDEV_EXPECTED}, found {vdev!r}")
    try:
        vdev_to_devid(vdev)
    except ValueError as exc:
        raise ValueError(f"{_MANIFEST_VDEV_EXPECTED}, found {vdev!r}") from exc
    return vdev


def devid_to_vdev(devid: int) -> str:
    """The canonical name for a vbd devid (51712 -> xvda, 768 -> hda, 2049 -> sda1).

    The inverse of `vdev_to_devid` for the names it produces; `dNpM` comes back as
    the equivalent `xvd` name. Raises ValueError for numbers no name maps to.
    """
    if devid < 0:
        raise ValueError(f"a vbd devid is a non-negative integer, found {devid}")
    if devid & _EXTENDED and devid < (1 << 29):
        disk, part = (devid >> 8) & ((1 << 20) - 1), devid & 0xFF
        return f"xvd{_index_to_letters(disk)}{part or ''}"
    major = devid >> 8
    if major == _XVD_MAJOR:
        return f"xvd{_index_to_letters((devid >> 4) & 15)}{(devid & 15) or ''}"
    if major == _SD_MAJOR:
        return f"sd{_index_to_letters((devid >> 4) & 15)}{(devid & 15) or ''}"
    if major in _HD_MAJORS:
        disk = _HD_MAJORS.index(major) * 2 + ((devid >> 6) & 1)
        part = devid & 63
        return f"hd{_index_to_letters(disk)}{part or ''}"
    raise ValueError(
        f"devid {devid} is not an xvd (major 202 or 1<<28 form), hd (major 3/22) "
        "or sd (major 8) number"
    )


# --- vif rate (libxlu_vif.c: xlu_vif_parse_rate) ---

_UINT32_MAX = (1 << 32) - 1
_UINT64_MAX = (1 << 64) - 1
_RATE_EXPECTED = (
    "expected <N>[G|M|K](B|b)/s[@<N>[ms|us|s]] with B bytes and b bits, "
    "e.g. 10Mb/s, 250KB/s or 1MB/s@20ms"
)
_BYTES_RE = re.compile(r"[0-9]+[GMK]?[Bb]/s")
_INTERVAL_RE = re.compile(r"[0-9]+[mu]?s?")
_DEFAULT_INTERVAL_USECS = 50_000


def _c_strtoull(text: str) -> tuple[int, int]:
    """Value and end index of C `strtoull(text, &end, 0)` on a string of leading digits.

    Base 0 means a leading `0` makes the number octal: xl reads `010Mb/s` as 8 Mbit/s,
    and stops at the first non-octal digit (`09` is 0). We mirror it so the rate we
    predict equals the one xl writes.
    """
    digits = re.match(r"[0-9]*", text)
    assert digits is not None
    run = digits.group(0)
    if len(run) > 1 and run[0] == "0":
        octal = re.match(r"[0-7]*", run[1:])
        assert octal is not None
        return int(octal.group(0) or "0", 8), 1 + len(octal.group(0))
    return int(run or "0"), len(run)


def _bytes_per_sec(rate: str, text: str) -> int:
    if not _BYTES_RE.fullmatch(text):
        raise ValueError(f"invalid rate {rate!r}: {_RATE_EXPECTED}")
    value, end = _c_strtoull(text)
    if value == 0 or value > _UINT32_MAX:
        raise ValueError(f"invalid rate {rate!r}: the number must be between 1 and {_UINT32_MAX}")
    unit = text[end:] + "\0\0"
    value *= {"G": 1_000_000_000, "M": 1_000_000, "K": 1_000}.get(unit[0], 1)
    if unit[0] == "b" or unit[1] == "b":
        value //= 8  # bits: xl divides after scaling, so 1b/s is 0 bytes/s
    return value


def _interval_usecs(rate: str, text: str) -> int:
    if not _INTERVAL_RE.fullmatch(text):
        raise ValueError(
            f"invalid replenishment interval in {rate!r}: expected @<N>ms, @<N>us or @<N>s"
        )
    value, end = _c_strtoull(text)
    if value == 0 or value > _UINT32_MAX:
        raise ValueError(f"invalid replenishment interval in {rate!r}: must be at least 1")
    unit = text[end:] + "\0"
    if unit[0] in ("s", "\0"):
        value *= 1_000_000
    elif unit[0] == "m":
        value *= 1_000
    if value > _UINT32_MAX:
        raise ValueError(
            f"invalid replenishment interval in {rate!r}: longer than {_UINT32_MAX} us"
        )
    return value


def parse_rate(rate: str) -> tuple[int, int]:
    """(bytes_per_interval, interval_usecs) for an xl vif `rate`, computed as xl does.

    `10Mb/s` -> (62500, 50000); `1MB/s@20ms` -> (20000, 20000). Integer arithmetic
    throughout: bits are divided by 8 after scaling, and bytes per interval is
    bytes_per_sec * usecs // 1_000_000.
    """
    head, at, tail = rate.partition("@")
    if head == "":
        raise ValueError(f"invalid rate {rate!r}: no rate given; {_RATE_EXPECTED}")
    per_sec = _bytes_per_sec(rate, head)
    usecs = _interval_usecs(rate, tail) if at else _DEFAULT_INTERVAL_USECS
    if per_sec > _UINT64_MAX // usecs:
        raise ValueError(f"invalid rate {rate!r}: rate times interval overflows 64 bits")
    return per_sec * usecs // 1_000_000, usecs


def rate_to_xenstore(rate: str) -> str:
    """The vif backend `rate` node value libxl writes: `"<bytes_per_interval>,<usecs>"`."""
    per_interval, usecs = parse_rate(rate)
    return f"{per_interval},{usecs}"


_RATE_UNITS = (("G", 1_000_000_000), ("M", 1_000_000), ("K", 1_000), ("", 1))


def _interval_text(usecs: int) -> str:
    if usecs == _DEFAULT_INTERVAL_USECS:
        return ""
    if usecs % 1_000_000 == 0:
        return f"@{usecs // 1_000_000}s"
    if usecs % 1_000 == 0:
        return f"@{usecs // 1_000}ms"
    return f"@{usecs}us"


def rate_from_xenstore(value: str) -> str:
    """The canonical xl spelling of a vif backend `rate` node (`"<bytes>,<usecs>"`).

    Inverse of `rate_to_xenstore` up to spelling: `parse_rate(rate_from_xenstore(v))`
    gives back exactly the pair in `v`, so observed and desired rates compare by value.
    Among the spellings that do, the shortest wins (ties: bytes before bits, larger unit
    first): `"62500,50000"` -> `"10Mb/s"`, `"20000,20000"` -> `"1MB/s@20ms"`. Raises
    ValueError when `v` is malformed or no xl rate produces it (a pair whose
    bytes per second fit in 32 bits always has one when the interval is at most 1 s).
    """
    m = re.fullmatch(r"([0-9]+),([0-9]+)", value.strip())
    if m is None:
        raise ValueError(f"expected a vif rate node '<bytes>,<usecs>', e.g. '62500,50000', found {value!r}")
    per_interval, usecs = int(m.group(1)), int(m.group(2))
    if not 1 <= usecs <= _UINT32_MAX:
        raise ValueError(f"vif rate interval must be 1-{_UINT32_MAX} us, found {value!r}")
    # parse_rate gives per_sec * usecs // 10**6; these are the per_sec values that hit it.
    low = -(-per_interval * 1_000_000 // usecs)
    high = ((per_interval + 1) * 1_000_000 - 1) // usecs
    best: str | None = None
    for suffix, divisor in (("B", 1), ("b", 8)):
        for prefix, scale in _RATE_UNITS:
            number = max(1, -(-low * divisor // scale))
            if number > _UINT32_MAX or not low <= number * scale // divisor <= high:
                continue
            text = f"{number}{prefix}{suffix}/s{_interval_text(usecs)}"
            if best is None or len(text) < len(best):
                best = text
    if best is None:
        raise ValueError(
            f"no xl rate writes {value!r}: no <N>[G|M|K](B|b)/s with N < 2**32 gives "
            f"{per_interval} bytes per {usecs} us"
        )
    return best


# --- PCI addresses ---

_BDF_RE = re.compile(
    r"(?:(?P<domain>[0-9a-fA-F]{1,4}):)?(?P<bus>[0-9a-fA-F]{1,2}):"
    r"(?P<slot>[0-9a-fA-F]{1,2})\.(?P<func>[0-7])"
)


@dataclass(frozen=True, order=True)
class Bdf:
    """A host PCI address. `str()` is libxl's `%04x:%02x:%02x.%01x` form."""

    domain: int
    bus: int
    slot: int
    func: int

    def __str__(self) -> str:
        return f"{self.domain:04x}:{self.bus:02x}:{self.slot:02x}.{self.func:01x}"

    @property
    def xenstore_key(self) -> str:
        """The `DDDD-BB-SS-F` name libxl uses under `/libxl/pci/`."""
        return f"{self.domain:04x}-{self.bus:02x}-{self.slot:02x}-{self.func:01x}"


def parse_bdf(text: str) -> Bdf:
    """Parse `DDDD:BB:SS.F` or `BB:SS.F` (hex, any case; domain defaults to 0)."""
    m = _BDF_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(
            "expected a PCI address DDDD:BB:SS.F or BB:SS.F in hex, e.g. 0000:03:00.0, "
            f"found {text!r}"
        )
    slot = int(m.group("slot"), 16)
    if slot > 0x1F:
        raise ValueError(f"PCI slot must be 00-1f, found {m.group('slot')!r} in {text!r}")
    domain, bus = int(m.group("domain") or "0", 16), int(m.group("bus"), 16)
    return Bdf(domain, bus, slot, int(m.group("func")))


# --- MAC addresses ---

_MAC_RE = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")


def auto_mac(vm_uuid: str, index: int) -> str:
    """Deterministic MAC for NIC `index` of a VM, as OpenXT xenmgr derives it.

    md5 of `"<index> <uuid>"`, first six bytes, first octet made unicast (bit 0
    cleared) and locally administered (bit 1 set).
    """
    digest = bytearray(hashlib.md5(f"{index} {vm_uuid}".encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in digest)


def validate_mac(text: str) -> str:
    """Check a NIC MAC `xx:xx:xx:xx:xx:xx`; return it lower-cased. Rejects multicast."""
    if not _MAC_RE.fullmatch(text):
        raise ValueError(f"expected a MAC address xx:xx:xx:xx:xx:xx (hex), found {text!r}")
    mac = text.lower()
    if int(mac[:2], 16) & 1:
        raise ValueError(
            f"MAC {mac} is a multicast address (first octet is odd); a NIC needs a unicast "
            "one, e.g. 00:16:3e:xx:xx:xx or use `auto`"
        )
    if mac == "00:00:00:00:00:00":
        raise ValueError("MAC 00:00:00:00:00:00 is not a usable address; use `auto` instead")
    return mac


# --- units and XenbusState ---


def kib_from_mib(mib: int) -> int:
    """MiB -> KiB, the unit xenstore `memory/*` nodes use."""
    if mib < 0:
        raise ValueError(f"memory must not be negative, found {mib} MiB")
    return mib * 1024


class XenbusState(IntEnum):
    """Device states as in `xen/include/public/io/xenbus.h` (all nine, 0..8)."""

    UNKNOWN = 0
    INITIALISING = 1
    INIT_WAIT = 2
    INITIALISED = 3
    CONNECTED = 4
    CLOSING = 5
    CLOSED = 6
    RECONFIGURING = 7
    RECONFIGURED = 8


_STATE_NAMES = {
    XenbusState.UNKNOWN: "Unknown",
    XenbusState.INITIALISING: "Initialising",
    XenbusState.INIT_WAIT: "InitWait",
    XenbusState.INITIALISED: "Initialised",
    XenbusState.CONNECTED: "Connected",
    XenbusState.CLOSING: "Closing",
    XenbusState.CLOSED: "Closed",
    XenbusState.RECONFIGURING: "Reconfiguring",
    XenbusState.RECONFIGURED: "Reconfigured",
}


def describe_state(value: int | str) -> str:
    """`4` or `"4"` -> `"4 (Connected)"`; anything else says it is not a XenbusState."""
    try:
        state = XenbusState(int(value))
    except ValueError:
        return f"{value!r} (not a XenbusState; expected 0-8)"
    return f"{int(state)} ({_STATE_NAMES[state]})"


# --- hotplug scripts and vif interfaces (xl-disk-configuration(5), xl-network-configuration(5)) ---

SCRIPT_DIR = "/etc/xen/scripts"
DISK_SCRIPT = f"{SCRIPT_DIR}/block"  # what libxl writes for a phy disk that names none
NIC_SCRIPT = f"{SCRIPT_DIR}/vif-bridge"  # likewise for a vif


def script_path(script: str) -> str:
    """A hotplug script as libxl runs it: a name without a leading `/` is looked up in
    /etc/xen/scripts (`libxl__abs_path(script, XEN_SCRIPT_DIR)`), so `vif-bridge` and
    `/etc/xen/scripts/vif-bridge` are the same script."""
    return script if script.startswith("/") else f"{SCRIPT_DIR}/{script}"


def vif_ifname(domid: int, devid: int, vifname: str | None = None) -> str:
    """The vif's network interface in its backend domain: `vif<domid>.<devid>` unless the
    config names it (`vifname`), as libxl and the vif hotplug scripts name it."""
    return vifname or f"vif{domid}.{devid}"
