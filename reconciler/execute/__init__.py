"""Execute: a Plan -> port calls on one host -> a Report. The side-effecting stage.

`execute(plan, ports, settings=ExecuteSettings(...), on_step=...)` (module `run`) walks
the plan's DAG with bounded parallelism; `ops` (with `devices` and `firewall`) is the one
table from step op to port calls; `settings` holds the retry policy; `report` the
outcome words. Imports no drivers: the CLI composes them (`reconciler/cli/apply.py`).
"""

from __future__ import annotations

from reconciler.execute.report import Report, ResourceResult, StepResult
from reconciler.execute.run import execute
from reconciler.execute.settings import ExecuteSettings

__all__ = ["ExecuteSettings", "Report", "ResourceResult", "StepResult", "execute"]
