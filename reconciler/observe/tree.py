"""Read access to a flat xenstore node table for the observer, with a problem log.

Pure: wraps the `{path: value}` mapping that a xenstore walk or a captured dump
produced. Every lookup that finds nothing, a truncated value or a malformed number
adds a sentence to `problems` instead of raising, so one bad node never hides the
rest of the host. Used only by the modules of `reconciler.observe`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from reconciler.model.common import PATTERN_WORDS

M = TypeVar("M", bound=BaseModel)


def _index(nodes: Mapping[str, str]) -> dict[str, list[str]]:
    """Child names by parent path: one pass over 100k nodes, then the ancestors a
    grep'ed dump never printed (each entered once, under its own parent)."""
    children: dict[str, list[str]] = {}
    for path in nodes:
        if path != "/":
            parent, _, name = path.rpartition("/")
            children.setdefault(parent or "/", []).append(name)
    missing = [path for path in children if path != "/" and path not in nodes]
    while missing:
        parent, _, name = missing.pop().rpartition("/")
        parent = parent or "/"
        if parent not in children and parent != "/" and parent not in nodes:
            missing.append(parent)
        children.setdefault(parent, []).append(name)
    return children


class Tree:
    """A xenstore snapshot: values by absolute path, children by parent, problems."""

    def __init__(self, nodes: Mapping[str, str], truncated: frozenset[str]) -> None:
        self.nodes = nodes
        self.truncated = truncated
        self.problems: list[str] = []
        # Domain names already reported as unusable in manifests: errors they cause
        # again in device models (`spec.vm`, derived names) are not repeated.
        self.bad_names: set[str] = set()
        self._children = _index(nodes)

    def problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)

    def exists(self, path: str) -> bool:
        return path in self.nodes or path in self._children

    def children(self, path: str) -> list[str]:
        """Child names of `path`, numerically sorted where they are numbers."""
        names = self._children.get(path, [])
        return sorted(names, key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n))

    def get(self, path: str) -> str | None:
        """The value at `path`, or None when absent; a truncated value is reported."""
        value = self.nodes.get(path)
        if value is not None and path in self.truncated:
            self.problem(f"{path}: value was truncated by the dump; read {value!r} as is")
        return value

    def need(self, path: str, why: str) -> str | None:
        """Like `get`, but a missing node is a problem: `why` says what it was for."""
        value = self.get(path)
        if value is None:
            self.problem(f"{path} is missing: {why}")
        return value

    def integer(self, path: str, why: str, *, required: bool = True) -> int | None:
        value = self.need(path, why) if required else self.get(path)
        if value is None:
            return None
        try:
            return int(value.strip())
        except ValueError:
            self.problem(f"{path} = {value!r} is not an integer ({why})")
            return None

    def numeric_children(self, path: str, what: str) -> Iterator[tuple[int, str]]:
        """(number, name) of each child that is a non-negative integer; others reported."""
        for name in self.children(path):
            if name.isdigit():
                yield int(name), name
            else:
                self.problem(f"{path}/{name}: {name!r} is not a {what}; skipped")


def build_model(cls: type[M], data: dict[str, object], tree: Tree, what: str) -> M:
    """Validate `data` into `cls`; if a host value breaks a manifest-only rule (a
    domain name with `_`, a multicast MAC...), construct it unvalidated and say so.

    The diff still needs the object to compare, and the host is not wrong for having
    a name no manifest could spell; the problem tells the user why it cannot match.
    """
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {_words(err['msg'], err.get('ctx'))}"
            for err in exc.errors()
            if not _already_reported(err["input"], tree.bad_names)
        )
        if errors:
            tree.problem(f"{what}: observed values break manifest rules ({errors}); kept unvalidated")
        return _construct(cls, data)


def _already_reported(value: object, bad_names: set[str]) -> bool:
    return isinstance(value, str) and any(name in value for name in bad_names)


def _words(message: str, ctx: dict[str, object] | None) -> str:
    pattern = (ctx or {}).get("pattern")
    if isinstance(pattern, str) and pattern in PATTERN_WORDS:
        return f"expected {PATTERN_WORDS[pattern]}"
    return message


def _construct(cls: type[M], data: dict[str, object]) -> M:
    """`model_construct` recursively: nested dicts become their field's model type."""
    values: dict[str, Any] = {}
    by_alias = {f.alias or n: n for n, f in cls.model_fields.items()}
    for key, value in data.items():
        name = by_alias.get(key, key)
        annotation = cls.model_fields[name].annotation
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            value = _construct(annotation, value)
        values[name] = value
    return cls.model_construct(**values)
