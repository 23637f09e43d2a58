"""The v4v firewall rule grammar of DESIGN.md section 4 (OpenXT's, minus numeric domids).

Pure: `parse_rule(text) -> Rule` or ValueError saying what is valid; `Rule.inverse()`
and `str(rule)` (the canonical form, so whitespace edits are not drift). Called by the
manifest models (validation) and by the planner (resolution against running VMs). Rules
are frozen values, so each text is parsed once per process (a bounded memo): the diff
and the planner reuse the parse the loader made when it canonicalised a rule.

    RULE     := ENDPOINT "->" ENDPOINT            left = client, right = server
    ENDPOINT := DOMAIN [":" (PORT | "*")]
    DOMAIN   := "*" | "myself" | "my-stubdom" | "dom-type=" TAG | "dom-name=" NAME | "0" | UUID
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

DomainKind = Literal["any", "myself", "my-stubdom", "dom-type", "dom-name", "dom0", "uuid"]

_TAG = re.compile(r"[a-z0-9]+")
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_DOMAIN_WORDS = "'*', 'myself', 'my-stubdom', 'dom-type=TAG', 'dom-name=NAME', '0' or a VM uuid"
MAX_PORT = 65535


@dataclass(frozen=True, order=True)
class Domain:
    """Who an endpoint names; `value` is the tag, name or uuid where the kind has one."""

    kind: DomainKind
    value: str = ""

    def __str__(self) -> str:
        return {
            "any": "*",
            "myself": "myself",
            "my-stubdom": "my-stubdom",
            "dom0": "0",
            "dom-type": f"dom-type={self.value}",
            "dom-name": f"dom-name={self.value}",
            "uuid": self.value,
        }[self.kind]


@dataclass(frozen=True, order=True)
class Endpoint:
    domain: Domain
    port: int | None = None  # None = any port

    def __str__(self) -> str:
        return str(self.domain) if self.port is None else f"{self.domain}:{self.port}"


@dataclass(frozen=True, order=True)
class Rule:
    """`client -> server`. v4v has no connection state: replies need the inverse rule."""

    client: Endpoint
    server: Endpoint

    def __str__(self) -> str:
        return f"{self.client} -> {self.server}"

    def inverse(self) -> Rule:
        return Rule(self.server, self.client)


def _parse_domain(text: str) -> Domain:
    if text == "*":
        return Domain("any")
    if text in ("myself", "my-stubdom"):
        return Domain(text)  # type: ignore[arg-type]
    if text == "0":
        return Domain("dom0")
    for prefix, pattern, words in (
        ("dom-type=", _TAG, "a lower-case tag of letters and digits"),
        ("dom-name=", _NAME, "a VM name (lower-case letters, digits, '-')"),
    ):
        if text.startswith(prefix):
            value = text[len(prefix) :]
            if not pattern.fullmatch(value):
                raise ValueError(f"{prefix} takes {words}, found {value!r}")
            return Domain(prefix[:-1], value)  # type: ignore[arg-type]
    if text.isdigit():
        raise ValueError(
            f"numeric domid {text!r} is not allowed: domids change on every boot; "
            "use dom-name=, dom-type= or the VM uuid (only 0, dom0, is stable)"
        )
    if _UUID.fullmatch(text):
        return Domain("uuid", text)
    raise ValueError(f"unknown domain {text!r}: expected {_DOMAIN_WORDS}")


def _parse_endpoint(text: str, side: str) -> Endpoint:
    text = text.strip()
    if not text:
        raise ValueError(f"the {side} endpoint is empty: expected DOMAIN[:PORT|:*]")
    domain_text, colon, port_text = text.partition(":")
    domain = _parse_domain(domain_text.strip())
    if not colon or port_text.strip() == "*":
        return Endpoint(domain)
    port_text = port_text.strip()
    if not port_text.isdigit() or not 1 <= int(port_text) <= MAX_PORT:
        raise ValueError(f"port must be 1-{MAX_PORT} or '*', found {port_text!r}")
    return Endpoint(domain, int(port_text))


_PARSED: dict[str, Rule] = {}  # text (as written, and canonical) -> its rule
_PARSED_MAX = 65536  # distinct texts kept; past it the memo starts again


def parse_rule(text: str) -> Rule:
    """Parse one rule; ValueError names the part that is wrong and what is valid."""
    rule = _PARSED.get(text)
    if rule is None:
        rule = _parse(text)
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[text] = _PARSED[str(rule)] = rule
    return rule


def _parse(text: str) -> Rule:
    if "->" not in text:
        raise ValueError(f"expected 'CLIENT -> SERVER' (e.g. 'myself -> dom-type=ndvm:5555'), found {text!r}")
    client, _, server = text.partition("->")
    if "->" in server:
        raise ValueError(f"a rule has exactly one '->', found {text!r}")
    return Rule(_parse_endpoint(client, "client"), _parse_endpoint(server, "server"))


def canonical(text: str) -> str:
    """The canonical spelling of a valid rule."""
    return str(parse_rule(text))
