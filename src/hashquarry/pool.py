"""The pool process: node, template feed, jobs, Stratum ports and block submission, wired."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry import metrics
from hashquarry.accounting.service import Accounting
from hashquarry.accounts.service import AccountsService
from hashquarry.chain.address import address_to_script, network
from hashquarry.chain.feed import StaticTemplateFeed, TemplateFeed
from hashquarry.chain.hashing import hash_to_hex
from hashquarry.chain.rpc import NodeError, NodeRpc
from hashquarry.chain.template import Template
from hashquarry.config import Settings
from hashquarry.distribution.service import DistributionService
from hashquarry.payouts.engine import PayoutEngine
from hashquarry.payouts.service import build_engine as build_payout_engine
from hashquarry.payouts.service import payout_loop
from hashquarry.shares.events import ShareEvent, ShareResult
from hashquarry.shares.validate import Verdict, block_bytes
from hashquarry.stratum.defences import BanRules
from hashquarry.stratum.extranonce import ExtranonceAllocator
from hashquarry.stratum.jobs import Job, JobManager
from hashquarry.stratum.server import ServerLimits, StratumServer
from hashquarry.stratum.session import Authorizer, PoolContext
from hashquarry.stratum.vardiff import VardiffRules

log = logging.getLogger(__name__)

HASHRATE_WINDOW = 120.0


# The submit result recorded for a candidate held back because the node had already
# taken another of the pool's blocks at its height (the tracker then calls it stale).
SIBLING_NOT_SENT = "not sent: the node took another of the pool's blocks at this height"


@dataclass
class FoundBlock:
    height: int
    hash: str
    account: str
    worker: str
    time: float
    result: str | None = None  # the node's answer; None while in flight
    submit_seconds: float | None = None

    @property
    def accepted(self) -> bool:
        return self.result == "accepted"


@dataclass
class PoolStats:
    """Live counters for the demo and the CLI; durable statistics are accounting's job."""

    accepted: int = 0
    rejected: int = 0
    rejected_by: Counter[str] = field(default_factory=Counter)
    per_worker: dict[str, list[int]] = field(default_factory=dict)  # name -> [accepted, rejected]
    blocks: list[FoundBlock] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    # [second, difficulty sum] per second of the last HASHRATE_WINDOW: bounded however
    # many shares arrive (a per-share list grew without limit in a pool nobody asked).
    _recent: deque[list[float]] = field(default_factory=deque)
    accepted_difficulty: float = 0.0
    _published: dict[str, int] = field(default_factory=dict)
    _published_difficulty: float = 0.0

    def record(self, ev: ShareEvent) -> None:
        name = f"{ev.account}.{ev.worker}"
        counts = self.per_worker.get(name)
        if counts is None:
            counts = self.per_worker[name] = [0, 0]
        if ev.result is ShareResult.ACCEPTED:
            counts[0] += 1
            self.accepted += 1
            self.accepted_difficulty += ev.difficulty
            second = float(int(ev.time))
            recent = self._recent
            if recent and recent[-1][0] == second:
                recent[-1][1] += ev.difficulty
            else:
                recent.append([second, ev.difficulty])
                while recent[0][0] < second - HASHRATE_WINDOW:
                    recent.popleft()
        else:
            counts[1] += 1
            self.rejected += 1
            self.rejected_by[ev.result.value] += 1

    def publish_metrics(self) -> None:
        """Move the share counts since the last call into the Prometheus counters.

        Called about once a second, not per share: a Prometheus increment takes a lock,
        and two of them were ~7% of the pool's CPU at 20,000 shares/s."""
        published = self._published
        for result, n in self.counts_by_result().items():
            delta = n - published.get(result, 0)
            if delta:
                metrics.SHARES_BY_RESULT[result].inc(delta)
                published[result] = n
        delta_d = self.accepted_difficulty - self._published_difficulty
        if delta_d:
            metrics.SHARE_DIFFICULTY.inc(delta_d)
            self._published_difficulty = self.accepted_difficulty

    def counts_by_result(self) -> dict[str, int]:
        return {"accepted": self.accepted, **self.rejected_by}

    def hashrate(self, now: float, window: float = HASHRATE_WINDOW) -> float:
        """Estimated H/s from accepted share difficulty over the window (at most
        HASHRATE_WINDOW: older seconds are not kept)."""
        window = min(window, HASHRATE_WINDOW)
        # A pool younger than the window has only been hashing since it started.
        span = min(window, max(now - self.started, 1.0))
        return sum(d for t, d in self._recent if t >= now - window) * 2**32 / span

    @property
    def blocks_found(self) -> int:
        return len(self.blocks)

    @property
    def blocks_accepted(self) -> int:
        return sum(1 for b in self.blocks if b.accepted)


