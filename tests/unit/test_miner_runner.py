"""run_miner against a small in-test pool that checks every share independently."""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from hashquarry.chain.hashing import sha256d
from hashquarry.chain.target import DIFF1_TARGET
from hashquarry.miner import MinerOptions, MinerStats, run_miner
from hashquarry.miner.runner import parse_url

DIFF = 2.0**-18  # ~16k hashes a share: dozens of shares a second in pure Python
POOL_MASK = 0x1FFFE000


@dataclass
class PoolJob:
    job_id: str
    prev: bytes  # internal order
    coinb1: bytes
    coinb2: bytes
    branch: list[bytes]
    version: int
    nbits: int
    ntime: int

    def notify(self, clean: bool) -> list[Any]:
        prev_notify = b"".join(self.prev[i : i + 4][::-1] for i in range(0, 32, 4)).hex()
        return [
            self.job_id,
            prev_notify,
            self.coinb1.hex(),
            self.coinb2.hex(),
            [h.hex() for h in self.branch],
            f"{self.version:08x}",
            f"{self.nbits:08x}",
            f"{self.ntime:08x}",
            clean,
        ]


@dataclass
class Session:
    session_id: str
    en1: bytes
    mask: int = 0
    user: str | None = None
    resumed_from: str | None = None


@dataclass
class FakePool:
    difficulty: float = DIFF
    drop_after_accepts: int | None = None  # hang up once, after this many accepted shares
    redirect_port: int | None = None  # with drop_after_accepts: send client.reconnect first
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: Counter[int] = field(default_factory=Counter)
    sessions: list[Session] = field(default_factory=list)
    jobs: dict[str, PoolJob] = field(default_factory=dict)
    current: str = ""
    seen: set[tuple[Any, ...]] = field(default_factory=set)
    submit_log: list[str] = field(default_factory=list)  # job id of every submit, in order
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    port: int = 0
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _dropped: bool = False

    def new_job(self) -> PoolJob:
        job = PoolJob(
            job_id=f"{next(self._ids):x}",
            prev=os.urandom(32),
            coinb1=bytes.fromhex("01000000010000") + os.urandom(8),
            coinb2=os.urandom(6) + bytes.fromhex("ffffffff"),
            branch=[os.urandom(32), os.urandom(32)],
            version=0x20000000,
            nbits=0x207FFFFF,
            ntime=int(time.time()),
        )
        self.jobs[job.job_id] = job
        self.current = job.job_id
        return job

    def broadcast(self, clean: bool) -> None:
        job = self.new_job()
        for w in self.writers:
            if not w.is_closing():
                send(w, {"id": None, "method": "mining.notify", "params": job.notify(clean)})

    def check_share(self, sess: Session, params: list[Any]) -> tuple[bool, int | None]:
        worker, job_id, en2_hex, ntime_hex, nonce_hex = params[:5]
        self.submit_log.append(job_id)
        if worker != sess.user:
            return False, 24
        job = self.jobs.get(job_id)
        if job is None or job_id != self.current:
            return False, 21
        en2 = bytes.fromhex(en2_hex)
        ntime, nonce = int(ntime_hex, 16), int(nonce_hex, 16)
        if len(en2) != 4 or len(ntime_hex) != 8 or len(nonce_hex) != 8:
            return False, 20
        if not job.ntime <= ntime <= job.ntime + 600:
            return False, 20
        version = job.version
        if len(params) > 5:
            bits = int(params[5], 16)
            if bits & ~sess.mask:
                return False, 20
            version = (job.version & ~sess.mask) | bits
        key = (job_id, sess.en1, en2, ntime, nonce, version)
        if key in self.seen:
            return False, 22
        root = sha256d(job.coinb1 + sess.en1 + en2 + job.coinb2)
        for h in job.branch:
            root = sha256d(root + h)
        header = (
            struct.pack("<I", version)
            + job.prev
            + root
            + struct.pack("<III", ntime, job.nbits, nonce)
        )
        if int.from_bytes(sha256d(header), "little") > DIFF1_TARGET / self.difficulty:
            return False, 23
        self.seen.add(key)
        self.accepted.append({"job": job_id, "en2": en2, "version": version, "session": sess})
        return True, None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        n = len(self.sessions) + 1
        sess = Session(f"s{n}", n.to_bytes(4, "big"))
        self.sessions.append(sess)
        while line := await reader.readline():
            msg = orjson.loads(line)
            method, params, rid = msg["method"], msg["params"], msg["id"]
            result: Any = True
            error: Any = None
            if method == "mining.configure":
                sess.mask = int(params[1]["version-rolling.mask"], 16) & POOL_MASK
                result = {"version-rolling": True, "version-rolling.mask": f"{sess.mask:08x}"}
            elif method == "mining.subscribe":
                if len(params) > 1:
                    sess.resumed_from = params[1]
                result = [[["mining.notify", sess.session_id]], sess.en1.hex(), 4]
            elif method == "mining.authorize":
                sess.user = params[0]
            elif method == "mining.submit":
                ok, code = self.check_share(sess, params)
                result = ok
                if not ok:
                    self.rejected[code or 0] += 1
                    result, error = None, [code, f"rejected {code}", None]
            send(writer, {"id": rid, "result": result, "error": error})
            if method == "mining.authorize":
                job = self.jobs.get(self.current) or self.new_job()
                send(writer, {"id": None, "method": "mining.set_difficulty", "params": [DIFF]})
                send(writer, {"id": None, "method": "mining.notify", "params": job.notify(True)})
            if (
                self.drop_after_accepts is not None
                and not self._dropped
                and len(self.accepted) >= self.drop_after_accepts
            ):
                self._dropped = True
                if self.redirect_port is not None:
                    params = ["", self.redirect_port, 0]
                    send(writer, {"id": None, "method": "client.reconnect", "params": params})
                break
        writer.close()


