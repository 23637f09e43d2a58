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

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


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
        return f"{self.location}: {self.severity}: {self.message}"


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
