"""Where each loaded resource was written: (kind, name) -> Location, made on first read.

Pure. Only messages read locations (a plan's dependency cycle names the files), so the
loader keeps the YAML mark of each resource's name (`name_marks`, taken while the
document's nodes are alive) and makes the Location when it is read: 10,000 Locations
for 1,000 VMs cost more than the marks. Marks hold no nodes, so the YAML trees are freed
as loading goes. `Origins` compares, pickles and copies as the plain dict it stands for.
Both are used by `reconciler.loader.load` for `DesiredState.origins`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from reconciler.errors import Location
from reconciler.loader.locate import Path, child, mark_for
from reconciler.loader.normalize import NESTED
from reconciler.loader.yamlsrc import location
from reconciler.model import VM, Kind, Resource

Key = tuple[Kind, str]


class Origins(Mapping[Key, Location]):
    """(kind, name) -> where its name is written (its nested item, for a nested device)."""

    __slots__ = ("_marks",)

    def __init__(self, marks: dict[Key, tuple[str, Any]]) -> None:
        self._marks = marks  # (file, PyYAML mark) per resource, in table order

    def __getitem__(self, key: Key) -> Location:
        return location(*self._marks[key])

    def __contains__(self, key: object) -> bool:
        return key in self._marks

    def __iter__(self) -> Iterator[Key]:
        return iter(self._marks)

    def __len__(self) -> int:
        return len(self._marks)

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
    for nested in NESTED:
        count = len(getattr(resource.spec, nested.field))
        found = child(spec[0], nested.key) if spec and count else None
        items = found[0].value if found and isinstance(found[0], yaml.SequenceNode) else []
        for index in range(count):
            path: Path = ("spec", nested.key, index)
            if index < len(items):
                hit = child(items[index], "name")
                marks[path] = (items[index] if hit is None else hit[0]).start_mark
            else:
                marks[path] = mark_for(root, (*path, "name"))
    return marks
