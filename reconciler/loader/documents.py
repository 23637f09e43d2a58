"""One YAML document -> one resource model, or diagnostics at the offending YAML node.

Pure. Checks `apiVersion` and `kind` itself (so the message lists what is valid), then
validates with the kind's pydantic model and translates each pydantic error into one
`FILE:LINE:COL: error: <field path>: <what was expected>, found <what>` line.
An rpc-proxy rule's grammar error points at the offending word inside the rule's text
when the text is written as is (one line, no escapes). Secret fields never echo their
input. Called by `reconciler.loader.load`.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from reconciler.errors import Diagnostic, Location
from reconciler.loader import hints
from reconciler.loader.locate import Path, child, mark_for
from reconciler.loader.yamlsrc import Document, location
from reconciler.model import KINDS, MODELS, Resource
from reconciler.model.common import API_VERSION, PATTERN_WORDS, SECRET_FIELDS
from reconciler.model.vm import VM, WITHDRAWN
from reconciler.rpc import RuleError

_QUOTED = re.compile(r"'([^']*)'")  # the string choices in pydantic's "'pv', 'pvh' or 'hvm'"
_TYPE_WORDS = {
    "int_type": "an integer",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "list_type": "a list",
    "float_type": "a number",
    "int_from_float": "an integer",
}


HEADER = ("apiVersion", "kind", "metadata", "spec")  # the fields of every document


def to_resource(doc: Document) -> tuple[Resource | None, list[Diagnostic]]:
    """The document's resource, or every problem in it."""
    checked = check(doc)
    return checked.resource, checked.problems


@dataclass(frozen=True)
class Checked:
    """One document checked: its resource (None when any problem), every problem, and the
    paths the problems are at (so `partial` skips what is already reported)."""

    resource: Resource | None
    problems: list[Diagnostic]
    bad: frozenset[Path] = frozenset()


def check(doc: Document) -> Checked:
    """Every problem of one document: a bad apiVersion does not hide the spec's problems,
    and a misspelt field is reported once, with what it should be (not also as the
    required field it misspells being missing)."""
    value = doc.value
    if not isinstance(value, dict):
        return Checked(None, [_diag(doc, (), f"a document must be a mapping with apiVersion, kind, metadata and spec, found {describe(value)}")])
    problems = _check_header(doc, value)
    kind = value.get("kind")
    model = MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:  # no schema to check the rest against: only the header's fields
        problems.extend(_diag(doc, (key,), f"unknown field '{key}'{_field_hint(key, HEADER)}", at_key=True)
                        for key in value if isinstance(key, str) and key not in HEADER)
        return Checked(None, problems)
    try:
        resource = model.model_validate(value, by_alias=True, by_name=False)  # YAML names only: `max_vcpus` is a typo, not maxVcpus
    except ValidationError as exc:
        errors = [err for err in exc.errors(include_url=False) if err["loc"][:1] != ("apiVersion",)]  # said above
        errors = _without_misspelt(model, errors)
        bad = frozenset(tuple(step for step in err["loc"] if step != "[key]") for err in errors)
        return Checked(None, [*problems, *(_from_pydantic(doc, model, err) for err in errors)], bad)
    return Checked(None, problems) if problems else Checked(resource, [])


def _field_hint(key: str, valid: Sequence[str]) -> str:
    """After "unknown field 'x'": the field it misspells, else every valid field."""
    return hints.did_you_mean(key, valid) or f"; valid fields: {', '.join(valid)}"


def _without_misspelt(model: type[BaseModel], errors: list[Any]) -> list[Any]:
    """The errors less each required field reported missing where an unknown field close
    to it is written (`memroy` for `memory`): the unknown field's error names it."""
    meant = set()
    for err in errors:
        loc = err["loc"]
        if err["type"] == "extra_forbidden" and isinstance(loc[-1], str):
            match = hints.close_match(loc[-1], fields_at(model, loc[:-1]))
            if match is not None:
                meant.add((*loc[:-1], match))
    return [err for err in errors if not (err["type"] == "missing" and tuple(err["loc"]) in meant)]


def _check_header(doc: Document, value: dict[str, Any]) -> list[Diagnostic]:
    kinds = ", ".join(KINDS)
    problems = []
    written = [key for key in value if isinstance(key, str) and key not in HEADER]
    if "apiVersion" not in value:
        if not _misspelt(written, "apiVersion"):  # else its unknown field says it
            problems.append(_diag(doc, (), f"missing apiVersion: expected '{API_VERSION}'"))
    elif value["apiVersion"] != API_VERSION:
        problems.append(_diag(doc, ("apiVersion",), f"apiVersion: expected '{API_VERSION}', found {describe(value['apiVersion'])}"))
    if "kind" not in value:
        if not _misspelt(written, "kind"):
            problems.append(_diag(doc, (), f"missing kind: expected one of {kinds}"))
    elif value["kind"] not in KINDS:
        kind = value["kind"]
        hint = hints.did_you_mean(kind, KINDS) if isinstance(kind, str) else ""
        problems.append(_diag(doc, ("kind",), f"kind: expected one of {kinds}, found {describe(kind)}{hint}"))
    return problems


