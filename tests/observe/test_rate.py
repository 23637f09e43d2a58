"""`xenfmt.rate_from_xenstore`: the canonical xl spelling of a vif backend `rate` node,
which `parse_rate` must read back to exactly the same (bytes, usecs) pair."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.xenfmt import parse_rate, rate_from_xenstore, rate_to_xenstore


@pytest.mark.parametrize(
    ("node", "rate"),
    [
        ("62500,50000", "10Mb/s"),
        ("20000,20000", "1MB/s@20ms"),
        ("12500,50000", "2Mb/s"),
        ("50000000,1000000", "50MB/s@1s"),
        ("5,7", "6Mb/s@7us"),
        ("0,50000", "1B/s"),  # xl writes 0 bytes per interval for tiny rates
    ],
)
def test_canonical_spelling(node: str, rate: str) -> None:
    assert rate_from_xenstore(node) == rate
    assert rate_to_xenstore(rate) == node


@pytest.mark.parametrize("rate", ["10Mb/s", "250KB/s", "1MB/s@20ms", "7b/s@3us", "4GB/s@1s", "010Mb/s"])
def test_round_trip_from_xl_rates(rate: str) -> None:
    node = rate_to_xenstore(rate)
    assert rate_to_xenstore(rate_from_xenstore(node)) == node


@st.composite
def spellable_pairs(draw: st.DrawFn) -> tuple[int, int]:
    """(bytes, usecs) with an interval of at most 1 s and at most 2**32-1 bytes/s."""
    usecs = draw(st.integers(1, 1_000_000))
    return draw(st.integers(0, (2**32 - 1) * usecs // 1_000_000)), usecs


@given(spellable_pairs())
def test_every_spellable_pair_round_trips(pair: tuple[int, int]) -> None:
    assert parse_rate(rate_from_xenstore(f"{pair[0]},{pair[1]}")) == pair


@given(st.integers(1, 2**32 - 1), st.sampled_from(["GB", "MB", "KB", "B", "Gb", "Mb", "Kb", "b"]),
       st.sampled_from(["", "@1s", "@20ms", "@7us", "@2s"]))
def test_every_xl_rate_round_trips(number: int, unit: str, interval: str) -> None:
    try:
        node = rate_to_xenstore(f"{number}{unit}/s{interval}")
    except ValueError:
        return  # xl refuses it too (overflow)
    assert rate_to_xenstore(rate_from_xenstore(node)) == node


@pytest.mark.parametrize("node", ["", "10Mb/s", "1,0", "1,-5", "62500", "115781238,17"])
def test_bad_or_unrepresentable_nodes_raise(node: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        rate_from_xenstore(node)
