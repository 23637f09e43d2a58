"""Xen grammars: values checked against xen-vbd-interface(7), libxlu_vif.c and real dumps."""

from __future__ import annotations

import pytest

from reconciler.xenfmt import (
    Bdf,
    XenbusState,
    auto_mac,
    describe_state,
    devid_to_vdev,
    kib_from_mib,
    parse_bdf,
    parse_rate,
    rate_to_xenstore,
    validate_mac,
    validate_vdev,
    vdev_to_devid,
)

# (vdev, devid) worked out by hand from the formulas in xen-vbd-interface(7).
VDEVS = [
    ("xvda", 51712),  # 202 << 8, seen in both real dumps
    ("xvdb", 51728),
    ("xvda1", 51713),
    ("xvda15", 51727),
    ("xvdp", 51952),  # disk 15: last short form
    ("xvdq", (1 << 28) | (16 << 8)),  # disk 16: extended form
    ("xvda16", (1 << 28) | 16),  # partition 16: extended form
    ("xvdaa", (1 << 28) | (26 << 8)),  # letters are bijective base 26
    ("xvdba", (1 << 28) | (52 << 8)),
    ("hda", 768),
    ("hdb", 832),  # 3 << 8 | 1 << 6
    ("hdc", 5632),  # 22 << 8
    ("hdd", 5696),
    ("hda63", 831),
    ("sda", 2048),
    ("sdb", 2064),
    ("sdp", 2288),
    ("sda15", 2063),
]


@pytest.mark.parametrize(("vdev", "devid"), VDEVS)
def test_vdev_to_devid_known_values(vdev: str, devid: int) -> None:
    assert vdev_to_devid(vdev) == devid


@pytest.mark.parametrize(("vdev", "devid"), VDEVS)
def test_devid_to_vdev_inverts_canonical_names(vdev: str, devid: int) -> None:
    assert devid_to_vdev(devid) == vdev


@pytest.mark.parametrize(
    ("vdev", "devid"), [("d0p0", 51712), ("d1p2", 51730), ("d16p0", (1 << 28) | (16 << 8))]
)
def test_dNpM_form_is_the_xvd_numbering(vdev: str, devid: int) -> None:
    assert vdev_to_devid(vdev) == devid


@pytest.mark.parametrize(
    "vdev",
    ["vda", "xvd", "xvdA", "xvda0", "xvda01", "xvda256", "hde", "hda64", "sdq", "sda16",
     "", " xvda", "d0p256", "51712", "xvda-1"],
)
def test_vdev_to_devid_rejects_with_what_is_valid(vdev: str) -> None:
    expected = r"expected xvdX\[N\], hdX\[N\] \(a-d\), sdX\[N\] \(a-p\) or dNpM, found"
    with pytest.raises(ValueError, match=expected):
        vdev_to_devid(vdev)


def test_vdev_error_names_the_limit_that_was_exceeded() -> None:
    with pytest.raises(ValueError, match="hd allows disks up to 'd' and partitions up to 63"):
        vdev_to_devid("hde")


@pytest.mark.parametrize("vdev", ["xvda", "xvdq2", "hdc", "sdp15"])
def test_validate_vdev_accepts_manifest_forms(vdev: str) -> None:
    assert validate_vdev(vdev) == vdev


@pytest.mark.parametrize("vdev", ["d0p1", "vda", "hde", "xvda0", "sdq"])
def test_validate_vdev_rejects_other_forms(vdev: str) -> None:
    with pytest.raises(ValueError, match=r"expected xvdX\[N\], hdX\[N\] \(X a-d\) or sdX\[N\]"):
        validate_vdev(vdev)


@pytest.mark.parametrize("devid", [-1, 0, 4096, 1 << 29, (7 << 8)])
def test_devid_to_vdev_rejects_unmapped_numbers(devid: int) -> None:
    with pytest.raises(ValueError):
        devid_to_vdev(devid)


# (rate, bytes_per_interval, usecs): arithmetic done by hand, following libxlu_vif.c.
RATES = [
    ("10Mb/s", 62500, 50000),  # 10e6 bits = 1.25e6 B/s, times 0.05 s
    ("250KB/s", 12500, 50000),
    ("1MB/s@20ms", 20000, 20000),  # the xl-network-configuration(5) example
    ("100Mb/s@1s", 12500000, 1000000),
    ("1GB/s@100us", 100000, 100),
    ("1B/s@2", 2, 2000000),  # no unit: seconds
    ("3KB/s@7m", 21, 7000),  # `m` alone is milliseconds
    ("1b/s", 0, 50000),  # 1 bit / 8 = 0 bytes: xl accepts it
    ("9b/s@1s", 1, 1000000),
    ("010Mb/s", 50000, 50000),  # strtoull base 0: octal 010 = 8 Mbit/s
    ("1B/s@4294s", 4294, 4294000000),  # largest whole-second interval under 2**32 us
    ("4294967295B/s", 214748364, 50000),
]


