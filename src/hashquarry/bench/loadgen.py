"""The load generator: many cheap Stratum connections in one process, driven over stdin.

Run as `python -m hashquarry.bench.loadgen`: it reads one JSON command per line on
stdin and answers each with one JSON line on stdout (logs go to stderr). The runner
starts several of these, because one process may hold fewer than 20,000 open files
and because the pool and its load must not share a core; each reports its own CPU
time so a figure can show the generator was not the bottleneck.

Two kinds of connection, both far lighter than `miner.client.StratumClient`:
- `ShareConn`, an asyncio Protocol that subscribes, authorizes, follows the jobs and
  submits precomputed shares (figures 1, 2, 4, 5);
- `WatchConn` (in `watch.py`), a raw socket read with recvmsg so each notify carries
  the kernel's receive timestamp (figure 3).
"""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import logging
import socket
import sys
import time
from collections import Counter, deque
from dataclasses import replace
from typing import Any

import orjson

from hashquarry.bench.measure import raise_nofile_limit, self_cpu_seconds
from hashquarry.bench.shares import ShareMaker, submit_line
from hashquarry.bench.watch import WatchConn
from hashquarry.chain.target import bits_to_target, difficulty_to_target
from hashquarry.miner.work import Job

log = logging.getLogger("hashquarry.bench.loadgen")

SUBSCRIBE_ID = 1
AUTHORIZE_ID = 2
FIRST_SHARE_ID = 100
# Above this a share costs > 4M hashes: the generator could not keep up, so it says so.
MAX_DIFFICULTY = 1e-3
USER_AGENT = "hashquarry-bench/0.1"
TICK = 0.004  # seconds between rate-scheduler rounds
BUCKET_NS = 100_000_000  # ack-latency timeline resolution
BURST_SECONDS = 0.05  # at most this much unsent rate is carried over (no catch-up bursts)

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


