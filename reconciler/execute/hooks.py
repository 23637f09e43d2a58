"""The hook ops: run a VM's hook (DESIGN 4, openxt.md 1.11) as its plan step says.

Touches the host through `HostPorts.hooks` only (`drivers.hooks.LocalHooks`: a process
on this machine). Called by `reconciler.execute.run` through the op table
(`reconciler.execute.ops.OPS`) for the ops of `reconciler.plan.steps.HOOKS`. The step's
args hold the argv (`[path, uuid]`, or `[path, uuid, state]` for onStateChange) and the
timeout the plan showed. What the hook printed goes to the step's log (logger
`reconciler.execute.hooks`, fields `step`, `vm`, `hook`, `status`, `stdout`, `stderr`;
INFO, WARNING when it failed); the step line gets one sentence. preBoot, postCreate
and preDelete failures fail the step (what requires it is skipped: no build after a
failed preBoot, no shutdown after a failed preDelete; after a failed postCreate the
domain just built is destroyed, so it never runs without it); an onStateChange failure is
logged and noted on the step line, and the apply goes on. A hook is never retried: it
is not ours to know whether running it twice is safe.
"""

from __future__ import annotations

import logging
import signal
import time

from reconciler.errors import HostError, TerminalHostError
from reconciler.execute.runtime import Runtime, arg
from reconciler.plan.steps import Step
from reconciler.ports import HookResult

log = logging.getLogger(__name__)
_SAID_MAX = 200  # characters of a hook's last output line quoted on the step line


def _argv(step: Step) -> tuple[list[str], float]:
    argv, timeout = arg(step, "argv"), arg(step, "timeout")
    if (not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv)
            or not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0):
        raise TerminalHostError(f"step {step.id} has no hook argv and timeout; the plan is malformed: run plan again")
    return [str(a) for a in argv], float(timeout)


def _said(result: HookResult) -> str:
    """The last non-blank line the hook printed (stderr first), on one line, bounded."""
    for text in (result.stderr, result.stdout):
        line = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
        if line:
            line = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in line)
            return line if len(line) <= _SAID_MAX else line[:_SAID_MAX] + "..."
    return ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _failure(step: Step, argv: list[str], timeout: float, result: HookResult, seconds: float) -> str | None:
    """One sentence for a hook that failed, None when it succeeded."""
    if result.status == 0:
        return None
    what = f"hook {arg(step, 'hook')} {argv[0]} of VM {step.name!r}"
    said = _said(result)
    tail = f": {said}" if said else ""
    if result.status < 0 and seconds >= timeout:
        return (f"{what} did not finish within its {timeout:g} s timeout and was killed "
                f"({_signal_name(-result.status)}){tail}; raise RECONCILER_HOOK_TIMEOUT_S or fix the hook")
    if result.status < 0:
        return f"{what} was killed by {_signal_name(-result.status)}{tail}"
    return f"{what} exited with status {result.status}{tail}"


async def run_hook(rt: Runtime, step: Step, retry: bool) -> str | None:
    argv, timeout = _argv(step)
    state_change = arg(step, "hook") == "onStateChange"
    fields: dict[str, object] = {"step": step.id, "vm": step.name, "hook": arg(step, "hook")}
    started = time.monotonic()
    try:
        result = await rt.ports.hooks.run(argv, timeout=timeout)
    except HostError as exc:  # could not start it at all
        if not state_change:
            raise
        log.warning("%s; the apply goes on", exc, extra={"fields": fields})
        return f"{exc}; logged, the apply goes on"
    failed = _failure(step, argv, timeout, result, time.monotonic() - started)
    fields.update(status=result.status, stdout=result.stdout, stderr=result.stderr)
    (log.warning if failed else log.info)("hook %s: %s", " ".join(argv), failed or "done", extra={"fields": fields})
    if failed is None:
        return None
    if state_change:  # OpenXT: run-on-state-change failures are logged, and the VM goes on
        return f"{failed}; logged, the apply goes on"
    if step.op == "post-create":
        failed += await _unbuild(rt, step)
    raise TerminalHostError(failed)


async def _unbuild(rt: Runtime, step: Step) -> str:
    """A start that fails leaves the VM stopped (OpenXT puts a failed start back to
    `shutdown`): the domain this start built goes, so it never runs without its
    postCreate, and the next plan builds it again (preBoot and postCreate run again)."""
    domid = await rt.live_domid(step.name)
    if domid is None:
        return ""
    try:
        await rt.ports.toolstack.destroy(domid)
    except HostError as exc:
        rt.domains_changed()
        return f"; destroying the domain it built failed too ({exc}); the next plan shows what is left"
    rt.gone(step.name, domid)
    return "; the domain it built was destroyed, so the next apply builds it again"
