"""Where each loaded resource was written: (kind, name) -> Location, made on first read.

Pure. Only messages read locations, so the loader takes the YAML mark of each name
while the document's nodes are alive (`name_marks`) and keeps its file, line and column;
`Origins` makes a Location when one is read. It compares, pickles and copies as the
plain dict it stands for. Used by `reconciler.loader.load` for `DesiredState.origins`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from reconciler.errors import Location
from reconciler.loader.locate import Path, child, mark_for
from reconciler.loader.yamlnodes import MERGE_TAG
from reconciler.loader.normalize import NESTED
from reconciler.model import VM, Kind, Resource

Key = tuple[Kind, str]


class Origins(Mapping[Key, Location]):
    """(kind, name) -> where its name is written (its nested item, for a nested device)."""

    __slots__ = ("_places",)

    def __init__(self, places: dict[Key, tuple[str, int, int]]) -> None:
        self._places = places  # (file, line, column), 1-based, per resource in table order

    def __getitem__(self, key: Key) -> Location:
        return Location(*self._places[key])

    def __contains__(self, key: object) -> bool:
        return key in self._places

    def __iter__(self) -> Iterator[Key]:
        return iter(self._places)

    def __len__(self) -> int:
        return len(self._places)

    def __repr__(self) -> str:
        return repr(dict(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


def name_marks(resource: Resource, root: yaml.Node) -> dict[Path, Any]:
    """The mark of each name a document defines, by the path of its resource: its
    `metadata.name` and, in a VM, each nested item's `name` (the item itself when the
    name is defaulted). The same marks as `mark_for(root, (*path, "name"))`, with each
    nested list found once."""
    marks: dict[Path, Any] = {(): mark_for(root, ("metadata", "name"))}
    if not isinstance(resource, VM):
        return marks
    spec = child(root, "spec")
    lists = _values_by_key(spec[0]) if spec else {}
    for nested in NESTED:
        count = len(getattr(resource.spec, nested.field))
        if not count:
            continue
        if lists is None:  # merge keys: the general walk
            found = child(spec[0], nested.key) if spec else None
            lists_node = found[0] if found else None
        else:
            lists_node = lists.get(nested.key)
        items = lists_node.value if isinstance(lists_node, yaml.SequenceNode) else []
        for index in range(count):
            path: Path = ("spec", nested.key, index)
            marks[path] = _item_name_mark(items[index]) if index < len(items) else mark_for(root, (*path, "name"))
    return marks


def _values_by_key(mapping: yaml.Node) -> dict[str, yaml.Node] | None:
    """A mapping node's values by key, as `child` finds them; None if it has merge keys."""
    if not isinstance(mapping, yaml.MappingNode):
        return {}
    values: dict[str, yaml.Node] = {}
    for key, value in mapping.value:
        if key.tag == MERGE_TAG:
            return None
        if isinstance(key, yaml.ScalarNode):
            values.setdefault(key.value, value)
    return values


def _item_name_mark(item: yaml.Node) -> Any:
    """`mark_for(item, ("name",))`: the mark of the item's `name` value, else the item's."""
    if item.__class__ is yaml.MappingNode:
        for key, value in item.value:
            if key.value == "name" and key.__class__ is yaml.ScalarNode and key.tag != MERGE_TAG:
                return value.start_mark
            if key.tag == MERGE_TAG:  # names may come from merged mappings: the general walk
                return mark_for(item, ("name",))
    return item.start_mark
