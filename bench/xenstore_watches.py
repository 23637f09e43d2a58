"""Benchmark: many watches on the simulated xenstored, and what they cost other clients.

Not a test. Serves an empty host with `python -m reconciler sim serve` in its own process;
one client registers N watches (distinct paths under /bench, pipelined on one socket:
a sender thread writes the WATCH requests while the same socket is read for the replies
and the registration events), while a second client on its own socket reads one node
over and over, one request at a time. Reported: the adder's total time (first request
sent to last reply read) and the reader's worst round trip while the adder ran (its
stall). Then, with all N registered, the time of 1,000 writes to watched paths and of
the adder's disconnect (every watch dropped). A fresh server for each N. Speaks the wire
protocol itself, so the same client measures any revision's server. `--baseline REV`
also serves git revision REV (a temporary worktree), rounds interleaved, and prints
new/baseline ratios.
Run: `python bench/xenstore_watches.py [--counts 10000,20000] [--rounds 1] [--baseline b265b35]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import stop, worktree

REPO = Path(__file__).resolve().parent.parent
HEADER = struct.Struct("<IIII")  # type, req_id, tx_id, len
READ, WATCH, WRITE, WATCH_EVENT, ERROR = 2, 4, 11, 15, 16


def frame(op: int, req_id: int, payload: bytes) -> bytes:
    return HEADER.pack(op, req_id, 0, len(payload)) + payload


class Wire:
    """A blocking connection that reads whole frames."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.at = 0  # frames before this offset of `buf` are consumed (no copy per frame)

    def recv(self) -> tuple[int, int, bytes]:
        while True:
            if len(self.buf) - self.at >= HEADER.size:
                op, req_id, _tx, length = HEADER.unpack_from(self.buf, self.at)
                end = self.at + HEADER.size + length
                if len(self.buf) >= end:
                    payload = self.buf[self.at + HEADER.size:end]
                    self.at = end
                    return op, req_id, payload
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buf = self.buf[self.at:] + chunk
            self.at = 0

    def reply(self, op: int, req_id: int, payload: bytes) -> bytes:
        """Send one request and wait for its reply (skipping watch events)."""
        self.sock.sendall(frame(op, req_id, payload))
        while True:
            got, rid, body = self.recv()
            if got != WATCH_EVENT and rid == req_id:
                if got == ERROR:
                    raise RuntimeError(f"op {op}: {body!r}")
                return body

    def close(self) -> None:
        self.sock.close()


def measure(sock: str, count: int) -> dict[str, float]:
    reader = Wire(sock)
    reader.reply(WRITE, 1, b"/bench/probe\0x")
    stalls: list[float] = []
    done = threading.Event()

    def read_loop() -> None:
        req = 10
        while not done.is_set():
            req += 1
            started = time.perf_counter()
            reader.reply(READ, req, b"/bench/probe\0")
            stalls.append(time.perf_counter() - started)

    adder = Wire(sock)
    requests = b"".join(frame(WATCH, i + 1, b"/bench/w%d\0t%d\0" % (i, i)) for i in range(count))
    thread = threading.Thread(target=read_loop)
    thread.start()
    time.sleep(0.2)  # the reader's round trips before the adds: its baseline
    quiet = list(stalls)
    started = time.perf_counter()
    sender = threading.Thread(target=adder.sock.sendall, args=(requests,))
    sender.start()
    replies = 0
    while replies < count:
        op, _rid, body = adder.recv()
        if op == ERROR:
            raise RuntimeError(f"WATCH failed: {body!r}")
        if op == WATCH:
            replies += 1
    add_s = time.perf_counter() - started
    first = len(quiet)
    sender.join()
    during = stalls[first:]
    done.set()
    thread.join()
    # With every watch registered: writes that fire one watch each, then the disconnect.
    time.sleep(0.5)  # whatever the server still does after the burst (its events, a GC) is not the writes' cost
    started = time.perf_counter()
    for i in range(1000):
        reader.reply(WRITE, 100 + i, b"/bench/w%d\0v" % (i * count // 1000))
    write_s = time.perf_counter() - started
    adder.close()
    started = time.perf_counter()
    reader.reply(READ, 99, b"/bench/probe\0")  # answered after the server dropped the adder's watches
    drop_s = time.perf_counter() - started
    reader.close()
    return {"add_s": add_s, "stall_s": max(during, default=0.0), "quiet_s": max(quiet, default=0.0),
            "writes_1000_s": write_s, "drop_s": drop_s}


def serve_and_measure(tree: Path, count: int) -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(prefix="xw-"))
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "sim", "serve", "--state", str(scratch / "s")],
                            cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        if not lines[-1].startswith("export XENSTORED_PATH="):
            raise SystemExit(f"sim serve from {tree} did not start: {lines!r}")
        return measure(lines[-1].split("=", 1)[1].strip(), count)
    finally:
        stop(proc)
        shutil.rmtree(scratch, ignore_errors=True)



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", default="10000,20000")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline", metavar="REV", help="also serve git revision REV, side by side")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="xw-"))
    trees = {"new": REPO}
    results: dict[str, dict[int, list[dict[str, float]]]] = {"new": {}, "base": {}}
    try:
        if args.baseline:
            trees["base"] = worktree(args.baseline, scratch)
        for count in counts:
            for _ in range(args.rounds):
                for name, tree in trees.items():  # interleaved, so load on the machine hits both alike
                    got = serve_and_measure(tree, count)
                    results[name].setdefault(count, []).append(got)
                    print(f"{name} N={count}: " + ", ".join(f"{k} {v:.3f}" for k, v in got.items()), flush=True)
    finally:
        if "base" in trees:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees["base"])], check=False)
        shutil.rmtree(scratch, ignore_errors=True)
    keys = ("add_s", "stall_s", "writes_1000_s", "drop_s")
    print(f"\nmedians (s){'; new/baseline ratios' if args.baseline else ''}")
    for count in counts:
        new = {k: statistics.median(r[k] for r in results["new"][count]) for k in keys}
        row = "  ".join(f"{k} {new[k]:.3f}" for k in keys)
        print(f"N={count:>6} new:  {row}")
        if args.baseline:
            base = {k: statistics.median(r[k] for r in results["base"][count]) for k in keys}
            print(f"N={count:>6} base: " + "  ".join(f"{k} {base[k]:.3f}" for k in keys))
            print(f"N={count:>6} new/baseline: " + "  ".join(f"{k} {new[k] / base[k]:.3f}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
