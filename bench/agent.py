"""Benchmark: what the agent (`reconciler watch`) costs, busy and idle (issue 12).

Not a test. For each host size (default 50 and 200 managed VMs of bench/manifests.py's
basic shape, one manifest file per VM, applied first with `reconciler apply`), starts
`python -m reconciler watch DIR --host sim:STATE` and measures:
- latency from a manifest save (temp file renamed over, as editors save) to the first
  driver call of the edited VM (its `mem-set` step: the step's end in the agent's log
  minus its duration) and to the end of the pass that converged it (status file),
  median and p95 over `--edits` edits (goal: median under 1 s);
- xenstore requests (the agent's own count, in the status file after each pass) for
  one edit, the passes it caused included (goal: the same at every size);
- over `--idle` seconds with nothing changing: xenstore requests, passes, and the CPU
  seconds of the agent process (utime + stime from /proc/<pid>/stat) (goal: 0 requests
  outside the resync, no measurable CPU).
Sizes are printed side by side with the ratio largest/smallest. `--baseline REV` adds what
an operator had before the agent, on the same host: `reconciler apply` of the same edit
run by REV (a temporary worktree), save to exit, and the ratio agent/baseline.
Run: `python bench/agent.py [--sizes 50 200] [--edits 20] [--idle 60] [--baseline e9f9e15]`.
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
from datetime import datetime
from pathlib import Path

from common import stop, worktree
from manifests import generate, vm_name, write_inventory

REPO = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")
ENV = {"RECONCILER_SIM_DELAY_SCALE": "0.02", "RECONCILER_RETRY_BACKOFF_S": "0", "PYTHONUNBUFFERED": "1"}


def _env() -> dict[str, str]:
    env = {**os.environ, **ENV}
    env.pop("RECONCILER_HOST", None)
    return env


def _split(n: int, folder: Path) -> None:
    """bench/manifests.py's basic set, one file per VM (an edit touches one file)."""
    whole = generate(n, folder / "all")
    for i, doc in enumerate(whole.read_text().split("---\n")[1:]):
        (folder / f"{vm_name(i)}.yaml").write_text(doc)
    shutil.rmtree(folder / "all")


