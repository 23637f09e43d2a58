"""Benchmark: `apply` of N generated VMs on a slow host, at parallelism 1 and 8; prints p1/p8.

Not a test. Per size N, `bench/manifests.py` writes N VMs (2 disks, 2 NICs, 1 PCI rule,
3 v4v rules each) and every round applies them to a fresh, empty simulated host whose
every toolstack, PCI and firewall call waits `--latency-ms` inside the call (faults.yaml
`operations: {"*": {latency_ms}}`: the host answers after the wait, concurrent calls
overlap, as on a slow real host; xenstore is not delayed). The host's backends run at
delay_scale 0.2 (see DELAY_SCALE), so latency_ms is written as latency / 0.2.
Each apply is a fresh process importing the project from one tree; it times `execute`
alone (load, observe and plan are not in the number), its CPU time (the embedded host's
included: a CPU time near the apply time means the process, not the host, is the limit) and counts the host's calls per
operation (toolstack, PCI and firewall ports wrapped in counters). `--baseline REV` also runs git revision
REV (a temporary worktree) on the same manifests, rounds interleaved, side by side.
Goal (issue 11): at 500 VMs and 50 ms, parallelism 8 at least 5x faster than 1.
`--fast OPS` leaves those operations without the latency (e.g. `fw_insert`: the bound of batching them).
Run: `python bench/apply_parallel.py [--sizes 100] [--latency-ms 50] [--parallelism 1,8] [--rounds 1] [--baseline REV] [--fast OPS]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# Backends (hotplug, guest boot) 5x faster than real: the latency is what is measured. Not
# faster: libxl's 10 s attach timeout scales with it, and at 0.05 (0.5 s) a 500-VM run's
# busy event loop (the embedded host saves its state as it goes) made attaches time out.
DELAY_SCALE = 0.2
COUNTED = ("inventory", "list_domains", "fw_list", "fw_insert", "fw_insert_many", "assignable_add")


def write_host(state_dir: Path, n: int, latency_ms: float, fast: list[str]) -> None:
    """An empty host: one PCI function per VM (the BDF its rule names), every call slowed
    but those of the operations in `fast`."""
    from manifests import bdf

    state_dir.mkdir(parents=True)
    rows = [f"  - {{bdf: \"{bdf(i)}\", vendor: \"0x8086\", device: \"0x10d3\", class: \"0x0200\", driver: e1000e}}"
            for i in range(n)]
    (state_dir / "pci.yaml").write_text("devices:\n" + "\n".join(rows) + "\n", encoding="utf-8")
    scaled = round(latency_ms / DELAY_SCALE)
    (state_dir / "faults.yaml").write_text(
        f"delay_scale: {DELAY_SCALE}\noperations:\n  '*': {{latency_ms: {scaled}}}\n"
        + "".join(f"  {op}: {{latency_ms: 0}}\n" for op in fast), encoding="utf-8")


def child(manifests: str, state_dir: str, parallelism: int) -> None:
    """One apply in this process (the project imported from sys.path): one JSON line."""
    import asyncio
    import dataclasses

    from drivers.sim import open_sim
    from reconciler.execute import ExecuteSettings, execute
    from reconciler.loader import load
    from reconciler.observe.host import observe_host
    from reconciler.plan.build import plan_for

    loaded = load([manifests])
    assert loaded.state is not None, loaded.diagnostics[:3]
    state = loaded.state

    async def run() -> dict[str, float]:
        async with open_sim(Path(state_dir)) as ports:
            plan = plan_for(state, await observe_host(ports))
            calls: dict[str, int] = {}
            counted = dataclasses.replace(ports, toolstack=Counting(ports.toolstack, calls),
                                          pciback=Counting(ports.pciback, calls),
                                          firewall=Counting(ports.firewall, calls, "fw_"))
            start, cpu = time.perf_counter(), time.process_time()
            report = await execute(plan, counted, settings=ExecuteSettings(parallelism=parallelism,
                                                                         initial_backoff_s=0.01, max_backoff_s=0.1))
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        bad = [r for r in report.steps if r.outcome != "done"]
        if bad:
            raise SystemExit(f"{len(bad)} steps not done, first: {bad[0].step.id}: {bad[0].outcome} {bad[0].error}")
        out: dict[str, float] = {"apply": seconds, "cpu": cpu, "steps": len(plan.steps)}
        out.update({op: calls.get(op, 0) for op in COUNTED})
        out["calls"] = sum(calls.values())
        return out

    print(json.dumps(asyncio.run(run())))


class Counting:
    """A port whose every method call is counted in `calls` (by the host's operation name)."""

    def __init__(self, port: object, calls: dict[str, int], prefix: str = "") -> None:
        self._port, self._calls, self._prefix = port, calls, prefix

    def __getattr__(self, name: str) -> object:
        method = getattr(self._port, name)
        op = self._prefix + name

        async def counted(*args: object, **kwargs: object) -> object:
            self._calls[op] = self._calls.get(op, 0) + 1
            return await method(*args, **kwargs)

        return counted


def one_round(tree: Path, manifests: Path, state_dir: Path, parallelism: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree), "RECONCILER_SIM_DELAY_SCALE": ""}
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", str(manifests), str(state_dir), str(parallelism)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"apply under {tree} at parallelism {parallelism} failed:\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return result