class Pool:
    def __init__(
        self,
        settings: Settings,
        *,
        authorizer: Authorizer | None = None,
        store: AsyncEngine | None = None,
    ) -> None:
        """`store` (an engine on a migrated store) turns on durable accounting."""
        self.settings = settings
        self.accounts: AccountsService | None = None
        if store is not None:
            self.accounts = AccountsService.from_settings(store, settings)
            if authorizer is None and settings.accounts.require_registration:
                authorizer = self.accounts.stratum_authorizer(
                    allow_address_mode=settings.accounts.allow_address_mode
                )
        net = network(settings.pool.network)
        node = settings.node

        def rpc_client() -> NodeRpc:
            return NodeRpc(
                node.url,
                node.user,
                node.password,
                timeout=node.rpc_timeout,
                retries=node.rpc_retries,
            )

        # Connections of their own for what miners wait on: a new block's template and a
        # block's submission must never queue behind the tracker's or the payouts' calls
        # (a burst of block candidates, each followed up on the node, once held the next
        # template back for seconds, and every share found meanwhile was another stale
        # candidate).
        self.rpc = rpc_client()  # tracker, payouts, verification of lost answers
        self.feed_rpc = rpc_client()
        self.submit_rpc = rpc_client()
        self.jobs = JobManager(
            address_to_script(settings.pool.address, net),
            tag=settings.pool.tag.encode(),
            extranonce2_size=settings.pool.extranonce2_size,
            recent_jobs=settings.pool.recent_jobs,
        )
        st = settings.stratum
        vd = st.vardiff
        self.ctx = PoolContext(
            jobs=self.jobs,
            extranonces=ExtranonceAllocator(
                settings.pool.extranonce1_prefix, st.session_resume_seconds
            ),
            network=net,
            vardiff=VardiffRules(
                vd.target_interval,
                vd.retarget_window,
                vd.variance,
                vd.min_difficulty,
                vd.max_difficulty,
            ),
            version_mask=st.version_mask,
            extranonce2_size=settings.pool.extranonce2_size,
            authorizer=authorizer,
            coin=settings.pool.coin,
        )
        df = st.defences
        self.server = StratumServer(
            self.ctx,
            limits=ServerLimits(
                max_line=df.max_line_bytes,
                max_buffer=df.max_buffer_bytes,
                idle_timeout=df.idle_timeout,
                auth_timeout=df.auth_timeout,
            ),
            ban_rules=BanRules(
                df.ban_min_count, df.ban_invalid_ratio, df.ban_seconds, df.max_connections_per_ip
            ),
            on_share=self._on_share,
            on_block=self._on_block,
            send_threads=st.send_threads,
        )
        self.feed: TemplateFeed | StaticTemplateFeed
        if node.static_template is not None:
            self.feed = StaticTemplateFeed(str(node.static_template), self._on_template)
        else:
            self.feed = TemplateFeed(
                self.feed_rpc,
                self._on_template,
                zmq_endpoint=node.zmq_hashblock,
                poll_interval=node.poll_interval,
                refresh_interval=node.template_refresh,
            )
        self.accounting: Accounting | None = None
        if store is not None:
            self.accounting = Accounting(
                store,
                settings.accounting,
                coin=settings.pool.coin,
                log_dir=settings.data_dir / "sharelog",
                rpc=self.rpc if node.static_template is None else None,
            )
        self.payouts: PayoutEngine | None = None
        if store is not None and settings.payouts.enabled and node.static_template is None:
            self.payouts = build_payout_engine(settings, store, self.rpc)
        self.stats = PoolStats()
        self.ports: list[int] = []
        self.share_listeners: list[asyncio.Queue[ShareEvent]] = []
        self._block_tasks: set[asyncio.Task[None]] = set()
        # Candidates at one height are submitted one at a time; once the node has taken
        # one of ours there, the others are not sent (see _submit).
        self._height_locks: dict[int, asyncio.Lock] = {}
        self._won_heights: set[int] = set()
        self._payout_task: asyncio.Task[None] | None = None
        self._accounts_task: asyncio.Task[None] | None = None
        self._metrics_task: asyncio.Task[None] | None = None

    async def start(self, wait_for_template: float | None = 30.0, reuse_port: bool = False) -> None:
        self._metrics_task = asyncio.create_task(self._publish_metrics(), name="share-metrics")
        if self.accounting is not None:
            await self.accounting.start()
        if self.accounts is not None:
            await self.accounts.refresh_cache()
            self._accounts_task = asyncio.create_task(
                self.accounts.keep_cache_fresh(5.0), name="accounts-cache"
            )
        await self.feed.start()
        if wait_for_template and not await self.feed.wait_ready(wait_for_template):
            log.warning(
                "no template yet (%s); miners will get work when the node answers",
                self.feed.last_error,
            )
        if self.payouts is not None:
            self._payout_task = asyncio.create_task(
                payout_loop(self.payouts, self.settings.payouts.interval, self.settle_due),
                name="payouts",
            )
        for p in self.settings.stratum.ports:
            self.ports.append(
                await self.server.listen(p.host, p.port, p.difficulty, reuse_port=reuse_port)
            )

    async def settle_due(self) -> None:
        """Daily settlements: PPS/FPPS days into revenue, then hashrate and revenue
        distributions (dividends), in that order."""
        if self.accounting is None or self.accounts is None:
            return
        await self.accounting.settle_due()
        await DistributionService(self.accounting.engine, self.accounts).settle_due(
            self.settings.pool.coin
        )

    async def stop(self) -> None:
        for task in (self._payout_task, self._accounts_task, self._metrics_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.server.close()
        await self.feed.stop()
        if self._block_tasks:
            await asyncio.wait(self._block_tasks, timeout=10)
        if self.accounting is not None:
            await self.accounting.stop()
        for rpc in (self.rpc, self.feed_rpc, self.submit_rpc):
            await rpc.close()

    async def _publish_metrics(self) -> None:
        try:
            while True:
                await asyncio.sleep(1.0)
                self.stats.publish_metrics()
        finally:
            self.stats.publish_metrics()

    # -- hooks ----------------------------------------------------------------

    def _on_template(self, template: Template, reason: str) -> None:
        job = self.jobs.new_template(template, time.time())
        sent = self.server.broadcast(job)
        log.debug(
            "job %s height %d clean=%s to %d miners (%s)",
            job.job_id,
            job.height,
            job.clean,
            sent,
            reason,
        )

    def _on_share(self, ev: ShareEvent) -> asyncio.Future[int] | None:
        self.stats.record(ev)
        if not ev.accepted:
            log.debug("share rejected from %s.%s: %s", ev.account, ev.worker, ev.reason)
        for q in self.share_listeners:
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(ev)
        return self.accounting.record(ev) if self.accounting is not None else None

    def _on_block(self, job: Job, verdict: Verdict, share: ShareEvent) -> None:
        assert verdict.header is not None and verdict.extranonce is not None
        arrived = time.perf_counter()
        raw = block_bytes(job, verdict.header, verdict.extranonce)
        block_hash = hash_to_hex(verdict.hash or b"")
        account, worker = share.account, share.worker
        found = FoundBlock(job.height, block_hash, account, worker, time.time())
        self.stats.blocks.append(found)
        metrics.BLOCKS_FOUND.inc()
        log.info(
            "block candidate %s at height %d from %s.%s", block_hash, job.height, account, worker
        )
        task = asyncio.get_running_loop().create_task(self._submit(found, raw.hex(), arrived))
        self._block_tasks.add(task)
        task.add_done_callback(self._block_tasks.discard)

    async def _verify_submitted(self, block_hash: str) -> str | None:
        """ "accepted" if the node has the block on its main chain, "inconclusive" if on a
        side branch, None if it does not have it (or cannot say)."""
        try:
            header = await self.rpc.call("getblockheader", block_hash, retries=3)
        except NodeError:
            return None
        confirmations = int(header.get("confirmations", -1)) if isinstance(header, dict) else -1
        return "accepted" if confirmations >= 0 else "inconclusive"

    async def _send(self, found: FoundBlock, block_hex: str, arrived: float) -> None:
        try:
            answer = await self.submit_rpc.call("submitblock", block_hex, retries=5)
            found.result = "accepted" if answer is None else str(answer)
        except NodeError as exc:
            found.result = f"error: {exc}"
        found.submit_seconds = time.perf_counter() - arrived
        if found.result == "duplicate" or found.result.startswith("error: "):
            # A submit whose answer was lost (a timeout, a busy node) may have landed, and
            # its retry then hears "duplicate": the node's chain says what happened.
            found.result = await self._verify_submitted(found.hash) or found.result
        metrics.BLOCK_SUBMIT_SECONDS.observe(found.submit_seconds)
        metrics.BLOCKS_SUBMITTED.labels("accepted" if found.accepted else "rejected").inc()

    async def _submit(self, found: FoundBlock, block_hex: str, arrived: float) -> None:
        # Two of our blocks at one height: the node keeps the first it saw, so once it
        # has taken one, sending a sibling only costs the node a validation (on regtest,
        # where every share is a block, hundreds of them queued the node up for minutes).
        # A sibling waits for the answer on the one before it and is sent only if that
        # one was not taken.
        height = found.height
        for old in [h for h in self._height_locks if h < height - 16]:
            del self._height_locks[old]
            self._won_heights.discard(old)
        async with self._height_locks.setdefault(height, asyncio.Lock()):
            if height in self._won_heights:
                found.result = SIBLING_NOT_SENT
            else:
                await self._send(found, block_hex, arrived)
                if found.accepted:
                    self._won_heights.add(height)
        if found.result == SIBLING_NOT_SENT:
            log.info("block %s at height %d %s", found.hash, height, found.result)
        elif found.accepted:
            log.info("block %s at height %d accepted by the node", found.hash, found.height)
        elif found.result in ("inconclusive", "duplicate-inconclusive"):
            # Valid, but another block at this height got there first.
            log.info(
                "block %s at height %d lost the race (%s)", found.hash, found.height, found.result
            )
        else:
            log.warning(
                "block %s at height %d not accepted: %s", found.hash, found.height, found.result
            )
        if found.result != SIBLING_NOT_SENT:
            self.feed.poke("block found")
        if self.accounting is not None:
            try:
                await self.accounting.block_submitted(found.hash, found.result or "")
            except Exception:
                log.exception("recording the submit result of %s failed", found.hash)
