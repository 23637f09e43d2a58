"""One round of `bench/plan_scale.py`, in a fresh process: the stages of `reconciler plan --host`.

Not a test. `python bench/plan_stages.py MANIFESTS STATE_DIR` times the imports a
plan run needs, then load+validate, observe (the embedded simulated host in STATE_DIR,
opened as the CLI opens it), diff+plan and render (text and JSON), and prints one JSON
line of seconds (wall, and CPU as `<stage> cpu`) plus the plan's step and edge counts. It imports the project from sys.path, so `PYTHONPATH=<worktree>`
times another revision (`plan_scale.py --baseline`); revisions from `plan_for` on work.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import time


def main(manifests: str, state_dir: str) -> None:
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)  # as the CLI does (reconciler/cli/main.py)
    start = time.perf_counter()
    for module in ("drivers.sim.client", "drivers.sim.direct", "drivers.sim.host"):  # what opening the host imports
        importlib.import_module(module)
    from reconciler.cli.hosts import observe_selected
    from reconciler.loader import load
    from reconciler.plan.build import plan_for
    from reconciler.plan.render_json import render_json
    from reconciler.plan.render_text import render_text

    times = {"imports": time.perf_counter() - start}
    clock = Clock(times)
    loaded = load([manifests])
    clock.lap("load+validate")
    assert loaded.state is not None, loaded.diagnostics[:3]
    observed = observe_selected(f"sim:{state_dir}")
    clock.lap("observe")
    plan = plan_for(loaded.state, observed)
    clock.lap("diff+plan")
    render_text(plan), render_json(plan)
    clock.lap("render")
    print(json.dumps({**times, "steps": len(plan.steps), "edges": len(plan.dependencies)}))


class Clock:
    """Wall and CPU seconds of each stage: `<stage>` and `<stage> cpu`. On a busy
    machine wall time grows with what else runs; this process's CPU time much less."""

    def __init__(self, times: dict[str, float]) -> None:
        self.times = times
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def lap(self, stage: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.times[stage], self.times[f"{stage} cpu"] = wall - self.wall, cpu - self.cpu
        self.wall, self.cpu = wall, cpu


if __name__ == "__main__":
    main(*sys.argv[1:3])