class RateRun:
    """Counters of one rate command; the window is where the figures are taken."""

    def __init__(self, window_start: int, window_end: int, max_inflight: int) -> None:
        self.w0 = window_start
        self.w1 = window_end
        self.max_inflight = max_inflight
        self.room: deque[ShareConn] = deque()  # connections that may send another share
        # Worst ack latency per 100 ms of send time: periodic stalls (a flush every
        # second, a sweep) show up here and nowhere in a percentile.
        self.timeline_max = array.array(
            "q", bytes(8 * (((window_end - window_start) // BUCKET_NS) + 1))
        )
        self.sent = 0
        self.sent_window = 0
        self.acks = 0
        self.accepted = 0
        self.accepted_window = 0
        self.rejected: Counter[str] = Counter()
        self.latency_ns = array.array("q")
        self.held_back = 0.0  # rate not sent because every connection had max_inflight


class LoadGen:
    def __init__(self) -> None:
        self.share_conns: list[ShareConn] = []
        self.watch_conns: list[WatchConn] = []
        self.errors: Counter[str] = Counter()
        self.lost = 0
        self.on_demand = 0
        self.run: RateRun | None = None

    def on_ack(self, conn: ShareConn, sent: int, now: int, ok: bool, code: int | None) -> None:
        run = self.run
        if run is None:
            return
        run.acks += 1
        if conn.full and len(conn.pending) < run.max_inflight:
            conn.full = False
            run.room.append(conn)
        if ok:
            run.accepted += 1
            if run.w0 <= now < run.w1:
                run.accepted_window += 1
        else:
            run.rejected[str(code)] += 1
            # Stale (21): the pool dropped the job; move to its newest one.
            if code == 21 and conn.latest is not None and conn.latest is not conn.job:
                conn.use(conn.latest)
        if run.w0 <= sent < run.w1:
            latency = now - sent
            run.latency_ns.append(latency)
            bucket = (sent - run.w0) // BUCKET_NS
            if latency > run.timeline_max[bucket]:
                run.timeline_max[bucket] = latency

    # -- commands ------------------------------------------------------------------

    async def connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        kind, host, port = cmd["kind"], cmd["host"], int(cmd["port"])
        count, first = int(cmd["count"]), int(cmd.get("first", 0))
        sources: list[str] = cmd.get("sources") or ["127.0.0.1"]
        user, password = cmd.get("user", "bench"), cmd.get("password", "x")
        sem = asyncio.Semaphore(int(cmd.get("concurrency", 256)))
        failed = 0
        started = time.monotonic()
        existing = len(self.share_conns) if kind == "share" else len(self.watch_conns)

        async def one(i: int) -> None:
            nonlocal failed
            n = first + i
            src = sources[n % len(sources)]
            worker = f"{user}.w{n}"
            async with sem:
                try:
                    if kind == "share":
                        await loop.create_connection(
                            lambda: ShareConn(self, worker, password), host, port,
                            local_addr=(src, 0),
                        )  # fmt: skip
                    else:
                        watch = WatchConn(handshake(worker, password))
                        await watch.open(loop, host, port, src)
                        self.watch_conns.append(watch)
                except OSError as exc:
                    failed += 1
                    self.errors[f"connect: {exc.strerror or exc}"] += 1

        await asyncio.gather(*(one(i) for i in range(count)))
        conns: list[Any] = (self.share_conns if kind == "share" else self.watch_conns)[existing:]
        deadline = time.monotonic() + float(cmd.get("timeout", 60))
        while time.monotonic() < deadline:
            ready = sum(1 for c in conns if c.ready)
            if ready + failed + sum(1 for c in conns if c.closed) >= count:
                break
            await asyncio.sleep(0.1)
        ready_conns = [c for c in conns if c.ready]
        out: dict[str, Any] = {
            "opened": len(conns), "ready": len(ready_conns), "failed": failed,
            "seconds": time.monotonic() - started, "errors": dict(self.errors),
        }  # fmt: skip
        if kind == "share" and ready_conns:
            job = ready_conns[0].job
            assert job is not None
            out.update(
                branch_length=len(job.merkle_branch),
                difficulty=job.difficulty,
                extranonce2_size=job.extranonce2_size,
            )
        return out

    async def prepare(self, cmd: dict[str, Any]) -> dict[str, Any]:
        per_conn = int(cmd["shares"])
        started, cpu0 = time.monotonic(), self_cpu_seconds()
        hashes = shares = 0
        for i, conn in enumerate(c for c in self.share_conns if c.ready):
            try:
                hashes += conn.fill(per_conn)
            except ValueError as exc:
                return {"error": str(exc)}
            shares += len(conn.queue)
            if i % 64 == 0:
                await asyncio.sleep(0)  # keep reading the sockets meanwhile
        return {
            "shares": shares, "hashes": hashes, "seconds": time.monotonic() - started,
            "cpu_seconds": self_cpu_seconds() - cpu0,
        }  # fmt: skip

    async def rate(self, cmd: dict[str, Any]) -> dict[str, Any]:
        rate = float(cmd["rate"])
        start = int(cmd["start_ns"])
        w0 = start + int(float(cmd["warmup"]) * 1e9)
        w1 = w0 + int(float(cmd["seconds"]) * 1e9)
        end = w1 + int(float(cmd.get("tail", 0.3)) * 1e9)
        max_inflight = int(cmd.get("max_inflight", 32))
        conns = [c for c in self.share_conns if c.ready]
        if not conns:
            return {"error": "no ready connections"}
        run = self.run = RateRun(w0, w1, max_inflight)
        for c in conns:
            c.full = False
        run.room.extend(conns)
        self.on_demand = 0
        await asyncio.sleep(max(0.0, (start - time_ns()) / 1e9))
        cpu_at: dict[str, float] = {"start": self_cpu_seconds()}
        credit = 0.0
        last = time_ns()
        burst = rate * BURST_SECONDS + 1
        while (now := time_ns()) < end:
            if "w0" not in cpu_at and now >= w0:
                cpu_at["w0"] = self_cpu_seconds()
            if "w1" not in cpu_at and now >= w1:
                cpu_at["w1"] = self_cpu_seconds()
            credit += rate * (now - last) / 1e9
            last = now
            if credit > burst:
                run.held_back += credit - burst
                credit = burst
            # Round robin over the connections with room for another share: one share
            # each per turn keeps the load even, and a saturated pool (every connection
            # at max_inflight) costs nothing to skip. on_ack puts a full one back.
            room = run.room
            while credit >= 1 and room:
                conn = room.popleft()
                if conn.closed:
                    continue
                conn.send_share()
                credit -= 1
                run.sent += 1
                if w0 <= now < w1:
                    run.sent_window += 1
                if len(conn.pending) < max_inflight:
                    room.append(conn)
                else:
                    conn.full = True
            await asyncio.sleep(TICK)
        cpu_at.setdefault("w0", cpu_at["start"])
        cpu_at.setdefault("w1", self_cpu_seconds())
        # Let the answers to the last shares come in.
        for _ in range(int(float(cmd.get("drain", 3.0)) / 0.02)):
            if not any(c.pending for c in conns):
                break
            await asyncio.sleep(0.02)
        self.run = None
        return {
            "connections": len(conns), "sent": run.sent, "sent_window": run.sent_window,
            "acks": run.acks, "accepted": run.accepted, "accepted_window": run.accepted_window,
            "rejected": dict(run.rejected), "held_back": run.held_back,
            "unanswered": sum(len(c.pending) for c in conns), "on_demand": self.on_demand,
            "latency_ns": base64.b64encode(run.latency_ns.tobytes()).decode(),
            "timeline_max_ms": [round(v / 1e6, 2) for v in run.timeline_max],
            "cpu_window_seconds": cpu_at["w1"] - cpu_at["w0"],
            "cpu_total_seconds": self_cpu_seconds() - cpu_at["start"],
            "errors": dict(self.errors), "lost": self.lost,
        }  # fmt: skip

    async def block_share(self, cmd: dict[str, Any]) -> dict[str, Any]:
        timeout = float(cmd.get("timeout", 10))
        want = cmd.get("prevhash")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for conn in self.share_conns:
                job = conn.job
                if conn.ready and job is not None and (want is None or job.prevhash == want):
                    return await conn.send_block_share(timeout)
            await asyncio.sleep(0.005)
        return {"error": f"no connection got a job on prevhash {want} within {timeout:g} s"}

    def notify_times(self, cmd: dict[str, Any]) -> dict[str, Any]:
        prevhash: str = cmd["prevhash"]
        if cmd.get("count_only"):
            # A cheap poll while waiting: substring test, no JSON parsing.
            key = prevhash.encode()
            got = sum(1 for c in self.watch_conns if any(key in n[2] for n in c.notices))
            return {"count": len(self.watch_conns), "received": got}
        kernel: list[int] = []
        user: list[int] = []
        unstamped = 0
        for conn in self.watch_conns:
            hit = conn.clean_notify_for(prevhash)
            if hit is not None:
                unstamped += hit[0] == 0
                kernel.append(hit[0] or hit[1])
                user.append(hit[1])
            if cmd.get("forget", False):
                conn.notices.clear()
        return {"count": len(self.watch_conns), "received": len(kernel), "kernel_ns": kernel,
                "user_ns": user, "unstamped": unstamped}  # fmt: skip

    def status(self) -> dict[str, Any]:
        return {
            "share_open": sum(1 for c in self.share_conns if not c.closed),
            "share_ready": sum(1 for c in self.share_conns if c.ready),
            "watch_open": sum(1 for c in self.watch_conns if not c.closed),
            "watch_ready": sum(1 for c in self.watch_conns if c.ready),
            "lost": self.lost + sum(1 for c in self.watch_conns if c.lost),
            "errors": dict(self.errors), "cpu_seconds": self_cpu_seconds(),
        }  # fmt: skip

    def close(self) -> dict[str, Any]:
        n = 0
        for c in self.share_conns:
            if not c.closed:
                c.close()
                n += 1
        for w in self.watch_conns:
            if not w.closed:
                w.close()
                n += 1
        self.share_conns.clear()
        self.watch_conns.clear()
        self.errors.clear()
        self.lost = 0
        return {"closed": n}

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        name = cmd.get("cmd")
        if name == "connect":
            return await self.connect(cmd)
        if name == "prepare":
            return await self.prepare(cmd)
        if name == "rate":
            return await self.rate(cmd)
        if name == "block_share":
            return await self.block_share(cmd)
        if name == "notify_times":
            return self.notify_times(cmd)
        if name == "status":
            return self.status()
        if name == "close":
            return self.close()
        return {"error": f"unknown command {name!r}"}


async def serve_commands() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    gen = LoadGen()
    while line := await reader.readline():
        try:
            cmd = orjson.loads(line)
            if cmd.get("cmd") == "exit":
                break
            reply = await gen.handle(cmd)
        except Exception as exc:  # the runner must get an answer, not a hang
            log.exception("command failed")
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(orjson.dumps(reply) + b"\n")
        out.flush()
    gen.close()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s loadgen: %(message)s"
    )
    raise_nofile_limit()
    try:
        import uvloop

        uvloop.run(serve_commands())
    except ImportError:
        asyncio.run(serve_commands())


if __name__ == "__main__":
    main()
