"""rpc-proxy ops of the op table: set a VM's whole entry (its rules, in evaluation order,
and the properties its `if-boolean` rules read), or clear it.

Touches the host through `Runtime.ports.rpc` only (`reconciler.ports.RpcPolicyPort`: the
driver makes rpc-proxy reload). Called through `reconciler.execute.ops.OPS`. The entry is
the plan's (step args): the manifests' rules as the plan showed them. Both ops are
idempotent, so a retry after a lost answer just does it again.
"""

from __future__ import annotations

from reconciler.errors import TerminalHostError
from reconciler.execute.runtime import DOM0_ONLY, Runtime, arg, rm_quiet
from reconciler.model.host import RPC_ENTRIES, RpcVmPolicy
from reconciler.ports import XenstoreOps
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
    uuid = _uuid(step)
    await _mark(rt, uuid, step.vm)  # first: an entry is never set that no plan would know as ours
    await rt.ports.rpc.set(uuid, policy)
    return None


async def rpc_clear(rt: Runtime, step: Step, retry: bool) -> str | None:
    # After the VM stopped: its rules are in force only while it runs.
    uuid = _uuid(step)
    await rt.ports.rpc.clear(uuid)
    await rt.ports.xenstore.transaction(lambda tx: rm_quiet(tx, f"{RPC_ENTRIES}/{uuid}"))  # last, once it is gone
    return None


async def _mark(rt: Runtime, uuid: str, vm: str) -> None:
    """Record, dom0-only, that the entry of `uuid` is the reconciler's (`RPC_ENTRIES`)."""
    async def body(tx: XenstoreOps) -> None:
        await tx.write(f"{RPC_ENTRIES}/{uuid}", vm)
        await tx.set_perms(f"{RPC_ENTRIES}/{uuid}", DOM0_ONLY)

    await rt.ports.xenstore.transaction(body)
