"""Import a captured `xenstore-ls` dump (`--observed FILE`) as a flat node table.

In: the text of `xenstore-ls`, `xenstore-ls -f` or `-fp` output as people paste it
(shell prompts, `#` comments, mail quote prefixes, lines wrapped by mail clients,
80-column truncation). Out: a `DumpResult` the observer reads like a xenstore.
`parse_dump` is pure and never raises on bad input: what it cannot read becomes a
`(line, message)` problem. `load_dump` is the only part touching the filesystem.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace

from drivers.dump_lines import (
    NodeLine,
    listed_base,
    match_node_line,
    match_prompt,
    perms_only,
    split_quote,
    split_value,
    unescape,
    unquote,
)
from reconciler.errors import UsageError

__all__ = ["MAX_DUMP_BYTES", "DumpResult", "load_dump", "parse_dump"]

MAX_DUMP_BYTES = 64 * 1024 * 1024
"""Refuse bigger files: a whole busy host's xenstore is a few MiB at most."""

_MAX_WRAP_LINES = 8  # a mail client never splits one value over more lines than this
_FULL_PATH = re.compile(r"(?:/[A-Za-z0-9_@-]+)+")


@dataclass(frozen=True)
class DumpResult:
    """What a dump said about the xenstore it was taken from.

    `nodes` maps absolute paths to values in dump order; every parent of a listed
    node is present (with "" when the dump did not show it, as in grep output). The
    root `/` itself is implied and not listed. `perms` is filled from `-p` output,
    e.g. `"n0,r5"`. `truncated` holds paths whose printed value was cut at the
    terminal width (the value is the visible prefix). `problems` are lines that
    could not be read, `notes` lines skipped on purpose (prompts, comments, joins).
    """

    source: str
    nodes: dict[str, str] = field(default_factory=dict)
    perms: dict[str, str] = field(default_factory=dict)
    truncated: set[str] = field(default_factory=set)
    problems: list[tuple[int, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)

    def problem_lines(self) -> list[str]:
        """Problems as `SOURCE:LINE: message`, the way the CLI reports them."""
        return [f"{self.source}:{line}: {message}" for line, message in self.problems]


class _Builder:
    """Accumulates nodes while walking the lines; tracks the tree-form indentation."""

    def __init__(self, source: str) -> None:
        self.result = DumpResult(source)
        self.stack: list[str] = []  # names of the current tree-form ancestors, by depth
        self.base = "/"  # the path `xenstore-ls [PATH]` listed; tree lines hang below it
        self.seen_at: dict[str, int] = {}  # explicitly listed path -> line number

    def problem(self, line_no: int, message: str) -> None:
        self.result.problems.append((line_no, message))

    def note(self, line_no: int, message: str) -> None:
        self.result.notes.append((line_no, message))

    def start_listing(self, base: str) -> None:
        self.stack, self.base = [], base.rstrip("/") or "/"

    def path_of(self, node: NodeLine, line_no: int) -> str | None:
        if node.full_path:
            if _FULL_PATH.fullmatch(node.name) is None:
                self.problem(line_no, f"{node.name!r} is not a valid xenstore path")
                return None
            return node.name
        if node.depth > len(self.stack):
            self.problem(
                line_no,
                f"{node.name!r} is indented {node.depth} spaces but its parent would be at "
                f"depth {len(self.stack) - 1}; cannot tell where it belongs",
            )
            return None
        self.stack[node.depth :] = [node.name]
        prefix = "" if self.base == "/" else self.base
        return prefix + "/" + "/".join(self.stack)

    def put(self, line_no: int, path: str, value: str, perms: str | None, cut: bool) -> None:
        nodes = self.result.nodes
        if path in self.seen_at and nodes[path] != value:
            self.problem(
                line_no,
                f"{path} was already listed on line {self.seen_at[path]} with another value; "
                "keeping this one",
            )
        parent = path.rpartition("/")[0]
        missing: list[str] = []
        while parent and parent not in nodes:
            missing.append(parent)
            parent = parent.rpartition("/")[0]
        for ancestor in reversed(missing):
            nodes[ancestor] = ""
        nodes[path] = value
        self.seen_at[path] = line_no
        if perms is not None:
            self.result.perms[path] = perms
        if cut:
            self.result.truncated.add(path)
        else:
            self.result.truncated.discard(path)


def _quote_policy(lines: list[str]) -> dict[str, bool]:
    """Per quote prefix shape: does the quoting client put one space after it?

    Most clients quote with `> ` (the space is not part of the dump); a few use `>`
    alone, and then a space after the prefix is xenstore-ls indentation. A shape
    followed directly by text anywhere in the dump is taken to be of the second kind.
    """
    spaced: dict[str, bool] = {}
    for line in lines:
        shape, rest = split_quote(line)
        if shape:
            flush = bool(rest.strip()) and not rest.startswith(" ")
            spaced[shape] = spaced.get(shape, True) and not flush
    return spaced


def _text(line: str, policy: dict[str, bool]) -> str:
    shape, rest = split_quote(line)
    return unquote(rest, policy.get(shape, True)) if shape else rest


def _decode(raw: bytes, line_no: int, builder: _Builder) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        builder.problem(line_no, "value is not UTF-8; its bytes were kept as Latin-1")
        return raw.decode("latin-1")


def _continues(text: str) -> bool:
    """Can this line be the rest of a wrapped value (rather than a line of its own)?"""
    stripped = text.strip()
    return bool(stripped) and match_node_line(text) is None and match_prompt(stripped) is None


def _read_node(
    b: _Builder, lines: list[str], i: int, node: NodeLine, policy: dict[str, bool]
) -> int:
    """Store the node of line i (joining wrapped continuation lines); return the next index."""
    line_no, nxt = i + 1, i + 1
    path = b.path_of(node, line_no)
    if node.unreadable:
        if path is not None:
            b.problem(line_no, f"xenstore-ls could not read {path} (printed `name:`); kept empty")
            b.put(line_no, path, "", perms_only(node.value_part), cut=False)
        return nxt
    value_part = node.value_part
    part = split_value(value_part)
    while not part.closed and nxt < len(lines) and nxt - i <= _MAX_WRAP_LINES:
        more = _text(lines[nxt], policy)
        if not _continues(more):
            break
        value_part += more
        part = split_value(value_part)
        nxt += 1
    if nxt > i + 1:
        b.note(
            line_no, f"value continues on lines {i + 2}-{nxt} (wrapped by a mail client); joined"
        )
    if not part.closed:
        b.problem(line_no, "value has no closing quote; kept what the line shows")
    perms = part.perms
    if part.closed and perms is None and nxt < len(lines):
        perms = perms_only(_text(lines[nxt], policy))
        if perms is not None:  # `-p` output whose `(perms)` a mail client wrapped off
            b.note(line_no, f"permissions continue on line {nxt + 1}; joined")
            nxt += 1
    if path is None:
        return nxt
    decoded = unescape(part.raw)
    b.put(line_no, path, _decode(decoded.value, line_no, b), perms, decoded.truncated)
    return nxt


def _read_line(b: _Builder, lines: list[str], i: int, policy: dict[str, bool]) -> int:
    """Handle physical line i; return the index of the next unread line."""
    line_no, text = i + 1, _text(lines[i], policy)
    stripped = text.strip()
    if not stripped:
        return i + 1
    command = match_prompt(stripped)
    if stripped.startswith("#") and command is None:
        command = stripped[1:].strip()
        if listed_base(command) is None:
            b.note(line_no, "comment skipped")
            return i + 1
    if command is not None:
        base = listed_base(command)
        if base is not None:
            b.start_listing(base)
        b.note(line_no, f"shell prompt skipped: {command!r}" if command else "shell prompt skipped")
        return i + 1
    node = match_node_line(text)
    if node is None:
        b.problem(line_no, f"not a xenstore-ls line: {stripped[:60]!r}")
        return i + 1
    return _read_node(b, lines, i, node, policy)


def parse_dump(text: str, source: str) -> DumpResult:
    """Read a whole dump. Pure; never raises on bad input (see `DumpResult.problems`)."""
    lines = [line.rstrip("\r") for line in text.removeprefix("\ufeff").split("\n")]
    policy = _quote_policy(lines)
    builder = _Builder(source)
    i = 0
    while i < len(lines):
        i = _read_line(builder, lines, i, policy)
    return builder.result


def _decode_file(raw: bytes) -> tuple[str, list[tuple[int, str]]]:
    try:
        return raw.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    problems: list[tuple[int, str]] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            problems.append((number, "line is not valid UTF-8; bad bytes replaced by U+FFFD"))
    return raw.decode("utf-8", errors="replace"), problems


def load_dump(path: str, max_bytes: int = MAX_DUMP_BYTES) -> DumpResult:
    """Read and parse a dump file. Raises UsageError (naming the file) if unreadable, huge
    or holding no xenstore node (a file that is not a dump: `/etc/hostname`, an empty file)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                raise UsageError(
                    f"{path}: {size} bytes is more than the {max_bytes} a xenstore-ls dump "
                    "can plausibly be; refusing to read it"
                )
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the dump: {exc.strerror or exc}") from exc
    if len(raw) > max_bytes:  # grew while we read, or not a regular file
        raise UsageError(f"{path}: more than {max_bytes} bytes; refusing to read it")
    text, problems = _decode_file(raw)
    result = parse_dump(text, path)
    if not result.nodes:  # not a dump at all: planning against it would "create everything"
        unread = f" ({len(result.problems)} line(s) could not be read as xenstore nodes)" if result.problems else ""
        raise UsageError(f"{path}: no xenstore node in it{unread}; expected the output of xenstore-ls, "
                         "xenstore-ls -f or xenstore-ls -fp taken on the host (e.g. xenstore-ls -fp > host.txt)")
    return replace(result, problems=sorted(problems + result.problems))
