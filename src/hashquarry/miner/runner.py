"""The CPU miner: one StratumClient per user, each with a cooperative hashing loop.

All connections share one event loop (and one core), so hashing runs in short chunks
with a yield between them, and shares are submitted without waiting for the answer:
at demo difficulties a share turns up every few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hashquarry.chain.target import bits_to_target
from hashquarry.miner.client import DEFAULT_USER_AGENT, StratumClient
from hashquarry.miner.protocol import StratumError, SubmitResult
from hashquarry.miner.work import (
    BIP320_VERSION_MASK,
    NONCE_SPACE,
    Job,
    build_coinbase,
    hashrate_from_shares,
    header_prefix,
    mask_capacity,
    merkle_root_for,
    roll_version,
    scan,
    spread_bits,
    u32_hex,
    version_bits_hex,
)

log = logging.getLogger(__name__)

MIN_CHUNK = 2_000
MAX_CHUNK = 20_000
# Short enough that a few connections in one process still react to a new job within
# tens of milliseconds.
CHUNK_SECONDS = 0.01
BACKOFF_MIN = 0.5
BACKOFF_MAX = 5.0
# A connection that lived this long was healthy; the next failure starts backoff afresh.
HEALTHY_SECONDS = 10.0
# Pools bound how far ntime may run ahead of the job; stay well inside any sane limit.
MAX_NTIME_ROLL = 300
# Replies still in flight at stop get this long to arrive so the counts are complete.
FINAL_REPLY_WAIT = 2.0
STOP_GRACE = 1.0


@dataclass
class MinerOptions:
    url: str
    users: list[str]
    password: str = "x"
    seconds: float | None = None
    version_rolling: bool = False
    extranonce_subscribe: bool = True
    suggest_difficulty: float | None = None
    user_agent: str = DEFAULT_USER_AGENT
    version_mask: int = BIP320_VERSION_MASK  # requested when version_rolling
    chunk_size: int | None = None  # fixed nonces per chunk; None adapts to CHUNK_SECONDS
    nonce_span: int = NONCE_SPACE  # nonces per extranonce2 before moving to the next
    request_timeout: float = 10.0
    stats_interval: float = 1.0


@dataclass
class WorkerStats:
    user: str
    shares_submitted: int = 0
    shares_accepted: int = 0
    shares_rejected: int = 0
    submit_errors: int = 0  # no answer: timed out or the connection went away
    accepted_difficulty: float = 0.0
    rejected_by_code: Counter[int] = field(default_factory=Counter)  # 0 = no code given
    reject_reasons: Counter[str] = field(default_factory=Counter)
    hashes: int = 0
    blocks_found: int = 0  # shares that also met the job's network target
    jobs: int = 0
    connects: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "shares_submitted": self.shares_submitted,
            "shares_accepted": self.shares_accepted,
            "shares_rejected": self.shares_rejected,
            "submit_errors": self.submit_errors,
            "accepted_difficulty": self.accepted_difficulty,
            "rejected_by_code": dict(self.rejected_by_code),
            "reject_reasons": dict(self.reject_reasons),
            "hashes": self.hashes,
            "blocks_found": self.blocks_found,
            "jobs": self.jobs,
            "connects": self.connects,
        }


@dataclass
class MinerStats:
    elapsed: float
    workers: dict[str, WorkerStats]

    def _sum(self, name: str) -> Any:
        return sum(getattr(w, name) for w in self.workers.values())

    @property
    def hashes(self) -> int:
        return int(self._sum("hashes"))

    @property
    def hashrate(self) -> float:
        return self.hashes / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        by_code: Counter[int] = Counter()
        reasons: Counter[str] = Counter()
        for w in self.workers.values():
            by_code.update(w.rejected_by_code)
            reasons.update(w.reject_reasons)
        accepted_difficulty = float(self._sum("accepted_difficulty"))
        return {
            "shares_submitted": self._sum("shares_submitted"),
            "shares_accepted": self._sum("shares_accepted"),
            "shares_rejected": self._sum("shares_rejected"),
            "submit_errors": self._sum("submit_errors"),
            "accepted_difficulty": accepted_difficulty,
            "rejected_by_code": dict(by_code),
            "reject_reasons": dict(reasons),
            "hashes": self.hashes,
            "hashrate": self.hashrate,
            # What the pool would credit us with: a cross-check on the measured rate.
            "hashrate_accepted": hashrate_from_shares(1, accepted_difficulty, self.elapsed),
            "blocks_found": self._sum("blocks_found"),
            "elapsed": self.elapsed,
            "workers": {name: w.as_dict() for name, w in self.workers.items()},
        }


def parse_url(url: str) -> tuple[str, int]:
    """stratum+tcp://HOST:PORT (a bare HOST:PORT is accepted too)."""
    parts = urlsplit(url if "://" in url else f"stratum+tcp://{url}")
    if parts.scheme not in ("stratum+tcp", "stratum", "tcp"):
        raise ValueError(f"unsupported scheme in {url!r}; expected stratum+tcp://HOST:PORT")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if not parts.hostname or port is None:
        raise ValueError(f"expected stratum+tcp://HOST:PORT, got {url!r}")
    return parts.hostname, port


