"""One load-generator miner: subscribes, authorizes, follows jobs, submits precomputed shares.

An asyncio Protocol with slots and no task of its own, so a load generator can hold
15,000 of them; it parses every line it gets (the pool only sends answers and jobs)
and keeps shares ready for the job it is working on. The rate, the counters and the
figures belong to the load generator that owns it (`loadgen.LoadGen`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson

from hashquarry.bench.shares import ShareMaker, submit_line
from hashquarry.chain.target import bits_to_target, difficulty_to_target
from hashquarry.miner.work import Job

if TYPE_CHECKING:
    from hashquarry.bench.loadgen import LoadGen

SUBSCRIBE_ID = 1
AUTHORIZE_ID = 2
FIRST_SHARE_ID = 100
# Above this a share costs > 4M hashes: the generator could not keep up, so it says so.
MAX_DIFFICULTY = 1e-3
USER_AGENT = "hashquarry-bench/0.1"
time_ns = time.time_ns


def handshake(worker: str, password: str) -> bytes:
    """subscribe and authorize in one write: one round trip instead of two."""
    return b"".join(
        orjson.dumps(m) + b"\n"
        for m in (
            {"id": SUBSCRIBE_ID, "method": "mining.subscribe", "params": [USER_AGENT]},
            {"id": AUTHORIZE_ID, "method": "mining.authorize", "params": [worker, password]},
        )
    )


def error_code(error: Any) -> int | None:
    if isinstance(error, list) and error and isinstance(error[0], int):
        return error[0]
    if isinstance(error, dict) and isinstance(error.get("code"), int):
        return int(error["code"])
    return None


class ShareConn(asyncio.Protocol):
    """One miner that submits shares made in advance for the job it was sent."""

    __slots__ = (
        "authorized", "buf", "closed", "difficulty", "extranonce1", "extranonce2_size", "full",
        "gen", "job", "latest", "maker", "next_extranonce1", "next_id", "password", "pending",
        "queue", "transport", "waiters", "worker",
    )  # fmt: skip

    def __init__(self, gen: LoadGen, worker: str, password: str) -> None:
        self.gen = gen
        self.worker = worker
        self.password = password
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.extranonce1 = b""
        self.next_extranonce1: bytes | None = None
        self.extranonce2_size = 0
        self.difficulty = 1.0
        self.authorized = False
        self.closed = False
        self.job: Job | None = None  # the job the queued shares belong to
        self.latest: Job | None = None
        self.maker: ShareMaker | None = None
        self.queue: deque[tuple[int, bytes]] = deque()
        self.pending: dict[int, int] = {}  # share id -> time_ns it was written
        self.waiters: dict[int, asyncio.Future[tuple[int, dict[str, Any]]]] = {}
        self.next_id = FIRST_SHARE_ID
        self.full = False  # at max_inflight: out of the rate run's round robin until an ack

    @property
    def ready(self) -> bool:
        return self.authorized and self.job is not None and not self.closed

    # -- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.gen.share_conns.append(self)
        with contextlib.suppress(OSError):
            transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(handshake(self.worker, self.password))  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.gen.lost += 1

    def data_received(self, data: bytes) -> None:
        now = time_ns()
        buf = self.buf + data if self.buf else data
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            if end > start:
                self._line(buf[start:end], now)
            start = end + 1
        self.buf = buf[start:]

    # -- messages ------------------------------------------------------------------

    def _line(self, line: bytes, now: int) -> None:
        try:
            msg = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.gen.errors["unparsable line from the pool"] += 1
            return
        if not isinstance(msg, dict):
            return
        method = msg.get("method")
        if method is None:
            self._reply(msg, now)
            return
        params = msg.get("params") or []
        if method == "mining.notify":
            self._notify(params, now)
        elif method == "mining.set_difficulty":
            if params and isinstance(params[0], int | float) and params[0] > 0:
                self.difficulty = float(params[0])
        elif method == "mining.set_extranonce" and params and isinstance(params[0], str):
            self.next_extranonce1 = bytes.fromhex(params[0])
            if len(params) > 1 and isinstance(params[1], int):
                self.extranonce2_size = params[1]

    def _reply(self, msg: dict[str, Any], now: int) -> None:
        msg_id = msg.get("id")
        sent = self.pending.pop(msg_id, None)  # type: ignore[arg-type]
        if sent is not None:
            ok = msg.get("result") is True and msg.get("error") is None
            self.gen.on_ack(self, sent, now, ok, None if ok else error_code(msg.get("error")))
            return
        waiter = self.waiters.pop(msg_id, None)  # type: ignore[arg-type]
        if waiter is not None:
            if not waiter.done():
                waiter.set_result((now, msg))
            return
        if msg_id == SUBSCRIBE_ID:
            result = msg.get("result")
            if isinstance(result, list) and len(result) >= 3 and isinstance(result[1], str):
                self.extranonce1 = bytes.fromhex(result[1])
                self.extranonce2_size = int(result[2])
            else:
                self._fail(f"subscribe refused: {msg.get('error')}")
        elif msg_id == AUTHORIZE_ID:
            if msg.get("result") is True:
                self.authorized = True
            else:
                self._fail(f"authorize refused: {msg.get('error')}")

    def _notify(self, params: list[Any], now: int) -> None:
        try:
            job = Job.from_notify(params)
        except ValueError as exc:
            self.gen.errors[f"bad notify: {exc}"] += 1
            return
        switched = False
        if self.next_extranonce1 is not None:
            self.extranonce1, self.next_extranonce1 = self.next_extranonce1, None
            switched = True
        # set_difficulty and set_extranonce apply from this notify on, so the job carries them.
        job = replace(
            job,
            difficulty=self.difficulty,
            extranonce1=self.extranonce1,
            extranonce2_size=self.extranonce2_size,
            received_at=now / 1e9,
        )
        self.latest = job
        # A non-clean job leaves the queued shares valid (Stratum's rule); keep using them.
        if self.job is None or job.clean or switched:
            self.use(job)

    def _fail(self, why: str) -> None:
        self.gen.errors[why[:200]] += 1
        self.close()

    # -- shares --------------------------------------------------------------------

    def use(self, job: Job) -> None:
        self.job = job
        self.maker = None
        self.queue.clear()

    def _maker(self) -> ShareMaker:
        if self.maker is None:
            job = self.job
            assert job is not None
            if job.difficulty > MAX_DIFFICULTY:
                raise ValueError(
                    f"the pool set difficulty {job.difficulty:g}; a share would cost "
                    f"~{job.difficulty * 2**32:.3g} hashes, too many to precompute"
                )
            self.maker = ShareMaker(job, self.extranonce1, difficulty_to_target(job.difficulty))
        return self.maker

    def fill(self, count: int) -> int:
        """Queue shares until `count` are waiting; returns hashes spent."""
        need = count - len(self.queue)
        if need <= 0 or self.job is None:
            return 0
        maker = self._maker()
        before = maker.hashes
        for share in maker.make(need):
            self.queue.append((self.next_id, submit_line(self.next_id, self.worker, share)))
            self.next_id += 1
        return maker.hashes - before

    def send_share(self) -> None:
        if not self.queue:
            self.fill(1)
            self.gen.on_demand += 1
        msg_id, line = self.queue.popleft()
        self.pending[msg_id] = time_ns()
        assert self.transport is not None
        self.transport.write(line)

    async def send_block_share(self, timeout: float) -> dict[str, Any]:
        """One share that also meets the network target of the current job, timed."""
        job = self.job
        assert job is not None and self.transport is not None
        (share,) = self._maker().make(1, target=bits_to_target(job.nbits_int))
        msg_id = self.next_id
        self.next_id += 1
        waiter: asyncio.Future[tuple[int, dict[str, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        self.waiters[msg_id] = waiter
        line = submit_line(msg_id, self.worker, share)
        sent = time_ns()
        self.transport.write(line)
        out: dict[str, Any] = {"sent_ns": sent, "block_hash": share.block_hash_hex}
        try:
            ack_ns, msg = await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            out["error"] = "no answer to the block share"
            return out
        out.update(ack_ns=ack_ns, accepted=msg.get("result") is True, answer=msg.get("error"))
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
