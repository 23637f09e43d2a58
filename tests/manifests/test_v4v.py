"""The v4v rule grammar (DESIGN.md section 4)."""

from __future__ import annotations

import pytest

from reconciler.v4v import Domain, Endpoint, Rule, canonical, parse_rule

UUID = "6f1c4b2e-0d3a-4c5b-9e8f-112233445566"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("myself -> dom-type=ndvm:5555", Rule(Endpoint(Domain("myself")), Endpoint(Domain("dom-type", "ndvm"), 5555))),
        ("0:12222 -> myself:2222", Rule(Endpoint(Domain("dom0"), 12222), Endpoint(Domain("myself"), 2222))),
        ("my-stubdom->0:4001", Rule(Endpoint(Domain("my-stubdom")), Endpoint(Domain("dom0"), 4001))),
        ("* -> dom-name=web-1:*", Rule(Endpoint(Domain("any")), Endpoint(Domain("dom-name", "web-1")))),
        (f"{UUID}:80 -> myself", Rule(Endpoint(Domain("uuid", UUID), 80), Endpoint(Domain("myself")))),
    ],
)
def test_parse(text: str, rule: Rule) -> None:
    assert parse_rule(text) == rule
    assert parse_rule(str(rule)) == rule  # canonical form round-trips


def test_inverse_and_canonical() -> None:
    rule = parse_rule("myself   ->  0:80")
    assert str(rule.inverse()) == "0:80 -> myself"
    assert canonical(" myself->0:80 ") == "myself -> 0:80"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("myself 0:80", "CLIENT -> SERVER"),
        ("myself -> 0:70000", "port must be 1-65535"),
        ("myself -> 0:abc", "port must be"),
        ("myself -> 5:80", "domids change on every boot"),
        ("myself -> dom-type=nd-vm", "lower-case tag"),
        ("myself -> domain=foo", "unknown domain"),
        (" -> 0", "client endpoint is empty"),
        ("a -> b -> c", "exactly one"),
    ],
)
def test_rejects(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_rule(text)