@pytest.mark.parametrize(("rate", "per_interval", "usecs"), RATES)
def test_parse_rate_matches_xl_arithmetic(rate: str, per_interval: int, usecs: int) -> None:
    assert parse_rate(rate) == (per_interval, usecs)


def test_rate_to_xenstore_is_bytes_comma_usecs() -> None:
    assert rate_to_xenstore("1MB/s@20ms") == "20000,20000"
    assert rate_to_xenstore("10Mb/s") == "62500,50000"


@pytest.mark.parametrize(
    ("rate", "fragment"),
    [
        ("10 Mbit", "expected <N>[G|M|K](B|b)/s"),
        ("10Mbit/s", "expected <N>[G|M|K](B|b)/s"),
        ("10MB", "expected <N>[G|M|K](B|b)/s"),
        ("10mb/s", "expected <N>[G|M|K](B|b)/s"),
        ("10.5MB/s", "expected <N>[G|M|K](B|b)/s"),
        ("-1MB/s", "expected <N>[G|M|K](B|b)/s"),
        ("", "no rate given"),
        ("@20ms", "no rate given"),
        ("0MB/s", "between 1 and"),
        ("08MB/s", "between 1 and"),  # octal parse stops at 8: zero
        ("4294967296B/s", "between 1 and"),
        ("10MB/s@", "replenishment interval"),
        ("10MB/s@0ms", "replenishment interval"),
        ("10MB/s@20ns", "replenishment interval"),
        ("1B/s@4295s", "longer than"),
        ("4294967295GB/s", "overflows 64 bits"),
    ],
)
def test_parse_rate_rejects_bad_input(rate: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rate(rate)
    assert repr(rate) in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "bdf", "key"),
    [
        ("03:00.0", Bdf(0, 3, 0, 0), "0000-03-00-0"),
        ("0000:88:00.0", Bdf(0, 0x88, 0, 0), "0000-88-00-0"),  # /libxl/pciback key in dump 1
        ("0001:0A:1f.7", Bdf(1, 0x0A, 0x1F, 7), "0001-0a-1f-7"),
    ],
)
def test_parse_bdf(text: str, bdf: Bdf, key: str) -> None:
    parsed = parse_bdf(text)
    assert parsed == bdf
    assert parsed.xenstore_key == key
    assert str(parsed) == key[:4] + ":" + key[5:7] + ":" + key[8:10] + "." + key[11]


def test_bdf_str_is_libxl_format() -> None:
    assert str(parse_bdf("3:0.0")) == "0000:03:00.0"  # as in backend/pci dev-0 of dump 3


@pytest.mark.parametrize("text", ["03:00", "03:20.0", "03:00.8", "g3:00.0", "00000:03:00.0", ""])
def test_parse_bdf_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="PCI"):
        parse_bdf(text)


def test_auto_mac_known_values() -> None:
    # md5("0 <uuid>") = 588478dc13a3..., md5("1 <uuid>") = 09561f930eb1... (md5sum(1))
    uuid = "9a6857f8-05a0-4c8d-92c3-1ea04bc28c32"
    assert auto_mac(uuid, 0) == "5a:84:78:dc:13:a3"
    assert auto_mac(uuid, 1) == "0a:56:1f:93:0e:b1"


@pytest.mark.parametrize("index", range(8))
def test_auto_mac_is_local_unicast_and_valid(index: int) -> None:
    mac = auto_mac("d81ec5a9-5bf9-4f2b-89e8-0f60d6da948f", index)
    first = int(mac[:2], 16)
    assert first & 1 == 0 and first & 2 == 2
    assert validate_mac(mac) == mac


def test_validate_mac() -> None:
    assert validate_mac("22:16:3E:00:9F:A7") == "22:16:3e:00:9f:a7"
    with pytest.raises(ValueError, match="multicast"):
        validate_mac("01:00:5e:00:00:01")
    with pytest.raises(ValueError, match="multicast"):
        validate_mac("ff:ff:ff:ff:ff:ff")
    with pytest.raises(ValueError, match="xx:xx:xx:xx:xx:xx"):
        validate_mac("22-16-3e-00-9f-a7")
    with pytest.raises(ValueError, match="not a usable"):
        validate_mac("00:00:00:00:00:00")


def test_kib_from_mib() -> None:
    assert kib_from_mib(16384) == 16777216  # dump 1 static-max
    assert kib_from_mib(2048) == 2097152  # dump 2 static-max
    with pytest.raises(ValueError):
        kib_from_mib(-1)


def test_xenbus_state_has_nine_values() -> None:
    assert [int(s) for s in XenbusState] == list(range(9))
    assert int(XenbusState.RECONFIGURED) == 8


@pytest.mark.parametrize(
    ("value", "text"),
    [(4, "4 (Connected)"), ("2", "2 (InitWait)"), ("8", "8 (Reconfigured)"), (0, "0 (Unknown)")],
)
def test_describe_state(value: int | str, text: str) -> None:
    assert describe_state(value) == text


@pytest.mark.parametrize("value", ["9", "", "x", -1])
def test_describe_state_unknown(value: int | str) -> None:
    assert "not a XenbusState" in describe_state(value)