def send(writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
    writer.write(orjson.dumps(msg) + b"\n")


async def start(pool: FakePool) -> asyncio.Server:
    server = await asyncio.start_server(pool.handle, "127.0.0.1", 0)
    pool.port = server.sockets[0].getsockname()[1]
    return server


@pytest.fixture
async def pool() -> AsyncIterator[FakePool]:
    p = FakePool()
    server = await start(p)
    yield p
    for w in p.writers:
        w.close()
    server.close()
    await server.wait_closed()


def opts(pool: FakePool, **kw: Any) -> MinerOptions:
    base: dict[str, Any] = {
        "url": f"stratum+tcp://127.0.0.1:{pool.port}",
        "users": ["acct.w1"],
        "seconds": 1.5,
    }
    base.update(kw)
    return MinerOptions(**base)


async def test_mines_valid_shares_on_two_connections_with_version_rolling(
    pool: FakePool,
) -> None:
    snapshots: list[MinerStats] = []
    result = await run_miner(
        opts(pool, users=["acct.w1", "acct.w2"], version_rolling=True, stats_interval=0.3),
        on_stats=snapshots.append,
    )
    assert result["shares_accepted"] > 10
    assert result["shares_rejected"] == 0 and not pool.rejected
    assert result["shares_accepted"] == len(pool.accepted) == result["shares_submitted"]
    assert result["accepted_difficulty"] == pytest.approx(len(pool.accepted) * DIFF)
    assert result["hashrate"] > 10_000
    assert result["elapsed"] == pytest.approx(1.5, abs=0.3)
    assert set(result["workers"]) == {"acct.w1", "acct.w2"}
    assert all(w["shares_accepted"] > 0 for w in result["workers"].values())
    assert {s["session"].user for s in pool.accepted} == {"acct.w1", "acct.w2"}
    # Rolled versions stay inside the granted mask and actually vary.
    assert len({s["version"] for s in pool.accepted}) > 1
    assert all(s["version"] & ~POOL_MASK == 0x20000000 for s in pool.accepted)
    assert len(snapshots) >= 3 and snapshots[-1].hashes == result["hashes"]


async def test_switches_to_clean_job_and_counts_stale_rejects(pool: FakePool) -> None:
    async def refresh() -> None:
        await asyncio.sleep(0.5)
        pool.broadcast(clean=True)

    task = asyncio.create_task(refresh())
    result = await run_miner(opts(pool, seconds=1.2))
    await task
    jobs = Counter(s["job"] for s in pool.accepted)
    assert len(jobs) == 2 and all(jobs.values())
    # Stale shares are those already in flight when the notify went out (how many depends
    # on scheduling); once the miner has moved on it never goes back to the old job.
    first, second = list(jobs)
    switch = pool.submit_log.index(second)
    assert first not in pool.submit_log[switch:]
    assert result["rejected_by_code"].get(21, 0) == pool.rejected[21]
    assert result["shares_rejected"] == pool.rejected.total()
    assert result["shares_accepted"] == len(pool.accepted)


async def test_reconnects_after_drop_and_resumes_session(pool: FakePool) -> None:
    pool.drop_after_accepts = 3
    result = await run_miner(opts(pool, seconds=2.0))
    assert len(pool.sessions) == 2
    assert pool.sessions[1].resumed_from == "s1"
    assert any(s["session"] is pool.sessions[1] for s in pool.accepted)
    assert result["workers"]["acct.w1"]["connects"] == 2
    assert result["shares_rejected"] == 0


async def test_follows_client_reconnect_to_another_pool(pool: FakePool) -> None:
    other = FakePool()
    server = await start(other)
    pool.drop_after_accepts = 2
    pool.redirect_port = other.port
    try:
        result = await run_miner(opts(pool, seconds=1.5, version_rolling=True))
    finally:
        server.close()
        await server.wait_closed()
    assert len(pool.sessions) == 1 and len(other.sessions) == 1
    assert other.sessions[0].resumed_from == "s1" and other.sessions[0].mask == POOL_MASK
    assert len(other.accepted) > 0
    assert result["shares_accepted"] == len(pool.accepted) + len(other.accepted)
    assert result["workers"]["acct.w1"]["connects"] == 1  # the client moved by itself


async def test_walks_extranonce2_when_nonce_span_is_small(pool: FakePool) -> None:
    result = await run_miner(opts(pool, seconds=1.0, nonce_span=4000, chunk_size=1000))
    assert len({s["en2"] for s in pool.accepted}) > 3
    assert result["shares_rejected"] == 0


async def test_stop_event_ends_the_run(pool: FakePool) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    t0 = time.monotonic()
    result = await run_miner(opts(pool, seconds=None), stop=stop)
    assert time.monotonic() - t0 < 2.0
    assert result["hashes"] > 0


async def test_keeps_retrying_while_pool_is_down() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    result = await run_miner(MinerOptions(f"stratum+tcp://127.0.0.1:{port}", ["a.b"], seconds=1.0))
    assert result["shares_submitted"] == 0 and result["hashrate"] == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("stratum+tcp://127.0.0.1:3333", ("127.0.0.1", 3333)),
        ("stratum+tcp://pool.example:1", ("pool.example", 1)),
        ("localhost:4444", ("localhost", 4444)),
        ("stratum+tcp://[::1]:3333", ("::1", 3333)),
    ],
)
def test_parse_url(url: str, expected: tuple[str, int]) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["http://h:1", "stratum+tcp://h", "stratum+tcp://:3333", "h:x"])
def test_parse_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)
