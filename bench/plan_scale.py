"""Benchmark: `reconciler plan` by stage, for generated manifests of 10 to 5,000 VMs.

Not a test. Per size N, `bench/manifests.py` writes N VMs of `--shape` (default `mixed`:
every v4v rule shape, PCI by class match, dependsOn chains, network backend VMs, HVM
with stub domains; `basic`: issue 5's shape; `domtype-all`: every VM `myself ->
dom-type=svm:80`, whose firewall is N^2 entries, so it is planned against the empty host
only). Two hosts per size: `empty` (nothing runs; the PCI inventory the manifests match)
and `half` (the first N/2 VMs applied by the real executor, then drifted: every 4th
hosted VM has its memory changed and a NIC detached, every 4th VM-to-VM firewall entry
is deleted, every 8th VM's PCI device (bdf or class match) is handed back to a host
driver, every 40th VM is destroyed).

Each round is a fresh process (as a CLI run is: no warm caches) that times the stages
the way `reconciler plan --host sim:DIR` runs them (load+validate, observe, diff+plan,
render), then the whole `reconciler plan` command from outside with its peak RSS
(the child's ru_maxrss), then a bare PyYAML C-loader parse of the same files in a fresh
process (`cload`); the median of R rounds is reported. `--baseline REV` also times git
revision REV (a temporary worktree) on the same manifests and hosts, rounds interleaved,
and prints new/baseline ratios side by side. Prints the growth exponent between
consecutive sizes, log(t2/t1)/log(n2/n1) (1.0 = linear), and the goals of issue 11:
plan of 1,000 VMs under 2 s and within 8x of cload; exponent 1,000 -> 5,000 <= 1.15 for
plan, validate and observe; peak RSS of a 5,000-VM plan under 1 GiB.
Run: `python bench/plan_scale.py [--sizes 10,100,1000,5000] [--rounds 3] [--shape mixed]
[--hosts empty,half] [--keep DIR] [--baseline REV]`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import worktree  # noqa: E402
from manifests import SHAPES, bdf, generate, vm_name, write_inventory  # noqa: E402

from drivers.sim import open_sim  # noqa: E402
from reconciler.execute import ExecuteSettings, execute  # noqa: E402
from reconciler.loader import load  # noqa: E402
from reconciler.model import DesiredState  # noqa: E402
from reconciler.model.observed import ObservedState  # noqa: E402
from reconciler.observe.host import observe_host  # noqa: E402
from reconciler.plan.build import plan_for  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SETUP_DELAY_SCALE = 0.05  # backends 20x faster while building the host; timeouts stay >= 0.5 s
GOAL_1000_S, GOAL_CLOAD, GOAL_EXPONENT, GOAL_RSS_MIB = 2.0, 8.0, 1.15, 1024
BUILT = "bench-built"  # in a half host's directory once it is built and drifted
STAGES = ("load+validate", "observe", "diff+plan", "render")
CPU_STAGES = tuple(f"{stage} cpu" for stage in STAGES)
COLUMNS = (*STAGES, "total", "cli", "cli cpu", "cload", "cload cpu", "cli/cload", "cpu/cpu", "rss MiB")
CLOAD = ("import sys, yaml\n"
         "for path in sys.argv[1:]:\n"
         "    with open(path, 'rb') as f:\n"
         "        list(yaml.load_all(f, Loader=yaml.CSafeLoader))\n")


def half(state: DesiredState, n: int) -> DesiredState:
    """The manifests of the first n/2 VMs, the part the host already runs."""
    keep = {vm_name(i) for i in range(n // 2)}
    pick = lambda table: {k: v for k, v in table.items() if v.spec.vm in keep}  # noqa: E731
    return dataclasses.replace(state, vms={k: v for k, v in state.vms.items() if k in keep},
                               disks=pick(state.disks), nics=pick(state.nics), pci=pick(state.pci),
                               v4v_rules=pick(state.v4v_rules))


async def build_host(state_dir: Path, state: DesiredState, n: int) -> None:
    async with open_sim(state_dir, delay_scale=SETUP_DELAY_SCALE) as ports:
        observed = await observe_host(ports)
        hosted = half(state, n)
        plan = plan_for(hosted, observed)
        report = await execute(plan, ports, settings=ExecuteSettings(parallelism=8))
        failed = sorted((r for r in report.steps if r.outcome != "done"), key=lambda r: r.outcome != "failed")
        if failed:
            raise SystemExit(f"setup: {len(failed)} steps did not complete, first: {failed[0]}")
        await drift(ports, await observe_host(ports), n)


async def drift(ports: Any, observed: ObservedState, n: int) -> None:
    """Drift of every kind on the running half: memory, a NIC (a guest's vif on its
    backend VM, or a backend's own), firewall entries (of every rule shape), PCI devices
    (by bdf, by class match, greedy) handed back to a host driver, whole VMs destroyed."""
    domids = {name: info.domid for name, info in observed.domains.items()}
    hosted = [i for i in range(n // 2) if vm_name(i) in domids]
    for i in hosted[::4]:
        domid = domids[vm_name(i)]
        await ports.toolstack.mem_set(domid, 768)
        await ports.toolstack.detach_nic(domid, _last_nic(observed, vm_name(i)))
    entries = [e for e in await ports.firewall.list() if e.target == "ACCEPT" and e.dom_in not in (0, None)]
    for entry in entries[::4]:
        await ports.firewall.delete(entry)
    for i in hosted[::8]:
        await ports.toolstack.detach_pci(domids[vm_name(i)], bdf(i))
        await ports.pciback.assignable_remove(bdf(i), rebind=True)
    for i in hosted[39::40]:
        await ports.toolstack.destroy(domids[vm_name(i)])


def _last_nic(observed: ObservedState, vm: str) -> int:
    indexes = [nic.spec.index for nic in observed.nics.values() if nic.spec.vm == vm and nic.spec.index is not None]
    return max(indexes, default=0)


def one_round(tree: Path, manifests: Path, state_dir: Path) -> dict[str, float]:
    """bench/plan_stages.py in a fresh process, importing the project from `tree`; then
    the whole `reconciler plan` command, timed from outside (interpreter start included)
    with its peak RSS; then the bare C-loader parse of the same files."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out, *_ = _run([sys.executable, str(BENCH / "plan_stages.py"), str(manifests), str(state_dir)], env)
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    # cwd = the tree: `-m` puts the working directory first on sys.path
    _, result["cli"], result["cli cpu"], rss_kib = _run(
        [sys.executable, "-m", "reconciler", "plan", str(manifests), "--host", f"sim:{state_dir}"], env, cwd=tree, ok=(0, 2))
    result["rss MiB"] = rss_kib / 1024
    files = sorted(str(p) for p in manifests.rglob("*.yaml"))
    _, result["cload"], result["cload cpu"], _ = _run([sys.executable, "-c", CLOAD, *files], env)
    return result


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None,
         ok: tuple[int, ...] = (0,)) -> tuple[str, float, float, int]:
    """(stdout, wall seconds, CPU seconds (user + system), peak RSS KiB) of one child;
    output goes to a file, so a large plan never fills a pipe, and wait4 gives that
    child's own rusage."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode not in ok:
            err.seek(0)
            raise SystemExit(f"{' '.join(argv[1:3])} under {env['PYTHONPATH']} failed:\n{err.read().decode()[-2000:]}")
        out.seek(0)
        return out.read().decode(), wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss



def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    keys = (*STAGES, *CPU_STAGES, "imports", "cli", "cli cpu", "cload", "cload cpu", "rss MiB", "steps", "edges")
    result = {key: statistics.median(r.get(key, math.nan) for r in rounds) for key in keys}
    result["total"] = sum(result[s] for s in STAGES)
    result["total cpu"] = sum(result[s] for s in CPU_STAGES)
    result["cli/cload"] = result["cli"] / result["cload"]
    result["cpu/cpu"] = result["cli cpu"] / result["cload cpu"]
    return result


def ensure_host(work: Path, n: int, shape: str, kind: str) -> tuple[Path, Path]:
    """Manifests and a host (`empty` or `half`) for size n under `work` (built once,
    reused with --keep)."""
    manifests, state_dir = work / "manifests", work / kind
    if not (manifests / "vms.yaml").exists():
        generate(n, manifests, shape)
    if not (state_dir / "pci.yaml").exists():
        write_inventory(state_dir, n, shape)
    if kind == "half" and not (state_dir / BUILT).exists():
        started = time.perf_counter()
        loaded = load([str(manifests)])
        assert loaded.state is not None, loaded.diagnostics[:3]
        for stale in ("host.json", "xenstore.json"):  # a build that did not finish
            (state_dir / stale).unlink(missing_ok=True)
        asyncio.run(build_host(state_dir, loaded.state, n))
        (state_dir / BUILT).touch()
        print(f"N={n}: host with {n // 2} VMs built in {time.perf_counter() - started:.1f} s", flush=True)
    return manifests, state_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shape", choices=SHAPES, default="mixed")
    parser.add_argument("--hosts", default="empty,half", help="empty, half or both (domtype-all: empty only)")
    parser.add_argument("--keep", metavar="DIR", help="build hosts under DIR and keep them (reused when present)")
    parser.add_argument("--baseline", metavar="REV", help="also time git revision REV, side by side")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [k for k in args.hosts.split(",") if k in ("empty", "half")]
    if args.shape == "domtype-all":
        kinds = ["empty"]  # its firewall is N^2 entries: a built host would measure that table, not the planner
    scratch = Path(tempfile.mkdtemp(prefix="bench-"))
    root = Path(args.keep).resolve() if args.keep else scratch
    trees = {"new": REPO}
    results: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    try:
        if args.baseline:
            trees["base"] = worktree(args.baseline, scratch)
        for n in sizes:
            for kind in kinds:
                manifests, state_dir = ensure_host(root / f"{args.shape}-n{n}", n, args.shape, kind)
                rounds: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
                for _ in range(args.rounds):
                    for name, tree in trees.items():  # interleaved, so load on the machine hits both alike
                        rounds[name].append(one_round(tree, manifests, state_dir))
                for name in trees:
                    results.setdefault((name, kind), {})[n] = medians(rounds[name])
                new = results[("new", kind)][n]
                print(f"N={n} {kind}: {new['steps']:.0f} steps, {new['edges']:.0f} edges, "
                      + ", ".join(f"{k} {new[k]:.3f}" for k in COLUMNS), flush=True)
    finally:
        if "base" in trees:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees["base"])], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    for kind in kinds:
        report(f"{args.shape} shape, {kind} host", sizes, results[("new", kind)],
               results.get(("base", kind)), args.baseline)
    return 0


def exponent(small: int, big: int, t_small: float, t_big: float) -> float:
    return math.log(t_big / t_small) / math.log(big / small) if t_small > 0 and t_big > 0 else math.nan


def report(title: str, sizes: list[int], new: dict[int, dict[str, float]], base: dict[int, dict[str, float]] | None,
           rev: str | None) -> None:
    print(f"\n== {title} (seconds unless named; medians)")
    print(f"{'VMs':>6} {'':>5} " + " ".join(f"{c:>13}" for c in COLUMNS) + f" {'steps':>9} {'edges':>9}")
    for n in sizes:
        rows = [("new", new[n])] + ([("base", base[n])] if base else [])
        for label, row in rows:
            print(f"{n:>6} {label:>5} " + " ".join(f"{row[c]:>13.3f}" for c in COLUMNS)
                  + f" {row['steps']:>9.0f} {row['edges']:>9.0f}")
        if base:
            print(f"{n:>6} {'ratio':>5} " + " ".join(f"{new[n][c] / base[n][c]:>13.2f}" for c in COLUMNS))
    print("the stages in CPU seconds of the stage process:")
    print(f"{'VMs':>6} {'':>5} " + " ".join(f"{c:>17}" for c in (*CPU_STAGES, "total cpu")))
    for n in sizes:
        rows = [("new", new[n])] + ([("base", base[n])] if base else [])
        for label, row in rows:
            print(f"{n:>6} {label:>5} " + " ".join(f"{row[c]:>17.3f}" for c in (*CPU_STAGES, "total cpu")))
        if base:
            print(f"{n:>6} {'ratio':>5} " + " ".join(f"{new[n][c] / base[n][c]:>17.2f}" for c in (*CPU_STAGES, "total cpu")))
    print("total = the four stages in one process (wall); cli = the whole `reconciler plan DIR --host sim:HOST` "
          "from outside (interpreter start included), wall and CPU (user + system); cload = a fresh interpreter "
          "parsing the same files with yaml.CSafeLoader; cpu/cpu = cli cpu / cload cpu (the ratio a busy machine "
          "distorts least); rss = the cli's peak RSS")
    if base:
        print(f"(base = {rev}; ratio = this tree / base, < 1.0 is faster or smaller)")
    print("growth exponent log(t2/t1)/log(n2/n1) (1.0 = linear):")
    for small, big in zip(sizes, sizes[1:]):
        for label, table in (("new", new), ("base", base)):
            if table is None:
                continue
            growth = " ".join(f"{c} {exponent(small, big, table[small][c], table[big][c]):.2f}"
                              for c in (*STAGES, "total", *CPU_STAGES, "total cpu", "cli", "cli cpu", "cload cpu",
                                        "rss MiB", "steps", "edges"))
            print(f"  {small:>5} -> {big:<5} {label:>4}: {growth}")
    goals = []
    if 1000 in new:
        goals.append(f"1,000 VMs: cli {new[1000]['cli']:.2f} s wall, {new[1000]['cli cpu']:.2f} s CPU (goal < "
                     f"{GOAL_1000_S:.0f} s), {new[1000]['cli/cload']:.1f}x cload wall, {new[1000]['cpu/cpu']:.1f}x in CPU "
                     f"(goal <= {GOAL_CLOAD:.0f}x)")
    if 1000 in new and 5000 in new:
        goals.append("exponent 1,000 -> 5,000 (goal <= 1.15): " + ", ".join(
            f"{c} {exponent(1000, 5000, new[1000][c], new[5000][c]):.2f}"
            for c in ("cli", "cli cpu", "total", "load+validate", "observe", "diff+plan", "total cpu", "load+validate cpu",
                      "observe cpu", "diff+plan cpu", "cload cpu")))
    if 5000 in new:
        goals.append(f"5,000 VMs: peak RSS {new[5000]['rss MiB']:.0f} MiB (goal < {GOAL_RSS_MIB} MiB)")
    for line in goals:
        print("goal: " + line)


if __name__ == "__main__":
    sys.exit(main())
