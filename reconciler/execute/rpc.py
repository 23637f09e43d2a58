"""rpc-proxy ops of the op table: set a VM's whole entry (its rules, in evaluation order,
and the properties its `if-boolean` rules read), or clear it.

Touches the host through `Runtime.ports.rpc` only (`reconciler.ports.RpcPolicyPort`: the
driver makes rpc-proxy reload). Called through `reconciler.execute.ops.OPS`. The entry is
the plan's (step args): the manifests' rules as the plan showed them. Both ops are
idempotent, so a retry after a lost answer just does it again.
"""

from __future__ import annotations

from reconciler.errors import TerminalHostError
from reconciler.execute.runtime import Runtime, arg
from reconciler.model.host import RpcVmPolicy
from reconciler.plan.steps import Step


def _malformed(step: Step, what: str) -> TerminalHostError:
    return TerminalHostError(f"step {step.id} has no {what}; the plan is malformed: run plan again")


def _uuid(step: Step) -> str:
    uuid = arg(step, "uuid")
    if not isinstance(uuid, str) or not uuid:
        raise _malformed(step, "VM uuid")
    return uuid


async def rpc_set(rt: Runtime, step: Step, retry: bool) -> str | None:
    # Before the guest runs (or live on a running one): rpc-proxy denies what no rule allows.
    rules, properties = arg(step, "rules"), arg(step, "properties")
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise _malformed(step, "list of rpc-proxy rules")
    if not isinstance(properties, dict) or not all(isinstance(v, bool) for v in properties.values()):
        raise _malformed(step, "map of boolean properties")
    policy = RpcVmPolicy(tuple(rules), tuple(sorted((str(k), v) for k, v in properties.items())))
    await rt.ports.rpc.set(_uuid(step), policy)
    return None


async def rpc_clear(rt: Runtime, step: Step, retry: bool) -> str | None:
    # After the VM stopped: its rules are in force only while it runs.
    await rt.ports.rpc.clear(_uuid(step))
    return None
