"""rpc-proxy's rule grammar and evaluation (OpenXT/manager rpc-proxy), and OpenXT's stock rules.

Pure: `parse_rule(text) -> Rule` (RuleError says where, what was found and what is valid),
`str(rule)` is the canonical one-line form, `decide(rules, call, caller)` is rpc-proxy's
verdict for one DBus message. Called by the manifest models (validation), the host drivers
(the simulated table, the global rules file), `reach` and `validate`'s lint.

    rule      := ("allow" | "deny") [subject] ("all" | specifier*)
    subject   := inc-method-call | out-method-call | inc-signal | out-signal
               | inc-method-return | out-method-return | inc-error | out-error
               | inc-any | out-any                          -- default inc-any
    specifier := destination NAME | interface NAME | member NAME | sender NAME
               | dom-type NAME | dom-name NAME | stubdom BOOL | if-boolean NAME BOOL
               | dom-uuid NAME                              -- global file only
    NAME      := [A-Za-z0-9][A-Za-z0-9_.-]*     BOOL := true | false

Where this follows rpc-proxy exactly: words split on spaces and tabs; keywords are
case-sensitive; a repeated destination/interface/member/sender/stubdom/dom-uuid keeps the
last; if-boolean tests accumulate; every rule, `all` included, matches only non-stub domains
unless it says `stubdom true`; rules are scanned last to first, the first match decides,
no match denies. Where it is stricter, on purpose: `dom-id` is refused (rpc-proxy's lexer
reads digits as a NAME, so no `dom-id N` rule ever parses there); text after a complete rule
is an error (rpc-proxy's per-VM reader silently ignores it); a repeated dom-type or dom-name
with two different values is an error (rpc-proxy requires both, so the rule never matches).
Not modelled: rpc-proxy also matches `interface` against the property-interface argument
of org.freedesktop.DBus.Properties.Get/Set; a `Call` has no such argument.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

SUBJECTS: tuple[str, ...] = (
    "inc-method-call",
    "out-method-call",
    "inc-signal",
    "out-signal",
    "inc-method-return",
    "out-method-return",
    "inc-error",
    "out-error",
    "inc-any",
    "out-any",
)
SPECIFIERS: tuple[str, ...] = (
    "destination",
    "interface",
    "member",
    "sender",
    "dom-type",
    "dom-name",
    "stubdom",
    "if-boolean",
)

# xenmgr's boolean VM properties (IDL name = DB key) that an `if-boolean` may test, with the
# value xenmgr reports when the VM's config does not set it (openxt.md 1.8, 1.9).
# seamless-traffic: false for service VMs; a user VM falls back to a host-wide default we
# take as false.
PROPERTY_DEFAULTS: Mapping[str, bool] = MappingProxyType(
    {
        "amt-pt": False,
        "domstore-read-access": False,
        "domstore-write-access": False,
        "provides-default-network-backend": False,
        "provides-network-backend": False,
        "seamless-traffic": False,
        "usb-auto-passthrough": True,
        "usb-control": False,
        "usb-enabled": True,
        "usb-grab-devices": False,
        "wireless-control": False,
    }
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_WORDS = "a NAME (letters, digits, '_', '.', '-'; starting with a letter or digit)"
_BOOLS = ("true", "false")
_NAMED = ("destination", "interface", "member", "sender", "dom-type", "dom-name", "dom-uuid")
_KEYWORDS = frozenset(("allow", "deny", "all", "dom-uuid", "dom-id", *SUBJECTS, *SPECIFIERS))
_FIELD = {"dom-type": "dom_type", "dom-name": "dom_name", "dom-uuid": "dom_uuid"}


class RuleError(ValueError):
    """A rule that does not parse. `str(exc)` is one line naming what was found and what is
    valid; `column` is the 1-based column of the offending word in the rule's text (1 when
    the whole text is at fault); `line` is the 1-based line in a rules file, else None."""

    column: int
    line: int | None

    def __init__(self, message: str, column: int = 1, line: int | None = None) -> None:
        super().__init__(message)
        self.column = column
        self.line = line


@dataclass(frozen=True)
class Rule:
    """One parsed rule; None/False/() fields are wildcards (stubdom False is not: it matches
    only non-stub domains, as in rpc-proxy)."""

    allow: bool
    subject: str = "inc-any"
    destination: str | None = None
    interface: str | None = None
    member: str | None = None
    sender: str | None = None
    dom_type: str | None = None
    dom_name: str | None = None
    dom_uuid: str | None = None  # global file only; rpc-proxy forces it on per-VM rules
    stubdom: bool = False
    if_boolean: tuple[tuple[str, bool], ...] = ()  # in text order; all must hold

    def __str__(self) -> str:
        words = ["allow" if self.allow else "deny"]
        if self.subject != "inc-any":
            words.append(self.subject)
        for keyword in _NAMED:
            value = getattr(self, _FIELD.get(keyword, keyword))
            if value is not None:
                words += [keyword, value]
        if self.stubdom:
            words += ["stubdom", "true"]
        for name, value in self.if_boolean:
            words += ["if-boolean", name, "true" if value else "false"]
        if len(words) == 1 or (len(words) == 2 and self.subject != "inc-any"):
            words.append("all")
        return " ".join(words)

    @property
    def matches_everything(self) -> bool:
        """No specifier but the default `stubdom false` (what `all` means)."""
        return self == Rule(self.allow, self.subject)


# ---------------------------------------------------------------- parsing


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the choice closest to a misspelt `word`, else ''."""
    choices = list(choices)
    for choice in choices:
        if choice.lower() == word.lower():
            return f" (did you mean '{choice}'? keywords are lower-case)"
    prefixed = [choice for choice in choices if len(word) >= 3 and choice.startswith(word)]
    close = prefixed if len(prefixed) == 1 else difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _tokens(text: str) -> list[tuple[int, str]]:
    """(1-based column, word) for each word; refuses any character rpc-proxy's lexer refuses."""
    tokens: list[tuple[int, str]] = []
    for match in re.finditer(r"[^ \t]+", text):
        word, column = match.group(), match.start() + 1
        bad = re.search(r"[^A-Za-z0-9_.-]", word)
        if bad is not None:
            char, at = bad.group(), column + bad.start()
            if char in "\r\n":
                raise RuleError("a line break inside a rule (a CRLF line end?): a rule is one line of words", at)
            if char == "#":
                raise RuleError("'#' comments belong in the rules file, not in a rule: a rule is words only", at)
            raise RuleError(f"unexpected character {char!r} in {word!r}: expected {_NAME_WORDS}", at)
        if not _NAME.fullmatch(word):
            raise RuleError(f"{word!r} is not a word: expected {_NAME_WORDS}", column)
        tokens.append((column, word))
    return tokens


