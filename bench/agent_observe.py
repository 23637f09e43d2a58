"""Benchmark: what the agent's observation costs, live (watch events) against full walks.

Not a test. For each host size N (default 50 and 200 running VMs, each with a disk and a
NIC) the host is built, then served by `python -m reconciler sim serve` in its own
process, and this process observes it over the wire as the agent does:
- full: `observe_host` (one pipelined walk of the whole tree, `xl list`, PCI, firewall,
  vifs), the cost of every pass without a live observer;
- one-VM change: `xl mem-set` of one VM through the toolstack port, then the
  `LiveObserver.observe()` after its watch events arrived;
- no change: `LiveObserver.observe()` when no xenstore node changed (the pass after a
  manifest edit or a retry);
- idle: the observer's requests and CPU seconds over `--idle` seconds with nothing
  changing, and over `--noise` writes a guest makes to its own `data/` (Xen's
  `xenstore-write` in a process of its own): the events the broad watches receive
  and drop by path.
Requests are those the client sent (`XenstoreClient.requests`); CPU seconds are this
process's (the agent side; the server's are printed apart). Medians over `--rounds`.
`--baseline REV` also runs REV's `observe_host` (no live observer exists there) on the
same served host from a temporary worktree, and prints new/baseline ratios; REV's client
counts no requests, so its are 2 per node walked (a READ and a DIRECTORY each, what the
walk sends; the new full walk's count checks that).
Run: `python bench/agent_observe.py [--vms 50,200] [--rounds 5] [--idle 10] [--baseline e9f9e15]`.
"""

from __future__ import annotations

import argparse
import asyncio
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

from common import stop, worktree

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TICKS = os.sysconf("SC_CLK_TCK")
ENV = {"RECONCILER_SIM_DELAY_SCALE": "0.02", "PYTHONUNBUFFERED": "1"}

