"""StratumClient against scripted Stratum servers on real sockets (127.0.0.1, port 0)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from hashquarry.miner.client import StratumClient
from hashquarry.miner.protocol import StratumError, SubmitResult

UA = "hashquarry-miner/0.1"
PREVHASH = "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000"
STEP = 5.0  # generous per-step limit; a healthy test never comes near it


def notify(job_id: str, clean: bool = True) -> list[Any]:
    return [job_id, PREVHASH, "0100", "ff00", [], "20000000", "207fffff", "504e86b9", clean]


def subscribe_result(session: str, en1: str = "aa000001", en2_size: int = 4) -> list[Any]:
    return [[["mining.set_difficulty", f"d-{session}"], ["mining.notify", session]], en1, en2_size]


class Conn:
    """The server's side of one accepted connection; the test plays the pool with it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def recv_line(self) -> bytes:
        line = await asyncio.wait_for(self.reader.readline(), STEP)
        assert line, "client closed the connection"
        return line

    async def recv(self) -> dict[str, Any]:
        return orjson.loads(await self.recv_line())

    async def expect(self, method: str) -> dict[str, Any]:
        msg = await self.recv()
        assert msg.get("method") == method, msg
        return msg

    def send(self, *messages: dict[str, Any]) -> None:
        # One write for several messages: they reach the client in the same read.
        self.writer.write(b"".join(orjson.dumps(m) + b"\n" for m in messages))

    def reply(self, request: dict[str, Any], result: Any, error: Any = None) -> None:
        self.send(self.reply_msg(request, result, error))

    @staticmethod
    def reply_msg(request: dict[str, Any], result: Any, error: Any = None) -> dict[str, Any]:
        return {"id": request["id"], "result": result, "error": error}

    @staticmethod
    def note(method: str, params: list[Any]) -> dict[str, Any]:
        return {"id": None, "method": method, "params": params}

    def notify(self, method: str, params: list[Any]) -> None:
        self.send(self.note(method, params))

    async def answer(self, method: str, result: Any, error: Any = None) -> dict[str, Any]:
        msg = await self.expect(method)
        self.reply(msg, result, error)
        return msg

    def close(self) -> None:
        self.writer.close()


