"""Reading YAML safely: bytes -> documents of plain values, and where each came from.

Pure given the bytes (`read_source` is the one function that touches the filesystem).
Documents are composed and converted one at a time (`stream_documents`, with the checks
of `yamlnodes`); their node trees are dropped once the loader has used them and composed
again only if a location is asked for later. Called by the loader.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.errors import Diagnostic, Location
from reconciler.loader.yamlnodes import MERGE_TAG, Converter, Limits, Loader, YamlProblem

__all__ = ["MERGE_TAG", "Document", "FileProblem", "Limits", "Source", "location", "parse_documents", "read_source", "stream_documents"]


@dataclass(frozen=True, eq=False)
class Document:
    """One YAML document: its plain value and where to find its nodes (for locations).
    Compared and hashed by identity."""

    file: str
    index: int
    value: Any
    source: Source

    @property
    def node(self) -> yaml.Node:
        return self.source.node(self.index)


class Source:
    """One file's text and the node trees that are still alive.

    The loader drops each document's nodes once it has taken what it needs from them:
    kept, the trees of 1,000 VMs hold 260,000 objects that every garbage collection
    walks. A location asked for later (an error, a warning) composes the file again,
    once; the same text gives the same nodes and marks."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self.live: dict[int, yaml.Node] = {}  # document index -> nodes still in use
        self._composed: list[yaml.Node] = []
        self._more: Iterator[yaml.Node] | None = None

    def node(self, index: int) -> yaml.Node:
        """Composed up to `index` only: a file with a syntax error further on still gives
        the nodes of the documents before it (their problems are reported too)."""
        live = self.live.get(index)
        if live is not None:
            return live
        if self._more is None:
            self._more = yaml.compose_all(self.text, Loader=Loader)
        while len(self._composed) <= index:
            self._composed.append(next(self._more))
        return self._composed[index]


class FileProblem(Exception):
    """The one YAML problem that makes a whole file unreadable."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(str(diagnostic))
        self.diagnostic = diagnostic


def location(file: str, mark: Any) -> Location:
    """A PyYAML mark (0-based) as a 1-based Location."""
    if mark is None:
        return Location(file, 1, 1)
    return Location(file, mark.line + 1, mark.column + 1)


def special_file(mode: int) -> str:
    """What a file that is not a regular file is, in words ('' for a regular file)."""
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a directory" if stat.S_ISDIR(mode) else "not a regular file"


def _not_regular(path: str, what: str) -> Diagnostic:
    # Refused, not skipped: apply without the file's VMs would destroy the ones it defined.
    return _error(path, None, f"{what}, not a regular file; manifests are read from regular files only (remove it or rename it from .yaml)")


def read_source(path: str, limits: Limits) -> tuple[str | None, list[Diagnostic]]:
    """Read and decode one file; the text, or diagnostics saying why not. A FIFO, socket
    or device is refused without being read: opened non-blocking, checked with fstat."""
    try:
        what = special_file(os.stat(path).st_mode)
        if what:
            return None, [_not_regular(path, what)]
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as handle:
            status = os.fstat(handle.fileno())
            what, size = special_file(status.st_mode), status.st_size
            if what:  # replaced between the stat and the open
                return None, [_not_regular(path, what)]
            if size > limits.max_file_bytes:
                mib = limits.max_file_bytes / (1024 * 1024)
                return None, [_error(path, None, f"file is {size / (1024 * 1024):.1f} MiB, over the {mib:g} MiB limit for one manifest file; split it")]
            data = handle.read(limits.max_file_bytes + 1)
    except OSError as exc:
        return None, [_error(path, None, f"cannot read file: {exc.strerror or exc}")]
    return decode(path, data)


def decode(path: str, data: bytes) -> tuple[str | None, list[Diagnostic]]:
    """UTF-8 (with or without BOM) only; a bad byte is reported at its line and column."""
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        good = data[: exc.start].decode("utf-8", errors="replace")
        line = good.count("\n") + 1
        col = len(good) - (good.rfind("\n") + 1) + 1
        bad = data[exc.start]
        return None, [Diagnostic(Location(path, line, col), "error", f"file is not valid UTF-8 (byte 0x{bad:02x}); save it as UTF-8")]


def parse_documents(path: str, text: str, limits: Limits) -> tuple[list[Document], list[Diagnostic]]:
    """Every document of one file, or the one problem that makes the file unreadable."""
    try:
        return list(stream_documents(path, text, limits)), []
    except FileProblem as problem:
        return [], [problem.diagnostic]


def stream_documents(path: str, text: str, limits: Limits) -> Iterator[Document]:
    """Compose and convert one document at a time; each document's nodes are alive
    (`document.node`) until the caller asks for the next. Raises FileProblem at the end
    if a document cannot be converted: the caller drops what it took from the file. A
    syntax error anywhere in the file is the problem reported, as it was found first
    when whole files were composed before any conversion."""
    source = Source(path, text)
    converter = Converter(limits, aliases="*" in text)
    problem: Diagnostic | None = None
    for index, node in enumerate(_compose(path, text, limits)):
        if node is None or problem is not None:
            continue
        try:
            value = converter.convert(node, 0)
        except YamlProblem as exc:
            problem = _error(path, exc.mark, exc.message)
            continue
        source.live[index] = node
        try:
            yield Document(path, index, value, source)
        finally:
            del source.live[index]
    if problem is not None:
        raise FileProblem(problem)


def _compose(path: str, text: str, limits: Limits) -> Iterator[yaml.Node | None]:
    loader = Loader(text)
    try:
        while True:
            try:
                if not loader.check_node():
                    return
                node = loader.get_node()
            except (yaml.YAMLError, RecursionError) as exc:
                raise FileProblem(_refusal(path, text, exc, limits)) from None
            yield node
    finally:
        loader.dispose()


def _refusal(path: str, text: str, exc: yaml.YAMLError | RecursionError, limits: Limits) -> Diagnostic:
    """Why the YAML library refused a file, in our words. Its own nesting limit (libyaml
    stops at 1,000 levels, by wording and limits that change between releases) may fire
    before the converter sees our 64, so nesting is measured here, up to where it stopped."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    end = mark.index if mark is not None else len(text)
    if isinstance(exc, RecursionError) or nesting_depth(text, end) > limits.max_depth:
        return _error(path, mark, f"nesting is deeper than {limits.max_depth} levels")
    if isinstance(exc, yaml.MarkedYAMLError):
        return _error(path, mark, _syntax_message(exc, text))
    return _error(path, None, f"invalid YAML: {exc}")