BASELINE = """
import asyncio, json, sys, time
from pathlib import Path
from drivers.sim import open_sim
from reconciler.observe.host import observe_host

async def main(state, rounds):
    async with open_sim(Path(state)) as ports:
        nodes = len(await ports.xenstore.snapshot("/"))
        cpu = []
        for _ in range(rounds):
            start = time.process_time()
            await observe_host(ports)
            cpu.append(time.process_time() - start)
        print(json.dumps({"nodes": nodes, "cpu": cpu}))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def build(state: Path, vms: int) -> None:
    from drivers.sim import open_sim
    from drivers.sim.host import SimHost
    from reconciler.model import NIC, VM, Disk

    host = await SimHost.open(state, delay_scale=0.2)  # building: backend timeouts not too tight under load
    try:
        async with open_sim(state) as ports:
            async def one(i: int) -> None:
                name = f"vm{i:04d}"
                vm = VM.model_validate({"metadata": {"name": name},
                                        "spec": {"virt": "pv", "kernel": "/boot/vmlinuz", "memory": 256, "maxMemory": 512}})
                domid = await ports.toolstack.create(vm, paused=True)
                await ports.toolstack.attach_disk(domid, Disk.model_validate(
                    {"metadata": {"name": f"{name}-xvda"}, "spec": {"vm": name, "vdev": "xvda", "target": f"/srv/{name}.img"}}))
                await ports.toolstack.attach_nic(domid, NIC.model_validate(
                    {"metadata": {"name": f"{name}-nic0"}, "spec": {"vm": name, "bridge": "xenbr0"}}))
                await ports.toolstack.unpause(domid)

            for start in range(0, vms, 20):
                await asyncio.gather(*(one(i) for i in range(start, min(start + 20, vms))))
    finally:
        await host.close()


def serve(state: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "sim", "serve", "--state", str(state)], cwd=REPO,
                            env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = ""
    for _ in range(3):
        line = proc.stdout.readline()
    if not line.startswith("export XENSTORED_PATH="):
        raise SystemExit(f"sim serve did not start: {line!r}")
    return proc


async def measure(state: Path, server: int, rounds: int, idle: float, noise: int) -> dict[str, Any]:
    from drivers.sim import open_sim
    from reconciler.agent.observer import LiveObserver
    from reconciler.observe.host import observe_host
    from reconciler.retry import RetryPolicy

    out: dict[str, Any] = {"full_req": [], "full_cpu": [], "one_req": [], "one_cpu": []}
    async with open_sim(state) as ports:
        xs: Any = ports.xenstore
        for _ in range(rounds):
            before, start = xs.requests, time.process_time()
            full = await observe_host(ports)
            out["full_cpu"].append(time.process_time() - start)
            out["full_req"].append(xs.requests - before)
        out["nodes"] = len(await xs.snapshot("/"))
        domids = sorted(d.domid for d in full.domains.values())
        observer = LiveObserver(ports, RetryPolicy())
        await observer.start()
        try:
            for r in range(rounds):
                await ports.toolstack.mem_set(domids[(r * 7) % len(domids)], 200 + 8 * r)
                await asyncio.wait_for(observer.changed.wait(), 30)
                await asyncio.sleep(0.2)  # every event of the change in
                before, start = observer.xenstore_requests(), time.process_time()
                await observer.observe()
                out["one_cpu"].append(time.process_time() - start)
                out["one_req"].append(observer.xenstore_requests() - before)
            await asyncio.sleep(0.5)
            out["none_req"], out["none_cpu"] = [], []
            for _ in range(rounds):  # a pass with no xenstore change (a manifest edit, a retry)
                before, start = observer.xenstore_requests(), time.process_time()
                await observer.observe()
                out["none_cpu"].append(time.process_time() - start)
                out["none_req"].append(observer.xenstore_requests() - before)
            observer.changed.clear()
            before, start, server_start = observer.xenstore_requests(), time.process_time(), cpu_seconds(server)
            await asyncio.sleep(idle)
            out["idle"] = (observer.xenstore_requests() - before, time.process_time() - start,
                           cpu_seconds(server) - server_start, observer.changed.is_set())
            env = {**os.environ, "XENSTORED_PATH": str(state / "xenstored.sock")}
            before, start = observer.xenstore_requests(), time.process_time()
            pairs = [arg for i in range(noise) for arg in (f"/local/domain/{domids[i % len(domids)]}/data/m{i}", str(i))]
            proc = await asyncio.create_subprocess_exec("xenstore-write", *pairs, env=env)  # one process, `noise` writes
            await proc.wait()
            await asyncio.sleep(0.2)
            out["noise"] = (observer.xenstore_requests() - before, time.process_time() - start, observer.changed.is_set())
        finally:
            await observer.close()
    return out


def baseline_full(tree: Path, state: Path, rounds: int) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", BASELINE, str(state), str(rounds)], cwd=tree,
                          env={**os.environ, **ENV, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                          check=True, timeout=600)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vms", default="50,200", help="host sizes, comma-separated (default 50,200)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle", type=float, default=10.0, help="idle seconds measured (default 10)")
    parser.add_argument("--noise", type=int, default=200, help="guest data/ writes measured (default 200)")
    parser.add_argument("--baseline", metavar="REV", help="also run REV's observe_host, side by side")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="ao-"))
    base_tree = worktree(args.baseline, scratch) if args.baseline else None
    med = statistics.median
    try:
        for vms in (int(v) for v in args.vms.split(",")):
            state = scratch / f"h{vms}"
            started = time.perf_counter()
            asyncio.run(build(state, vms))
            print(f"\n{vms} VMs (built in {time.perf_counter() - started:.1f} s)", flush=True)
            proc = serve(state)
            try:
                base = baseline_full(base_tree, state, args.rounds) if base_tree else None  # before the noise writes
                got = asyncio.run(measure(state, proc.pid, args.rounds, args.idle, args.noise))
            finally:
                stop(proc)
            full_req, full_cpu = med(got["full_req"]), med(got["full_cpu"])
            one_req, one_cpu = med(got["one_req"]), med(got["one_cpu"])
            print(f"  xenstore nodes: {got['nodes']}")
            print(f"  {'':34} {'requests':>9} {'CPU s':>8}")
            print(f"  {'full observe_host':34} {full_req:>9} {full_cpu:>8.4f}")
            print(f"  {'LiveObserver.observe(), 1 mem-set':34} {one_req:>9} {one_cpu:>8.4f}")
            print(f"  {'LiveObserver.observe(), no change':34} {med(got['none_req']):>9} {med(got['none_cpu']):>8.4f}")
            print(f"  one-VM/full: requests {one_req / full_req:.4f}, CPU {one_cpu / full_cpu:.3f}; "
                  f"no change/full: CPU {med(got['none_cpu']) / full_cpu:.3f}")
            if base is not None:
                b_req, b_cpu = 2 * base["nodes"], med(base["cpu"])
                print(f"  {args.baseline} observe_host: {b_req} requests (2/node), {b_cpu:.4f} CPU s")
                print(f"  new one-VM/baseline full: requests {one_req / b_req:.4f}, CPU {one_cpu / b_cpu:.3f}; "
                      f"new full/baseline full: requests {full_req / b_req:.3f}, CPU {full_cpu / b_cpu:.3f}")
            sent, cpu, server, woke = got["idle"]
            print(f"  idle {args.idle:g} s: {sent} requests, {cpu:.4f} CPU s (observer), {server:.2f} CPU s (server), "
                  f"changed {'set' if woke else 'clear'}")
            sent, cpu, woke = got["noise"]
            print(f"  {args.noise} guest data/ writes: {sent} requests, {cpu:.4f} CPU s in this process "
                  f"({1e6 * cpu / args.noise:.0f} us each, one xenstore-write spawned), changed {'set' if woke else 'clear'}")
    finally:
        if base_tree is not None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
