"""Fault injection for the simulated host, read from DIR/faults.yaml.

Stage: simulated host (configuration + decisions). `load_faults(file)` validates the
YAML into a frozen `FaultPlan` (one-line `UsageError`s naming the key); `Faults`
decides per call, deterministically from the seed, the operation name and how many
times it ran. Used by `drivers.sim.host` (operations), `backends` and `guests`.

    seed: 7
    delay_scale: 0.05                 # optional, see settings.resolve_delay_scale
    operations:                       # by port method name, or "*" for every one
      attach_disk: {error_rate: 0.5, latency_ms: 20}
      create: {hang: true, hang_s: 3}  # blocks, then fails as a timeout would
      xenstore_transaction_end: {error_rate: 0.2}  # a client's commit answers EAGAIN
    never_connect: {kinds: [vif], domains: [web1]}   # hotplug never completes
    crash_after_unpause: {domains: [flaky], after_ms: 100}
    uncooperative: [stubborn]         # guests that ignore control/shutdown
    silent: [ndvm]                    # guests that never write their bootSentinel node

xenstore: `xenstore_transaction_end` is the one xenstore request the simulated
xenstored faults, and the one error it answers is EAGAIN on a commit (`T`), as if
another client had changed a node the transaction read (reference/xen.md 1.4, 1.8:
"commit conflict EAGAIN; the client must redo the whole transaction"). The transaction
is then gone and nothing of it applied. Only error_rate applies to it (a latency or hang
there is refused; with "*" they apply to the other operations only). No other xenstore
error is injected because real xenstored gives dom0 no other transient one: quotas
(ENOSPC, E2BIG) and the write rate limit exempt dom0 (6.2, 6.3), EBUSY answers only a
TRANSACTION_START inside a transaction (1.4), a client bug; the reference names EAGAIN
only for a commit. Only clients' commits (our client over the socket, the
in-process `DirectXenstore`, Xen's own tools) are faulted; what the simulated
toolstack and backends write themselves is not.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconciler.errors import UsageError

OPERATIONS = frozenset({
    "list_domains", "create", "unpause", "pause", "shutdown", "destroy", "mem_set", "vcpu_set",
    "attach_disk", "detach_disk", "attach_nic", "detach_nic", "attach_pci", "detach_pci", "cd_insert", "cd_eject",
    "inventory", "assignable_add", "assignable_remove", "fw_list", "fw_insert", "fw_insert_many",
    "fw_append", "fw_delete", "fw_delete_many", "rpc_read", "rpc_set", "rpc_clear",
    "xenstore_transaction_end",
})  # fmt: skip
XENSTORE_OPERATIONS = frozenset({"xenstore_transaction_end"})  # error_rate only: the commit answers EAGAIN
DEVICE_KINDS = frozenset({"vbd", "vif", "pci"})


@dataclass(frozen=True)
class OpFault:
    error_rate: float = 0.0  # probability in [0, 1] that the call fails as transient
    latency_ms: int = 0  # added before the call runs (scaled by delay_scale)
    hang: bool = False  # the call blocks `hang_s`, then fails as a timeout
    hang_s: float = 30.0  # seconds (not scaled: it stands for the caller's own timeout)


@dataclass(frozen=True)
class FaultPlan:
    seed: int = 0
    delay_scale: float | None = None
    operations: Mapping[str, OpFault] = field(default_factory=dict)
    never_connect_kinds: frozenset[str] = frozenset()
    never_connect_domains: frozenset[str] = frozenset()
    crash_domains: frozenset[str] = frozenset()
    crash_after_ms: int | None = None
    uncooperative: frozenset[str] = frozenset()
    silent: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    fail: bool
    latency_ms: int
    hang_s: float | None


class Faults:
    """Per-call decisions. `counters` persists with the host so a restart continues the
    same random sequence."""

    def __init__(self, plan: FaultPlan, counters: Mapping[str, int] | None = None) -> None:
        self.plan = plan
        self.counters: dict[str, int] = dict(counters or {})

    def decide(self, op: str) -> Decision:
        rule = self.plan.operations.get(op) or self.plan.operations.get("*")
        if rule is None:
            return Decision(False, 0, None)
        count = self.counters.get(op, 0)
        self.counters[op] = count + 1
        return Decision(self._fails(rule, op, count), rule.latency_ms, rule.hang_s if rule.hang else None)

    def _fails(self, rule: OpFault, op: str, count: int) -> bool:
        return random.Random(f"{self.plan.seed}/{op}/{count}").random() < rule.error_rate

    def injected(self, since: Mapping[str, int] | None = None) -> dict[str, int]:
        """Transient errors injected per operation, replaying the decisions of the calls
        counted since `since` (earlier counters; None: from the start). For benchmarks."""
        out: dict[str, int] = {}
        for op, count in sorted(self.counters.items()):
            rule = self.plan.operations.get(op) or self.plan.operations.get("*")
            if rule is not None:
                failed = sum(self._fails(rule, op, n) for n in range((since or {}).get(op, 0), count))
                if failed:
                    out[op] = failed
        return out

    def never_connects(self, kind: str, domain: str) -> bool:
        kind = "vbd" if kind == "qdisk" else kind
        return kind in self.plan.never_connect_kinds or domain in self.plan.never_connect_domains

    def crashes(self, domain: str) -> bool:
        return domain in self.plan.crash_domains

    def ignores_shutdown(self, domain: str) -> bool:
        return domain in self.plan.uncooperative

    def never_boots(self, domain: str) -> bool:
        return domain in self.plan.silent


def load_faults(file: Path) -> FaultPlan:
    """The plan in `file`, or no faults when it does not exist."""
    if not file.exists():
        return FaultPlan()
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"{file}: cannot read the fault plan ({_first_line(exc)}); fix or delete the file") from exc
    return parse_faults(doc if doc is not None else {}, str(file))


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def parse_faults(doc: Any, where: str) -> FaultPlan:
    top = _mapping(doc, where, {"seed", "delay_scale", "operations", "never_connect", "crash_after_unpause", "uncooperative", "silent"})
    ops: dict[str, OpFault] = {}
    for name, spec in _mapping(top.get("operations", {}), f"{where}: operations", None).items():
        if name != "*" and name not in OPERATIONS:
            raise UsageError(f"{where}: operations: unknown operation {name!r}; use one of {', '.join(sorted(OPERATIONS))} or '*'")
        ops[name] = _op_fault(spec, f"{where}: operations.{name}")
        if name in XENSTORE_OPERATIONS and (ops[name].latency_ms or ops[name].hang):
            raise UsageError(f"{where}: operations.{name}: only error_rate applies to a xenstore commit "
                             "(it answers EAGAIN); remove latency_ms and hang")
    never = _mapping(top.get("never_connect", {}), f"{where}: never_connect", {"kinds", "domains"})
    kinds = _names(never.get("kinds", []), f"{where}: never_connect.kinds")
    if bad := kinds - DEVICE_KINDS:
        raise UsageError(f"{where}: never_connect.kinds: unknown kind {sorted(bad)[0]!r}; use vbd, vif or pci")
    crash = _mapping(top.get("crash_after_unpause", {}), f"{where}: crash_after_unpause", {"domains", "after_ms"})
    scale = top.get("delay_scale")
    if scale is not None and not (isinstance(scale, (int, float)) and 0 < scale <= 100):
        raise UsageError(f"{where}: delay_scale: {float(scale) if isinstance(scale, (int, float)) else scale!r} is out of range; use a number in (0, 100], e.g. 0.05")
    return FaultPlan(
        seed=_number(top.get("seed", 0), f"{where}: seed", int),
        delay_scale=None if scale is None else _number(scale, f"{where}: delay_scale", float),
        operations=ops,
        never_connect_kinds=kinds,
        never_connect_domains=_names(never.get("domains", []), f"{where}: never_connect.domains"),
        crash_domains=_names(crash.get("domains", []), f"{where}: crash_after_unpause.domains"),
        crash_after_ms=None if "after_ms" not in crash else _number(crash["after_ms"], f"{where}: crash_after_unpause.after_ms", int),
        uncooperative=_names(top.get("uncooperative", []), f"{where}: uncooperative"),
        silent=_names(top.get("silent", []), f"{where}: silent"),
    )


def _op_fault(spec: Any, where: str) -> OpFault:
    got = _mapping(spec, where, {"error_rate", "latency_ms", "hang", "hang_s"})
    rate = _number(got.get("error_rate", 0.0), f"{where}.error_rate", float)
    if not 0.0 <= rate <= 1.0:
        raise UsageError(f"{where}.error_rate: expected a probability in [0, 1], found {rate}")
    hang = got.get("hang", False)
    if not isinstance(hang, bool):
        raise UsageError(f"{where}.hang: expected true or false, found {hang!r}")
    return OpFault(
        error_rate=rate,
        latency_ms=_number(got.get("latency_ms", 0), f"{where}.latency_ms", int),
        hang=hang,
        hang_s=_number(got.get("hang_s", 30.0), f"{where}.hang_s", float),
    )


def _mapping(value: Any, where: str, allowed: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a mapping, found {type(value).__name__}")
    for key in value:
        if not isinstance(key, str) or (allowed is not None and key not in allowed):
            raise UsageError(f"{where}: unknown key {key!r}; expected one of {', '.join(sorted(allowed or ()))}")
    return value


def _names(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where}: expected a list of names, found {value!r}")
    return frozenset(value)


def _number(value: Any, where: str, kind: type[int] | type[float]) -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or (kind is int and not isinstance(value, int)) or value < 0:
        raise UsageError(f"{where}: expected a non-negative {'integer' if kind is int else 'number'}, found {value!r}")
    return kind(value)
