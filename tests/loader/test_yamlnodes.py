"""The YAML reader's fast paths (`yamlnodes`): the plain-scalar resolver memo, the typed-scalar memo
and the inlined scalar conversion must give exactly what PyYAML's safe loader and the
YAML 1.2 rules of `_scalar` give, and keep every limit. Real YAML text, no fakes."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml

from reconciler.loader import yamlnodes
from reconciler.loader.yamlsrc import Limits, parse_documents

SCALARS = """\
bools: [yes, no, on, off, true, false, True, FALSE, y, n, Yes, NO]
nulls: [~, null, Null, NULL, "", '']
ints: [0, 12, -3, +4, 00, 017, 0o17, 1_000, 0b101]
hex: [0x1F, -0x10, "0x0200", 0x0200]
floats: [1.5, .5, 1e3, 1.0e+3, .inf, -.Inf]
sexagesimal: [1:20, 1:20.5, 0000:00:02.0, 190:20:30]
strings: [xvda, "123", '1.5', "yes", 2001-12-14, =, <<x, !!str 12, !custom zz]
tagged: [!!int "7", !!float "2", !!bool "true"]
"""

EXPECTED: dict[str, list[Any]] = {
    "bools": [True, False, True, False, True, False, True, False, "y", "n", True, False],
    "nulls": [None, None, None, None, "", ""],
    "ints": [0, 12, -3, 4, 0, 15, "0o17", 1000, 5],
    "hex": ["0x1F", "-0x10", "0x0200", "0x0200"],
    "floats": [1.5, 0.5, "1e3", 1000.0, math.inf, -math.inf],  # YAML 1.1 floats need a dot
    "sexagesimal": ["1:20", "1:20.5", "0000:00:02.0", "190:20:30"],
    "strings": ["xvda", "123", "1.5", "yes", "2001-12-14", "=", "<<x", "12", "zz"],
    "tagged": [7, 2.0, True],
}


def values(text: str, limits: Limits = Limits()) -> list[Any]:
    documents, problems = parse_documents("t.yaml", text, limits)
    assert not problems, problems
    return [d.value for d in documents]


def test_scalars_follow_yaml_1_2_rules() -> None:
    for _ in range(2):  # memos cold, then warm
        (value,) = values(SCALARS)
        assert value == EXPECTED
        assert [type(v) for v in value["ints"]] == [type(v) for v in EXPECTED["ints"]]
        assert [type(v) for v in value["bools"]] == [type(v) for v in EXPECTED["bools"]]


def tags(loader: Any, text: str) -> list[str]:
    out: list[str] = []

    def walk(node: yaml.Node) -> None:
        out.append(node.tag)
        if isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)
        elif isinstance(node, yaml.MappingNode):
            for key, item in node.value:
                walk(key)
                walk(item)

    for document in yaml.compose_all(text, Loader=loader):
        walk(document)
    return out


def test_resolver_memo_resolves_as_the_safe_loader() -> None:
    text = SCALARS + "merge: {<<: {a: 1}, '<<': 'only-quoted', \"12\": 12, ? [1] : x}\n"
    expected = tags(yaml.SafeLoader, text)
    assert tags(yamlnodes.Loader, text) == expected
    assert tags(yamlnodes.Loader, text) == expected  # from the memo
    assert yamlnodes._PLAIN_TAGS["12"] == "tag:yaml.org,2002:int"
    assert yamlnodes._PLAIN_TAGS["<<"] == yamlnodes.MERGE_TAG
    assert "only-quoted" not in yamlnodes._PLAIN_TAGS  # only plain scalars are remembered


def shape(loader: Any, text: str) -> list[Any]:
    """Every node as (kind, tag, value if scalar, start and end marks)."""

    def walk(node: yaml.Node) -> Any:
        marks = (node.start_mark.line, node.start_mark.column, node.end_mark.line, node.end_mark.column)
        if isinstance(node, yaml.ScalarNode):
            return ("scalar", node.tag, node.value, node.style, marks)
        if isinstance(node, yaml.SequenceNode):
            return ("seq", node.tag, [walk(n) for n in node.value], marks)
        return ("map", node.tag, [(walk(k), walk(v)) for k, v in node.value], marks)

    return [walk(document) for document in yaml.compose_all(text, Loader=loader)]


def test_composes_as_the_safe_loader() -> None:
    text = SCALARS + "---\nnested: {a: [1, {b: &x [2, 3]}], c: *x, d: {<<: {e: 4}}}\n"
    assert shape(yamlnodes.Loader, text) == shape(yamlnodes._BaseLoader, text)  # the C loader it extends


def test_no_path_resolvers() -> None:
    """The memo and the no-op hooks rely on this: a tag depends on the scalar's text only."""
    assert not yamlnodes.Loader.yaml_path_resolvers
    loader = yamlnodes.Loader("a: 1")
    assert loader.descend_resolver(None, None) is None and loader.ascend_resolver() == ()
    loader.dispose()


def test_memos_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlnodes, "CACHE_MAX", 5)
    yamlnodes._PLAIN_TAGS.clear()
    yamlnodes._TYPED.clear()
    text = "[" + ", ".join(str(i) for i in range(40)) + "]"
    assert values(text) == [list(range(40))]
    assert len(yamlnodes._PLAIN_TAGS) <= 5 and len(yamlnodes._TYPED) <= 5
    assert values(SCALARS)[0] == EXPECTED


def test_limits_hold_for_scalars() -> None:
    _, problems = parse_documents("t.yaml", "a: &x 1\nb: [*x, *x, *x]\n", Limits(max_alias_nodes=2))
    assert [str(p) for p in problems] == ["t.yaml:1:4: error: alias expansion exceeds 2 nodes (a YAML alias bomb?)"]  # the anchored node
    assert values("a: &x 1\nb: [*x, *x]\n", Limits(max_alias_nodes=2)) == [{"a": 1, "b": [1, 1]}]
    _, problems = parse_documents("t.yaml", "a:\n  b:\n    - 1\n", Limits(max_depth=2))
    assert [str(p) for p in problems] == ["t.yaml:3:7: error: nesting is deeper than 2 levels"]
    assert values("a:\n  b: 1\n", Limits(max_depth=2)) == [{"a": {"b": 1}}]


def test_duplicate_key_names_the_first() -> None:
    _, problems = parse_documents("t.yaml", "<<: {a: 1}\na: 1\nb: 2\na: 3\n", Limits())
    assert [str(p) for p in problems] == ["t.yaml:4:1: error: duplicate key 'a' (first defined at line 2); each key may appear once"]