def worktree(rev: str, root: Path) -> Path:
    """A detached checkout of `rev` under `root` (removed by the caller)."""
    path = root / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), rev], check=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--parallelism", default="1,8", help="two or more levels; ratios are against the first")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline", metavar="REV", help="also run git revision REV, side by side")
    parser.add_argument("--fast", default="", metavar="OPS",
                        help="host operations without the latency, e.g. fw_insert (what batching them would save at most)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    levels = [int(p) for p in args.parallelism.split(",")]
    sys.path.insert(0, str(BENCH))
    from manifests import generate

    scratch = Path(tempfile.mkdtemp(prefix="bench-apply-"))
    trees = {"new": REPO}
    try:
        if args.baseline:
            trees["base"] = worktree(args.baseline, scratch)
        for n in sizes:
            manifests = scratch / f"n{n}" / "manifests"
            generate(n, manifests)
            runs: dict[tuple[str, int], list[dict[str, float]]] = {}
            for r in range(args.rounds):
                for name, tree in trees.items():  # interleaved, so load on the machine hits both alike
                    for p in levels:
                        state_dir = scratch / f"n{n}" / f"{name}-p{p}-r{r}"
                        write_host(state_dir, n, args.latency_ms, [op for op in args.fast.split(",") if op])
                        runs.setdefault((name, p), []).append(one_round(tree, manifests, state_dir, p))
                        shutil.rmtree(state_dir, ignore_errors=True)
                        last = runs[(name, p)][-1]
                        print(f"N={n} {name} p{p}: apply {last['apply']:.2f} s (cpu {last.get('cpu', 0):.2f} s), {int(last['steps'])} steps, "
                              f"{int(last['calls'])} host calls (" + ", ".join(f"{op} {int(last[op])}" for op in COUNTED) + ")",
                              flush=True)
            report(n, levels, trees, runs, args.latency_ms, args.baseline)
    finally:
        if "base" in trees:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees["base"])], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def report(n: int, levels: list[int], trees: dict[str, Path], runs: dict[tuple[str, int], list[dict[str, float]]],
           latency_ms: float, rev: str | None) -> None:
    med = {key: statistics.median(r["apply"] for r in rounds) for key, rounds in runs.items()}
    print(f"\nN={n}, {latency_ms:g} ms per host call: apply seconds (median) and speed-up over p{levels[0]}")
    print(f"{'tree':>6} " + " ".join(f"{'p' + str(p):>9}" for p in levels) + " " +
          " ".join(f"{'p' + str(levels[0]) + '/p' + str(p):>9}" for p in levels[1:]))
    for name in trees:
        print(f"{name:>6} " + " ".join(f"{med[(name, p)]:>8.2f}s" for p in levels) + " " +
              " ".join(f"{med[(name, levels[0])] / med[(name, p)]:>8.2f}x" for p in levels[1:]))
    if "base" in trees:
        print(f"{'ratio':>6} " + " ".join(f"{med[('new', p)] / med[('base', p)]:>9.2f}" for p in levels)
              + f"   (new / base = {rev}; < 1.0 is faster)")
    print("goal: p1/p8 >= 5x at 500 VMs and 50 ms\n", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.exit(0)
    sys.exit(main())
