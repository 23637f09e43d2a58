"""Where each loaded resource was written: (kind, name) -> Location, made on first read.

Pure. Only messages read locations (a plan's dependency cycle names the files), so the
loader keeps each resource's YAML mark (found from its entry's node, `checks.mark_at`)
and makes the Location when it is read: 10,000 locations for 1,000 VMs cost more than
finding the marks. Marks are small and hold no nodes, so the YAML trees are freed after
loading. It compares, pickles and copies as the plain dict it stands for. Built by
`reconciler.loader.load` for `DesiredState.origins`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from reconciler.errors import Location
from reconciler.loader.yamlsrc import location
from reconciler.model import Kind

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