_FLOW = re.compile(r"""[\[\]{}#'"\n]""")


def nesting_depth(text: str, end: int) -> int:
    """The deepest nesting in `text[:end]`: flow brackets plus block indentation levels.
    An estimate that errs high only on exotic text (brackets in block scalars), made
    only for a file the YAML library already refused."""
    deepest, flow, indents = 0, 0, [-1]
    pos = 0
    line_start = True
    while pos < end:
        if line_start:
            first = _indent(text, pos)
            indent, pos = first - pos, first
            if pos < end and text[pos] not in "\n#":
                while flow == 0 and indent < indents[-1]:
                    indents.pop()
                if flow == 0 and indent > indents[-1]:
                    indents.append(indent)
            line_start = False
            deepest = max(deepest, flow + len(indents) - 1)
            continue
        found = _FLOW.search(text, pos, end)
        if found is None:
            break
        char, pos = found.group(), found.end()
        if char in "[{":
            flow += 1
            deepest = max(deepest, flow + len(indents) - 1)
        elif char in "]}":
            flow = max(0, flow - 1)
        elif char == "\n":
            line_start = True
        elif char == "#" and (found.start() == 0 or text[found.start() - 1] in " \t"):
            newline = text.find("\n", pos, end)
            pos = end if newline < 0 else newline
        elif found.start() == 0 or text[found.start() - 1] in " \t[{,:-":
            pos = _after_quote(text, pos, end, char)  # a quoted scalar: to its closing quote
    return deepest


def _indent(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    return pos


def _after_quote(text: str, pos: int, end: int, quote: str) -> int:
    while pos < end:
        found = text.find(quote, pos, end)
        if found < 0:
            return end
        if quote == '"' and _escaped(text, found):
            pos = found + 1
        elif quote == "'" and text.startswith("''", found):
            pos = found + 2
        else:
            return found + 1
    return end


def _escaped(text: str, index: int) -> bool:
    backslashes = 0
    while index - backslashes - 1 >= 0 and text[index - backslashes - 1] == "\\":
        backslashes += 1
    return backslashes % 2 == 1


def _error(path: str, mark: Any, message: str) -> Diagnostic:
    return Diagnostic(location(path, mark), "error", message)


def _syntax_message(exc: yaml.MarkedYAMLError, text: str) -> str:
    problem = exc.problem or "invalid YAML"
    mark = exc.problem_mark
    if "'\\t'" in problem or (mark is not None and _char_at(text, mark.index) == "\t"):
        return "tab character in indentation: YAML indents with spaces only"
    context = f" ({exc.context})" if exc.context else ""
    return f"invalid YAML: {problem}{context}"


def _char_at(text: str, index: int) -> str:
    return text[index] if 0 <= index < len(text) else ""