class _Parser:
    def __init__(self, text: str, per_vm: bool) -> None:
        self.tokens = _tokens(text)
        self.end = len(text.rstrip(" \t")) + 1  # the column "end of rule" points at
        self.per_vm = per_vm
        self.pos = 0
        self.subject: str | None = None  # the subject word, when the rule writes one

    def _next(self, what: str, after: str) -> tuple[int, str]:
        if self.pos >= len(self.tokens):
            raise RuleError(f"{after} needs {what}, found the end of the rule", self.end)
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def _bool(self, after: str) -> bool:
        column, word = self._next("true or false", after)
        if word not in _BOOLS:
            raise RuleError(f"{after} takes true or false, found {word!r}{suggest(word, _BOOLS)}", column)
        return word == "true"

    def parse(self) -> Rule:
        if not self.tokens:
            raise RuleError("empty rule: expected allow or deny")
        column, word = self._next("allow or deny", "a rule")
        if word not in ("allow", "deny"):
            hint = " (a rule starts with allow or deny)" if word in SUBJECTS + SPECIFIERS + ("all",) else ""
            raise RuleError(
                f"unknown rule type {word!r}: expected allow or deny{hint or suggest(word, ('allow', 'deny'))}",
                column,
            )
        rule = Rule(word == "allow")
        if self.pos < len(self.tokens) and self.tokens[self.pos][1] in SUBJECTS:
            self.subject = self.tokens[self.pos][1]
            rule = replace(rule, subject=self.subject)
            self.pos += 1
        if self.pos < len(self.tokens) and self.tokens[self.pos][1] == "all":
            self.pos += 1
            if self.pos < len(self.tokens):
                column, word = self.tokens[self.pos]
                raise RuleError(f"'all' matches everything and ends the rule, found {word!r} after it", column)
            return rule
        first = self.pos
        while self.pos < len(self.tokens):
            rule = self._specifier(rule, at_start=self.pos == first)
        return rule

    def _specifier(self, rule: Rule, at_start: bool) -> Rule:
        column, word = self._next("a specifier", "a rule")
        if word in ("allow", "deny"):
            raise RuleError(f"{word!r} starts a rule: one rule per line", column)
        if word in SUBJECTS:
            if self.subject is not None:
                raise RuleError(f"a second subject {word!r} after {self.subject!r}: a rule has at most one", column)
            raise RuleError(f"subject {word!r} must come right after allow/deny", column)
        if word == "all":
            raise RuleError("'all' cannot follow specifiers: write 'all' alone or only the specifiers", column)
        if word == "dom-id":
            raise RuleError(
                "dom-id is not supported: domids change on every boot, and rpc-proxy's lexer reads "
                "the number as a NAME so it never parses; use dom-name or dom-type",
                column,
            )
        if word == "dom-uuid" and self.per_vm:
            raise RuleError(
                "dom-uuid is not allowed in a VM's rules: rpc-proxy restricts them to their own VM "
                "(its uuid is forced); use the rule's vm",
                column,
            )
        if word in _NAMED:
            _, name = self._next(_NAME_WORDS, word)
            key = _FIELD.get(word, word)
            old = getattr(rule, key)
            if word in ("dom-type", "dom-name") and old is not None and old != name:
                raise RuleError(f"{word} given twice ({old!r}, then {name!r}): the rule could never match", column)
            changes: dict[str, Any] = {key: name}
            return replace(rule, **changes)
        if word == "stubdom":
            return replace(rule, stubdom=self._bool("stubdom"))
        if word == "if-boolean":
            _, name = self._next(f"a property: one of {', '.join(PROPERTY_DEFAULTS)}", "if-boolean")
            return replace(rule, if_boolean=(*rule.if_boolean, (name, self._bool(f"if-boolean {name}"))))
        if at_start and word.startswith(("inc-", "out-")):
            raise RuleError(
                f"unknown subject {word!r}: expected one of {', '.join(SUBJECTS)}{suggest(word, SUBJECTS)}", column
            )
        valid = SPECIFIERS + ("dom-uuid",) * (not self.per_vm)
        message = f"unknown specifier {word!r}: expected one of {', '.join(valid)}"
        keyword, value = (self.tokens[self.pos - 3][1], self.tokens[self.pos - 2][1]) if self.pos >= 3 else ("", "")
        if keyword in _NAMED and value in _KEYWORDS:
            message += f" ({value!r} was read as the NAME of {keyword}: is that NAME missing?)"
        elif at_start:
            message += f"; or 'all'; or first a subject ({', '.join(SUBJECTS)})"
        raise RuleError(message + suggest(word, valid + (("all",) + SUBJECTS if at_start else ())), column)


