"""The JSON Schemas in a real editor: yaml-language-server checks every document of a file,
mapped by glob or by a modeline per document, agrees with `reconciler validate` on what
is valid, points at the right line when it is not, and shows field descriptions on hover."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.editor.yamlls import LanguageServer

REPO = Path(__file__).resolve().parents[2]
FILES = sorted(REPO.glob("examples/**/*.yaml")) + sorted(REPO.glob("manifests/*.yaml"))
HEAD = "apiVersion: xen.reconciler/v1\n"


def _vm(name: str, spec: str = "") -> str:
    return f"{HEAD}kind: VM\nmetadata:\n  name: {name}\nspec:\n  virt: pv\n  memory: 512\n  kernel: /boot/vmlinuz\n{spec}"


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "validate", str(path)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def _in_mapped_folder(name: str) -> Path:
    """Where the editor sees a test document: a path the glob mapping covers (the text is
    sent with didOpen; the file itself is written to tmp_path for `validate`)."""
    return REPO / "manifests" / "editor-test" / f"{name}.yaml"


def _problems(diagnostics: list[dict[str, object]]) -> list[tuple[int, str]]:
    """(1-based line, message) of each diagnostic."""
    return [(d["range"]["start"]["line"] + 1, str(d["message"])) for d in diagnostics]  # type: ignore[index]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(REPO)) for p in FILES])
def test_every_example_is_clean_in_the_editor(by_glob: LanguageServer, path: Path) -> None:
    assert _problems(by_glob.diagnostics(path)) == []


def test_every_document_of_the_examples_carries_the_modeline() -> None:
    for path in FILES:
        text = path.read_text()
        documents = text.split("\n---\n")
        modeline = text.splitlines()[0]
        assert modeline.startswith("# yaml-language-server: $schema="), path
        for index, document in enumerate(documents):
            assert document.startswith(modeline + "\n"), f"{path}: document {index + 1} has no modeline"


def test_modelines_resolve_and_reach_the_last_document(by_modeline: LanguageServer) -> None:
    """Without a glob mapping the modelines alone check every example, down to the last
    document of a six-document file (opened next to it, so the relative path resolves)."""
    for path in FILES:
        assert _problems(by_modeline.diagnostics(path)) == [], path
    win10 = REPO / "examples/openxt-desktop/user-vms/win10.yaml"
    broken = win10.read_text().rstrip("\n") + "\n  bogusField: 1\n"
    last_line = broken.count("\n")
    problems = _problems(by_modeline.diagnostics(win10.with_name("broken-win10.yaml"), broken))
    assert problems == [(last_line, "Property bogusField is not allowed.")]


def test_one_modeline_covers_only_its_own_document(by_modeline: LanguageServer, tmp_path: Path) -> None:
    """Why every document carries one: yaml-language-server applies a modeline to its document."""
    modeline = f"# yaml-language-server: $schema={(REPO / 'schemas/document.schema.json').as_uri()}\n"
    first_only = modeline + _vm("a") + "---\n" + _vm("b") + "---\n" + _vm("c", "  bogusField: 1\n")
    assert by_modeline.diagnostics(tmp_path / "first-only.yaml", first_only) == []
    each = modeline + _vm("a") + "---\n" + modeline + _vm("b") + "---\n" + modeline + _vm("c", "  bogusField: 1\n")
    assert _problems(by_modeline.diagnostics(tmp_path / "each.yaml", each)) == [(30, "Property bogusField is not allowed.")]


# What `validate` accepts must not be an editor error, in the spellings people write:
# an unquoted hex PCI class (a string to our loader, the integer 512 to a YAML 1.2 editor),
# YAML 1.1 booleans, memory with a unit, rule shorthands, an unquoted hex guest slot.
ACCEPTED = {
    "hex-and-yaml11": _vm("a", "  providesNetworkBackend: yes\n  disks:\n    - vdev: xvda\n      target: /d.img\n"
                           "      discard: no\n  pci:\n    - match: {class: 0x0200, vendor: 0x8086}\n"
                           "      guestSlot: 0x05\n      greedy: on\n  nics:\n    - mac: 00:16:3e:AA:bb:01\n"
                           "      rate: 10Mb/s@20ms\n      ethtool: {tso: off, rx: yes, speed: 1000}\n"),
    "units-and-shorthands": _vm("a", "  maxMemory: 2Gi\n  v4vRules:\n    - myself -> dom-type=ndvm:5555\n"
                                 "  rpcRules:\n    - allow destination org.freedesktop.DBus\n"
                                 "  xenstoreData:\n    vm-data/role: db\n  pci:\n    - bdf: 00:19.0\n"
                                 "    - bdf: 0000:03:00.1\n      guestSlot: \"0x1f\"\n"),
    "standalone-kinds": (f"{HEAD}kind: Disk\nmetadata: {{name: d}}\nspec: {{vm: a, vdev: hdc, devtype: cdrom}}\n---\n"
                         f"{HEAD}kind: NIC\nmetadata: {{name: n}}\nspec: {{vm: a, mac: auto, index: 3}}\n---\n"
                         f"{HEAD}kind: PCIPassthrough\nmetadata: {{name: p}}\nspec: {{vm: a, match: {{class: any}}}}\n---\n"
                         + _vm("a")),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_what_validate_accepts_the_editor_accepts(by_glob: LanguageServer, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(ACCEPTED[name])
    result = _validate(path)
    assert result.returncode == 0, result.stderr
    assert _problems(by_glob.diagnostics(_in_mapped_folder(name), ACCEPTED[name])) == []


# Broken documents: (text, 1-based line of the problem, words the editor's message holds).
# Each is also refused by `validate`, so editor and CLI agree on the verdict.
THIRD = _vm("a") + "---\n" + _vm("b") + "---\n" + _vm("c", "  memroy: 1024\n")
BROKEN = {
    "unknown-field-in-third-document": (THIRD, 27, "Property memroy is not allowed."),
    "multicast-mac": (_vm("a", "  nics:\n    - mac: 01:16:3e:00:00:01\n"), 10, "unicast MAC address"),
    "bad-vdev": (_vm("a", "  disks:\n    - vdev: xvd1\n      target: /d.img\n"), 10, "xvdX[N]"),
    "bad-bdf": (_vm("a", "  pci:\n    - bdf: 0000:00:20.0\n"), 10, "PCI address"),
    "bad-rate": (_vm("a", "  nics:\n    - rate: 10Mbit\n"), 10, "10Mb/s"),
    "bad-virt": (_vm("a").replace("virt: pv", "virt: xen"), 6, "Value is not accepted"),
    "decimal-pci-class-string": (_vm("a", "  pci:\n    - match: {class: \"512\"}\n"), 10, "0x-hex"),
    "xenstore-key-outside-vm-data": (_vm("a", "  xenstoreData:\n    role: db\n"), 10, "Property role is not allowed."),
    "bad-name": (_vm("Web_1"), 4, "lower-case letters"),
    "v4v-without-arrow": (_vm("a", "  v4vRules:\n    - rule: myself to ndvm\n"), 10, "CLIENT -> SERVER"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_documents_get_a_diagnostic_at_their_line(by_glob: LanguageServer, tmp_path: Path, name: str) -> None:
    text, line, words = BROKEN[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    assert _validate(path).returncode == 1
    problems = _problems(by_glob.diagnostics(_in_mapped_folder(name), text))
    assert [at for at, message in problems if words in message] == [line], problems


def test_outside_the_mapped_folders_nothing_is_checked(by_glob: LanguageServer) -> None:
    assert by_glob.diagnostics(REPO / "elsewhere" / "any.yaml", THIRD) == []


def test_hover_shows_what_a_field_does_and_its_default(by_glob: LanguageServer) -> None:
    path = _in_mapped_folder("hover")
    text = _vm("a", "  lifecycle:\n    onCrash: restart\n  nics:\n    - mtu: 9000\n")
    by_glob.diagnostics(path, text)
    on_crash = by_glob.hover(path, 9, 6)
    assert "onCrash" in on_crash and "Default: destroy" in on_crash
    mtu = by_glob.hover(path, 11, 7)
    assert "MTU" in mtu and "Default: 1500" in mtu
