"""Our asyncio client against the simulated xenstored: ops, pipelining, watches,
transactions under contention, validation before sending, and a daemon restart."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

import pytest

from drivers.xenstore import ClientTransaction, RetrySettings, XenstoreClient, XenstoreServer, errors
from drivers.xenstore.client import ClientSettings
from reconciler.ports import Perm, XenstoreOps, XenstorePort

if TYPE_CHECKING:
    from tests.xenstore.conftest import Env, Runner


def test_basic_ops_and_perms(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        xs: XenstorePort = await env.client()
        await xs.write("/vm/u/name", "web1")
        await xs.mkdir("/vm/u/empty")
        assert await xs.read("/vm/u/name") == b"web1"
        assert await xs.directory("/vm/u") == ["name", "empty"]
        await xs.set_perms("/vm/u", [Perm(0, "n"), Perm(5, "r")])
        assert await xs.get_perms("/vm/u") == [Perm(0, "n"), Perm(5, "r")]
        await xs.rm("/vm/u")
        with pytest.raises(errors.NoEntry):
            await xs.read("/vm/u/name")
        assert await xs.get_domain_path(7) == "/local/domain/7"

    run(scenario)


def test_binary_values_round_trip(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        xs = await env.client()
        blob = bytes(range(256)) * 8
        await xs.write("/bin", blob)
        assert await xs.read("/bin") == blob

    run(scenario)


@pytest.mark.parametrize("path", ["", "/a//b", "/a/", "/sp ace", "/é", "/" + "x" * 3072, "y" * 2049])
def test_bad_paths_are_refused_before_sending(run: Runner, path: str) -> None:
    async def scenario(env: Env) -> None:
        xs = await env.client()
        before = sum(s.requests for s in env.servers)
        with pytest.raises(errors.InvalidPath):
            await xs.write(path, "x")
        assert sum(s.requests for s in env.servers) == before
        assert await xs.exists("/") is True  # connection still fine

    run(scenario)


def test_oversize_payload_is_refused_before_sending(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        xs = await env.client()
        with pytest.raises(errors.PayloadTooLarge):
            await xs.write("/big", b"x" * 4096)
        await xs.write("/fits", b"x" * (4096 - len("/fits") - 1))
        assert len(await xs.read("/fits")) == 4090

    run(scenario)


def test_guest_client_gets_typed_permission_errors(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        env.store.write("/private", "x")
        guest = await env.client(guest=True)
        with pytest.raises(errors.AccessDenied) as denied:
            await guest.read("/private")
        assert denied.value.errno_name == "EACCES" and isinstance(denied.value, errors.TerminalHostError)
        env.store.mkdir("/local/domain/5")
        env.store.set_perms("/local/domain/5", [Perm(5, "n")])
        await guest.write("data/x", "1")  # relative: the guest's own home
        assert env.store.read("/local/domain/5/data/x") == b"1"

    run(scenario)


def test_many_requests_in_flight_are_matched_by_req_id(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        for i in range(2000):
            env.store.write(f"/p/{i}", f"value-{i}")
        xs = await env.client(max_in_flight=300)
        values = await asyncio.gather(*(xs.read(f"/p/{i}") for i in range(2000)))
        assert values == [f"value-{i}".encode() for i in range(2000)]

    run(scenario)


def test_directory_falls_back_to_directory_part(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        names = [f"a-long-child-name-{i:05d}" for i in range(500)]
        for name in names:
            env.store.write(f"/big/{name}", "")
        xs = await env.client()
        assert await xs.directory("/big") == names
        snap = await xs.snapshot("/big")
        assert len(snap) == 501

    run(scenario)


def test_snapshot_reads_the_whole_tree(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        expected = {"/": b""}
        for d in range(30):
            for key in ("name", "vm", "device/vbd/51712/state", "device/vif/0/mac"):
                env.store.write(f"/local/domain/{d}/{key}", f"{d}:{key}")
        for path, node in env.store.items():
            expected[path] = node.value
        xs = await env.client(max_in_flight=64)
        assert await xs.snapshot("/") == expected
        assert set(await xs.snapshot("/local/domain/3")) == {p for p in expected if p.startswith("/local/domain/3")}

    run(scenario)


def test_watch_events_flow_while_replies_do(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        env.store.mkdir("/load")
        watcher = await env.client()
        writer = await env.client()
        stream = await watcher.watch("/load")
        assert (await stream.get(2)).path == "/load"

        async def write_all() -> None:
            await asyncio.gather(*(writer.write(f"/load/{i}", "x") for i in range(1000)))

        async def read_meanwhile() -> int:
            return sum([await watcher.exists("/load") for _ in range(50)])

        _, reads = await asyncio.gather(write_all(), read_meanwhile())
        assert reads == 50
        seen: set[str] = set()
        while len(seen) < 1000:
            seen.add((await stream.get(2)).path)
        assert seen == {f"/load/{i}" for i in range(1000)}
        await stream.close()
        await writer.write("/load/after", "x")
        assert [e async for e in stream] == []

    run(scenario)


def test_python_side_writes_reach_socket_watchers(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        xs = await env.client()
        stream = await xs.watch("@releaseDomain")
        await stream.get(2)
        env.store.introduce_domain(4)
        env.store.release_domain(4)
        assert (await stream.get(2)).path == "@releaseDomain"

    run(scenario)


def test_transactions_under_concurrent_conflicting_writers(run: Runner) -> None:
    """Eight connections each add 1 to a counter 25 times in read-modify-write
    transactions; conflicts (EAGAIN) are retried, so no increment is lost."""

    async def scenario(env: Env) -> None:
        env.store.write("/counter", "0")
        conflicts = 0
        retry = RetrySettings(attempts=200, initial_wait=0.0, max_wait=0.0)

        async def incr(tx: XenstoreOps) -> None:
            nonlocal conflicts
            value = int(await tx.read("/counter"))
            await asyncio.sleep(0)  # let the others interleave
            await tx.write("/counter", str(value + 1))
            conflicts += 1

        async def worker() -> None:
            xs = await env.client(retry=retry)
            for _ in range(25):
                await xs.transaction(incr)

        await asyncio.gather(*(worker() for _ in range(8)))
        assert env.store.read("/counter") == b"200"
        assert conflicts > 200  # bodies that ran more than once: EAGAIN really happened

    run(scenario)


def test_transaction_gives_up_after_the_retry_budget(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        env.store.write("/hot", "0")
        xs = await env.client(retry=RetrySettings(attempts=3, initial_wait=0.0, max_wait=0.0))
        runs = 0

        async def always_conflicts(tx: XenstoreOps) -> None:
            nonlocal runs
            runs += 1
            await tx.read("/hot")
            env.store.write("/hot", str(runs))  # another writer gets in first, every time

        with pytest.raises(errors.Again) as again:
            await xs.transaction(always_conflicts)
        assert runs == 3 and isinstance(again.value, errors.TransientHostError)

    run(scenario)


def test_eagain_at_commit_redoes_the_body_reading_afresh(run: Runner) -> None:
    """The daemon answers the commit EAGAIN twice (`Store.commit_fault`, what faults.yaml
    drives): the whole body runs again each time, re-reading, and commits once."""

    async def scenario(env: Env) -> None:
        env.store.write("/n", "0")
        verdicts = iter([True, True, False])
        env.store.commit_fault = lambda: next(verdicts)
        xs = await env.client()
        reads: list[bytes] = []

        async def incr(tx: XenstoreOps) -> None:
            reads.append(await tx.read("/n"))
            await tx.write("/n", str(int(reads[-1]) + 1))

        await xs.transaction(incr)
        assert reads == [b"0", b"0", b"0"] and env.store.read("/n") == b"1"

    run(scenario)


@pytest.mark.parametrize("name", ["EACCES", "ENOENT", "EINVAL", "E2BIG", "ENOSPC", "EPERM", "EEXIST"])
def test_terminal_errors_in_a_transaction_are_not_retried(run: Runner, name: str) -> None:
    async def scenario(env: Env) -> None:
        xs = await env.client(retry=RetrySettings(attempts=5, initial_wait=0.0, max_wait=0.0))
        runs = 0

        async def body(tx: XenstoreOps) -> None:
            nonlocal runs
            runs += 1
            await tx.write("/partial", "x")
            raise errors.error_for(name, op="WRITE", path="/partial")

        with pytest.raises(errors.XenstoreError) as failed:
            await xs.transaction(body)
        assert failed.value.errno_name == name and runs == 1
        assert not env.store.exists("/partial")  # aborted

    run(scenario)


def test_refusals_from_the_daemon_are_not_retried(run: Runner) -> None:
    """Real refusals, not retried: EACCES (a guest writing dom0's node), ENOENT (a read
    of a missing node), ENOSPC (the guest's 10-open-transactions quota: `begin` fails)."""

    async def scenario(env: Env) -> None:
        env.store.write("/dom0-only", "x")
        retry = RetrySettings(attempts=5, initial_wait=0.0, max_wait=0.0)
        guest, dom0 = await env.client(guest=True, retry=retry), await env.client(retry=retry)
        runs = 0

        async def write_it(tx: XenstoreOps) -> None:
            nonlocal runs
            runs += 1
            await tx.write("/dom0-only", "y")

        async def read_missing(tx: XenstoreOps) -> None:
            nonlocal runs
            runs += 1
            await tx.read("/nowhere")

        with pytest.raises(errors.AccessDenied):
            await guest.transaction(write_it)
        with pytest.raises(errors.NoEntry):
            await dom0.transaction(read_missing)
        assert runs == 2
        held = [await guest.begin() for _ in range(10)]
        with pytest.raises(errors.NoSpace):
            await guest.transaction(write_it)
        assert runs == 2  # refused at TRANSACTION_START: the body never ran
        for tx in held:
            await tx.abort()

    run(scenario)


def test_failed_transaction_body_aborts(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        xs = await env.client()

        async def broken(tx: XenstoreOps) -> None:
            await tx.write("/half", "done")
            raise RuntimeError("body failed")

        with pytest.raises(RuntimeError):
            await xs.transaction(broken)
        assert not env.store.exists("/half")
        tx = await xs.begin()
        assert isinstance(tx, ClientTransaction)
        await tx.abort()
        assert not any(c.transactions for s in env.servers for c in s.connections)

    run(scenario)


def test_daemon_restart_reconnects_and_rewatches(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        xs = await env.client(retry=RetrySettings(attempts=50, initial_wait=0.01, max_wait=0.05))
        stream = await xs.watch("/r")
        await stream.get(2)
        await xs.write("/r/before", "1")
        await stream.get(2)
        await env.stop()
        await asyncio.sleep(0.05)
        await env.start()  # same store, same socket path: a restarted daemon
        assert (await stream.get(5)).path == "/r"  # re-registered: fires once again
        assert await xs.read("/r/before") == b"1"
        env.store.write("/r/after", "2")
        assert (await stream.get(2)).path == "/r/after"
        assert xs.reconnects == 1

    run(scenario)


def test_request_during_outage_waits_for_the_daemon(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        xs = await env.client(retry=RetrySettings(attempts=100, initial_wait=0.01, max_wait=0.02))
        await xs.write("/x", "1")
        await env.stop()

        async def restart_later() -> None:
            await asyncio.sleep(0.1)
            await env.start()

        _, value = await asyncio.gather(restart_later(), xs.read("/x"))
        assert value == b"1"

    run(scenario)


def test_missing_daemon_is_a_clear_transient_error(sock_dir: object) -> None:
    async def scenario() -> None:
        path = os.path.join(str(sock_dir), "nobody.sock")
        with pytest.raises(errors.DaemonUnavailable, match="XENSTORED_PATH") as exc:
            await XenstoreClient.connect(ClientSettings(path=path))
        assert isinstance(exc.value, errors.TransientHostError)

    asyncio.run(scenario())


def test_socket_path_follows_libxenstore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    monkeypatch.delenv("XENSTORED_RUNDIR", raising=False)
    assert XenstoreClient().path == "/run/xenstored/socket"
    monkeypatch.setenv("XENSTORED_RUNDIR", "/tmp/rd")
    assert XenstoreClient().path == "/tmp/rd/socket"
    monkeypatch.setenv("XENSTORED_PATH", "/tmp/explicit")
    assert XenstoreClient().path == "/tmp/explicit"


def test_server_api_serves_a_given_store_in_process(sock_dir: object) -> None:
    async def scenario() -> None:
        from drivers.xenstore import Store

        store = Store()
        store.write("/hello", "world")
        path = os.path.join(str(sock_dir), "own.sock")
        async with XenstoreServer(store, path):
            async with await XenstoreClient.connect(ClientSettings(path=path)) as xs:
                assert await xs.read("/hello") == b"world"
        assert not os.path.exists(path)

    asyncio.run(scenario())


def test_a_second_server_does_not_steal_a_live_socket(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        from drivers.xenstore import Store

        with pytest.raises(errors.AlreadyConnected, match="stop it first"):
            await XenstoreServer(Store(), env.path).start()
        xs = await env.client()
        assert await xs.exists("/")

    run(scenario)