_PARSED: dict[tuple[str, bool], Rule] = {}  # (text as written or canonical, per_vm) -> rule
_PARSED_MAX = 65536  # distinct texts kept; past it the memo starts again


def parse_rule(text: str, *, per_vm: bool = True) -> Rule:
    """Parse one rule. per_vm (a manifest's rule): `dom-uuid` is refused, as rpc-proxy forces
    the owner's. per_vm=False (the host's global file): `dom-uuid` is allowed."""
    rule = _PARSED.get((text, per_vm))
    if rule is None:
        rule = _Parser(text, per_vm).parse()
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[(text, per_vm)] = _PARSED[(str(rule), per_vm)] = rule
    return rule


def canonical(text: str) -> str:
    """The canonical spelling of a valid (per-VM) rule."""
    return str(parse_rule(text))


def parse_rules_file(text: str) -> list[tuple[int, Rule]]:
    """The global /etc/rpc-proxy.rules: (1-based line, rule) in file order; blank lines and
    `#` comments (to end of line) skipped. RuleError carries .line and .column."""
    rules: list[tuple[int, Rule]] = []
    for number, line in enumerate(text.split("\n"), start=1):
        words = line.partition("#")[0]
        if not words.strip(" \t"):
            continue
        try:
            rules.append((number, parse_rule(words, per_vm=False)))
        except RuleError as exc:
            raise RuleError(str(exc), exc.column, number) from None
    return rules


# ---------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Caller:
    """Who sends the message: the sender VM as its manifest describes it."""

    name: str
    uuid: str
    type: str = "svm"
    stubdom: bool = False
    properties: Mapping[str, bool] = field(default_factory=dict)  # missing: PROPERTY_DEFAULTS


@dataclass(frozen=True, order=True)
class Call:
    """One DBus message. None is a value no rule names ("any other")."""

    destination: str | None = None
    interface: str | None = None
    member: str | None = None
    subject: str = "inc-method-call"
    sender: str | None = None


def _subject_covers(rule_subject: str, call_subject: str) -> bool:
    """rpc-proxy's rulesFor: same direction, and the rule's tag is `any` or the call's tag."""
    rule_dir, _, rule_tag = rule_subject.partition("-")
    call_dir, _, call_tag = call_subject.partition("-")
    return rule_dir == call_dir and rule_tag in ("any", call_tag)


def _property(caller: Caller, name: str) -> bool | None:
    if name not in PROPERTY_DEFAULTS:
        return None  # xenmgr has no such boolean: the test never holds
    return caller.properties.get(name, PROPERTY_DEFAULTS[name])


