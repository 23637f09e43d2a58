"""Benchmark: what an idle `reconciler sim serve` costs when it holds a big host.

Not a test. Builds one simulated host (default: 300 running VMs, each with a disk and a
NIC, made through the simulator's own toolstack; a v4v table of 180,000 entries, the size
the `myself -> dom-type=X:80` shape gives 300 VMs of one type, filled straight into the
host's firewall table and saved by the host itself), then serves a fresh copy of it with
`python -m reconciler sim serve` and reads the process's CPU seconds (utime + stime from
/proc/<pid>/stat) over an idle window after start-up has settled. `--baseline REV` also
serves the same copy with git revision REV (a temporary worktree), rounds interleaved,
and prints new/baseline ratios.
Run: `python bench/sim_idle.py [--vms 300] [--entries 180000] [--window 10] [--rounds 2] [--baseline b265b35]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import stop, worktree

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


async def _build(state_dir: Path, vms: int, entries: int) -> None:
    from drivers.sim import open_sim
    from drivers.sim.host import SimHost
    from reconciler.model import NIC, VM, Disk
    from reconciler.model.host import FirewallEntry

    host = await SimHost.open(state_dir, delay_scale=0.2)
    try:
        async with open_sim(state_dir) as ports:
            async def one(i: int) -> None:
                name = f"vm{i:05d}"
                vm = VM.model_validate({"metadata": {"name": name},
                                        "spec": {"virt": "pv", "kernel": "/boot/vmlinuz", "memory": 256, "type": "svm"}})
                domid = await ports.toolstack.create(vm, paused=True)
                await ports.toolstack.attach_disk(domid, Disk.model_validate(
                    {"metadata": {"name": f"{name}-xvda"}, "spec": {"vm": name, "vdev": "xvda",
                                                                    "target": f"/srv/{name}.img"}}))
                await ports.toolstack.attach_nic(domid, NIC.model_validate(
                    {"metadata": {"name": f"{name}-nic0"}, "spec": {"vm": name, "bridge": "xenbr0"}}))
                await ports.toolstack.unpause(domid)

            for start in range(0, vms, 20):
                await asyncio.gather(*(one(i) for i in range(start, min(start + 20, vms))))
        table = host.core.firewall.entries
        reject = table.pop()  # keep the default REJECT last
        domids = sorted(host.core.domains.domains)
        while len(table) < entries - 1:
            for a in domids:
                for b in domids:
                    table.append(FirewallEntry(dom_in=a, dom_out=b, port_out=80))
                    if len(table) >= entries - 1:
                        break
                if len(table) >= entries - 1:
                    break
        table.append(reject)
    finally:
        await host.close()  # saves host.json (the table included) and xenstore.json


def build(state_dir: Path, vms: int, entries: int) -> None:
    started = time.perf_counter()
    asyncio.run(_build(state_dir, vms, entries))
    sizes = {f: (state_dir / f).stat().st_size for f in ("host.json", "xenstore.json")}
    print(f"built {vms} VMs, {entries} firewall entries in {time.perf_counter() - started:.1f} s "
          f"(host.json {sizes['host.json'] >> 20} MiB, xenstore.json {sizes['xenstore.json'] >> 10} KiB)", flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15 of the line)


def settled(pid: int, quiet: float = 1.0, limit: float = 120.0) -> None:
    """Wait until the process used no CPU for `quiet` seconds (start-up done), at most `limit`."""
    deadline = time.monotonic() + limit
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_seconds(pid)
        if now - last < 1.0 / TICKS:
            return
        last = now


def idle_cpu(tree: Path, template: Path, window: float) -> tuple[float, float, float]:
    """CPU seconds of `sim serve` from `tree`: over `window` idle seconds, at start-up, and
    over the `window` seconds from one change (a firewall insert by `sim fw`) on."""
    scratch = Path(tempfile.mkdtemp(prefix="si-"))
    state = scratch / "s"
    shutil.copytree(template, state)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("RECONCILER_SIM_DELAY_SCALE", None)
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "sim", "serve", "--state", str(state)], cwd=tree,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for _ in range(3):
            line = proc.stdout.readline()
        if not line.startswith("export XENSTORED_PATH="):
            raise SystemExit(f"sim serve from {tree} did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        settled(proc.pid)
        start = cpu_seconds(proc.pid)
        time.sleep(window)
        idle = cpu_seconds(proc.pid) - start
        before, started = cpu_seconds(proc.pid), time.monotonic()
        subprocess.run([sys.executable, "-m", "reconciler", "sim", "fw", "--insert", "1", "--dom-in 7 --dom-out 0 -j ACCEPT",
                        "--state", str(state)], cwd=tree, env=env, capture_output=True, check=True, timeout=300)
        time.sleep(max(0.0, window - (time.monotonic() - started)))
        return idle, start, cpu_seconds(proc.pid) - before
    finally:
        stop(proc)
        shutil.rmtree(scratch, ignore_errors=True)



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", type=int, default=300)
    parser.add_argument("--entries", type=int, default=180_000)
    parser.add_argument("--window", type=float, default=10.0, help="idle seconds measured (default 10)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", metavar="REV", help="also serve with git revision REV, side by side")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="si-"))
    trees = {"new": REPO}
    cpu: dict[str, list[float]] = {"new": [], "base": []}
    change: dict[str, list[float]] = {"new": [], "base": []}
    try:
        template = scratch / "host"
        build(template, args.vms, args.entries)
        if args.baseline:
            trees["base"] = worktree(args.baseline, scratch)
        for _ in range(args.rounds):
            for name, tree in trees.items():  # interleaved, so load on the machine hits both alike
                used, startup, one = idle_cpu(tree, template, args.window)
                cpu[name].append(used)
                change[name].append(one)
                print(f"{name}: {used:.2f} CPU s over {args.window:g} s idle ({100 * used / args.window:.1f}% of a core; "
                      f"start-up {startup:.1f} CPU s; {one:.2f} CPU s over {args.window:g} s from one firewall insert)", flush=True)
    finally:
        if "base" in trees:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees["base"])], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    new, new_change = statistics.median(cpu["new"]), statistics.median(change["new"])
    print(f"\nidle `sim serve`, {args.vms} VMs, {args.entries} firewall entries, {args.window:g} s window (median)")
    print(f"  new:      {new:.3f} CPU s ({100 * new / args.window:.2f}% of a core); "
          f"{new_change:.2f} CPU s over {args.window:g} s from one insert")
    if args.baseline:
        base, base_change = statistics.median(cpu["base"]), statistics.median(change["base"])
        print(f"  {args.baseline}: {base:.3f} CPU s ({100 * base / args.window:.2f}% of a core); "
              f"{base_change:.2f} CPU s over {args.window:g} s from one insert")
        tick = 1.0 / TICKS  # /proc counts whole ticks: a zero is "under one tick"
        print(f"  new/baseline idle: {max(new, tick) / max(base, tick):.4f}" + (" (new under one tick)" if new < tick else ""))
        print(f"  new/baseline one insert: {new_change / base_change:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
