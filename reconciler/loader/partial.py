"""What a document that failed validation still says, checked in the same pass.

Pure. A document with a schema error has no resource, so `checks` never sees it; its
references to VMs would be reported only once the schema error is fixed (a second pass,
where DESIGN section 6 says all at once). `of` keeps such a document's kind, name and
references (`vm`, `backendVM`, `dependsOn`, read from the plain value where they are
strings that drew no error of their own); `check` reports those naming no VM, a NIC
backend that provides none, and a name defined twice, in the words of `checks`. A VM
that failed is still a VM: references to it are not reported missing, by either, and
v4v rules naming it (by name, type or uuid: `ends`) are not warned about.
Called by `reconciler.loader.load`; the documents of a file with a YAML problem come
here too (their resources are dropped with the file).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from reconciler.errors import Diagnostic
from reconciler.loader import hints
from reconciler.loader.checks import Ref, not_network_backend, where
from reconciler.loader.locate import Path, mark_for
from reconciler.loader.normalize import Entry
from reconciler.loader.yamlsrc import Document, location
from reconciler.model import KINDS, VM
from reconciler.model.vm import VMSpec

_BACKED = ("Disk", "NIC")  # standalone kinds with a `backendVM`
_NESTED_BACKED = ("disks", "nics")  # a VM's nested lists whose items have one
_DEFAULT_TYPE = VMSpec.model_fields["type"].default


@dataclass(frozen=True)
class Partial:
    """A document without a resource: the kind it meant ('' if unknown), the name it
    defines ('' if none) and its references to VMs that can still be checked."""

    document: Document
    kind: str
    name: str
    refs: tuple[Ref, ...]
    ends: frozenset[tuple[str, str]] = frozenset()  # a VM's v4v endpoints: ("dom-name"|"dom-type"|"uuid", value)

    def at(self, path: Path) -> Any:
        return location(self.document.file, mark_for(self.document.node, path))


def of(document: Document, bad: Iterable[Path] = ()) -> Partial:
    """What `document` still says; `bad` are the paths already reported (a reference
    an error is about is not checked again)."""
    value = document.value if isinstance(document.value, dict) else {}
    written, metadata, spec = value.get("kind"), value.get("metadata"), value.get("spec")
    kind = written if written in KINDS else hints.close_match(written, KINDS) if isinstance(written, str) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    refs = _refs(written, spec) if written in KINDS and isinstance(spec, dict) else []
    bad = tuple(bad)
    kept = tuple(ref for ref in refs if not any(_overlap(ref[0], path) for path in bad))
    name = name if isinstance(name, str) else ""
    ends = _ends(name, spec) if kind == "VM" and isinstance(spec, dict) else frozenset()
    return Partial(document, kind or "", name, kept, ends)


def _ends(name: str, spec: dict[Any, Any]) -> frozenset[tuple[str, str]]:
    """How a v4v rule may name this VM: its name, type (written or the default) and uuid."""
    uuid = spec.get("uuid")
    written = {"dom-name": name, "dom-type": spec.get("type", _DEFAULT_TYPE), "uuid": uuid.lower() if isinstance(uuid, str) else None}
    return frozenset((how, value) for how, value in written.items() if isinstance(value, str) and value)


def _overlap(ref: Path, bad: Path) -> bool:
    """Whether an error at `bad` is about the reference at `ref`: at it, inside its value
    (pydantic adds steps), or at a mapping or list holding it."""
    shorter = min(len(ref), len(bad))
    return ref[:shorter] == bad[:shorter]


def _refs(kind: str, spec: dict[Any, Any]) -> list[Ref]:
    """(path, VM named, field) for each string written where a VM's name goes."""
    found: list[tuple[Path, Any, str]] = []
    if kind == "VM":
        depends = spec.get("dependsOn")
        found += [(("spec", "dependsOn", i), name, "dependsOn") for i, name in enumerate(depends if isinstance(depends, list) else [])]
        for key in _NESTED_BACKED:
            items = spec.get(key)
            for i, item in enumerate(items if isinstance(items, list) else []):
                if isinstance(item, dict) and "backendVM" in item:
                    found.append((("spec", key, i, "backendVM"), item["backendVM"], "backendVM"))
    else:
        found.append((("spec", "vm"), spec.get("vm"), "vm"))
        if kind in _BACKED and "backendVM" in spec:
            found.append((("spec", "backendVM"), spec["backendVM"], "backendVM"))
    return [(path, target, field) for path, target, field in found if isinstance(target, str)]


def broken_vms(partials: Iterable[Partial]) -> frozenset[str]:
    """The VMs documents meant to define and did not: nobody's reference to them is missing."""
    return frozenset(p.name for p in partials if p.kind == "VM" and p.name)


def broken_ends(partials: Iterable[Partial]) -> frozenset[tuple[str, str]]:
    """The v4v endpoints those VMs would be: no rule naming one is warned about."""
    return frozenset(end for p in partials for end in p.ends)


def check(partials: list[Partial], entries: list[Entry]) -> Iterator[Diagnostic]:
    """The cross checks `checks` makes on resources, made on what failed documents say."""
    if not partials:
        return
    vms = {e.name: e.resource for e in entries if isinstance(e.resource, VM)}
    broken = broken_vms(partials)
    names = set(vms) | broken
    for partial in partials:
        for path, target, field in partial.refs:
            vm = vms.get(target)
            if target in broken:
                continue
            if vm is None:
                yield Diagnostic(partial.at(path), "error", hints.missing_vm(field, target, names))
            elif field == "backendVM" and (partial.kind == "NIC" or "nics" in path) and not vm.spec.provides_network_backend:
                yield Diagnostic(partial.at(path), "error", not_network_backend(target))
    yield from _defined_twice(partials, entries)


def _defined_twice(partials: list[Partial], entries: list[Entry]) -> Iterator[Diagnostic]:
    """A failed document's name taken by a resource or by an earlier failed document:
    reported at the failed one, in `checks.check_duplicate_names`' words."""
    resources = {(entry.kind, entry.name): entry for entry in reversed(entries)}  # the first of each
    seen: dict[tuple[str, str], Partial] = {}
    here = ("metadata", "name")
    for partial in partials:
        key = (partial.kind, partial.name)
        if not (partial.kind and partial.name):
            continue
        entry, earlier = resources.get(key), seen.setdefault(key, partial)
        if entry is not None:
            other = where(entry, *(("name",) if entry.path else here))
        elif earlier is not partial:
            other = earlier.at(here)
        else:
            continue
        yield Diagnostic(partial.at(here), "error", f"{partial.kind} '{partial.name}' is defined twice: here and at {other}")
