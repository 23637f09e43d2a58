"""Execute: a Plan -> port calls on one host -> a Report. The side-effecting stage.

`execute(plan, ports, settings=ExecuteSettings(...), on_step=...)` (module `run`) walks
the plan's DAG with bounded parallelism; `ops` (with `devices` and `firewall`) is the one
table from step op to port calls; `settings` holds the retry policy; `report` the
outcome words. Imports no drivers: the CLI composes them (`reconciler/cli/apply.py`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.execute.report import Report, ResourceResult, StepResult
    from reconciler.execute.run import execute
    from reconciler.execute.settings import ExecuteSettings

__all__ = ["ExecuteSettings", "Report", "ResourceResult", "StepResult", "execute"]

# Loaded on first use (PEP 562): `plan` reads only the retry settings
# (`reconciler.execute.settings`), and importing the package must not load the executor.
_HOME = {"ExecuteSettings": "settings", "Report": "report", "ResourceResult": "report", "StepResult": "report",
         "execute": "run"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
