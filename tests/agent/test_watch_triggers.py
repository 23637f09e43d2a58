"""When the agent makes a pass (`reconciler.agent.triggers`), on a clock the test moves:
a burst of manifest changes is one pass after the quiet time, a file rewritten without
pause still gets its pass at the cap, nothing starts while a change settles, triggers
that pile up make one pass, the resync and retry timers fire, and `stop` ends waiting.
And through a real agent: 40 files written at once (a `git pull`) make one pass."""

from __future__ import annotations

import asyncio

from reconciler.agent.triggers import MAX_DEBOUNCE_FACTOR, Triggers, primary
from tests.agent.watchsite import Agent, settled, vm


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def _started(clock: Clock, **kw: float) -> Triggers:
    triggers = Triggers(debounce_s=kw.get("debounce_s", 1.0), resync_s=kw.get("resync_s", 300.0), clock=clock)
    assert await triggers.wait(asyncio.Event()) == {"start"}
    return triggers


def _due(triggers: Triggers, clock: Clock) -> float | None:
    return triggers._due(clock())  # noqa: SLF001 - the decision, without sleeping


def test_a_burst_of_changes_is_one_pass_after_the_quiet_time() -> None:
    async def run() -> None:
        clock = Clock()
        triggers = await _started(clock)
        for step in range(5):  # a change every 0.5 s: each restarts the quiet time
            clock.now = step * 0.5
            triggers.manifest_changed()
            assert _due(triggers, clock) == 1.0
        clock.now = 2.0 + 0.9
        assert _due(triggers, clock) is not None
        clock.now = 3.0
        assert await triggers.wait(asyncio.Event()) == {"manifest"}
        assert _due(triggers, clock) == 300.0 - 3.0  # then only the resync is armed
    asyncio.run(run())


def test_a_file_rewritten_without_pause_gets_its_pass_at_the_cap() -> None:
    async def run() -> None:
        clock = Clock()
        triggers = await _started(clock)
        while clock.now < MAX_DEBOUNCE_FACTOR:
            triggers.manifest_changed()
            clock.now += 0.25
        assert await triggers.wait(asyncio.Event()) == {"manifest"}
    asyncio.run(run())


def test_nothing_starts_while_a_change_settles_and_piled_up_triggers_make_one_pass() -> None:
    async def run() -> None:
        clock = Clock()
        triggers = await _started(clock)
        triggers.manifest_changed()
        triggers.fire("xenstore")
        triggers.fire("xenstore")
        assert _due(triggers, clock) == 1.0  # a half-written file that parses is never acted on
        clock.now = 1.0
        pending = await triggers.wait(asyncio.Event())
        assert pending == {"manifest", "xenstore"} and primary(pending) == "manifest"
    asyncio.run(run())


def test_resync_and_retry_timers_fire_and_stop_ends_the_wait() -> None:
    async def run() -> None:
        clock = Clock()
        triggers = await _started(clock, resync_s=60.0)
        triggers.retry_at(7.5)
        assert _due(triggers, clock) == 7.5
        clock.now = 7.5
        assert await triggers.wait(asyncio.Event()) == {"retry"}
        clock.now = 60.0
        assert await triggers.wait(asyncio.Event()) == {"resync"}
        triggers.observed_fully()
        assert _due(triggers, clock) == 60.0
        stop = asyncio.Event()
        stop.set()
        assert await triggers.wait(stop) is None
    asyncio.run(run())


def test_forty_files_written_at_once_make_one_pass() -> None:
    site = Agent({"web.yaml": vm("web")}, "--debounce", "3")  # a quiet time no busy machine breaks
    try:
        site.start()
        number = site.converged()["lastPass"]["number"]
        for i in range(40):
            (site.folder / f"vm{i:02}.yaml").write_text(vm(f"vm{i:02}"))
        site.wait_pass(number, "the 40 VMs applied", lambda s: len(s["resources"]) == 41 and settled(s))
        assert site.stderr.count("(manifest)") == 1, site.stderr
        assert len(site.names()) == 41
        assert site.stop() == 0
    finally:
        site.close()
