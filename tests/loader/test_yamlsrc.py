"""Documents are composed and converted one at a time and their nodes dropped after
use (`yamlsrc.stream_documents`): a location asked for later must be the same, a YAML
problem must still make the whole file unreadable, and the problem reported must be the
one reported when whole files were composed first. Real YAML text and files."""

from __future__ import annotations

from pathlib import Path

import pytest

import yaml

from reconciler.loader import load
from reconciler.loader.yamlsrc import FileProblem, Limits, nesting_depth, parse_documents, stream_documents

VM = "apiVersion: xen.reconciler/v1\nkind: VM\nmetadata: {{name: {name}}}\nspec: {{virt: pv, kernel: /k, memory: 64}}\n"


def marks(node: yaml.Node) -> list[tuple[int, int]]:
    out = [(node.start_mark.line, node.start_mark.column)]
    if isinstance(node, yaml.SequenceNode):
        for item in node.value:
            out += marks(item)
    elif isinstance(node, yaml.MappingNode):
        for key, item in node.value:
            out += marks(key) + marks(item)
    return out


def test_nodes_live_while_used_and_come_back_the_same() -> None:
    text = VM.format(name="a") + "---\n" + VM.format(name="b")
    seen = []
    for document in stream_documents("t.yaml", text, Limits()):
        assert list(document.source.live) == [document.index]  # only the current one
        seen.append((document, marks(document.node)))
    (first, first_marks), (second, second_marks) = seen
    assert not first.source.live and first.source is second.source
    assert marks(first.node) == first_marks and marks(second.node) == second_marks  # composed again
    assert first.node is not second.node and first.value["metadata"] == {"name": "a"}


def test_a_conversion_problem_drops_the_file_after_its_good_documents() -> None:
    text = VM.format(name="a") + "---\n{a: 1, a: 2}\n---\n" + VM.format(name="c")
    taken = []
    try:
        for document in stream_documents("t.yaml", text, Limits()):
            taken.append(document.value["metadata"]["name"])
    except FileProblem as problem:
        assert str(problem.diagnostic) == "t.yaml:6:8: error: duplicate key 'a' (first defined at line 6); each key may appear once"
    else:
        raise AssertionError("no FileProblem")
    assert taken == ["a"]  # the caller drops it
    assert parse_documents("t.yaml", text, Limits())[0] == []


def test_a_syntax_error_later_in_the_file_is_the_problem_reported() -> None:
    text = "{a: 1, a: 2}\n---\nb: [1\n"
    documents, problems = parse_documents("t.yaml", text, Limits())
    assert documents == []
    assert [str(p) for p in problems] == ["t.yaml:4:1: error: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence)"]


def test_load_keeps_no_resource_from_an_unreadable_file_but_knows_its_names(tmp_path: Path) -> None:
    """VM `a`, read before the file's YAML problem, is not loaded, but a Disk naming it is
    no "no VM named 'a'" (a follow-on error that fixing the YAML would make vanish)."""
    (tmp_path / "a.yaml").write_text(VM.format(name="a") + "---\n{x: 1, x: 2}\n")
    (tmp_path / "b.yaml").write_text("apiVersion: xen.reconciler/v1\nkind: Disk\nmetadata: {name: d}\nspec: {vm: a, vdev: xvda, target: /d}\n")
    result = load([str(tmp_path)])
    assert result.state is None
    assert [str(d) for d in result.diagnostics] == [
        f"{tmp_path}/a.yaml:6:8: error: duplicate key 'x' (first defined at line 6); each key may appear once",
    ]


@pytest.mark.parametrize(("text", "depth"), [
    ("a: 1\n", 1),
    ("a:\n  b:\n    c: [1, {d: 2}]\n", 5),
    ("a: '[[[['\nb: \"{{\\\"[[\"\n", 1),  # brackets in quoted scalars do not nest
    ("a: 1  # [[[[\n", 1),  # nor in comments
    ("a: b#[c\n", 2),  # a '#' inside a plain scalar starts no comment
    ("a: it's [x]\n", 2),  # an apostrophe inside a plain scalar opens no quote
    ("x: " + "[" * 70, 71),
    ("".join(" " * i + "k:\n" for i in range(80)), 80),
])
def test_nesting_depth(text: str, depth: int) -> None:
    assert nesting_depth(text, len(text)) == depth


@pytest.mark.parametrize("deep", [
    "spec: " + "[" * 5000 + "]" * 5000 + "\n",  # libyaml refuses flow nesting past 1,000
    "".join(" " * i + "k:\n" for i in range(1100)),  # and block nesting likewise
    "spec: " + "[" * 200 + "]" * 200 + "\n",  # libyaml accepts; the converter refuses
])
def test_deep_nesting_is_ours_whatever_the_library_limits(deep: str) -> None:
    _, problems = parse_documents("deep.yaml", deep, Limits())
    assert [p.message for p in problems] == ["nesting is deeper than 64 levels"]
