"""Fault runs: apply against the simulated host with transient faults on every operation,
until `plan` is empty; each run must converge within 3 applies.

Not a test; a measurement that exits 1 when a run does not converge. Per error rate (20%
and 50% by default) and seed, a fresh host directory gets `faults.yaml` with
`operations: {"*": {error_rate: R}}`: every toolstack, PCI and firewall call of the
simulated host, reads included, and every xenstore transaction commit of a client
(`xenstore_transaction_end`, answered EAGAIN as a conflict would be: the one transient
error real xenstored gives dom0, see drivers/sim/faults.py; our client then redoes the
whole transaction under the one retry policy). `reconciler apply` runs in a fresh process, as a user runs it, up to 3 times; after
each apply `reconciler plan --detailed-exitcode` (a read-only view, so no faults) says
whether the host matches. Printed per run: applies needed, transient errors injected
(replayed from the host's persisted fault counters; `xs` of them xenstore EAGAINs), steps that needed more than one
attempt and the extra attempts (reads retried inside a step are not counted there),
and per apply the steps that failed for good, or `stopped` when a read (observe, or the
first domain listing) failed all its tries before any step ran (at 50%: 1 read in 32).
Seeds are fixed and apply runs one step at a time (`--parallelism 1`: faults are drawn
per operation in call order), so runs repeat exactly. Retries wait 10 ms doubling up to 100 ms (RECONCILER_RETRY_*),
not the 0.2 s default, and backends run at delay_scale 0.05, to keep it quick.
Run: `python bench/faults.py [--rates 0.2,0.5] [--seeds 1,2,3] [--examples DIR,...] [--parallelism N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from drivers.sim.faults import Faults, load_faults  # noqa: E402
from drivers.sim.settings import FAULTS_FILE, HOST_STATE  # noqa: E402

MAX_APPLIES = 3
XS_COMMIT = "xenstore_transaction_end"
ENV = {"RECONCILER_RETRY_BACKOFF_S": "0.01", "RECONCILER_RETRY_MAX_BACKOFF_S": "0.1", "RECONCILER_HOST": ""}
STEP = re.compile(r"^(?:\[\d+/\d+\] )?(\S+): (done|failed|skipped) \((?:[\d.]+ s)?(?:, (\d+) attempts)?", re.M)


@dataclass
class Run:
    rate: float
    seed: int
    example: str
    applies: int = 0
    converged: bool = False
    injected: int = 0
    xs_injected: int = 0  # of `injected`: xenstore commits answered EAGAIN
    retried_steps: int = 0
    extra_attempts: int = 0
    failed: list[str] = field(default_factory=list)  # per apply: steps failed for good, or "stopped"


def reconciler(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **ENV}
    return subprocess.run([sys.executable, "-m", "reconciler", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def counters(state_dir: Path) -> dict[str, int]:
    file = state_dir / HOST_STATE
    if not file.exists():
        return {}
    return {str(k): int(v) for k, v in json.loads(file.read_text(encoding="utf-8")).get("fault_counters", {}).items()}


HOOK = re.compile(r"^(\s*(?:preBoot|postCreate|onStateChange|preDelete):\s*)(/\S+)\s*$", re.M)


def runnable(example: str, dest: Path) -> str:
    """A copy of `example` in `dest` whose hooks this machine lacks run /bin/true: hooks
    run for real, and a missing one fails the start, which is not what this measures."""
    shutil.copytree(REPO / example if not Path(example).is_absolute() else Path(example), dest)
    for path in sorted(dest.rglob("*.yaml")):
        text = path.read_text()
        fixed = HOOK.sub(lambda m: m.group(0) if Path(m.group(2)).exists() else m.group(1) + "/bin/true", text)
        if fixed != text:
            path.write_text(fixed)
    return str(dest)


def one_run(rate: float, seed: int, example: str, parallelism: int) -> Run:
    run = Run(rate, seed, example)
    with tempfile.TemporaryDirectory(prefix="fault-") as tmp:
        state_dir = Path(tmp) / "host"
        state_dir.mkdir()
        example = runnable(example, Path(tmp) / "manifests")
        faults_file = state_dir / FAULTS_FILE
        faults_file.write_text(f"seed: {seed}\ndelay_scale: 0.05\noperations:\n  '*': {{error_rate: {rate}}}\n")
        host = f"sim:{state_dir}"
        while run.applies < MAX_APPLIES and not run.converged:
            before = counters(state_dir)
            done = reconciler("apply", example, "--host", host, "--parallelism", str(parallelism))
            run.applies += 1
            if done.returncode not in (0, 1):
                print(f"  apply {run.applies}: exit {done.returncode}: {done.stderr.strip()[-300:]}", file=sys.stderr)
            steps = STEP.findall(done.stdout)
            stopped = "reconciler: error:" in done.stderr  # a read failed all its tries before any step ran
            run.failed.append("stopped" if stopped else str(sum(1 for _, outcome, _ in steps if outcome == "failed")))
            tries = [int(n) for _, _, n in steps if n]
            run.retried_steps += len(tries)
            run.extra_attempts += sum(n - 1 for n in tries)
            faults = Faults(load_faults(faults_file), counters(state_dir))
            injected = faults.injected(since=before)
            run.injected += sum(injected.values())
            run.xs_injected += injected.get(XS_COMMIT, 0)
            check = reconciler("plan", example, "--host", host, "--detailed-exitcode")
            if check.returncode == 1:
                print(f"  plan after apply {run.applies}: {check.stderr.strip()[-300:]}", file=sys.stderr)
            run.converged = check.returncode == 0
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.2,0.5", help="error rates, comma-separated")
    parser.add_argument("--seeds", default="1,2,3", help="fault seeds, comma-separated")
    parser.add_argument("--examples", default="examples/server-host,examples/openxt-desktop")
    parser.add_argument("--parallelism", type=int, default=1,
                        help="apply's --parallelism; 1 (the default) makes every run repeat exactly")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    examples = args.examples.split(",")
    print(f"{'rate':>5} {'seed':>4}  {'example':<24} {'applies':>7} {'converged':>9} {'faults':>6} "
          f"{'xs':>4} {'retried':>7} {'extra':>5}  failed per apply")
    runs: list[Run] = []
    for rate in rates:
        for example in examples:
            for seed in seeds:
                run = one_run(rate, seed, example, args.parallelism)
                runs.append(run)
                print(f"{rate:>5.0%} {seed:>4}  {example:<24} {run.applies:>7} {'yes' if run.converged else 'NO':>9} "
                      f"{run.injected:>6} {run.xs_injected:>4} {run.retried_steps:>7} {run.extra_attempts:>5}  {' '.join(run.failed)}", flush=True)
    bad = [r for r in runs if not r.converged]
    print(f"\n{len(runs) - len(bad)} of {len(runs)} runs converged within {MAX_APPLIES} applies "
          f"(faults injected: {sum(r.injected for r in runs)}, of them xenstore EAGAINs: "
          f"{sum(r.xs_injected for r in runs)}, steps retried: {sum(r.retried_steps for r in runs)}).")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