def matches(rule: Rule, call: Call, caller: Caller) -> bool:
    """Whether `rule` applies to `call` sent by `caller` (allow or deny alike)."""
    return (
        _subject_covers(rule.subject, call.subject)
        and all(
            wanted is None or wanted == got
            for wanted, got in (
                (rule.destination, call.destination),
                (rule.interface, call.interface),
                (rule.member, call.member),
                (rule.sender, call.sender),
                (rule.dom_type, caller.type),
                (rule.dom_name, caller.name),
            )
        )
        and (rule.dom_uuid is None or rule.dom_uuid.lower() == caller.uuid.lower())
        and rule.stubdom == caller.stubdom
        and all(_property(caller, name) == value for name, value in rule.if_boolean)
    )


def decide(rules: Sequence[Rule], call: Call, caller: Caller) -> tuple[bool, int | None]:
    """rpc-proxy's verdict: the last matching rule decides; (allowed, its index), or
    (False, None) when none matches (default deny). `rules` = global rules, then the VM's."""
    for index in range(len(rules) - 1, -1, -1):
        if matches(rules[index], call, caller):
            return rules[index].allow, index
    return False, None


def _none_first(call: Call) -> tuple[tuple[bool, str], ...]:
    return tuple((value is not None, value or "") for value in (call.destination, call.interface, call.member))


def probes(rules: Iterable[Rule]) -> list[Call]:
    """The incoming method calls worth asking about: each (destination, interface, member)
    a rule able to match an incoming method call names (None where it leaves one open),
    plus Call() for a call no rule names; distinct, sorted with None first."""
    calls = {Call()}
    for rule in rules:
        if _subject_covers(rule.subject, "inc-method-call"):
            calls.add(Call(rule.destination, rule.interface, rule.member))
    return sorted(calls, key=_none_first)


# ---------------------------------------------------------------- OpenXT's stock policy

# The rules of OpenXT's /etc/rpc-proxy.rules (xenclient-oe recipes-openxt/rpc-proxy),
# rule for rule and in order; the comments are ours.
_DB = "destination com.citrix.xenclient.db interface com.citrix.xenclient.db member"
_SYNC = "allow dom-type syncvm destination"
_XM = f"{_SYNC} com.citrix.xenclient.xenmgr interface"
STOCK_RULES: str = f"""\
# OpenXT's stock global rpc-proxy rules. Evaluated last rule first; the first match decides.

# Start from nothing: a VM may call no dom0 service unless a later rule allows it.
deny all

# A VM's own domstore (dbd re-roots it to /dom-store/<uuid>), when xenmgr grants access.
allow {_DB} read if-boolean domstore-read-access true
allow {_DB} read_binary if-boolean domstore-read-access true
allow {_DB} list if-boolean domstore-read-access true
allow {_DB} exists if-boolean domstore-read-access true

allow {_DB} write if-boolean domstore-write-access true
allow {_DB} rm if-boolean domstore-write-access true

# The USB daemon, for VMs given usb-control.
allow destination com.citrix.xenclient.usbdaemon if-boolean usb-control true

# The synchronizer VM manages VMs and disks through xenmgr.
{_SYNC} com.citrix.xenclient.db interface org.freedesktop.DBus.Introspectable member Introspect
{_XM} com.citrix.xenclient.vmdisk member attach_vhd
{_XM} com.citrix.xenclient.xenmgr member list_vms
{_XM} com.citrix.xenclient.xenmgr.host member set_license
{_XM} com.citrix.xenclient.xenmgr.unrestricted member unrestricted_create_vm_with_template_and_json
{_XM} com.citrix.xenclient.xenmgr.unrestricted member unrestricted_create_vm
{_XM} com.citrix.xenclient.xenmgr.unrestricted member unrestricted_delete_vm
{_XM} com.citrix.xenclient.xenmgr.vm member add_disk
{_XM} com.citrix.xenclient.xenmgr.vm member add_argo_firewall_rule
{_XM} com.citrix.xenclient.xenmgr.vm member delete
{_XM} com.citrix.xenclient.xenmgr.vm member delete_argo_firewall_rule
{_XM} com.citrix.xenclient.xenmgr.vm member destroy
{_XM} com.citrix.xenclient.xenmgr.vm member list_disks
{_XM} com.citrix.xenclient.xenmgr.vm member list_argo_firewall_rules
{_XM} com.citrix.xenclient.xenmgr.vm member get_domstore_key
{_XM} com.citrix.xenclient.xenmgr.vm member set_domstore_key
{_XM} org.freedesktop.DBus.Introspectable member Introspect
{_XM} org.freedesktop.DBus.Properties member Get
{_XM} org.freedesktop.DBus.Properties member Set
allow dom-type syncvm interface com.citrix.xenclient.xenmgr.host member generic_message
{_XM} com.citrix.xenclient.vmdisk member umount
{_XM} com.citrix.xenclient.vmdisk member delete

# Messages leaving dom0 towards the VMs (replies, signals) all pass.
allow out-any
"""
