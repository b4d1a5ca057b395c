"""The asyncio shell around Session: sockets, line framing, limits, timers, broadcast.

An asyncio.Protocol per connection (no task, no stream objects) keeps an
idle miner cheap; uvloop is used when installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

import orjson

from hashquarry import metrics
from hashquarry.shares.events import ErrorCode, ShareEvent
from hashquarry.shares.validate import Verdict
from hashquarry.stratum.defences import BanRules, Defences
from hashquarry.stratum.fanout import Fanout, FanoutBatch
from hashquarry.stratum.jobs import Job
from hashquarry.stratum.session import Outcome, PoolContext, Session, _error

log = logging.getLogger(__name__)

# A sink may return a future: the miner's reply then waits until it resolves
# (the share is durable), keeping each connection's replies in order.
ShareSink = Callable[[ShareEvent], "asyncio.Future[int] | None"]
# The finder is the share's own account and worker (a connection may carry several).
BlockSink = Callable[[Job, Verdict, ShareEvent], None]


def _request_id(line: bytes) -> object:
    """The id of a request a session failed on, so the miner can match the error."""
    try:
        msg = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    msg_id = msg.get("id") if isinstance(msg, dict) else None
    return msg_id if isinstance(msg_id, int | str) else None


class ServerLimits:
    __slots__ = ("auth_timeout", "flood_per_second", "idle_timeout", "max_buffer", "max_line")

    def __init__(
        self,
        *,
        max_line: int = 16 * 1024,
        max_buffer: int = 64 * 1024,
        idle_timeout: float = 600.0,
        auth_timeout: float = 30.0,
        flood_per_second: int = 500,
    ) -> None:
        self.max_line = max_line
        self.max_buffer = max_buffer
        self.idle_timeout = idle_timeout
        self.auth_timeout = auth_timeout
        self.flood_per_second = flood_per_second


class MinerConnection(asyncio.Protocol):
    __slots__ = (
        "_start_difficulty",
        "buf",
        "closing",
        "fd",
        "ip",
        "rate_count",
        "rate_second",
        "server",
        "session",
        "transport",
        "waiting",
    )

    def __init__(self, server: StratumServer, start_difficulty: float) -> None:
        self.server = server
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.ip = ""
        self.closing = False
        self.fd = -1
        self.rate_second = 0
        self.rate_count = 0
        self._start_difficulty = start_difficulty
        self.waiting: deque[tuple[asyncio.Future[int] | None, list[bytes]]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.ip = peer[0] if peer else "?"
        now = time.time()
        refusal = self.server.defences.admit(self.ip, now)
        if refusal is not None:
            metrics.REFUSED.labels("banned" if "banned" in refusal else "per_ip_cap").inc()
            self.closing = True
            transport.write(_error(None, ErrorCode.OTHER, f"connection refused: {refusal}"))  # type: ignore[attr-defined]
            transport.close()
            return
        # A miner that stops reading must not make us buffer without limit.
        transport.set_write_buffer_limits(high=self.server.limits.max_buffer)  # type: ignore[attr-defined]
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1
        self.session = Session(self.server.ctx, self.ip, self._start_difficulty, now)
        self.server.connections.add(self)
        metrics.CONNECTIONS.inc()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is None:
            return
        self.server.forget(self)

    def pause_writing(self) -> None:
        self.drop("miner is not reading its socket")

    def data_received(self, data: bytes) -> None:
        if self.closing or self.session is None:
            return
        buf = self.buf + data if self.buf else data
        limits = self.server.limits
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = buf[start:end]
            start = end + 1
            if len(line) > limits.max_line:
                self._oversize()
                return
            if line.strip():
                self._line(line)
                if self.closing:
                    return
        rest = buf[start:]
        if len(rest) > limits.max_line:
            self._oversize()
            return
        self.buf = rest

    def _oversize(self) -> None:
        self.send(
            _error(None, ErrorCode.OTHER, f"line longer than {self.server.limits.max_line} bytes")
        )
        self.server.judge(self, bad=True)
        self.drop("oversize line")

    def _line(self, line: bytes) -> None:
        server = self.server
        now = time.time()
        second = int(now)
        if second != self.rate_second:
            self.rate_second = second
            self.rate_count = 0
        self.rate_count += 1
        if self.rate_count > server.limits.flood_per_second:
            self.send(_error(None, ErrorCode.OTHER, "too many messages per second"))
            server.defences.ban(self.ip, now)
            metrics.BANS.inc()
            server.drop_ip(self.ip, "flooding")
            return
        assert self.session is not None
        try:
            outcome = self.session.handle_line(line, now)
        except Exception:  # one broken session must never take the server down
            log.exception("session %s from %s failed on a line", self.session.session_id, self.ip)
            self.send(_error(_request_id(line), ErrorCode.OTHER, "internal error"))
            return
        server.apply(self, outcome, now)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.closing:
            self.transport.write(data)

    def send_ordered(self, datas: list[bytes]) -> None:
        """Replies go out in request order, behind any that wait for the share log."""
        if self.waiting:
            self.waiting.append((None, datas))
            return
        if datas:
            self.send(datas[0] if len(datas) == 1 else b"".join(datas))

    def defer(self, fut: asyncio.Future[int], datas: list[bytes]) -> None:
        if self.waiting is None:
            self.waiting = deque()
        waiting = self.waiting
        if waiting and waiting[-1][0] is fut:
            waiting[-1][1].extend(datas)  # same group commit: one entry, one release
            return
        waiting.append((fut, list(datas)))
        self.server.wait_on(fut, self)

    def _release(self, _fut: object) -> None:
        waiting = self.waiting
        # Everything released now goes out in one write: one syscall for all the acks of
        # a group commit on this connection, not one per share.
        out: list[bytes] = []
        while waiting:
            fut, datas = waiting[0]
            if fut is not None:
                if not fut.done():
                    break
                if fut.cancelled() or fut.exception() is not None:
                    # Not durable, so never acknowledged: the miner must not count it.
                    # What was durable before it is still answered, in order.
                    waiting.clear()
                    if out:
                        self.send(b"".join(out))
                    self.drop("share could not be recorded")
                    return
            waiting.popleft()
            out.extend(datas)
        if out:
            self.send(out[0] if len(out) == 1 else b"".join(out))

    def drop(self, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        log.info(
            "closing %s (%s): %s", self.ip, self.session.session_id if self.session else "-", reason
        )
        if self.transport is not None:
            self.transport.close()


class StratumServer:
    def __init__(
        self,
        ctx: PoolContext,
        *,
        limits: ServerLimits,
        ban_rules: BanRules,
        on_share: ShareSink,
        on_block: BlockSink,
        send_threads: int = 0,
    ) -> None:
        self.ctx = ctx
        self.fanout = Fanout(send_threads)
        self.limits = limits
        self.defences = Defences(ban_rules)
        self.on_share = on_share
        self.on_block = on_block
        self.connections: set[MinerConnection] = set()
        self._waiters: dict[asyncio.Future[int], list[MinerConnection]] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None

    async def listen(
        self, host: str, port: int, difficulty: float, reuse_port: bool = False
    ) -> int:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(
            lambda: MinerConnection(self, difficulty),
            host,
            port,
            reuse_port=reuse_port or None,
            backlog=4096,
        )
        self._servers.append(srv)
        bound = srv.sockets[0].getsockname()[1]
        log.info("stratum listening on %s:%d (start difficulty %g)", host, bound, difficulty)
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_loop())
        return int(bound)

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
        for conn in list(self.connections):
            conn.drop("server stopping")
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await srv.wait_closed()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        self.fanout.close()

    # -- called by connections ------------------------------------------------

    def apply(self, conn: MinerConnection, outcome: Outcome, now: float) -> None:
        if outcome.block is not None and outcome.share is not None:
            job, verdict = outcome.block
            # Before the ack: a block must reach the node as early as possible.
            self.on_block(job, verdict, outcome.share)
        fut = self.on_share(outcome.share) if outcome.share is not None else None
        if fut is not None and not fut.done():
            conn.defer(fut, outcome.out)
        else:
            conn.send_ordered(outcome.out)
        if outcome.share is not None or outcome.bad:
            self.judge(conn, outcome.bad)
        if outcome.close:
            conn.drop(outcome.close)

    def wait_on(self, fut: asyncio.Future[int], conn: MinerConnection) -> None:
        """Release `conn`'s replies when `fut` resolves: one callback per group commit
        for all connections, not one per share (each callback copies a context)."""
        waiters = self._waiters.get(fut)
        if waiters is None:
            waiters = self._waiters[fut] = []
            fut.add_done_callback(self._release_all)
        waiters.append(conn)

    def _release_all(self, fut: asyncio.Future[int]) -> None:
        for conn in self._waiters.pop(fut, ()):
            conn._release(fut)

    def judge(self, conn: MinerConnection, bad: bool) -> None:
        if self.defences.judge(conn.ip, bad, time.time()):
            metrics.BANS.inc()
            log.warning(
                "banning %s for %.0f s: too many invalid messages or shares",
                conn.ip,
                self.defences.rules.ban_seconds,
            )
            self.drop_ip(conn.ip, "banned: too many invalid messages or shares")

    def drop_ip(self, ip: str, reason: str) -> None:
        for other in [c for c in self.connections if c.ip == ip]:
            other.send(_error(None, ErrorCode.OTHER, reason))
            other.drop(reason)

    def forget(self, conn: MinerConnection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        metrics.CONNECTIONS.dec()
        self.defences.release(conn.ip)
        if conn.session is not None and conn.session.subscribed:
            self.ctx.extranonces.release(conn.session.extranonce1, time.time())

    # -- pushed by the pool ---------------------------------------------------

    def broadcast(self, job: Job) -> int:
        # Sockets with nothing queued are written by the fan-out (sender threads, GIL
        # released); the others through their transports, behind what they hold.
        fan: FanoutBatch[MinerConnection] | None = (
            self.fanout.batch() if self.fanout.enabled else None
        )
        with self.fanout.handing_off():
            sent = self._notify_all(job, time.time(), fan)
        metrics.JOBS.labels(str(job.clean).lower()).inc()
        return sent

    def _notify_all(self, job: Job, now: float, fan: FanoutBatch[MinerConnection] | None) -> int:
        sent = 0
        try:
            for conn in self.connections:
                session = conn.session
                if session is None or conn.closing or not session.ready:
                    continue
                try:
                    data = session.on_job(job, now)
                except Exception:
                    log.exception("notify to %s failed", conn.ip)
                    continue
                transport = conn.transport
                if (
                    fan is not None
                    and conn.fd >= 0
                    and transport is not None
                    and not transport.get_write_buffer_size()
                    and not transport.is_closing()
                ):
                    fan.add(conn.fd, data, conn)
                else:
                    conn.send(data)
                sent += 1
        finally:
            # Even if the loop broke off: no sender thread may still be writing once the
            # event loop runs again, or its writes could interleave with the next ones.
            if fan is not None:
                for conn, data, result in fan.finish():
                    # A full socket buffer, a partial write or an error: the transport
                    # buffers the rest, or meets the error and closes as on any write.
                    conn.send(data[result:] if result > 0 else data)
        return sent

    def rotate_extranonce(self) -> int:
        """Give every extranonce-subscribed miner a new extranonce1, effective with a fresh job."""
        now = time.time()
        moved = 0
        for conn in self.connections:
            s = conn.session
            if s is None or conn.closing or not s.ready or not s.extranonce_subscribed:
                continue
            old = s.extranonce1
            new = self.ctx.extranonces.allocate(now)
            conn.send(s.set_extranonce(new))
            self.ctx.extranonces.release(old, now)
            moved += 1
        job = self.ctx.jobs.reissue(now)
        if job is not None:
            self.broadcast(job)
        return moved

    def worker_count(self) -> int:
        return sum(len(c.session.workers) for c in self.connections if c.session is not None)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            try:
                for conn in list(self.connections):
                    s = conn.session
                    if s is None or conn.closing:
                        continue
                    if not s.authorized and now - s.connected_at > self.limits.auth_timeout:
                        conn.send(_error(None, ErrorCode.UNAUTHORIZED, "not authorized in time"))
                        conn.drop("not authorized in time")
                    elif now - s.last_activity > self.limits.idle_timeout:
                        conn.drop("idle")
                self.defences.sweep(now)
                metrics.WORKERS.set(self.worker_count())
            except Exception:
                log.exception("sweep failed")
