"""The line grammar of captured `xenstore-ls` output, for the dump importer.

Pure functions: one physical line (or the value part of one) in, a small value out.
`drivers.dump` walks a whole dump with them. The format comes from Xen's
`tools/xenstore/xenstore_client.c` (`do_ls`) and `xs_lib.c` (`sanitise_value`):
values print as `name = "value"`, non-printable bytes escaped, long lines cut to
the terminal width with a `\\...` marker, `-p` appends `  (n0,r5)`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A node name as xenstored allows it (letters, digits, `-_@`); a full path adds `/`.
_NAME = r"[A-Za-z0-9_@-]+"
_PERMS_TAIL = re.compile(r'"(?P<pad>[ .]+)\((?P<perms>[nrwb][0-9]+(?:,[nrwb][0-9]+)*)\)\s*$')
_UNREADABLE_TAIL = re.compile(r"\s*(?:\((?P<perms>[nrwb][0-9]+(?:,[nrwb][0-9]+)*)\))?\s*$")
_TREE_LINE = re.compile(rf"(?P<indent> *)(?P<name>{_NAME})(?P<sep> = |:)(?P<rest>.*)")
_FULL_LINE = re.compile(r"(?P<path>/\S*?)(?P<sep> = |:)(?P<rest>.*)")
_PROMPT = re.compile(r"(?:[\w.+-]+@[\w.+-]+(?::\S*)?\s*[#$%]|[$%])(?:\s+(?P<cmd>.*))?\s*")
_QUOTE = re.compile(r"(?P<prefix>(?:[ \t]*>)+)(?P<rest>.*)")
_HEX = "0123456789abcdefABCDEF"
_OCT = "01234567"
_SIMPLE_ESCAPES = {"t": b"\t", "n": b"\n", "r": b"\r", "\\": b"\\"}


def split_quote(line: str) -> tuple[str, str]:
    """Split a mail quote prefix (`> `, `> >> `, `>>`...) from the text: (shape, rest).

    `shape` is the prefix up to its last `>` (empty if unquoted); `rest` still holds
    the space a quoting client usually adds, because some clients add none and
    xenstore-ls indentation is meaningful. `unquote` decides per shape.
    """
    m = _QUOTE.fullmatch(line)
    if m is None:
        return "", line
    return m.group("prefix"), m.group("rest")


def unquote(rest: str, eats_space: bool) -> str:
    """The text after a quote prefix, dropping the client's one separating space."""
    if eats_space and rest.startswith(" "):
        return rest[1:]
    return rest


@dataclass(frozen=True)
class NodeLine:
    """One `name = "value"` (tree) or `/full/path = "value"` (-f) line, value still raw."""

    name: str  # a node name (tree form) or an absolute path (-f form)
    depth: int  # indentation in the tree form; 0 for full paths
    full_path: bool
    value_part: str  # text after ` = ` from the opening quote (after `:` if unreadable)
    unreadable: bool  # xenstore-ls printed `name:` (the value could not be read)


def match_node_line(text: str) -> NodeLine | None:
    """Recognise a node line of any xenstore-ls flavour, or None."""
    stripped = text.lstrip(" ")
    if stripped.startswith("/"):
        m = _FULL_LINE.fullmatch(stripped)
        if m is None:
            return None
        name, depth, full = m.group("path"), 0, True
    else:
        m = _TREE_LINE.fullmatch(text)
        if m is None:
            return None
        name, depth, full = m.group("name"), len(m.group("indent")), False
    if m.group("sep") == ":":
        if _UNREADABLE_TAIL.fullmatch(m.group("rest")) is None:
            return None
        return NodeLine(name, depth, full, m.group("rest"), unreadable=True)
    if not m.group("rest").startswith('"'):
        return None
    return NodeLine(name, depth, full, m.group("rest"), unreadable=False)


def perms_only(text: str) -> str | None:
    """The perms of a text that is nothing but `(n0,r5)` (after `name:`, or wrapped off)."""
    m = _UNREADABLE_TAIL.fullmatch(text)
    return m.group("perms") if m else None


