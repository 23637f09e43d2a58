"""Where in the YAML a value lives: walks a document's node tree along a key path.

Pure. The loader keeps each document's composed nodes; when a check or a pydantic error
names a path like ("spec", "disks", 0, "vdev"), `find` returns the mark to report, so
positions cost nothing until an error needs one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from reconciler.loader.yamlsrc import MERGE_TAG

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Found:
    """The deepest node reached, the key node that led to it, and how far the path got."""

    node: yaml.Node
    key: yaml.Node | None
    depth: int


def child(node: yaml.Node, step: str | int) -> tuple[yaml.Node, yaml.Node | None] | None:
    if isinstance(node, yaml.MappingNode) and isinstance(step, str):
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                merged.append(value_node)
            elif isinstance(key_node, yaml.ScalarNode) and key_node.value == step:
                return value_node, key_node
        for source in merged:
            sources = source.value if isinstance(source, yaml.SequenceNode) else [source]
            for candidate in sources:
                hit = child(candidate, step)
                if hit:
                    return hit
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        return node.value[step], None
    return None


def find(root: yaml.Node, path: Path) -> Found:
    """Follow `path` as far as it exists. Non-matching steps (pydantic's union labels)
    are skipped, so the result is the most precise node that exists."""
    node, key, depth = root, None, 0
    for step in path:
        hit = child(node, step)
        if hit is None:
            continue
        node, key = hit
        depth += 1
    return Found(node, key, depth)


def mark_for(root: yaml.Node, path: Path, *, at_key: bool = False) -> Any:
    """The mark to report for `path`: the key node when asked (unknown or missing keys),
    otherwise the value node."""
    found = find(root, path)
    if at_key and found.key is not None:
        return found.key.start_mark
    return found.node.start_mark
