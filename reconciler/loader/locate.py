"""Where in the YAML a value lives: walks a document's node tree along a key path.

Pure. The loader keeps each document's composed nodes; when a check or a pydantic error
names a path like ("spec", "disks", 0, "vdev"), `mark_for` returns the mark to report,
so positions cost nothing until an error needs one.
"""

from __future__ import annotations

from typing import Any

import yaml

from reconciler.loader.yamlnodes import MERGE_TAG

Path = tuple[str | int, ...]


def child(node: yaml.Node, step: str | int) -> tuple[yaml.Node, yaml.Node | None] | None:
    """The value node at `step` of a mapping (merged mappings included) or a sequence,
    with its key node (None in a sequence); None when there is none."""
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


def mark_for(root: yaml.Node, path: Path, *, at_key: bool = False) -> Any:
    """The mark to report for `path`: the key node when asked (unknown or missing keys),
    otherwise the value node. `path` is followed as far as it exists; non-matching steps
    (pydantic's union labels) are skipped, so the node is the most precise that exists."""
    node, key = root, None
    for step in path:
        hit = child(node, step)
        if hit is not None:
            node, key = hit
    if at_key and key is not None:
        return key.start_mark
    return node.start_mark
