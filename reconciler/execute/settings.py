"""Settings of the executor, and where the one retry policy gets its numbers.

Pure values. `resolve_settings(parallelism, env)` builds `ExecuteSettings` once, for
`apply` (later `watch`), and for the host reads of `plan` and `observe`: flag >
environment (`RECONCILER_*`, below) > default, resolved here and nowhere else.
`settings.retry` is the `reconciler.retry.RetryPolicy` that execute wraps around every
step and observe around every read: only `TransientHostError` is retried, with capped
exponential backoff, so tests pass `ExecuteSettings(initial_backoff_s=0)` and never sleep.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from reconciler.errors import UsageError
from reconciler.plan.steps import HOOK_TIMEOUT_S
from reconciler.retry import RetryPolicy


@dataclass(frozen=True)
class ExecuteSettings:
    """How hard `execute` tries. Every `*_s` is seconds."""

    parallelism: int = 4  # steps running at once; the toolstack serialises per domain anyway
    attempts: int = 5  # tries of one step on a transient error, the first included
    initial_backoff_s: float = 0.2  # first pause between tries; doubles each time
    max_backoff_s: float = 5.0  # cap: xenstore EAGAIN and a busy toolstack clear in well under this
    shutdown_timeout_s: float = 60.0  # graceful shutdown before destroy (xl shutdown -w waits unbounded)
    sentinel_timeout_s: float = 120.0  # a service VM booting to its sentinel; OpenXT's NDVM takes ~30 s
    # A VM hook (preBoot...) before its process group is killed; the plan says it on each hook step.
    hook_timeout_s: float = HOOK_TIMEOUT_S

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of every step and every host read of a run."""
        return RetryPolicy(self.attempts, self.initial_backoff_s, self.max_backoff_s)

    def __post_init__(self) -> None:
        if self.parallelism < 1:
            raise UsageError(f"parallelism must be at least 1, found {self.parallelism}; use --parallelism 1 or more")
        if self.attempts < 1:
            raise UsageError(f"attempts must be at least 1, found {self.attempts}")
        for name in ("initial_backoff_s", "max_backoff_s", "shutdown_timeout_s", "sentinel_timeout_s", "hook_timeout_s"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must not be negative, found {getattr(self, name)}")


# Environment names of the fields an operator may want to change without a flag.
ENV: Mapping[str, str] = {
    "parallelism": "RECONCILER_PARALLELISM",
    "attempts": "RECONCILER_RETRY_ATTEMPTS",
    "initial_backoff_s": "RECONCILER_RETRY_BACKOFF_S",
    "max_backoff_s": "RECONCILER_RETRY_MAX_BACKOFF_S",
    "shutdown_timeout_s": "RECONCILER_SHUTDOWN_TIMEOUT_S",
    "sentinel_timeout_s": "RECONCILER_SENTINEL_TIMEOUT_S",
    "hook_timeout_s": "RECONCILER_HOOK_TIMEOUT_S",
}


def resolve_settings(parallelism: int | None = None, env: Mapping[str, str] | None = None) -> ExecuteSettings:
    """The settings: the `--parallelism` flag, else the environment, else the defaults."""
    environ = os.environ if env is None else env
    values: dict[str, int | float] = {}
    for f in fields(ExecuteSettings):
        text = environ.get(ENV[f.name], "").strip()
        if not text:
            continue
        kind = int if f.type in (int, "int") else float
        try:
            values[f.name] = kind(text)
        except ValueError:
            raise UsageError(f"{ENV[f.name]}={text!r} is not {'an integer' if kind is int else 'a number'}; "
                             f"unset it or set it like {ExecuteSettings.__dataclass_fields__[f.name].default}") from None
    if parallelism is not None:
        values["parallelism"] = parallelism
    return ExecuteSettings(**values)  # type: ignore[arg-type]
