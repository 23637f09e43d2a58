"""Reading YAML safely: bytes -> documents of plain values, each with its node tree.

Pure given the bytes (`read_source` is the one function that touches the filesystem).
PyYAML silently keeps the last of duplicate keys and expands aliases without bound; this
module walks the composed nodes itself so duplicate keys are errors, alias expansion has a
budget ("billion laughs" fails fast), nesting depth is capped, and plain scalars follow
YAML 1.2 (no sexagesimal numbers: `0000:00:02.0` stays a string) and hex stays text
(`class: 0x0200` means the hex id, never the int 512). Called by the loader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.errors import Diagnostic, Location

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALARS = yaml.constructor.SafeConstructor()
MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Limits:
    """How much YAML one run accepts.

    max_file_bytes: a manifest file larger than this is refused before parsing (16 MiB
        holds thousands of VMs; larger is a mistake or an attack).
    max_alias_nodes: nodes that alias expansion may add per file; a legitimate anchor
        (`<<: *defaults`) adds tens, a "billion laughs" bomb adds billions.
    max_depth: nesting depth; manifests need about 6.
    """

    max_file_bytes: int = 16 * 1024 * 1024
    max_alias_nodes: int = 100_000
    max_depth: int = 64


@dataclass(frozen=True)
class Document:
    """One YAML document: its plain value and the node it came from (for locations)."""

    file: str
    index: int
    value: Any
    node: yaml.Node


class YamlProblem(Exception):
    """A problem in one file, with the node or mark it concerns."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


def location(file: str, mark: Any) -> Location:
    """A PyYAML mark (0-based) as a 1-based Location."""
    if mark is None:
        return Location(file, 1, 1)
    return Location(file, mark.line + 1, mark.column + 1)


def read_source(path: str, limits: Limits) -> tuple[str | None, list[Diagnostic]]:
    """Read and decode one file; the text, or diagnostics saying why not."""
    try:
        size = os.path.getsize(path)
        if size > limits.max_file_bytes:
            mib = limits.max_file_bytes / (1024 * 1024)
            return None, [_error(path, None, f"file is {size / (1024 * 1024):.1f} MiB, over the {mib:g} MiB limit for one manifest file; split it")]
        with open(path, "rb") as handle:
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
    """Compose and convert every document of one file."""
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        return [], [_error(path, exc.problem_mark or exc.context_mark, _syntax_message(exc, text))]
    except RecursionError:
        return [], [_error(path, None, f"YAML nesting is deeper than {limits.max_depth} levels")]
    except yaml.YAMLError as exc:
        return [], [_error(path, None, f"invalid YAML: {exc}")]
    converter = _Converter(limits)
    documents: list[Document] = []
    for index, node in enumerate(nodes):
        if node is None:
            continue
        try:
            value = converter.convert(node, 0)
        except YamlProblem as problem:
            return [], [_error(path, problem.mark, problem.message)]
        documents.append(Document(path, index, value, node))
    return documents, []


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


class _Converter:
    """Nodes -> plain values, enforcing the Limits and refusing duplicate keys."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.alias_budget = limits.max_alias_nodes
        self.seen: set[int] = set()  # id() of nodes converted once; a repeat is an alias
        self.active: set[int] = set()

    def convert(self, node: yaml.Node, depth: int) -> Any:
        if depth > self.limits.max_depth:
            raise YamlProblem(f"nesting is deeper than {self.limits.max_depth} levels", node.start_mark)
        key = id(node)
        if key in self.active:
            raise YamlProblem("recursive alias: an anchor refers to itself", node.start_mark)
        if key in self.seen:  # an alias: every repeat costs budget
            self.alias_budget -= 1
            if self.alias_budget < 0:
                raise YamlProblem(
                    f"alias expansion exceeds {self.limits.max_alias_nodes} nodes (a YAML alias bomb?)",
                    node.start_mark,
                )
        self.seen.add(key)
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        self.active.add(key)
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, depth + 1) for item in node.value]
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, depth)
        finally:
            self.active.discard(key)
        raise YamlProblem(f"unsupported YAML node {node.tag}", node.start_mark)

    def _mapping(self, node: yaml.MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                for source in _merge_sources(value_node):
                    for k, v in self.convert(source, depth + 1).items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlProblem("mapping keys must be plain strings, not lists or mappings", key_node.start_mark)
            name = key_node.value
            if name in first_seen:
                line = first_seen[name].line + 1
                raise YamlProblem(f"duplicate key {name!r} (first defined at line {line}); each key may appear once", key_node.start_mark)
            first_seen[name] = key_node.start_mark
            result[name] = self.convert(value_node, depth + 1)
        for k, v in merged.items():
            result.setdefault(k, v)
        return result


def _merge_sources(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [node]
    if isinstance(node, yaml.SequenceNode) and all(isinstance(n, yaml.MappingNode) for n in node.value):
        return list(node.value)
    raise YamlProblem("'<<' merges a mapping or a list of mappings", node.start_mark)


def _scalar(node: yaml.ScalarNode) -> Any:
    tag = node.tag
    if tag == "tag:yaml.org,2002:str":
        return node.value
    if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") and ":" in node.value:
        return node.value  # YAML 1.1 sexagesimal; YAML 1.2 (and every operator) reads a string
    if tag == "tag:yaml.org,2002:int" and node.value.lstrip("+-")[:2].lower() == "0x":
        return node.value  # hex is how PCI ids and slots are written: keep the spelling
    if tag == "tag:yaml.org,2002:int":
        return _SCALARS.construct_yaml_int(node)
    if tag == "tag:yaml.org,2002:float":
        return _SCALARS.construct_yaml_float(node)
    if tag == "tag:yaml.org,2002:bool":
        return _SCALARS.construct_yaml_bool(node)
    if tag == "tag:yaml.org,2002:null":
        return None
    return node.value  # timestamps, binary and custom tags: keep the text as written
