"""Benchmark: load+validate, observe, diff+plan and render for 10 to 5,000 generated VMs.

Not a test. Per size N, `bench/manifests.py` writes N VMs (2 disks, 2 NICs, 1 PCI rule,
3 v4v rules each); a simulated host gets the first N/2 of them applied by the real
executor, then drift (every 4th hosted VM: memory changed, its second NIC detached,
one firewall entry deleted; every 8th: its PCI device handed back to a host driver).
Then each stage is timed as `reconciler plan --host sim:DIR` runs it, median of R rounds.
Prints a table, each stage's growth against linear (time ratio / size ratio: 1.0 is
linear) and the 1,000-VM end-to-end ratio against the 2 s goal (< 1.0 meets it).
Run: `python bench/plan_scale.py [--sizes 10,100,1000,5000] [--rounds 3] [--keep DIR]`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from manifests import bdf, generate, vm_name  # noqa: E402

from drivers.sim import open_sim  # noqa: E402
from reconciler.cli.hosts import observe_selected  # noqa: E402
from reconciler.execute import ExecuteSettings, execute  # noqa: E402
from reconciler.loader import load  # noqa: E402
from reconciler.model import DesiredState  # noqa: E402
from reconciler.model.observed import ObservedState  # noqa: E402
from reconciler.observe.host import observe_host  # noqa: E402
from reconciler.plan.build import plan_for  # noqa: E402
from reconciler.plan.render_json import render_json  # noqa: E402
from reconciler.plan.render_text import render_text  # noqa: E402

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


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def one_round(manifests: Path, state_dir: Path) -> tuple[dict[str, float], int]:
    times: dict[str, float] = {}
    times["load+validate"], loaded = timed(lambda: load([str(manifests)]))
    assert loaded.state is not None, loaded.diagnostics[:3]
    times["observe"], observed = timed(lambda: observe_selected(f"sim:{state_dir}"))  # as `plan --host` does
    times["diff+plan"], plan = timed(lambda: plan_for(loaded.state, observed))
    times["render"], _ = timed(lambda: (render_text(plan), render_json(plan)))
    return times, len(plan.steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,100,1000,5000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", metavar="DIR", help="build hosts under DIR and keep them (reused when present)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)  # as the CLI does (reconciler/cli/main.py)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-"))
    results: dict[int, dict[str, float]] = {}
    try:
        for n in sizes:
            work = root / f"n{n}"
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
            rounds = [one_round(manifests, state_dir) for _ in range(args.rounds)]
            results[n] = {stage: statistics.median(r[0][stage] for r in rounds) for stage in STAGES}
            results[n]["total"] = sum(results[n][s] for s in STAGES)
            print(f"N={n}: {rounds[0][1]} plan steps, " + ", ".join(f"{k} {v:.3f} s" for k, v in results[n].items()), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report(sizes, results)
    return 0


def report(sizes: list[int], results: dict[int, dict[str, float]]) -> None:
    cols = (*STAGES, "total")
    print("\n" + f"{'VMs':>6} " + " ".join(f"{c:>14}" for c in cols))
    for n in sizes:
        print(f"{n:>6} " + " ".join(f"{results[n][c]:>13.3f}s" for c in cols))
    print("\ngrowth vs linear (time ratio / size ratio; 1.0 = linear):")
    for small, big in zip(sizes, sizes[1:]):
        ratios = " ".join(f"{c} {results[big][c] / results[small][c] / (big / small):.2f}" for c in cols)
        print(f"  {small:>5} -> {big:<5} {ratios}")
    if 1000 in results:
        total = results[1000]["total"]
        print(f"\n1,000 VMs end to end: {total:.2f} s; ratio to the {GOAL_1000_S:.0f} s goal: {total / GOAL_1000_S:.2f}")


if __name__ == "__main__":
    sys.exit(main())
