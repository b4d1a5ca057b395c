"""The load generator: many cheap Stratum connections in one process, driven over stdin.

Run as `python -m hashquarry.bench.loadgen`: it reads one JSON command per line on
stdin and answers each with one JSON line on stdout (logs go to stderr). The runner
starts several of these, because one process may hold fewer than 20,000 open files
and because the pool and its load must not share a core; each reports its own CPU
time so a figure can show the generator was not the bottleneck.

Two kinds of connection, both far lighter than `miner.client.StratumClient`:
- `ShareConn` (in `shareconn.py`), an asyncio Protocol that subscribes, authorizes,
  follows the jobs and submits precomputed shares (figures 1, 2, 4, 5);
- `WatchConn` (in `watch.py`), a raw socket read with recvmsg so each notify carries
  the kernel's receive timestamp (figure 3).
"""

from __future__ import annotations

import array
import asyncio
import base64
import logging
import sys
import time
from collections import Counter, deque
from typing import Any

import orjson

from hashquarry.bench.measure import raise_nofile_limit, self_cpu_seconds
from hashquarry.bench.shareconn import ShareConn, handshake
from hashquarry.bench.watch import WatchConn

log = logging.getLogger("hashquarry.bench.loadgen")

TICK = 0.004  # seconds between rate-scheduler rounds
BUCKET_NS = 100_000_000  # ack-latency timeline resolution
BURST_SECONDS = 0.05  # at most this much unsent rate is carried over (no catch-up bursts)

time_ns = time.time_ns


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
        if name == "park":
            for w in self.watch_conns:
                w.park()
            return {"parked": len(self.watch_conns)}
        if name == "unpark":
            for w in self.watch_conns:
                w.unpark()
            return {"unparked": len(self.watch_conns)}
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
