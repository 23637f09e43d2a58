"""Checks on text that reaches the host verbatim: found at validate, not at apply.

Pure: normalized entries -> diagnostics at the YAML node. Strings that become xl.cfg
values, xenstore values or a program's argv (kernel, cmdline, hook paths, disk and NIC
`script`...) may hold no control character: a newline ends an xl.cfg line or splits a
hotplug script's argument, a NUL ends a xenstore string. Each `xenstoreData` write must
fit xenstore's 4096-byte message payload (reference/xen.md 1.2: path, NUL, value).
Called by the loader after `checks.run_all`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from reconciler.errors import Diagnostic
from reconciler.loader.checks import diag, spec_path
from reconciler.loader.normalize import Entry
from reconciler.model import NIC, VM, Disk

XENSTORE_PAYLOAD_MAX = 4096  # XENSTORE_PAYLOAD_MAX: a longer request kills the connection
LONGEST_DOMAIN_PATH = "/local/domain/32751/"  # the highest domid (DOMID_FIRST_RESERVED - 1)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAMES = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL"}

# (path under spec, value) of every checked string field, per kind.
_VM_FIELDS = ("kernel", "ramdisk", "cmdline", "bootloader", "serial", "flaskLabel")
_HOOKS = (("preBoot", "pre_boot"), ("postCreate", "post_create"), ("onStateChange", "on_state_change"),
          ("preDelete", "pre_delete"))


def _strings(entry: Entry) -> Iterator[tuple[tuple[str, ...], str | None]]:
    r = entry.resource
    if isinstance(r, VM):
        s = r.spec
        values = (s.kernel, s.ramdisk, s.cmdline, s.bootloader, s.serial, s.flask_label)
        yield from zip(((name,) for name in _VM_FIELDS), values)
        yield from ((("hooks", yaml_name), getattr(s.hooks, attr)) for yaml_name, attr in _HOOKS)
    elif isinstance(r, Disk):
        yield ("target",), r.spec.target
        yield ("script",), r.spec.script
    elif isinstance(r, NIC):
        yield ("script",), r.spec.script


def _control(value: str) -> str:
    """'' when `value` is one line of text, else what and where the control character is."""
    found = _CONTROL.search(value)
    if found is None:
        return ""
    char = found.group()
    return f"{_NAMES.get(char, f'control character 0x{ord(char):02x}')} at character {found.start() + 1}"


def run_all(entries: list[Entry]) -> list[Diagnostic]:
    return [*check_text_fields(entries), *check_xenstore_data([e for e in entries if isinstance(e.resource, VM)])]


def _label(entry: Entry, path: tuple[str, ...]) -> str:
    """The field as written: `spec.kernel`, or `spec.disks[0].script` in a nested item."""
    text = ""
    for step in (*spec_path(entry), *path) if not entry.path else (*entry.path, *path):
        text += f"[{step}]" if isinstance(step, int) else f".{step}" if text else step
    return text


def check_text_fields(entries: list[Entry]) -> Iterator[Diagnostic]:
    """No control characters in the strings the host takes verbatim."""
    for entry in entries:
        for path, value in _strings(entry):
            problem = _control(value) if value else ""
            if problem:
                yield diag(entry, spec_path(entry, *path), f"{_label(entry, path)}: {problem}; "
                           "xl.cfg, xenstore and hotplug scripts take it as one line of printable text")


def check_xenstore_data(vms: list[Entry]) -> Iterator[Diagnostic]:
    """Each xenstoreData write fits one xenstore message, for any domid."""
    for entry in vms:
        assert isinstance(entry.resource, VM)
        for key, value in entry.resource.spec.xenstore_data.items():
            room = XENSTORE_PAYLOAD_MAX - len(f"{LONGEST_DOMAIN_PATH}{key}".encode()) - 1
            size = len(value.encode())
            if size > room:
                yield diag(entry, ("spec", "xenstoreData", key), f"spec.xenstoreData[{key}]: the value is {size} bytes; "
                           f"xenstore takes at most {XENSTORE_PAYLOAD_MAX} bytes per write, path included, so at most "
                           f"{room} here (split it over several keys)")