def _misspelt(written: list[str], field: str) -> bool:
    """Whether one of the unknown fields `written` is `field` misspelt."""
    return any(hints.close_match(key, HEADER) == field for key in written)


def _diag(doc: Document, path: Path, message: str, *, at_key: bool = False) -> Diagnostic:
    return Diagnostic(location(doc.file, mark_for(doc.node, path, at_key=at_key)), "error", message)


def dotted(path: Path) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def describe(value: Any, *, secret: bool = False) -> str:
    """How a found value reads in a message: its YAML type and (unless secret) its value."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, bool):
        word, shown = "a boolean", str(value).lower()
    elif isinstance(value, int):
        word, shown = "an integer", str(value)
    elif isinstance(value, float):
        word, shown = "a number", repr(value)
    elif isinstance(value, str):
        word, shown = "a string", repr(value if len(value) <= 60 else value[:57] + "...")
    else:
        return type(value).__name__
    return word if secret else f"{word} {shown}"


def _from_pydantic(doc: Document, model: type[BaseModel], err: Any) -> Diagnostic:
    loc: Path = tuple(step for step in err["loc"] if step != "[key]")
    on_key = "[key]" in err["loc"]
    kind = err["type"]
    secret = any(step in SECRET_FIELDS for step in loc)
    found = describe(err.get("input"), secret=secret)
    ctx = err.get("ctx") or {}
    if kind == "missing":
        parent, name = loc[:-1], loc[-1]
        where = f"{dotted(parent)}: " if parent else ""
        return _diag(doc, parent, f"{where}missing required field '{name}'", at_key=True)
    if kind == "extra_forbidden" and model is VM and loc in WITHDRAWN:
        return _diag(doc, loc, f"{dotted(loc)}: {WITHDRAWN[loc]}", at_key=True)
    if kind == "extra_forbidden":
        where = f"{dotted(loc[:-1])}: " if loc[:-1] else ""
        return _diag(doc, loc, f"{where}unknown field '{loc[-1]}'{_field_hint(str(loc[-1]), fields_at(model, loc[:-1]))}", at_key=True)
    if kind == "value_error" and isinstance(ctx.get("error"), RuleError) and not on_key:
        return Diagnostic(_in_text(doc, loc, ctx["error"].column), "error", f"{dotted(loc)}: {ctx['error']}")
    return _diag(doc, loc, f"{dotted(loc)}: {_expected(kind, ctx, err['msg'], found, None if secret else err.get('input'))}", at_key=on_key)


def _in_text(doc: Document, path: Path, column: int) -> Location:
    """Where 1-based `column` of the string at `path` is in the file: exact when the string
    is one line written as is (plain, or quoted without escapes); else the string's start."""
    node = doc.node
    for step in path:
        hit = child(node, step)
        if hit is not None:
            node = hit[0]
    start = location(doc.file, node.start_mark)
    if column > 1 and isinstance(node, yaml.ScalarNode) and node.style in (None, "", "'", '"'):
        quote = 1 if node.style else 0  # plain is None (pure PyYAML) or "" (libyaml)
        begin, end = node.start_mark, node.end_mark
        if begin.line == end.line and end.column - begin.column == len(node.value) + 2 * quote:
            return Location(start.file, start.line, start.col + quote + column - 1)
    return start


def _expected(kind: str, ctx: dict[str, Any], msg: str, found: str, value: Any) -> str:
    if kind == "value_error":
        return str(ctx.get("error", msg.removeprefix("Value error, ")))
    if kind == "literal_error":
        hint = hints.did_you_mean(value, _QUOTED.findall(ctx["expected"])) if isinstance(value, str) else ""
        return f"expected one of {ctx['expected'].replace(' or ', ', ')}, found {found}{hint}"
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, found {found}"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        return f"expected {PATTERN_WORDS.get(pattern, f'a string matching {pattern}')}, found {found}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        sign = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return f"expected a value {sign} {bound}, found {found}"
    if kind in ("string_too_long", "string_too_short", "too_long", "too_short"):
        return f"{msg[0].lower()}{msg[1:]}, found {found}"
    return f"{msg[0].lower()}{msg[1:]}"


def _unwrap(annotation: Any) -> Any:
    """X | None, Annotated[X, ...], list[X], dict[K, X] -> X."""
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        elif origin in (list, dict):
            annotation = get_args(annotation)[-1]
        else:
            return annotation


def fields_at(model: type[BaseModel], path: Path) -> list[str]:
    """The YAML field names valid at `path` inside `model` (for 'unknown field' errors)."""
    current: Any = model
    for step in path:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        if isinstance(step, int):
            continue
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == step), None)
        if field is None:
            return []
        current = _unwrap(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []
