"""The loader: manifest paths -> DesiredState, or every problem at once.

Reads files (the only I/O of the stage), then pure steps: YAML -> documents
(`yamlsrc`, `yamlnodes`; an empty document defines nothing and is skipped), documents -> resources (`documents`, one document at a time
while its nodes are alive), nested devices -> standalone and defaults (`normalize`),
cross checks (`checks`, `textchecks`), policy warnings (`lint`), where each resource was
written (`origins`). Called by the CLI verbs validate, plan, apply and watch.
"""

from __future__ import annotations

import os
from operator import attrgetter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import Diagnostic, Location, ManifestError
from reconciler.loader import checks, lint, normalize, origins, partial, textchecks
from reconciler.loader.documents import check
from reconciler.loader.normalize import Entry
from reconciler.loader.locate import Path
from reconciler.loader.origins import Origins
from reconciler.loader.yamlsrc import Document, FileProblem, Limits, read_source, stream_documents
from reconciler.model import DesiredState, Kind

YAML_SUFFIXES = (".yaml", ".yml")
_BY_NAME = attrgetter("resource.metadata.name")


@dataclass(frozen=True)
class LoadResult:
    """What a load found: the state (None when any error), and every diagnostic, sorted."""

    state: DesiredState | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: int = 0

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


def expand_paths(paths: Iterable[str]) -> tuple[list[str], list[Diagnostic]]:
    """Files named directly, plus every *.yaml/*.yml below named directories (hidden
    directories skipped, symlinked directories not followed), sorted, each once."""
    files: list[str] = []
    problems: list[Diagnostic] = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(os.path.join(root, n) for n in sorted(names) if n.endswith(YAML_SUFFIXES))
        elif os.path.exists(path):  # a regular file, or a FIFO/socket/device read_source refuses
            files.append(path)
        else:
            problems.append(Diagnostic(Location(path), "error", "no such file or directory"))
    unique = list(dict.fromkeys(os.path.normpath(f) for f in files))
    return unique, problems


def load(paths: Sequence[str], limits: Limits = Limits()) -> LoadResult:
    files, diagnostics = expand_paths(paths)
    entries: list[Entry] = []
    partials: list[partial.Partial] = []
    names: dict[Document, dict[Path, Any]] = {}  # per document: the mark of each resource's name
    for path in files:
        text, problems = read_source(path, limits)
        diagnostics.extend(problems)
        if text is not None:
            _read_file(path, text, limits, Found(entries, partials, names, diagnostics))
    if not files and not diagnostics:
        diagnostics.append(Diagnostic(Location(", ".join(paths) or "."), "error", "no *.yaml or *.yml manifests found"))
    entries, naming = normalize.normalize(entries)
    diagnostics.extend(checks.diag(e, checks.name_path(e), message) for e, message in naming)
    diagnostics.extend(checks.run_all(entries, partial.broken_vms(partials), partial.broken_ends(partials)))
    diagnostics.extend(partial.check(partials, entries))
    diagnostics.extend(textchecks.run_all(entries))
    diagnostics.extend(lint.run_all(entries, names))
    diagnostics = sorted(set(diagnostics))
    if any(d.severity == "error" for d in diagnostics):
        return LoadResult(None, diagnostics, len(files))
    return LoadResult(_state(entries, names), diagnostics, len(files))


@dataclass(frozen=True)
class Found:
    """What reading the files has found so far (a file with a YAML problem adds no resource)."""

    entries: list[Entry]
    partials: list[partial.Partial]  # documents without a resource, for the checks they still allow
    names: dict[Document, dict[Path, Any]]
    diagnostics: list[Diagnostic]


def _read_file(path: str, text: str, limits: Limits, found: Found) -> None:
    """Validate each document of one file while its nodes are alive, keeping the marks
    of the names it defines (for `origins`). A file with a YAML problem adds no resource:
    its documents read before the problem count as failed ones (`partial`)."""
    file = Found([], [], {}, [])
    try:
        for doc in stream_documents(path, text, limits):
            if doc.value is None:  # empty (a trailing `---`), comments only or `null`: skipped, as kubectl does
                continue
            checked = check(doc)
            file.diagnostics.extend(checked.problems)
            if checked.resource is not None:
                file.entries.append(Entry(checked.resource, doc))
                file.names[doc] = origins.name_marks(checked.resource, doc.node)
            else:
                file.partials.append(partial.of(doc, checked.bad))
    except FileProblem as problem:
        found.diagnostics.append(problem.diagnostic)
        found.diagnostics.extend(file.diagnostics)
        found.partials.extend([*file.partials, *(partial.of(entry.document) for entry in file.entries)])
        return
    found.entries.extend(file.entries)
    found.partials.extend(file.partials)
    found.names.update(file.names)
    found.diagnostics.extend(file.diagnostics)


def load_or_raise(paths: Sequence[str], limits: Limits = Limits()) -> DesiredState:
    """For plan/apply/watch: the state, or ManifestError carrying every diagnostic."""
    result = load(paths, limits)
    if result.state is None:
        raise ManifestError(result.diagnostics)
    return result.state


def _state(entries: list[Entry], names: dict[Document, dict[Path, Any]]) -> DesiredState:
    tables: dict[str, dict[str, object]] = {k: {} for k in ("VM", "Disk", "NIC", "PCIPassthrough", "V4VRule", "RPCRule")}
    places: dict[tuple[Kind, str], tuple[str, int, int]] = {}
    rpc_order: dict[str, tuple[str, int, int, int]] = {}
    for entry in sorted(entries, key=_BY_NAME):
        resource = entry.resource
        name = resource.metadata.name
        tables[resource.kind][name] = resource
        mark = names[entry.document][entry.path]
        places[(resource.kind, name)] = (entry.document.file, mark.line + 1, mark.column + 1)
        if resource.kind == "RPCRule":  # evaluation order: the document, then the list position
            rpc_order[name] = lint.rpc_written_at(entry, names)
    return DesiredState(
        vms=tables["VM"],  # type: ignore[arg-type]
        disks=tables["Disk"],  # type: ignore[arg-type]
        nics=tables["NIC"],  # type: ignore[arg-type]
        pci=tables["PCIPassthrough"],  # type: ignore[arg-type]
        v4v_rules=tables["V4VRule"],  # type: ignore[arg-type]
        rpc_rules=tables["RPCRule"],  # type: ignore[arg-type]
        origins=Origins(places),
        rpc_order=rpc_order,
    )
