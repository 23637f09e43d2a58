"""Fixtures for proving the JSON Schemas in an editor.

Real: the yaml-language-server that VS Code's YAML extension and Neovim's `yamlls` run,
pinned by tests/editor/package-lock.json and installed by scripts/test (`npm ci`), under
node, spoken to over LSP on its stdio; our `schemas/document.schema.json`; the CLI.
Faked: nothing. The editor is replaced by `yamlls.LanguageServer`, which sends what an
editor sends. A missing server fails the tests: they are the proof, never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.editor.yamlls import LanguageServer

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "schemas" / "document.schema.json"


@pytest.fixture(scope="module")
def by_glob() -> Iterator[LanguageServer]:
    """A server with the schema mapped by glob (`yaml.schemas`), the README's primary way,
    with the README's VS Code settings."""
    server = LanguageServer({"./schemas/document.schema.json": ["manifests/**/*.yaml", "examples/**/*.yaml"]}, REPO)
    yield server
    server.close()


@pytest.fixture(scope="module")
def by_modeline() -> Iterator[LanguageServer]:
    """A server with no mapping that applies: only `# yaml-language-server: $schema=` lines."""
    server = LanguageServer({SCHEMA.as_uri(): ["no-such-folder/*.yaml"]}, REPO)
    yield server
    server.close()
