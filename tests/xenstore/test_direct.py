"""The in-process XenstorePort (`drivers.sim.direct`) agrees with the wire client.

Both read one real simulated xenstored: the wire client over its Unix socket, the
direct port on its Store. Whatever the core can observe must not depend on which.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from drivers.sim.direct import DirectXenstore
from drivers.xenstore import RetrySettings, errors
from reconciler.errors import TransientHostError
from reconciler.ports import Perm, XenstoreOps, XenstorePort


def _port(direct: DirectXenstore) -> XenstorePort:
    return direct  # mypy checks here that the direct port satisfies the Protocol


def test_snapshot_equals_the_wire_walk(run: Any) -> None:
    async def body(env: Any) -> None:
        direct = _port(DirectXenstore(env.store))
        await direct.write("/local/domain/3/name", "web")
        await direct.write("/local/domain/3/device/vbd/51712/state", "4")
        await direct.mkdir("/vm/abc")
        await direct.set_perms("/vm/abc", [Perm(0, "n"), Perm(3, "r")])
        client = await env.client()
        assert await direct.snapshot("/") == await client.snapshot("/")
        assert await direct.snapshot("/local/domain/3") == await client.snapshot("/local/domain/3")
        assert await direct.get_perms("/vm/abc") == await client.get_perms("/vm/abc")
        with pytest.raises(errors.NoEntry):
            await direct.snapshot("/nowhere")

    run(body)


def test_transaction_is_redone_on_conflict_and_watches_fire(run: Any) -> None:
    async def body(env: Any) -> None:
        direct = DirectXenstore(env.store)
        await direct.write("/counter", "0")
        stream = await direct.watch("/counter", "tok")
        events = stream.__aiter__()
        assert (await events.__anext__()).path == "/counter"  # fired at registration
        attempts = 0

        async def bump(tx: XenstoreOps) -> int:
            nonlocal attempts
            attempts += 1
            value = int(await tx.read("/counter"))
            if attempts == 1:  # another writer commits while this transaction is open
                env.store.write("/counter", "10")
            await asyncio.sleep(0)
            await tx.write("/counter", str(value + 1))
            return value + 1

        assert await direct.transaction(bump) == 11 and attempts == 2
        assert await direct.read("/counter") == b"11"
        seen = {(await asyncio.wait_for(events.__anext__(), 1)).path for _ in range(2)}
        assert seen == {"/counter"}
        await stream.close()

    run(body)


def test_eagain_at_commit_is_redone_under_the_retry_policy(run: Any) -> None:
    """Injected conflicts (`Store.commit_fault`): the body runs again, reading afresh,
    `RetrySettings.attempts` times in all, then EAGAIN (transient) reaches the caller;
    a terminal error in the body is raised at once."""

    async def body(env: Any) -> None:
        direct = DirectXenstore(env.store, RetrySettings(attempts=4, initial_wait=0.0, max_wait=0.0))
        await direct.write("/n", "0")
        verdicts = iter([True, False])
        env.store.commit_fault = lambda: next(verdicts, True)
        reads: list[bytes] = []

        async def incr(tx: XenstoreOps) -> None:
            reads.append(await tx.read("/n"))
            await tx.write("/n", str(int(reads[-1]) + 1))

        await direct.transaction(incr)
        assert reads == [b"0", b"0"] and await direct.read("/n") == b"1"
        reads.clear()
        with pytest.raises(errors.Again) as again:
            await direct.transaction(incr)
        assert len(reads) == 4 and isinstance(again.value, TransientHostError)
        assert await direct.read("/n") == b"1"
        env.store.commit_fault = None
        runs = 0

        async def denied(tx: XenstoreOps) -> None:
            nonlocal runs
            runs += 1
            await tx.read("/nowhere")

        with pytest.raises(errors.NoEntry):
            await direct.transaction(denied)
        assert runs == 1

    run(body)


def test_a_value_over_the_payload_limit_is_refused_embedded_as_served(run: Any) -> None:
    """XENSTORE_PAYLOAD_MAX (4096 bytes: path, NUL, value) holds on every path: the wire
    client refuses an oversize WRITE before sending (no xenstored takes it), and the
    embedded host, its transactions and the store itself refuse it the same way."""
    async def body(env: Any) -> None:
        direct = DirectXenstore(env.store)
        client = await env.client()
        path = "/local/domain/3/data/blob"
        room = 4096 - len(path) - 1
        refusals: list[str] = []
        for port in (client, direct):
            with pytest.raises(errors.PayloadTooLarge) as caught:
                await port.write(path, b"x" * (room + 1))
            assert caught.value.errno_name == "EINVAL"
            refusals.append(str(caught.value))

            async def oversize(tx: XenstoreOps) -> None:
                await tx.write(path, b"x" * (room + 1))

            with pytest.raises(errors.PayloadTooLarge):
                await port.transaction(oversize)
        assert refusals[0] == refusals[1] == f"WRITE {path} needs 4097 payload bytes, over xenstore's 4096-byte limit"
        with pytest.raises(errors.PayloadTooLarge):
            env.store.write(path, "é" * (room // 2 + 1))  # bytes count, not characters
        assert not env.store.exists(path)
        await direct.write(path, b"x" * room)  # exactly the limit fits, on both
        await client.write(path, b"y" * room)
        assert await direct.read(path) == b"y" * room

    run(body)
