"""The simulated xenstored at the byte level: framing, pipelining, errors, hostile input."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivers.xenstore.wire import HEADER, Frame, Op, encode, strings

if TYPE_CHECKING:
    from tests.xenstore.conftest import Env, Runner


class Raw:
    """A hand-driven socket client: exactly the bytes we choose, nothing more."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: Path) -> Raw:
        return cls(*await asyncio.open_unix_connection(str(path)))

    def send(self, op: int, payload: bytes, req_id: int = 1, tx_id: int = 0) -> None:
        self.writer.write(encode(op, req_id, tx_id, payload))

    async def recv(self) -> Frame:
        op, req_id, tx_id, length = HEADER.unpack(await asyncio.wait_for(self.reader.readexactly(16), 5))
        return Frame(op, req_id, tx_id, await self.reader.readexactly(length))

    async def call(self, op: int, payload: bytes, tx_id: int = 0) -> Frame:
        self.send(op, payload, 7, tx_id)
        return await self.recv()

    async def closed_by_peer(self) -> bool:
        return await asyncio.wait_for(self.reader.read(1), 5) == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def err(name: str) -> tuple[int, bytes]:
    return (Op.ERROR, strings(name))


def test_pipelined_requests_are_answered_in_order_with_their_ids(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        for i in range(50):
            env.store.write(f"/n/{i}", str(i * i))
        raw = await Raw.open(env.path)
        for i in range(50):
            raw.send(Op.READ, strings(f"/n/{i}"), req_id=1000 + i)
        replies = [await raw.recv() for _ in range(50)]
        await raw.close()
        assert [r.req_id for r in replies] == list(range(1000, 1050))
        assert [r.payload for r in replies] == [str(i * i).encode() for i in range(50)]

    run(scenario)


@pytest.mark.parametrize("op", [20, 23, 24, 25, 26, 99, Op.WATCH_EVENT, Op.ERROR, 0xFFFF])
def test_unknown_or_post_4_17_types_get_enosys_and_the_connection_lives(run: Runner, op: int) -> None:
    async def scenario(env: Env) -> None:
        raw = await Raw.open(env.path)
        reply = await raw.call(op, strings("/x"))
        assert (reply.op, reply.payload, reply.req_id) == (*err("ENOSYS"), 7)
        assert (await raw.call(Op.GET_DOMAIN_PATH, strings("3"))).payload == strings("/local/domain/3")
        await raw.close()

    run(scenario)


@pytest.mark.parametrize(
    ("op", "payload", "error"),
    [
        (Op.READ, strings("/a//b"), "EINVAL"),
        (Op.READ, strings("/a/"), "EINVAL"),
        (Op.READ, strings("/a b"), "EINVAL"),
        (Op.READ, b"/no-terminator", "EINVAL"),
        (Op.WRITE, b"/no-separator", "EINVAL"),
        (Op.READ, strings("/" + "a" * 3072), "EINVAL"),
        (Op.READ, strings("/missing"), "ENOENT"),
        (Op.RM, strings("/"), "EINVAL"),
        (Op.SET_PERMS, strings("/", "x0"), "EINVAL"),
        (Op.UNWATCH, strings("/", "never"), "ENOENT"),
        (Op.TRANSACTION_END, strings("T"), "ENOENT"),
        (Op.INTRODUCE, strings("x", "0", "0"), "EINVAL"),
    ],
)
def test_bad_requests_get_the_c_daemons_error_names(run: Runner, op: int, payload: bytes, error: str) -> None:
    async def scenario(env: Env) -> None:
        raw = await Raw.open(env.path)
        reply = await raw.call(op, payload, tx_id=42 if op == Op.TRANSACTION_END else 0)
        assert (reply.op, reply.payload) == err(error)
        await raw.close()

    run(scenario)


@pytest.mark.parametrize(
    "garbage",
    [
        HEADER.pack(Op.WRITE, 1, 0, 4097) + b"x" * 4097,  # oversize payload
        b"\xff" * 64,  # random bytes: a huge length
        HEADER.pack(Op.WRITE, 1, 0, 100) + b"half",  # then hang up mid-message
    ],
)
def test_hostile_clients_are_dropped_and_others_unaffected(run: Runner, garbage: bytes) -> None:
    async def scenario(env: Env) -> None:
        good = await Raw.open(env.path)
        bad = await Raw.open(env.path)
        bad.writer.write(garbage)
        if len(garbage) > 100:
            assert await bad.closed_by_peer()
        await bad.close()
        assert (await good.call(Op.WRITE, b"/still\0alive")).payload == b"OK\0"
        assert env.store.read("/still") == b"alive"
        await good.close()

    run(scenario)


def test_watch_fires_on_registration_and_own_write_event_precedes_reply(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        raw = await Raw.open(env.path)
        raw.send(Op.WATCH, strings("/w", "tk"), req_id=1)
        first, second = await raw.recv(), await raw.recv()
        assert (first.op, first.req_id, first.payload) == (Op.WATCH, 1, b"OK\0")
        assert (second.op, second.req_id, second.payload) == (Op.WATCH_EVENT, 0, strings("/w", "tk"))
        raw.send(Op.WRITE, b"/w/x\0v", req_id=2)
        event, reply = await raw.recv(), await raw.recv()
        assert (event.op, event.payload) == (Op.WATCH_EVENT, strings("/w/x", "tk"))
        assert (reply.op, reply.req_id) == (Op.WRITE, 2)
        assert (await raw.call(Op.WATCH, strings("/w", "tk"))).payload == strings("EEXIST")
        await raw.close()

    run(scenario)


def test_identical_pending_events_are_coalesced(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        raw = await Raw.open(env.path)
        await raw.call(Op.WATCH, strings("/c", "tk"))
        await raw.recv()  # the registration event
        raw.writer.write(b"".join(encode(Op.WRITE, i, 0, b"/c\0" + str(i).encode()) for i in range(200)))
        frames = [await raw.recv()]
        while sum(f.op == Op.WRITE for f in frames) < 200:
            frames.append(await raw.recv())
        await raw.close()
        events = [f for f in frames if f.op == Op.WATCH_EVENT]
        assert 1 <= len(events) < 200
        assert env.store.read("/c") == b"199"

    run(scenario)


def test_relative_watch_reports_relative_paths(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        raw = await Raw.open(env.path)
        await raw.call(Op.WATCH, strings("dev", "rel"))
        assert (await raw.recv()).payload == strings("dev", "rel")
        env.store.write("/local/domain/0/dev/vif", "")
        assert (await raw.recv()).payload == strings("dev/vif", "rel")
        await raw.close()

    run(scenario)


def test_transactions_on_the_wire(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        raw = await Raw.open(env.path)
        tx = int((await raw.call(Op.TRANSACTION_START, b"\0")).payload.rstrip(b"\0"))
        assert (await raw.call(Op.TRANSACTION_START, b"\0", tx_id=tx)).payload == strings("EBUSY")
        assert (await raw.call(Op.WRITE, b"/t\0in-tx", tx_id=tx)).payload == b"OK\0"
        assert not env.store.exists("/t")
        assert (await raw.call(Op.TRANSACTION_END, strings("T"), tx_id=tx)).payload == b"OK\0"
        assert env.store.read("/t") == b"in-tx"
        other = await Raw.open(env.path)  # a transaction id belongs to its connection
        tx = int((await raw.call(Op.TRANSACTION_START, b"\0")).payload.rstrip(b"\0"))
        assert (await other.call(Op.READ, strings("/t"), tx_id=tx)).payload == strings("ENOENT")
        await other.close()
        await raw.close()

    run(scenario)


def test_big_directory_is_e2big_then_readable_by_directory_part(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        names = [f"entry-{i:05d}-padding-padding" for i in range(400)]
        for name in names:
            env.store.write(f"/big/{name}", "")
        raw = await Raw.open(env.path)
        assert (await raw.call(Op.DIRECTORY, strings("/big"))).payload == strings("E2BIG")
        got: list[bytes] = []
        offset, chunks = 0, 0
        while True:
            reply = (await raw.call(Op.DIRECTORY_PART, strings("/big", str(offset)))).payload
            assert len(reply) <= 4096
            _gen, _, rest = reply.partition(b"\0")
            chunks += 1
            if rest.endswith(b"\0\0") or rest == b"\0":
                got += rest[:-1].split(b"\0")[:-1]
                break
            got += rest.split(b"\0")[:-1]
            offset += len(rest)
        await raw.close()
        assert chunks > 1 and [g.decode() for g in got] == names

    run(scenario)


def test_domain_messages(run: Runner) -> None:
    async def scenario(env: Env) -> None:
        raw = await Raw.open(env.path)
        guest = await Raw.open(env.guest_path)
        await raw.call(Op.WATCH, strings("@introduceDomain", "in"))
        await raw.recv()
        assert (await raw.call(Op.IS_DOMAIN_INTRODUCED, strings("9"))).payload == b"F\0"
        assert (await guest.call(Op.INTRODUCE, strings("9", "1", "2"))).payload == strings("EACCES")
        raw.send(Op.INTRODUCE, strings("9", "1", "2"))
        frames = {(await raw.recv()).op for _ in range(2)}
        assert frames == {Op.INTRODUCE, Op.WATCH_EVENT}
        assert (await raw.call(Op.IS_DOMAIN_INTRODUCED, strings("9"))).payload == b"T\0"
        assert (await raw.call(Op.RESET_WATCHES, b"\0")).payload == b"OK\0"
        assert (await raw.call(Op.RELEASE, strings("9"))).payload == b"OK\0"
        assert (await raw.call(Op.GET_DOMAIN_PATH, strings("9"))).payload == strings("/local/domain/9")
        await guest.close()
        await raw.close()

    run(scenario)


def test_random_payloads_for_every_type_get_an_answer_each(run: Runner) -> None:
    """Fuzz: 600 frames of random types and random NUL-laced payloads, pipelined.
    Every one is answered under its own req_id; the daemon never drops the client."""
    import random

    rng = random.Random(1234)
    alphabet = [b"\0", b"/", b"a", b"@", b"T", b"F", b"0", b"5", b"r", b"n", b"\xff", b" ", b"local", b"domain"]

    async def scenario(env: Env) -> None:
        env.store.write("/a/0", "x")
        raw = await Raw.open(env.path)
        sent = []
        for req_id in range(1, 601):
            op = rng.choice([*range(0, 24), 99])
            payload = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
            raw.send(op, payload, req_id=req_id, tx_id=rng.choice([0, 0, 0, 1, 77]))
            sent.append(req_id)
        got = []
        while len(got) < len(sent):
            frame = await raw.recv()
            if frame.op != Op.WATCH_EVENT:
                got.append(frame.req_id)
        assert got == sent
        assert (await raw.call(Op.READ, strings("/a/0"))).op in (Op.READ, Op.ERROR)
        await raw.close()

    run(scenario)


def test_a_pipelined_burst_does_not_hold_up_another_client(run: Runner) -> None:
    """One client sends 5,000 WATCH requests in one write; another asks for `stats` once the
    first reply of the burst is back. It is answered while most of the burst still waits
    (the server takes a slice of each client in turn), and the burst is answered whole,
    in order, each reply followed by its registration event."""

    async def scenario(env: Env) -> None:
        burst, other = await Raw.open(env.path), await Raw.open(env.path)
        count = 5000
        burst.writer.write(b"".join(encode(Op.WATCH, i, 0, strings(f"/b/w{i}", f"t{i}")) for i in range(count)))
        first = await burst.recv()
        assert (first.op, first.req_id) == (Op.WATCH, 0)
        stats = (await other.call(Op.CONTROL, strings("stats"))).payload.decode()
        served = int(stats.split()[0].split("=")[1])
        assert served < count, stats
        frames = [first] + [await burst.recv() for _ in range(2 * count - 1)]
        assert [(f.op, f.req_id) for f in frames[::2]] == [(Op.WATCH, i) for i in range(count)]
        assert [f.payload for f in frames[1::2]] == [strings(f"/b/w{i}", f"t{i}") for i in range(count)]
        await burst.close()
        await other.close()

    run(scenario)
