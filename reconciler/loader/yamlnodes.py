"""YAML text -> node trees -> plain values, safely and fast. Pure; used by `yamlsrc`.

`Loader` is PyYAML's C safe loader remembering how plain scalars resolve. `Converter`
walks the nodes itself, as PyYAML keeps the last of duplicate keys and expands aliases
without bound: duplicate keys are errors, aliases have a budget, depth is capped, plain
scalars follow YAML 1.2 (`0000:00:02.0` stays a string) and hex stays text (`0x0200`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALARS = yaml.constructor.SafeConstructor()
MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"
CACHE_MAX = 100_000  # distinct scalars remembered (by the resolver and by `_scalar`)
_PLAIN_TAGS: dict[str, str] = {}  # plain scalar text -> tag, as SafeLoader resolves it
_TYPED: dict[tuple[str, str], Any] = {}  # (tag, text) -> value, for non-string scalars
_ScalarNode = yaml.ScalarNode
MAX_INT_DIGITS = 100  # longer plain integers are refused where they are written


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


class Loader(_BaseLoader):  # type: ignore[misc]
    """The safe loader, remembering how each plain scalar's text resolves.

    PyYAML resolves a plain scalar by trying regular expressions picked by its first
    character; the answer depends on the text only (SafeLoader has no path resolvers),
    and manifests repeat the same keys and values in every document. Without path
    resolvers PyYAML's two other per-node hooks, `descend_resolver(parent, index)` and
    `ascend_resolver()`, return at once; C built-ins that ignore their arguments do the
    same without two Python calls per node."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        if not self.yaml_path_resolvers:
            nothing: dict[Any, Any] = {}
            self.descend_resolver = nothing.get  # get(parent, index) -> index: no effect
            self.ascend_resolver = tuple  # tuple() -> (): no effect

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is _ScalarNode and implicit[0]:
            try:
                return _PLAIN_TAGS[value]
            except KeyError:
                if len(_PLAIN_TAGS) >= CACHE_MAX:
                    _PLAIN_TAGS.clear()
                tag = _PLAIN_TAGS[value] = _BaseLoader.resolve(self, kind, value, implicit)
                return tag
        return _BaseLoader.resolve(self, kind, value, implicit)


class YamlProblem(Exception):
    """A problem in one file, with the node or mark it concerns."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class Converter:
    """Nodes -> plain values, enforcing the Limits and refusing duplicate keys.

    A scalar met for the first time is converted in its parent's loop (most nodes are
    scalars); anything else goes through `convert`, which makes every check. Without
    aliases (no `*` in the text) no node can be met twice, so scalars are not tracked.
    """

    def __init__(self, limits: Limits, *, aliases: bool = True) -> None:
        self.limits = limits
        self.aliases = aliases
        self.alias_budget = limits.max_alias_nodes
        self.seen: set[int] = set()  # id() of nodes converted once; a repeat is an alias
        self.active: set[int] = set()

    def convert(self, node: yaml.Node, depth: int) -> Any:
        if depth > self.limits.max_depth:
            raise YamlProblem(f"nesting is deeper than {self.limits.max_depth} levels", node.start_mark)
        key = id(node)
        if key in self.seen:  # an alias (or a node that contains itself)
            self._repeat(node)
        else:
            self.seen.add(key)
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        self.active.add(key)
        try:
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, depth)
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, depth)
        finally:
            self.active.discard(key)
        raise YamlProblem(f"unsupported YAML node {node.tag}", node.start_mark)

    def _repeat(self, node: yaml.Node) -> None:
        """A node met again: refused if it contains itself, else it costs alias budget."""
        if id(node) in self.active:
            raise YamlProblem("recursive alias: an anchor refers to itself", node.start_mark)
        self.alias_budget -= 1
        if self.alias_budget < 0:
            raise YamlProblem(
                f"alias expansion exceeds {self.limits.max_alias_nodes} nodes (a YAML alias bomb?)",
                node.start_mark,
            )

    def _sequence(self, node: yaml.SequenceNode, depth: int) -> list[Any]:
        result: list[Any] = []
        depth += 1
        in_depth, aliases, seen = self.limits.max_depth >= depth, self.aliases, self.seen
        for item in node.value:
            if in_depth and item.__class__ is _ScalarNode and not (aliases and _met(seen, item)):
                result.append(item.value if item.tag == STR_TAG else _scalar(item))
            else:
                result.append(self.convert(item, depth))
        return result

    def _mapping(self, node: yaml.MappingNode, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        depth += 1
        in_depth, aliases, seen = self.limits.max_depth >= depth, self.aliases, self.seen
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                for source in _merge_sources(value_node):
                    for k, v in self.convert(source, depth).items():
                        merged.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlProblem("mapping keys must be plain strings, not lists or mappings", key_node.start_mark)
            name = key_node.value
            if name in result:
                line = _first_key(node, name).start_mark.line + 1
                raise YamlProblem(f"duplicate key {name!r} (first defined at line {line}); each key may appear once", key_node.start_mark)
            if in_depth and value_node.__class__ is _ScalarNode and not (aliases and _met(seen, value_node)):
                result[name] = value_node.value if value_node.tag == STR_TAG else _scalar(value_node)
            else:
                result[name] = self.convert(value_node, depth)
        for k, v in merged.items():
            result.setdefault(k, v)
        return result


def _met(seen: set[int], node: yaml.Node) -> bool:
    """Whether `node` was converted before (else it is marked converted now)."""
    if id(node) in seen:
        return True
    seen.add(id(node))
    return False


def _first_key(node: yaml.MappingNode, name: str) -> yaml.Node:
    """The first key node spelled `name` (merge keys are never plain names)."""
    return next(k for k, _ in node.value if k.tag != MERGE_TAG and isinstance(k, yaml.ScalarNode) and k.value == name)


def _merge_sources(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [node]
    if isinstance(node, yaml.SequenceNode) and all(isinstance(n, yaml.MappingNode) for n in node.value):
        return list(node.value)
    raise YamlProblem("'<<' merges a mapping or a list of mappings", node.start_mark)


def _scalar(node: yaml.ScalarNode) -> Any:
    tag = node.tag
    if tag == STR_TAG:
        return node.value
    key = (tag, node.value)
    try:
        return _TYPED[key]
    except KeyError:
        if len(_TYPED) >= CACHE_MAX:
            _TYPED.clear()
        value = _TYPED[key] = _typed(node)
        return value


def _typed(node: yaml.ScalarNode) -> Any:
    """A non-string scalar's value; a pure function of its tag and text."""
    tag = node.tag
    if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") and ":" in node.value:
        return node.value  # YAML 1.1 sexagesimal; YAML 1.2 (and every operator) reads a string
    if tag == "tag:yaml.org,2002:int" and node.value.lstrip("+-")[:2].lower() == "0x":
        return node.value  # hex is how PCI ids and slots are written: keep the spelling
    if tag == "tag:yaml.org,2002:int":
        if len(node.value) > MAX_INT_DIGITS:  # Python refuses > 4300 digits with a ValueError
            raise YamlProblem(f"an integer of {len(node.value)} characters; no manifest field takes a number "
                              f"over {MAX_INT_DIGITS} digits (Xen's largest values fit in 64 bits: 20 digits)", node.start_mark)
        return _SCALARS.construct_yaml_int(node)
    if tag == "tag:yaml.org,2002:float":
        return _SCALARS.construct_yaml_float(node)
    if tag == "tag:yaml.org,2002:bool":
        return _SCALARS.construct_yaml_bool(node)
    if tag == "tag:yaml.org,2002:null":
        return None
    return node.value  # timestamps, binary and custom tags: keep the text as written