@dataclass(frozen=True)
class ValuePart:
    raw: str  # the escaped value between the quotes
    perms: str | None  # "n0,r5" when the line carries `-p` output
    closed: bool  # False when the closing quote is missing (a wrapped line)


def split_value(value_part: str) -> ValuePart:
    """Take `"value"[ pad (perms)]` apart; the closing quote is the last one on the line."""
    m = _PERMS_TAIL.search(value_part)
    if m is not None and m.start() > 0:
        return ValuePart(value_part[1 : m.start()], m.group("perms"), closed=True)
    body = value_part.rstrip()
    if len(body) >= 2 and body.endswith('"'):
        return ValuePart(body[1:-1], None, closed=True)
    return ValuePart(value_part[1:], None, closed=False)


def match_prompt(text: str) -> str | None:
    """The command on a shell prompt line (`root@host:~# xenstore-ls` -> `xenstore-ls`)."""
    m = _PROMPT.fullmatch(text)
    if m is None:
        return None
    return (m.group("cmd") or "").strip()


def listed_base(command: str) -> str | None:
    """For an `xenstore-ls [opts] [PATH] [| ...]` command, the listed path (default `/`)."""
    words = command.split("|", 1)[0].split()
    if not words or not words[0].endswith("xenstore-ls"):
        return None
    paths = [w for w in words[1:] if not w.startswith("-")]
    return paths[0] if paths else "/"


@dataclass(frozen=True)
class Unescaped:
    value: bytes
    truncated: bool  # the value ended in xenstore-ls' `\\...` width marker


def _escape_at(raw: str, i: int) -> tuple[bytes, int, bool]:
    """Decode the escape starting at raw[i] == '\\': (bytes, next index, complete?).

    Mirrors `unsanitise_value`: `\\x` takes up to 2 hex digits, `\\0`-`\\7` up to 3
    octal digits, any other escaped character stands for itself (so `\\"` is `"`).
    `complete` is False when fewer digits follow than `sanitise_value` prints.
    """
    if i + 1 >= len(raw):
        return b"", i + 1, False
    c = raw[i + 1]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], i + 2, True
    if c == "x":
        j = i + 2
        while j < len(raw) and j < i + 4 and raw[j] in _HEX:
            j += 1
        if j == i + 2:
            return b"x", j, True
        return bytes([int(raw[i + 2 : j], 16)]), j, j == i + 4
    if c in _OCT:
        j = i + 1
        while j < len(raw) and j < i + 4 and raw[j] in _OCT:
            j += 1
        return bytes([int(raw[i + 1 : j], 8) & 0xFF]), j, j == i + 4
    return c.encode(), i + 2, True


def unescape(raw: str) -> Unescaped:
    """Undo `sanitise_value` on the text between the quotes; detect the `\\...` marker.

    The marker is a backslash that starts an escape followed by exactly `...` at the
    end. An escape cut short by the truncation (e.g. `\\x4\\...`) is dropped, since
    its digits are incomplete.
    """
    out = bytearray()
    i = 0
    cut_escape = False  # the previous token was an escape with too few digits
    while i < len(raw):
        if raw[i] != "\\":
            out += raw[i].encode()
            i, cut_escape = i + 1, False
            continue
        if raw[i + 1 :] == "...":
            if cut_escape:
                del out[-1:]
            return Unescaped(bytes(out), truncated=True)
        chunk, i, complete = _escape_at(raw, i)
        out += chunk
        cut_escape = not complete
    return Unescaped(bytes(out), truncated=False)


def escape(value: str) -> str:
    """What `sanitise_value` prints for a (UTF-8 encoded) value; used to test round trips."""
    parts: list[str] = []
    for byte in value.encode():
        ch = chr(byte)
        if " " <= ch <= "~" and ch != "\\":
            parts.append(ch)
        elif ch in "\t\n\r\\":
            parts.append("\\" + {"\t": "t", "\n": "n", "\r": "r", "\\": "\\"}[ch])
        elif byte < 0o10:
            parts.append(f"\\{byte:03o}")
        else:
            parts.append(f"\\x{byte:02x}")
    return "".join(parts)
