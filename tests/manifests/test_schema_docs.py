"""The document schema documents itself: every field of every kind (nested objects too)
says what it does and its default, under its YAML name (an object field shows its
object's title and description); objects have human titles."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema

from reconciler.model import KINDS
from reconciler.schema import document_schema


def _objects(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, definition in schema["$defs"].items():
        if "properties" in definition:
            yield name, definition


def test_every_field_has_a_description_and_its_yaml_name_as_title() -> None:
    missing = []
    for model, definition in _objects(document_schema()):
        for field, prop in definition["properties"].items():
            if not prop.get("description"):
                missing.append(f"{model}.{field}")
            assert prop.get("title") == field or "$ref" in prop, (model, field, prop.get("title"))
    assert missing == []


def test_required_or_default_is_said_in_words() -> None:
    for model, definition in _objects(document_schema()):
        for field, prop in definition["properties"].items():
            text = prop["description"]
            if field in definition.get("required", []):
                assert "Required" in text or field in ("apiVersion", "kind", "metadata", "spec", "name", "vm"), (model, field)
            elif field not in ("apiVersion", "kind"):
                assert "Default" in text or "Exactly one of" in text, (model, field, text)


def test_object_titles_are_words() -> None:
    titles = {name: definition["title"] for name, definition in _objects(document_schema())}
    assert titles["VMSpec"] == "VM spec"
    assert titles["Lifecycle"] == "lifecycle"
    assert titles["PciMatch"] == "PCI match"
    assert all(title != name or name in KINDS for name, title in titles.items()), titles


def test_yaml11_booleans_and_hex_integers_pass_what_validate_passes() -> None:
    """The schema reads values as a YAML 1.2 editor does: `yes` is a string, 0x0200 an int."""
    validator = jsonschema.Draft202012Validator(document_schema())
    base = {"apiVersion": "xen.reconciler/v1", "kind": "PCIPassthrough", "metadata": {"name": "p"}}
    good = {**base, "spec": {"vm": "a", "match": {"class": 512}, "greedy": "yes", "guestSlot": 2}}
    assert [e.message for e in validator.iter_errors(good)] == []
    bad = {**base, "spec": {"vm": "a", "match": {"class": 70000}, "greedy": "maybe"}}
    assert len(list(validator.iter_errors(bad))) == 2