async def _sleep_unless(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


class _Work:
    """Where one connection is in one job's search space."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.target = job.share_target
        try:
            self.network_target = bits_to_target(job.nbits_int)
        except ValueError:  # a nonsense nbits only costs us the block counter
            self.network_target = -1
        self.extranonce2 = 0
        self.extranonce2_limit = 256**job.extranonce2_size
        self.nonce = 0
        self.version_counter = 0
        self._merkle_for: tuple[int, bytes] | None = None

    def merkle(self) -> bytes:
        if self._merkle_for is None or self._merkle_for[0] != self.extranonce2:
            coinbase = build_coinbase(self.job, self.job.extranonce1, self.extranonce2_bytes())
            self._merkle_for = (self.extranonce2, merkle_root_for(self.job, coinbase))
        return self._merkle_for[1]

    def extranonce2_bytes(self) -> bytes:
        return self.extranonce2.to_bytes(self.job.extranonce2_size, "big")

    def ntime(self) -> int:
        if not self.job.received_at:  # not stamped by a client: nothing to measure from
            return self.job.ntime_int
        rolled = int(time.monotonic() - self.job.received_at)
        return self.job.ntime_int + max(0, min(rolled, MAX_NTIME_ROLL))


class _Connection:
    def __init__(
        self,
        opts: MinerOptions,
        user: str,
        host: str,
        port: int,
        halt: asyncio.Event,
        stats: WorkerStats,
    ) -> None:
        self.opts = opts
        self.user = user
        self.host = host
        self.port = port
        self.halt = halt
        self.stats = stats
        self.client = StratumClient(
            request_timeout=opts.request_timeout, user_agent=opts.user_agent, name=user
        )
        self.outstanding: set[asyncio.Future[SubmitResult]] = set()
        self._handshaken = False
        # After a drop, first try where the client last was (it may have followed a
        # client.reconnect); if that fails, go back to the configured pool.
        self._retry_current_host = True
        self._chunk = opts.chunk_size or MIN_CHUNK

    async def run(self) -> None:
        backoff = BACKOFF_MIN
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                await self._connect()
                self.stats.connects += 1
                self._retry_current_host = True
                await self._mine()
            except (OSError, TimeoutError, StratumError) as exc:
                log.warning("miner %s: %s", self.user, exc)
                self._retry_current_host = False
            except Exception:
                log.exception("miner %s: unexpected error", self.user)
                self._retry_current_host = False
            if self.halt.is_set():
                break
            if time.monotonic() - started >= HEALTHY_SECONDS:
                backoff = BACKOFF_MIN
            log.info("miner %s: reconnecting in %.1fs", self.user, backoff)
            await _sleep_unless(self.halt, backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _connect(self) -> None:
        client = self.client
        if self._handshaken:
            # Resumes the session id and replays configure/subscribe/authorize.
            if self._retry_current_host:
                await client.reconnect()
            else:
                await client.reconnect(self.host, self.port)
            return
        await client.connect(self.host, self.port)
        if self.opts.version_rolling:
            await client.configure(version_rolling_mask=self.opts.version_mask)
        await client.subscribe(self.opts.user_agent, client.session_id)
        if self.opts.extranonce_subscribe:
            await client.extranonce_subscribe()
        if self.opts.suggest_difficulty is not None:
            await client.suggest_difficulty(self.opts.suggest_difficulty)
        if not await client.authorize(self.user, self.opts.password):
            await client.close()
            raise StratumError("mining.authorize", None, f"{self.user} was not authorized")
        self._handshaken = True

    async def _mine(self) -> None:
        client = self.client
        work: _Work | None = None
        while not self.halt.is_set() and not client.closed.is_set():
            job = client.job
            if job is None:
                try:
                    await asyncio.wait_for(client.wait_job(), 0.25)
                except TimeoutError:
                    pass
                except ConnectionError:
                    return
                continue
            if work is None or work.job is not job:
                work = _Work(job)
                self.stats.jobs += 1
            if work.extranonce2 >= work.extranonce2_limit:
                # Search space exhausted (tiny extranonce2); wait for the next job.
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await asyncio.wait_for(client.wait_job(newer_than=job), 0.25)
                continue
            self._hash_chunk(work)
            await client.drain()
            await asyncio.sleep(0)

    def _hash_chunk(self, work: _Work) -> None:
        job = work.job
        version = job.version_int
        mask = self.client.version_mask if self.opts.version_rolling else 0
        if mask:
            # A fresh version pattern per chunk: every chunk covers a nonce range of its
            # own, so any pattern is duplicate-free, and the pool sees rolling at once.
            work.version_counter = (work.version_counter + 1) % mask_capacity(mask)
            version = roll_version(version, mask, spread_bits(work.version_counter, mask))
        ntime = work.ntime()
        header76 = header_prefix(job, work.merkle(), ntime, version)
        span = min(self.opts.nonce_span, NONCE_SPACE)
        count = min(self._chunk, span - work.nonce)

        t0 = time.perf_counter()
        found = scan(header76, work.nonce, count, work.target)
        dt = time.perf_counter() - t0
        self.stats.hashes += count

        # scan() never yields, so the job cannot have been replaced meanwhile; the check
        # keeps that true should hashing ever move off the event loop.
        if found and self.client.job is job:
            for nonce, digest in found:
                self._submit(work, ntime, nonce, version, mask, digest)

        work.nonce += count
        if work.nonce >= span:
            work.nonce = 0
            work.extranonce2 += 1
        if self.opts.chunk_size is None and dt > 0:
            self._chunk = int(min(MAX_CHUNK, max(MIN_CHUNK, count * CHUNK_SECONDS / dt)))

    def _submit(
        self, work: _Work, ntime: int, nonce: int, version: int, mask: int, digest: bytes
    ) -> None:
        job = work.job
        if int.from_bytes(digest, "little") <= work.network_target:
            self.stats.blocks_found += 1
        try:
            fut = self.client.submit_nowait(
                self.user,
                job.job_id,
                work.extranonce2_bytes().hex(),
                u32_hex(ntime),
                u32_hex(nonce),
                version_bits_hex(version, mask) if mask else None,
            )
        except ConnectionError:
            return  # the read loop has seen or will see the loss; _mine exits on it
        self.stats.shares_submitted += 1
        self.outstanding.add(fut)
        difficulty = job.difficulty

        def _done(f: asyncio.Future[SubmitResult]) -> None:
            self.outstanding.discard(f)
            if f.cancelled() or f.exception() is not None:
                self.stats.submit_errors += 1
                return
            result = f.result()
            if result.accepted:
                self.stats.shares_accepted += 1
                self.stats.accepted_difficulty += difficulty
            else:
                self.stats.shares_rejected += 1
                self.stats.rejected_by_code[result.error_code or 0] += 1
                self.stats.reject_reasons[result.error_message or "rejected"] += 1

        fut.add_done_callback(_done)


async def run_miner(
    opts: MinerOptions,
    stop: asyncio.Event | None = None,
    on_stats: Callable[[MinerStats], None] | None = None,
) -> dict[str, Any]:
    """Mine until `opts.seconds` pass or `stop` is set; returns the totals (see MinerStats)."""
    if not opts.users:
        raise ValueError("run_miner needs at least one user")
    host, port = parse_url(opts.url)
    halt = asyncio.Event()
    workers: dict[str, WorkerStats] = {}
    conns: list[_Connection] = []
    for i, user in enumerate(opts.users):
        key = user if user not in workers else f"{user}#{i}"
        workers[key] = WorkerStats(user)
        conns.append(_Connection(opts, user, host, port, halt, workers[key]))

    started = time.monotonic()
    stopped_at: float | None = None

    def snapshot() -> MinerStats:
        end = stopped_at if stopped_at is not None else time.monotonic()
        return MinerStats(elapsed=end - started, workers=workers)

    async def report() -> None:
        while not halt.is_set():
            await _sleep_unless(halt, opts.stats_interval)
            if on_stats is not None and not halt.is_set():
                try:
                    on_stats(snapshot())
                except Exception:
                    log.exception("on_stats callback failed")

    tasks = [asyncio.create_task(c.run(), name=f"miner-{c.user}") for c in conns]
    reporter = asyncio.create_task(report(), name="miner-stats")
    stop_wait = asyncio.create_task((stop or asyncio.Event()).wait())
    try:
        await asyncio.wait(
            [stop_wait, *tasks], timeout=opts.seconds, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopped_at = time.monotonic()
        halt.set()
        stop_wait.cancel()
        # Hash loops notice `halt` within a chunk; a handshake in progress may not.
        _, stuck = await asyncio.wait([*tasks, reporter], timeout=STOP_GRACE)
        for task in stuck:
            task.cancel()
        if stuck:
            await asyncio.wait(stuck)
        in_flight = [f for c in conns for f in c.outstanding]
        if in_flight:
            await asyncio.wait(in_flight, timeout=FINAL_REPLY_WAIT)
        for c in conns:
            await c.client.close()
    stats = snapshot()
    if on_stats is not None:
        on_stats(stats)
    return stats.as_dict()