class ScriptServer:
    def __init__(self) -> None:
        self.accepted: asyncio.Queue[Conn] = asyncio.Queue()
        self.conns: list[Conn] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> ScriptServer:
        self.server = await asyncio.start_server(self._on_conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(reader, writer)
        self.conns.append(conn)
        await self.accepted.put(conn)

    async def accept(self) -> Conn:
        return await asyncio.wait_for(self.accepted.get(), STEP)

    async def stop(self) -> None:
        for conn in self.conns:
            conn.close()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[ScriptServer]:
    srv = await ScriptServer().start()
    yield srv
    await srv.stop()


@pytest.fixture
async def server_b() -> AsyncIterator[ScriptServer]:
    srv = await ScriptServer().start()
    yield srv
    await srv.stop()


class Recorder:
    """on_notification callback that lets a test wait for a given notification."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[Any]]] = []
        self._cond = asyncio.Condition()
        self._loop = asyncio.get_running_loop()

    def __call__(self, method: str, params: list[Any]) -> None:
        self.seen.append((method, params))
        self._loop.create_task(self._wake())

    async def _wake(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def wait_for(self, method: str, count: int = 1) -> None:
        async def done() -> None:
            async with self._cond:
                await self._cond.wait_for(
                    lambda: sum(1 for m, _ in self.seen if m == method) >= count
                )

        await asyncio.wait_for(done(), STEP)


async def connected(server: ScriptServer, **kwargs: Any) -> tuple[StratumClient, Conn]:
    client = StratumClient(**kwargs)
    await client.connect("127.0.0.1", server.port)
    return client, await server.accept()


async def handshake(
    client: StratumClient, conn: Conn, session: str = "sess-1", en1: str = "aa000001"
) -> None:
    sub = asyncio.create_task(client.subscribe())
    await conn.answer("mining.subscribe", subscribe_result(session, en1))
    await sub
    auth = asyncio.create_task(client.authorize("acct.w1", "pw"))
    await conn.answer("mining.authorize", True)
    assert await auth is True


# --- handshake ---


async def test_subscribe_and_authorize(server: ScriptServer) -> None:
    client, conn = await connected(server)
    sub = asyncio.create_task(client.subscribe())
    msg = await conn.answer("mining.subscribe", subscribe_result("sess-42", "0badcafe", 8))
    assert msg["params"] == [UA]
    assert isinstance(msg["id"], int)
    assert await sub == ("0badcafe", 8, "sess-42")
    assert client.extranonce1 == bytes.fromhex("0badcafe")
    assert client.extranonce2_size == 8
    assert client.session_id == "sess-42"

    auth = asyncio.create_task(client.authorize("acct.w1"))
    msg = await conn.answer("mining.authorize", True)
    assert msg["params"] == ["acct.w1", "x"]
    assert await auth is True

    # Refusals: result false, and an error in list form.
    auth = asyncio.create_task(client.authorize("acct.bad", "pw"))
    await conn.answer("mining.authorize", False)
    assert await auth is False
    auth = asyncio.create_task(client.authorize("acct.bad2", "pw"))
    await conn.answer("mining.authorize", None, [24, "Unauthorized worker", None])
    assert await auth is False
    await client.close()


async def test_subscribe_sends_session_id_and_accepts_flat_details(server: ScriptServer) -> None:
    client, conn = await connected(server)
    sub = asyncio.create_task(client.subscribe("custom/1.0", session_id="old-sess"))
    msg = await conn.answer("mining.subscribe", [["mining.notify", "old-sess"], "01", 2])
    assert msg["params"] == ["custom/1.0", "old-sess"]
    assert await sub == ("01", 2, "old-sess")
    assert client.resumed is True
    await client.close()


async def test_subscribe_error_raises(server: ScriptServer) -> None:
    client, conn = await connected(server)
    sub = asyncio.create_task(client.subscribe())
    await conn.answer("mining.subscribe", None, {"code": 20, "message": "Not now"})
    with pytest.raises(StratumError) as err:
        await sub
    assert (err.value.code, err.value.message) == (20, "Not now")
    await client.close()


# --- difficulty and extranonce follow the next notify ---


async def test_set_difficulty_applies_to_next_notify(server: ScriptServer) -> None:
    rec = Recorder()
    client, conn = await connected(server, on_notification=rec)
    await handshake(client, conn)
    assert client.difficulty == 1.0

    conn.notify("mining.set_difficulty", [0.5])
    conn.notify("mining.notify", notify("j1"))
    j1 = await asyncio.wait_for(client.wait_job(), STEP)
    assert (j1.job_id, j1.difficulty, client.difficulty) == ("j1", 0.5, 0.5)

    conn.notify("mining.set_difficulty", [2])
    await rec.wait_for("mining.set_difficulty", 2)
    assert client.pending_difficulty == 2.0
    assert client.difficulty == 0.5  # the current job still counts at its own difficulty
    assert client.job is j1 and j1.difficulty == 0.5

    conn.notify("mining.notify", notify("j2", clean=False))
    j2 = await asyncio.wait_for(client.wait_job(newer_than=j1), STEP)
    assert (j2.job_id, j2.difficulty, j2.clean) == ("j2", 2.0, False)
    assert client.difficulty == 2.0
    assert list(client.jobs) == ["j1", "j2"]
    assert client.jobs["j1"].difficulty == 0.5
    await client.close()


async def test_set_extranonce_applies_at_next_notify(server: ScriptServer) -> None:
    rec = Recorder()
    client, conn = await connected(server, on_notification=rec)
    await handshake(client, conn, en1="aa000001")
    conn.notify("mining.notify", notify("j1"))
    j1 = await asyncio.wait_for(client.wait_job(), STEP)
    assert (j1.extranonce1, j1.extranonce2_size) == (bytes.fromhex("aa000001"), 4)

    conn.notify("mining.set_extranonce", ["bb0002", 6])
    await rec.wait_for("mining.set_extranonce")
    assert (client.pending_extranonce1, client.pending_extranonce2_size) == (b"\xbb\x00\x02", 6)
    assert client.extranonce1 == bytes.fromhex("aa000001")
    assert client.job is j1

    conn.notify("mining.notify", notify("j2"))
    j2 = await asyncio.wait_for(client.wait_job(newer_than=j1), STEP)
    assert (j2.extranonce1, j2.extranonce2_size) == (b"\xbb\x00\x02", 6)
    assert (client.extranonce1, client.extranonce2_size) == (b"\xbb\x00\x02", 6)
    assert client.jobs["j1"].extranonce1 == bytes.fromhex("aa000001")
    await client.close()


async def test_notify_right_behind_subscribe_answer_sees_new_state(server: ScriptServer) -> None:
    """Pools often write the subscribe answer, set_difficulty and notify back to back."""
    client, conn = await connected(server)
    sub = asyncio.create_task(client.subscribe())
    msg = await conn.expect("mining.subscribe")
    conn.send(
        Conn.reply_msg(msg, subscribe_result("s", "cafe0001", 4)),
        Conn.note("mining.set_difficulty", [0.25]),
        Conn.note("mining.notify", notify("first")),
    )
    await sub
    job = await asyncio.wait_for(client.wait_job(), STEP)
    assert (job.job_id, job.difficulty, job.extranonce1) == ("first", 0.25, b"\xca\xfe\x00\x01")
    await client.close()


# --- responses and errors ---


async def test_submit_results_and_error_forms(server: ScriptServer) -> None:
    client, conn = await connected(server)
    await handshake(client, conn)

    cases = [
        ((True, None), SubmitResult(True)),
        (
            (None, [23, "Low difficulty share", None]),
            SubmitResult(False, 23, "Low difficulty share"),
        ),
        (
            (None, {"code": 21, "message": "Job not found"}),
            SubmitResult(False, 21, "Job not found"),
        ),
        ((False, None), SubmitResult(False)),
        ((None, "weird"), SubmitResult(False, None, "weird")),
    ]
    for (result, error), expected in cases:
        sub = asyncio.create_task(
            client.submit("acct.w1", "j1", "00000001", "504e86b9", "0000abcd")
        )
        msg = await conn.answer("mining.submit", result, error)
        assert msg["params"] == ["acct.w1", "j1", "00000001", "504e86b9", "0000abcd"]
        assert await sub == expected

    sub = asyncio.create_task(
        client.submit("acct.w1", "j1", "00000001", "504e86b9", "0000abcd", "00002000")
    )
    msg = await conn.answer("mining.submit", True)
    assert msg["params"][5] == "00002000"
    assert (await sub).accepted

    # The generic request hands back the whole response; call() raises on an error.
    req = asyncio.create_task(client.request("mining.get_transactions", ["j1"]))
    await conn.answer("mining.get_transactions", None, [20, "Other/Unknown", None])
    assert await req == {
        "id": (await req)["id"],
        "result": None,
        "error": [20, "Other/Unknown", None],
    }
    call = asyncio.create_task(client.call("mining.get_transactions", ["j1"]))
    await conn.answer("mining.get_transactions", None, [20, "Other/Unknown", None])
    with pytest.raises(StratumError) as err:
        await call
    assert err.value.code == 20
    await client.close()


async def test_many_submits_in_flight_answered_out_of_order(server: ScriptServer) -> None:
    client, conn = await connected(server)
    await handshake(client, conn)
    futures = [
        client.submit_nowait("acct.w1", "j1", f"{i:08x}", "504e86b9", f"{i:08x}") for i in range(50)
    ]
    requests = [await conn.recv() for _ in range(50)]
    for msg in reversed(requests):
        nonce = int(msg["params"][4], 16)
        if nonce % 2:
            conn.reply(msg, None, [22, "Duplicate share", None])
        else:
            conn.reply(msg, True)
    results = await asyncio.wait_for(asyncio.gather(*futures), STEP)
    for i, res in enumerate(results):
        assert res == (SubmitResult(False, 22, "Duplicate share") if i % 2 else SubmitResult(True))
    await client.close()


async def test_request_timeout_and_late_reply(server: ScriptServer) -> None:
    client, conn = await connected(server)
    with pytest.raises(TimeoutError):
        await client.request("mining.subscribe", [UA], reply_timeout=0.1)
    late = await conn.expect("mining.subscribe")
    conn.reply(late, subscribe_result("late"))  # nobody waits for it any more: ignored
    auth = asyncio.create_task(client.authorize("acct.w1"))
    await conn.answer("mining.authorize", True)
    assert await auth is True
    assert client.session_id is None
    await client.close()


async def test_configure_and_version_mask(server: ScriptServer) -> None:
    client, conn = await connected(server)
    cfg = asyncio.create_task(client.configure(version_rolling_mask=0x1FFFE000, min_difficulty=0.5))
    msg = await conn.answer(
        "mining.configure",
        {"version-rolling": True, "version-rolling.mask": "00ffe000", "minimum-difficulty": True},
    )
    assert msg["params"] == [
        ["version-rolling", "minimum-difficulty"],
        {
            "version-rolling.mask": "1fffe000",
            "version-rolling.min-bit-count": 2,
            "minimum-difficulty.value": 0.5,
        },
    ]
    result = await cfg
    assert result["version-rolling"] is True
    assert client.version_mask == 0x00FFE000

    rec = Recorder()
    client.on_notification = rec
    conn.notify("mining.set_version_mask", ["0000e000"])
    await rec.wait_for("mining.set_version_mask")
    assert client.version_mask == 0x0000E000

    cfg = asyncio.create_task(client.configure(version_rolling_mask=0x1FFFE000))
    await conn.answer("mining.configure", {"version-rolling": False})
    assert await cfg == {"version-rolling": False}
    assert client.version_mask == 0

    cfg = asyncio.create_task(client.configure(version_rolling_mask=0x1FFFE000))
    await conn.answer("mining.configure", None, [20, "Method not found", None])
    assert await cfg == {}
    assert client.version_mask == 0
    await client.close()


async def test_extranonce_and_suggest_difficulty(server: ScriptServer) -> None:
    client, conn = await connected(server)
    ens = asyncio.create_task(client.extranonce_subscribe())
    msg = await conn.answer("mining.extranonce.subscribe", True)
    assert msg["params"] == []
    assert await ens is True

    await client.suggest_difficulty(0.001)  # does not wait for an answer
    msg = await conn.expect("mining.suggest_difficulty")
    assert msg["params"] == [0.001]
    await client.close()


# --- garbage, unknown methods, server requests ---


async def test_garbage_both_ways_and_unknown_notifications(server: ScriptServer) -> None:
    rec = Recorder()
    client, conn = await connected(server, on_notification=rec)
    await handshake(client, conn)

    await client.send_raw(b"this is not json\n")
    assert await conn.recv_line() == b"this is not json\n"
    raw = asyncio.create_task(
        client.send_raw(b'{"id": 777, "method": "mining.submit", "params": []}\n', wait_id=777)
    )
    msg = await conn.recv()
    assert msg == {"id": 777, "method": "mining.submit", "params": []}
    conn.reply(msg, None, [20, "Bad params", None])
    assert await raw == {"id": 777, "result": None, "error": [20, "Bad params", None]}

    conn.writer.write(b"}}} not json {{{\n[1, 2, 3]\n\n")
    conn.notify("mining.frobnicate", [1])
    conn.notify("mining.set_difficulty", ["not a number"])
    conn.notify("mining.notify", ["only", "three", "params"])
    conn.notify("client.show_message", ["maintenance at noon"])
    await rec.wait_for("client.show_message")
    assert list(client.messages) == ["maintenance at noon"]
    assert ("mining.frobnicate", [1]) in rec.seen
    assert client.job is None and client.pending_difficulty == 1.0

    # The server may also ask us things.
    conn.send({"id": 5, "method": "client.get_version", "params": []})
    assert await conn.recv() == {"id": 5, "result": UA, "error": None}
    conn.send({"id": 6, "method": "client.what", "params": []})
    reply = await conn.recv()
    assert reply["id"] == 6 and reply["error"][0] == 20

    # Still healthy.
    auth = asyncio.create_task(client.authorize("acct.w2"))
    await conn.answer("mining.authorize", True)
    assert await auth is True
    assert not client.closed.is_set()
    await client.close()


# --- connection loss and client.reconnect ---


async def test_connection_loss_sets_closed_and_fails_pending(server: ScriptServer) -> None:
    client, conn = await connected(server)
    await handshake(client, conn)
    pending = client.submit_nowait("acct.w1", "j1", "00000000", "504e86b9", "00000000")
    waiter = asyncio.create_task(client.wait_job())
    await conn.expect("mining.submit")
    conn.close()
    await asyncio.wait_for(client.closed.wait(), STEP)
    assert client.close_reason == "connection closed by server"
    with pytest.raises(ConnectionError):
        await pending
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(waiter, STEP)
    with pytest.raises(ConnectionError):
        await client.submit("acct.w1", "j1", "00000000", "504e86b9", "00000000")
    await client.close()
    assert client.close_reason == "connection closed by server"


async def test_close_by_client(server: ScriptServer) -> None:
    client, conn = await connected(server)
    await client.close()
    assert client.closed.is_set() and client.close_reason == "closed by client"
    assert await asyncio.wait_for(conn.reader.read(), STEP) == b""


@pytest.mark.parametrize("host", ["127.0.0.1", "", None])
async def test_client_reconnect_moves_to_other_server_and_resumes(
    server: ScriptServer, server_b: ScriptServer, host: str | None
) -> None:
    rec = Recorder()
    client, a = await connected(server, on_notification=rec)
    cfg = asyncio.create_task(client.configure(version_rolling_mask=0x1FFFE000))
    await a.answer(
        "mining.configure", {"version-rolling": True, "version-rolling.mask": "1fffe000"}
    )
    await cfg
    await handshake(client, a, session="sess-A", en1="aa0000aa")
    ens = asyncio.create_task(client.extranonce_subscribe())
    await a.answer("mining.extranonce.subscribe", True)
    await ens
    a.notify("mining.set_difficulty", [4])
    a.notify("mining.notify", notify("a1"))
    a1 = await asyncio.wait_for(client.wait_job(), STEP)
    assert a1.difficulty == 4

    # Redirect, then hang up at once as real pools do; that must not count as a loss.
    a.notify("client.reconnect", [host, server_b.port, 0])
    a.close()
    b = await server_b.accept()
    assert client.job is None  # a's jobs are void on b

    msg = await b.answer(
        "mining.configure", {"version-rolling": True, "version-rolling.mask": "1fffe000"}
    )
    assert msg["params"][0] == ["version-rolling"]
    msg = await b.answer("mining.subscribe", subscribe_result("sess-A", "aa0000aa"))
    assert msg["params"] == [UA, "sess-A"]
    await b.answer("mining.extranonce.subscribe", True)
    msg = await b.answer("mining.authorize", True)
    assert msg["params"] == ["acct.w1", "pw"]
    b.notify("mining.set_difficulty", [8])
    b.notify("mining.notify", notify("b1"))
    b1 = await asyncio.wait_for(client.wait_job(), STEP)

    assert (b1.job_id, b1.difficulty) == ("b1", 8.0)
    assert (client.port, client.session_id, client.resumed) == (server_b.port, "sess-A", True)
    assert client.reconnects == 1
    assert client.version_mask == 0x1FFFE000
    assert not client.closed.is_set()
    assert ("client.reconnect", [host, server_b.port, 0]) in rec.seen

    sub = asyncio.create_task(client.submit("acct.w1", "b1", "00000000", "504e86b9", "00000001"))
    await b.answer("mining.submit", True)
    assert (await sub).accepted
    await client.close()


async def test_client_reconnect_waits_and_failure_closes(server: ScriptServer) -> None:
    client, conn = await connected(server)
    await handshake(client, conn)
    # Nothing listens on the port of a server we just stopped.
    dead = await ScriptServer().start()
    dead_port = dead.port
    await dead.stop()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    conn.notify("client.reconnect", ["127.0.0.1", dead_port, 0.2])
    await asyncio.wait_for(client.closed.wait(), STEP)
    assert loop.time() - t0 >= 0.2
    assert client.close_reason is not None and "reconnect" in client.close_reason
    await client.close()


async def test_explicit_reconnect_after_drop_resumes(server: ScriptServer) -> None:
    client, conn = await connected(server)
    await handshake(client, conn, session="sess-Z")
    conn.close()
    await asyncio.wait_for(client.closed.wait(), STEP)

    task = asyncio.create_task(client.reconnect())
    conn2 = await server.accept()
    msg = await conn2.answer("mining.subscribe", subscribe_result("sess-new", "cc000001"))
    assert msg["params"] == [UA, "sess-Z"]
    await conn2.answer("mining.authorize", True)
    await asyncio.wait_for(task, STEP)
    assert not client.closed.is_set()
    assert (client.session_id, client.resumed) == ("sess-new", False)
    assert client.extranonce1 == bytes.fromhex("cc000001")
    await client.close()
