"""The one exception tree of the project.

    ReconcilerError                  base; str() is a one-line sentence for users
    ├── ManifestError                manifests are invalid; carries a list of Diagnostic
    │   └── Conflict                 a desired VM's name or uuid is held by a domain it does not own
    ├── UsageError                   the command line asks for something impossible
    ├── HostError                    talking to the host failed
    │   ├── TransientHostError       worth retrying (xenstore EAGAIN, busy, timeout)
    │   └── TerminalHostError        retrying cannot help
    └── StateFileError               a persisted state file is corrupt or unreadable

Driver packages raise subclasses of HostError (wrapping library errors with
`raise ... from exc`), so the core decides retry versus fail by type alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]

# What may not reach a terminal or a log line as is: C0 controls (newline, tab, ESC...),
# DEL and C1, the Unicode line and paragraph separators (`str.splitlines` breaks on them),
# bidirectional overrides (they reorder what is shown), and lone surrogates (bytes of a
# file name that are not UTF-8, which printing would refuse).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(found: re.Match[str]) -> str:
    char = found.group()
    code = ord(char)
    if char in _SHORT:
        return _SHORT[char]
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for the undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control character written as its escape (`\\n`, `\\x1b`,
    `\\u2028`), so one problem stays one line and no terminal escape gets through."""
    return _UNPRINTABLE.sub(_escaped, text)


@dataclass(frozen=True, order=True)
class Location:
    """A place in a manifest file. Lines and columns are 1-based, as editors show them."""

    file: str
    line: int = 1
    col: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding about the manifests: where, how bad, what is wrong and what is valid."""

    location: Location
    severity: Severity
    message: str

    def __str__(self) -> str:
        """One line of text, whatever the file name or the message holds (`printable`)."""
        return printable(f"{self.location}: {self.severity}: {self.message}")


class ReconcilerError(Exception):
    """Base of every error the reconciler raises on purpose."""


class UsageError(ReconcilerError):
    """The command line asks for something that cannot be done."""


class ManifestError(ReconcilerError):
    """The manifests are invalid. `diagnostics` holds every finding, sorted."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics)
        errors = [d for d in self.diagnostics if d.severity == "error"]
        first = str(errors[0]) if errors else "manifests are invalid"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first + more)


class Conflict(ManifestError):
    """The manifests ask for a VM whose name or uuid a domain the reconciler did not make
    holds: plan and apply refuse (nothing is adopted silently), at the VM's manifest line."""


class HostError(ReconcilerError):
    """Talking to the host (xenstore, toolstack, sysfs, firewall) failed."""


class TransientHostError(HostError):
    """A host error worth retrying: EAGAIN, busy, a timeout."""


class TerminalHostError(HostError):
    """A host error that retrying cannot fix."""


class StateFileError(ReconcilerError):
    """A persisted state file is corrupt, truncated or unreadable; it is never emptied silently."""