def _status(state: Path) -> dict:  # type: ignore[type-arg]
    try:
        return json.loads((state / "agent-status.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def _wait(state: Path, holds, timeout: float = 600.0) -> dict:  # type: ignore[no-untyped-def,type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _status(state)
        if status.get("lastPass") and holds(status):
            return status
        time.sleep(0.005)
    raise SystemExit(f"timed out; last status {json.dumps(_status(state))[:500]}")


def _quiet(state: Path, seconds: float = 1.0) -> dict:  # type: ignore[type-arg]
    """The status once no pass has ended for `seconds`."""
    last = _status(state)
    while True:
        time.sleep(seconds)
        now = _status(state)
        if now.get("lastPass") == last.get("lastPass"):
            return now
        last = now


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _finished(status: dict) -> float:  # type: ignore[type-arg]
    last = status["lastPass"]
    started = datetime.fromisoformat(last["started"].replace("Z", "+00:00")).timestamp()
    return started + float(last["durationSeconds"])


def _first_call(stderr: Path, name: str, after: float) -> float | None:
    """When the edited VM's mem-set step began: its log record's time minus its duration
    (the agent logs JSON lines: `ts` to the millisecond)."""
    mark = f"vm/{name}/mem-set: done ("
    for line in reversed(stderr.read_text().splitlines()):
        if mark not in line or not line.startswith("{"):
            continue
        record = json.loads(line)
        stamp = datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()
        seconds = float(record["msg"].split(mark)[1].split(" s")[0])
        return stamp - seconds if stamp - seconds >= after - 0.01 else None
    return None


def _edit(folder: Path, i: int) -> float:
    """VM i's memory 512 <-> 768 MiB (a live change within maxMemory); the save's time."""
    path = folder / f"{vm_name(i)}.yaml"
    text = path.read_text()
    old, new = ("memory: 768", "memory: 512") if "memory: 768" in text else ("memory: 512", "memory: 768")
    tmp = folder / f".{path.name}.tmp"
    tmp.write_text(text.replace(old, new, 1))
    saved = time.time()
    os.replace(tmp, path)
    return saved


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(n: int, edits: int, idle: float, debounce: float, root: Path, baseline: Path | None) -> dict[str, float]:
    folder, state = root / f"m{n}", root / f"h{n}"
    folder.mkdir()
    _split(n, folder)
    write_inventory(state, n)
    cli = [sys.executable, "-m", "reconciler"]
    done = subprocess.run([*cli, "apply", str(folder), "--host", f"sim:{state}"], cwd=REPO, env=_env(),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"apply of {n} VMs failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    stderr = root / f"agent{n}.stderr"
    with open(stderr, "w") as err:
        proc = subprocess.Popen([*cli, "watch", str(folder), "--host", f"sim:{state}", "--debounce", str(debounce),
                                 "--resync", "3600", "--log-format", "json"], cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=err)
    out: dict[str, float] = {}
    try:
        _wait(state, lambda s: s["lastPass"]["outcome"] == "converged")
        status = _quiet(state)
        to_call, to_done, requests = [], [], []
        for k in range(edits):
            i = (k * 7) % n
            before = status
            saved = _edit(folder, i)
            status = _wait(state, lambda s: s["desiredDigest"] != before["desiredDigest"]
                           and s["lastPass"]["outcome"] in ("changed", "converged"))
            to_done.append(_finished(status) - saved)
            first = _first_call(stderr, vm_name(i), saved)
            if first is not None:
                to_call.append(first - saved)
            status = _quiet(state)
            requests.append(status["xenstoreRequests"] - before["xenstoreRequests"])
        out["save->first call median s"] = statistics.median(to_call) if to_call else float("nan")
        out["save->first call p95 s"] = _pct(to_call, 0.95) if to_call else float("nan")
        out["save->converged median s"] = statistics.median(to_done)
        out["save->converged p95 s"] = _pct(to_done, 0.95)
        out["xenstore requests per edit (median)"] = statistics.median(requests)
        cpu0, passes0, req0 = _cpu(proc.pid), status["lastPass"]["number"], status["xenstoreRequests"]
        time.sleep(idle)
        status = _status(state)
        out[f"idle {idle:g} s: xenstore requests"] = status["xenstoreRequests"] - req0
        out[f"idle {idle:g} s: passes"] = status["lastPass"]["number"] - passes0
        out[f"idle {idle:g} s: CPU s"] = _cpu(proc.pid) - cpu0
    finally:
        stop(proc)
    if baseline is not None:
        out["baseline apply save->exit median s"] = _baseline(baseline, folder, state, n, edits)
    return out


def _baseline(tree: Path, folder: Path, state: Path, n: int, edits: int) -> float:
    """The same edits applied by `reconciler apply` of the baseline: save to exit."""
    times = []
    for k in range(edits):
        saved = _edit(folder, (k * 7) % n)
        done = subprocess.run([sys.executable, "-m", "reconciler", "apply", str(folder), "--host", f"sim:{state}"],
                              cwd=tree, env=_env(), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"baseline apply failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        times.append(time.time() - saved)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--edits", type=int, default=20)
    parser.add_argument("--idle", type=float, default=60.0, help="idle window in seconds (default 60)")
    parser.add_argument("--debounce", type=float, default=0.2, help="the agent's --debounce (default 0.2, its own)")
    parser.add_argument("--baseline", metavar="REV", help="also time `reconciler apply` of each edit with REV")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bag-"))
    tree = worktree(args.baseline, root) if args.baseline else None
    try:
        results = {n: measure(n, args.edits, args.idle, args.debounce, root, tree) for n in args.sizes}
    finally:
        if tree is not None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(root, ignore_errors=True)
    sizes = list(args.sizes)
    print(f"agent, {args.edits} edits, debounce {args.debounce:g} s, sim delays x0.02")
    head = f"{'':44}" + "".join(f"{str(n) + ' VMs':>12}" for n in sizes) + f"{'ratio':>9}"
    print(head)
    for key in results[sizes[0]]:
        values = [results[n][key] for n in sizes]
        ratio = values[-1] / values[0] if values[0] else float("nan")
        print(f"{key:44}" + "".join(f"{v:12.3f}" for v in values) + f"{ratio:9.2f}")
    if args.baseline:
        for n in sizes:
            agent, base = results[n]["save->converged median s"], results[n]["baseline apply save->exit median s"]
            print(f"{n} VMs: agent save->converged / baseline {args.baseline} apply save->exit = {agent / base:.2f}")


if __name__ == "__main__":
    main()
