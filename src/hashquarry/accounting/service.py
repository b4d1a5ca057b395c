"""The accounting shell: share log in, store out, blocks followed on the node.

Share events reach it only after the share log has made them durable; it folds
them into a FlushBatch and writes one transaction per flush interval. At start
it replays the log tail past the store's last applied seq, so a crash loses
nothing acknowledged and counts nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting.aggregate import (
    Aggregator,
    FlushBatch,
    FoundBlock,
    RoundState,
    ShiftState,
    utc_day,
)
from hashquarry.accounting.blocks import BlockTracker
from hashquarry.accounting.ledger import mode_resolver, settle_pps
from hashquarry.accounting.schemes import pplns_window_weight
from hashquarry.accounting.window import prune_shares
from hashquarry.accounting.writer import APPLIED_SEQ, get_state, write_batch
from hashquarry.chain.rpc import NodeRpc
from hashquarry.config import AccountingConfig
from hashquarry.shares.events import ShareEvent
from hashquarry.shares.log import ShareLog
from hashquarry.store import models as m
from hashquarry.store.writer_thread import WriterThread

log = logging.getLogger(__name__)

# Share rows are pruned at most this often: finding what the window needs walks it.
PRUNE_EVERY = 600.0
# The next block's window is N x *its* network difficulty, which may be above today's:
# keep twice today's window (real retargets move by tens of percent).
WINDOW_MARGIN = 2.0


class Accounting:
    def __init__(
        self,
        engine: AsyncEngine,
        cfg: AccountingConfig,
        *,
        coin: str,
        log_dir: Path,
        rpc: NodeRpc | None = None,
    ) -> None:
        self.engine = engine
        self.cfg = cfg
        self.coin = coin
        self.share_log = ShareLog(
            log_dir,
            commit_interval=cfg.commit_interval_ms / 1000,
            segment_bytes=cfg.segment_bytes,
            retention_seconds=cfg.retention_days * 86400,
            on_commit=self._on_commit,
        )
        self.tracker = BlockTracker(engine, rpc, coin=coin, maturity=cfg.maturity) if rpc else None
        self.agg: Aggregator | None = None
        self._retry: FlushBatch | None = None
        self._lock = asyncio.Lock()  # one writer transaction at a time
        self._tasks: list[asyncio.Task[None]] = []
        self.flushes = 0
        self.replayed = 0
        self._writer: WriterThread | None = None

    # -- start / stop ------------------------------------------------------------

    async def start(self) -> None:
        async with self.engine.begin() as conn:
            applied = await get_state(conn, APPLIED_SEQ)
            round_ = await self._open_round(conn, applied)
            shift = await self._open_shift(conn)
            next_block = (await conn.scalar(select(func.max(m.blocks.c.id))) or 0) + 1
            mode_of = await mode_resolver(conn, self.coin, self.cfg.scheme)
        self.agg = Aggregator(
            self.coin,
            round_=round_,
            shift=shift,
            next_block_id=next_block,
            mode_of=lambda _coin, account, t: mode_of(account, t),
            fee_bps=self.cfg.fee_bps,
            shift_span=self.cfg.shift_span,
        )
        self.agg.applied_seq = applied
        last = self.share_log.open()
        if last < applied:
            raise RuntimeError(
                f"the store has applied share-log seq {applied} but the log ends at {last}: "
                "the share log directory does not belong to this store"
            )
        for seq, ev in self.share_log.replay(applied):
            self.agg.apply(seq, ev)
            self.replayed += 1
            if len(self.agg.batch.shares) >= 100_000:
                await self.flush()
        await self.flush()
        if self.replayed:
            log.info("replayed %d share-log records after seq %d", self.replayed, applied)
        self._writer = WriterThread(self.engine.url.render_as_string(hide_password=False))
        self._tasks.append(asyncio.create_task(self._flush_loop(), name="accounting-flush"))
        if self.tracker is not None:
            self._tasks.append(asyncio.create_task(self._track_loop(), name="block-tracker"))

    async def _open_round(self, conn: Any, applied: int) -> RoundState:
        row = (
            (
                await conn.execute(
                    select(m.rounds)
                    .where(m.rounds.c.coin == self.coin, m.rounds.c.ended_at.is_(None))
                    .order_by(m.rounds.c.id.desc())
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            last_id = await conn.scalar(select(func.max(m.rounds.c.id))) or 0
            return RoundState(last_id + 1, self.coin, time.time(), applied + 1)
        return RoundState(
            row["id"],
            self.coin,
            row["started_at"],
            row["start_seq"],
            row["accepted"],
            row["accepted_diff"],
            row["rejected"],
            row["rejected_diff"],
            row["network_difficulty"],
        )

    async def _open_shift(self, conn: Any) -> ShiftState:
        row = (
            (
                await conn.execute(
                    select(m.shifts)
                    .where(m.shifts.c.coin == self.coin, m.shifts.c.completed.is_(False))
                    .order_by(m.shifts.c.id.desc())
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            last_id = await conn.scalar(select(func.max(m.shifts.c.id))) or 0
            return ShiftState(last_id + 1, self.coin, time.time(), self.cfg.shift_span)
        return ShiftState(
            row["id"],
            self.coin,
            row["started_at"],
            row["span"],
            row["accepted"],
            row["accepted_diff"],
            row["rejected"],
        )

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        await self.share_log.close()
        with contextlib.suppress(Exception):
            await self.flush()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    # -- the share path ------------------------------------------------------------

    def record(self, ev: ShareEvent) -> asyncio.Future[int]:
        """Durably log a share; the future (shared by its group commit) resolves once
        the share may be acknowledged."""
        return self.share_log.append_batched(ev)

    def _on_commit(self, records: list[tuple[int, ShareEvent]]) -> None:
        assert self.agg is not None
        apply = self.agg.apply
        for seq, ev in records:
            apply(seq, ev)

    async def flush(self) -> None:
        assert self.agg is not None
        async with self._lock:
            batch = self._retry or self.agg.take()
            if batch.empty:
                return
            try:
                await self._write(batch)
            except Exception:
                # Keep it: the aggregator already moved on, so the same batch must land.
                self._retry = batch
                raise
            self._retry = None
            self.flushes += 1

    async def _write(self, batch: FlushBatch) -> None:
        async def write(engine: AsyncEngine) -> None:
            async with engine.begin() as conn:
                await write_batch(
                    conn,
                    batch,
                    scheme_for_block=self._scheme_for_block,
                    fee_bps=self.cfg.fee_bps,
                    pplns_n=self.cfg.pplns_n,
                    maturity=self.cfg.maturity,
                )

        if self._writer is None:
            await write(self.engine)
        else:
            # Off the Stratum loop: a big flush must not hold up the miners' acks.
            await self._writer.run(write)

    def _scheme_for_block(self, block: FoundBlock) -> str:
        return self.cfg.scheme

    async def reload_modes(self) -> None:
        """Settle-mode switches made while running apply to per-share PPS accrual too."""
        assert self.agg is not None
        async with self.engine.connect() as conn:
            mode_of = await mode_resolver(conn, self.coin, self.cfg.scheme)
        self.agg.mode_of = lambda _coin, account, t: mode_of(account, t)

    async def _flush_loop(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(self.cfg.flush_interval)
            ticks += 1
            try:
                if ticks % 30 == 0:
                    await self.reload_modes()
                await self.flush()
            except Exception:
                log.exception("accounting flush failed; will retry")

    # -- blocks ------------------------------------------------------------------------

    async def block_submitted(self, block_hash: str, result: str) -> None:
        if self.tracker is None:
            return
        # The winning share may still be on its way through the share log's group
        # commit; the block row appears with the flush after it.
        for _ in range(40):
            await self.flush()
            async with self._lock:
                if await self.tracker.submitted(block_hash, result):
                    return
            await asyncio.sleep(0.05)
        log.warning("block %s is not in the store; the tracker will settle it", block_hash)

    async def track_once(self) -> None:
        if self.tracker is None:
            return
        await self.flush()
        async with self._lock:
            await self.tracker.update()

    async def _track_loop(self) -> None:
        pruned_at = -PRUNE_EVERY
        while True:
            await asyncio.sleep(self.cfg.tracker_interval)
            try:
                await self.track_once()
                self.share_log.prune(self.agg.applied_seq if self.agg else 0)
                if time.monotonic() - pruned_at >= PRUNE_EVERY:
                    await self.prune_shares()
                    pruned_at = time.monotonic()
                await self.settle_due()
            except Exception:
                log.exception("block tracking failed; will retry")

    async def prune_shares(self, now: float | None = None) -> int:
        """Drop share rows older than keep_shares_days that no block can still need
        (see window.prune_shares); returns the rows dropped."""
        assert self.agg is not None
        now = time.time() if now is None else now
        await self.flush()
        async with self._lock:
            difficulty = self.agg.round.network_difficulty
            if not difficulty:
                return 0  # no share since the last block: the window is not known yet
            window = pplns_window_weight(self.cfg.pplns_n * WINDOW_MARGIN, difficulty)
            keep_from_seq = self.agg.round.start_seq

            async def prune(engine: AsyncEngine) -> int:
                async with engine.begin() as conn:
                    modes = await mode_resolver(conn, self.coin, self.cfg.scheme)
                    return await prune_shares(
                        conn,
                        self.coin,
                        before_time=now - self.cfg.keep_shares_days * 86400,
                        window=window,
                        modes=modes,
                        keep_from_seq=keep_from_seq,
                    )

            # Walking a long window is Python work per share row: on the writer's loop,
            # never the Stratum loop's.
            if self._writer is None:
                return await prune(self.engine)
            return await self._writer.run(prune)

    async def settle_due(self, now: float | None = None) -> int:
        """Settle PPS/FPPS days that have ended (the day boundary is 00:00 UTC)."""
        now = time.time() if now is None else now
        await self.flush()
        async with self._lock, self.engine.begin() as conn:
            return await settle_pps(conn, self.coin, utc_day(now), self.cfg.fee_bps, now)
