"""Benchmark: load+validate, observe, diff+plan and render for 10 to 5,000 generated VMs.

Not a test. Per size N, `bench/manifests.py` writes N VMs (2 disks, 2 NICs, 1 PCI rule,
3 v4v rules each); a simulated host gets the first N/2 of them applied by the real
executor, then drift (every 4th hosted VM: memory changed, its second NIC detached,
one firewall entry deleted; every 8th: its PCI device handed back to a host driver).
Each round is a fresh process (as a CLI run is: no warm caches) that times the stages
the way `reconciler plan --host sim:DIR` runs them; the median of R rounds is reported.
`--baseline REV` also times git revision REV (a temporary worktree) on the same
manifests and hosts, rounds interleaved, and prints new/baseline ratios side by side.
Prints each stage's growth against linear (1.0 = linear) and the 1,000-VM end-to-end
ratio against the 2 s goal (< 1.0 meets it).
Run: `python bench/plan_scale.py [--sizes 10,100,1000,5000] [--rounds 3] [--keep DIR] [--baseline REV]`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
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
from manifests import bdf, generate, vm_name  # noqa: E402

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
GOAL_1000_S = 2.0
STAGES = ("load+validate", "observe", "diff+plan", "render")


def half(state: DesiredState, n: int) -> DesiredState:
    """The manifests of the first n/2 VMs, the part the host already runs."""
    keep = {vm_name(i) for i in range(n // 2)}
    pick = lambda table: {k: v for k, v in table.items() if v.spec.vm in keep}  # noqa: E731
    return dataclasses.replace(state, vms={k: v for k, v in state.vms.items() if k in keep},
                               disks=pick(state.disks), nics=pick(state.nics), pci=pick(state.pci),
                               v4v_rules=pick(state.v4v_rules))


def write_inventory(state_dir: Path, n: int) -> None:
    """One host PCI function per VM (bus = i // 32 + 1), Ethernet class, bound to e1000e."""
    rows = [f"  - {{bdf: \"{bdf(i)}\", vendor: \"0x8086\", device: \"0x10d3\", class: \"0x0200\", driver: e1000e}}"
            for i in range(n)]
    (state_dir / "pci.yaml").write_text("devices:\n" + "\n".join(rows) + "\n", encoding="utf-8")


async def build_host(state_dir: Path, state: DesiredState, n: int) -> None:
    async with open_sim(state_dir, delay_scale=SETUP_DELAY_SCALE) as ports:
        observed = await observe_host(ports)
        hosted = half(state, n)
        plan = plan_for(hosted, observed)
        report = await execute(plan, ports, settings=ExecuteSettings(parallelism=8))
        failed = [r for r in report.steps if r.outcome != "done"]
        if failed:
            raise SystemExit(f"setup: {len(failed)} steps did not complete, first: {failed[0]}")
        await drift(ports, await observe_host(ports), n)


async def drift(ports: Any, observed: ObservedState, n: int) -> None:
    domids = {name: info.domid for name, info in observed.domains.items()}
    for i in range(0, n // 2, 4):
        domid = domids[vm_name(i)]
        await ports.toolstack.mem_set(domid, 768)
        await ports.toolstack.detach_nic(domid, 1)
    entries = [e for e in await ports.firewall.list() if e.target == "ACCEPT" and e.dom_in not in (0, None)]
    for entry in entries[::4]:
        await ports.firewall.delete(entry)
    for i in range(0, n // 2, 8):
        await ports.toolstack.detach_pci(domids[vm_name(i)], bdf(i))
        await ports.pciback.assignable_remove(bdf(i), rebind=True)


def one_round(tree: Path, manifests: Path, state_dir: Path) -> dict[str, float]:
    """bench/plan_stages.py in a fresh process, importing the project from `tree`; then
    the whole `reconciler plan` command, timed from outside (interpreter start included)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = _run([sys.executable, str(BENCH / "plan_stages.py"), str(manifests), str(state_dir)], env)
    result: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    start = time.perf_counter()  # cwd = the tree: `-m` puts the working directory first on sys.path
    _run([sys.executable, "-m", "reconciler", "plan", str(manifests), "--host", f"sim:{state_dir}"], env, cwd=tree)
    result["cli"] = time.perf_counter() - start
    return result


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:3])} under {env['PYTHONPATH']} failed:\n{done.stderr[-2000:]}")
    return done


def worktree(rev: str, root: Path) -> Path:
    """A detached checkout of `rev` under `root` (removed by the caller)."""
    path = root / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(path), rev], check=True)
    return path


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    result = {stage: statistics.median(r[stage] for r in rounds) for stage in (*STAGES, "imports", "cli")}
    result["total"] = sum(result[s] for s in STAGES)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", metavar="DIR", help="build hosts under DIR and keep them (reused when present)")
    parser.add_argument("--baseline", metavar="REV", help="also time git revision REV, side by side")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="bench-"))
    root = Path(args.keep).resolve() if args.keep else scratch
    trees = {"new": REPO}
    results: dict[str, dict[int, dict[str, float]]] = {"new": {}, "base": {}}
    try:
        if args.baseline:
            trees["base"] = worktree(args.baseline, scratch)
        for n in sizes:
            manifests, state_dir = ensure_host(root / f"n{n}", n)
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
            for _ in range(args.rounds):
                for name, tree in trees.items():  # interleaved, so load on the machine hits both alike
                    rounds[name].append(one_round(tree, manifests, state_dir))
            for name in trees:
                results[name][n] = medians(rounds[name])
            steps = int(rounds["new"][0]["steps"])
            print(f"N={n}: {steps} plan steps, " + ", ".join(f"{k} {v:.3f} s" for k, v in results["new"][n].items()), flush=True)
    finally:
        if "base" in trees:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees["base"])], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    report(sizes, results["new"], results["base"] if args.baseline else None, args.baseline)
    return 0


def ensure_host(work: Path, n: int) -> tuple[Path, Path]:
    """Manifests and a built host for size n under `work` (built once, reused with --keep)."""
    manifests, state_dir = work / "manifests", work / "host"
    if not (state_dir / "host.json").exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        generate(n, manifests)
        write_inventory(state_dir, n)
        started = time.perf_counter()
        loaded = load([str(manifests)])
        assert loaded.state is not None
        asyncio.run(build_host(state_dir, loaded.state, n))
        print(f"N={n}: host with {n // 2} VMs built in {time.perf_counter() - started:.1f} s", flush=True)
    return manifests, state_dir


def report(sizes: list[int], new: dict[int, dict[str, float]], base: dict[int, dict[str, float]] | None,
           rev: str | None) -> None:
    cols = (*STAGES, "total", "imports", "cli")
    print("\n" + f"{'VMs':>6} " + " ".join(f"{c:>14}" for c in cols))
    for n in sizes:
        print(f"{n:>6} " + " ".join(f"{new[n][c]:>13.3f}s" for c in cols))
        if base is not None:
            print(f"{'base':>6} " + " ".join(f"{base[n][c]:>13.3f}s" for c in cols))
            print(f"{'ratio':>6} " + " ".join(f"{new[n][c] / base[n][c]:>14.2f}" for c in cols))
    print("total = the four stages; imports = loading the modules a plan run needs (not in total);\n"
          "cli = the whole `reconciler plan DIR --host sim:HOST` command from outside (interpreter start included)")
    if base is not None:
        print(f"(base = {rev}; ratio = this tree / base, < 1.0 is faster)")
    print("\ngrowth vs linear (time ratio / size ratio; 1.0 = linear):")
    for small, big in zip(sizes, sizes[1:]):
        ratios = " ".join(f"{c} {new[big][c] / new[small][c] / (big / small):.2f}" for c in cols)
        print(f"  {small:>5} -> {big:<5} {ratios}")
    if 1000 in new:
        total = new[1000]["total"]
        print(f"\n1,000 VMs end to end: {total:.2f} s; ratio to the {GOAL_1000_S:.0f} s goal: {total / GOAL_1000_S:.2f}")


if __name__ == "__main__":
    sys.exit(main())
