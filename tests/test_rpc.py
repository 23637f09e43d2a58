"""rpc-proxy rules (reconciler/rpc.py): the grammar, last-match-wins evaluation, and
OpenXT's stock global rules. Pure: no host, no fakes."""

from __future__ import annotations

import pytest

from reconciler import rpc


def test_stock_rules_parse_and_deny_by_default() -> None:
    rules = [rule for _, rule in rpc.parse_rules_file(rpc.STOCK_RULES)]
    caller = rpc.Caller("win10", "00000000-0000-0000-0000-000000000001")
    assert rpc.decide(rules, rpc.Call("com.citrix.xenclient.xenmgr"), caller) == (False, 0)


@pytest.mark.parametrize("text", ["", "Allow all", "allow dest x", "allow dom-id 5", "allow dom-uuid x"])
def test_bad_rules_are_refused(text: str) -> None:
    with pytest.raises(rpc.RuleError):
        rpc.parse_rule(text)
