"""Benchmark: a full walk of a 1,000-domain xenstore, our pipelined client vs `xenstore-ls -f`.

Not a test. Builds a store shaped like a busy host (each domain: skeleton, two vbds, two
vifs, console, backends, /vm and /libxl copies), serves it with `reconciler sim serve`
in its own process, then times both walkers against that one server, several rounds.
Run: `python bench/xenstore_walk.py [--domains N] [--rounds R]`. Prints times and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from drivers.xenstore import ClientSettings, Store, XenstoreClient
from drivers.xenstore.persist import STATE_FILE, save
from reconciler.ports import Perm

XENSTORE_LS = "/usr/bin/xenstore-ls"


def add_domain(store: Store, domid: int) -> None:
    """About the nodes libxl writes for a PV guest with 2 disks and 2 NICs (xen.md 2.1-2.6)."""
    dom, be, vmid = f"/local/domain/{domid}", "/local/domain/0/backend", str(uuid.uuid5(uuid.NAMESPACE_DNS, str(domid)))
    keys = {
        f"{dom}/name": f"guest-{domid}", f"{dom}/domid": str(domid), f"{dom}/vm": f"/vm/{vmid}",
        f"{dom}/memory/static-max": "1048576", f"{dom}/memory/target": "1048576",
        f"{dom}/control/shutdown": "", f"{dom}/control/feature-poweroff": "1",
        f"{dom}/console/backend": f"{be}/console/{domid}/0", f"{dom}/console/type": "xenconsoled",
        f"{dom}/console/tty": f"/dev/pts/{domid % 100}",
        f"/vm/{vmid}/name": f"guest-{domid}", f"/vm/{vmid}/uuid": vmid, f"/libxl/{domid}/type": "pv",
    }
    for devid, vdev in ((51712, "xvda"), (51728, "xvdb")):
        fe, bk = f"{dom}/device/vbd/{devid}", f"{be}/vbd/{domid}/{devid}"
        keys |= {f"{fe}/backend": bk, f"{fe}/state": "4",
                 f"{bk}/frontend": fe, f"{bk}/params": f"/dev/vg/g{domid}-{vdev}", f"{bk}/state": "4",
                 f"/libxl/{domid}/device/vbd/{devid}/frontend": fe}
    for devid in (0, 1):
        fe, bk = f"{dom}/device/vif/{devid}", f"{be}/vif/{domid}/{devid}"
        mac = f"00:16:3e:{domid >> 8 & 0xff:02x}:{domid & 0xff:02x}:{devid:02x}"
        keys |= {f"{fe}/backend": bk, f"{fe}/state": "4", f"{fe}/mac": mac, f"{bk}/frontend": fe, f"{bk}/state": "4",
                 f"/libxl/{domid}/device/vif/{devid}/frontend": fe}
    for path, value in keys.items():
        store.write(path, value)
    store.set_perms(dom, [Perm(0, "n"), Perm(domid, "r")])


async def our_walk(sock: str) -> tuple[float, int]:
    async with await XenstoreClient.connect(ClientSettings(path=sock)) as xs:
        started = time.perf_counter()
        nodes = await xs.snapshot("/")
        return time.perf_counter() - started, len(nodes)


def ls_walk(sock: str) -> tuple[float, int]:
    env = {"PATH": "/usr/bin:/bin", "XENSTORED_PATH": sock}
    started = time.perf_counter()
    out = subprocess.run([XENSTORE_LS, "-f", "/"], env=env, capture_output=True, check=True).stdout
    return time.perf_counter() - started, out.count(b"\n") + 1  # + the root, which it does not print


async def server_requests(sock: str) -> int:
    async with await XenstoreClient.connect(ClientSettings(path=sock)) as xs:
        return int((await xs.control("stats")).split()[0].split("=")[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    store = Store()
    t0 = time.perf_counter()
    for domid in range(1, args.domains + 1):
        add_domain(store, domid)
    print(f"built {len(store)} nodes ({len(store) / args.domains:.0f}/domain) in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory(prefix="xsbench", dir="/tmp") as state:
        save(store, Path(state) / STATE_FILE)
        cmd = [sys.executable, "-m", "reconciler", "sim", "serve", "--state", state]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as server:
            assert server.stdout is not None
            sock = server.stdout.readline().rsplit(" ", 1)[1].strip()
            try:
                run_rounds(sock, args.rounds)
            finally:
                server.terminate()
    return 0


def run_rounds(sock: str, rounds: int) -> None:
    ours, theirs, ours_rate, theirs_rate = [], [], [], []
    for i in range(rounds):
        before = asyncio.run(server_requests(sock))
        seconds, nodes = asyncio.run(our_walk(sock))
        middle = asyncio.run(server_requests(sock))
        ls_seconds, ls_nodes = ls_walk(sock)
        after = asyncio.run(server_requests(sock))
        assert nodes == ls_nodes, f"walks disagree: ours saw {nodes} nodes, xenstore-ls {ls_nodes}"
        ours.append(seconds)
        theirs.append(ls_seconds)
        ours_rate.append((middle - before - 1) / seconds)
        theirs_rate.append((after - middle - 1) / ls_seconds)
        print(f"round {i + 1}: ours {seconds:.3f} s ({(middle - before - 1)} requests), "
              f"xenstore-ls -f {ls_seconds:.3f} s ({after - middle - 1} requests), ratio {seconds / ls_seconds:.2f}")
    med, ls_med = statistics.median(ours), statistics.median(theirs)
    print(f"median: ours {med:.3f} s, xenstore-ls -f {ls_med:.3f} s, ratio ours/xenstore-ls = {med / ls_med:.2f}")
    print(f"server throughput: {statistics.median(ours_rate):,.0f} req/s pipelined (our walk), "
          f"{statistics.median(theirs_rate):,.0f} req/s one-at-a-time (xenstore-ls)")


if __name__ == "__main__":
    raise SystemExit(main())
