"""Accounting end to end: real regtest node, built-in miners under three accounts,
blocks credited, matured, orphaned; PPS settlement; figures back after a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hashquarry.accounting import stats
from hashquarry.accounting.ledger import POOL_ACCOUNT, balances
from hashquarry.chain.regtest import RegtestNode
from hashquarry.miner.runner import MinerOptions, run_miner
from hashquarry.pool import Pool
from hashquarry.store import models as m

from .conftest import pool_settings, start_pool, stop_pool
from .helpers import wait_for

pytestmark = pytest.mark.e2e

ACCOUNTS = ["alice.rig", "bob.rig", "carol.rig"]
MATURITY = 5


async def _mine(pool: Pool, blocks: int, users: list[str] = ACCOUNTS) -> dict:
    stop = asyncio.Event()
    url = f"stratum+tcp://127.0.0.1:{pool.ports[0]}"
    task = asyncio.create_task(run_miner(MinerOptions(url=url, users=users), stop=stop))
    accounts = {u.split(".")[0] for u in users}

    def done() -> bool:
        # On regtest every share is a block: wait until every account has found some.
        have = {name.split(".")[0] for name, (acc, _) in pool.stats.per_worker.items() if acc}
        return pool.stats.blocks_accepted >= blocks and accounts <= have

    try:
        await wait_for(done, 240, f"{blocks} blocks with shares from every account")
    finally:
        stop.set()
    result = await asyncio.wait_for(task, 30)
    await wait_for(lambda: all(b.result is not None for b in pool.stats.blocks), 30, "submits")
    return result


async def _settle_tracker(pool: Pool) -> None:
    assert pool.accounting is not None
    await pool.accounting.flush()
    await pool.accounting.track_once()


async def _block_rows(pool: Pool) -> list[dict]:
    assert pool.accounting is not None
    async with pool.accounting.engine.connect() as conn:
        return await stats.blocks(conn, "bitcoin", limit=1000)


async def _check_ledger_matches_blocks(pool: Pool) -> None:
    assert pool.accounting is not None
    async with pool.accounting.engine.connect() as conn:
        per_block = await stats.ledger_totals_by_block(conn, "bitcoin")
        rows = await stats.blocks(conn, "bitcoin", limit=1000)
    for b in rows:
        expected = b["income"] if b["status"] in ("processing", "unconfirmed", "confirmed") else 0
        assert per_block.get(b["id"], 0) == expected, b


async def test_pplns_immature_confirmed_orphan_and_restart(
    regtest: RegtestNode, tmp_path: Path
) -> None:
    settings = pool_settings(
        regtest,
        data_dir=tmp_path,
        # Regtest's network difficulty (~4.7e-10) is far below one share, so N is the
        # largest allowed: the window (~466 share-difficulty units) then spans every share
        # of the run, and each block after an account's first share credits that account.
        # (With a window of a few shares, an account whose shares all fell before the
        # newest MATURITY blocks had only matured credits: a flaky assertion below.)
        accounting={
            "scheme": "pplns",
            "maturity": MATURITY,
            "pplns_n": 1e12,
            "fee_bps": 150,
            "tracker_interval": 0.5,
        },
    )
    pool = await start_pool(settings)
    try:
        result = await _mine(pool, 4)
        assert result["shares_accepted"] > 0
        await _settle_tracker(pool)
        rows = await _block_rows(pool)
        ours = [b for b in rows if b["status"] == "unconfirmed"]
        assert len(ours) >= 3, rows
        assert all(b["confirmations_left"] == MATURITY - b["confirmations"] for b in ours)
        await _check_ledger_matches_blocks(pool)
        async with pool.accounting.engine.connect() as conn:  # type: ignore[union-attr]
            bal = await balances(conn, "bitcoin", time.time())
        immature = {a for a, b in bal.items() if b.immature_balance > 0}
        assert {"alice", "bob", "carol", POOL_ACCOUNT} <= immature, bal
        # Early blocks may already have matured while the miners ran: balance is exactly
        # the income of the confirmed blocks so far.
        confirmed_so_far = sum(b["income"] for b in rows if b["status"] == "confirmed")
        assert sum(b.balance for b in bal.values()) == confirmed_so_far

        # Orphan the newest pool block: the node drops it from its chain.
        tip = regtest.call("getbestblockhash")
        tip_row = next(b for b in rows if b["hash"] == tip)
        regtest.call("invalidateblock", tip)
        await _settle_tracker(pool)
        rows = await _block_rows(pool)
        assert next(b for b in rows if b["id"] == tip_row["id"])["status"] == "orphan"
        await _check_ledger_matches_blocks(pool)

        # Maturity: the node mines MATURITY more blocks elsewhere.
        await asyncio.to_thread(regtest.mine, MATURITY)
        await _settle_tracker(pool)
        rows = await _block_rows(pool)
        confirmed = [b for b in rows if b["status"] == "confirmed"]
        assert len(confirmed) >= 2, rows
        assert all(b["confirmations_left"] == 0 for b in confirmed)
        assert all(
            b["confirmations_left"] == -1 for b in rows if b["status"] in ("orphan", "stale")
        )
        await _check_ledger_matches_blocks(pool)
        async with pool.accounting.engine.connect() as conn:  # type: ignore[union-attr]
            bal = await balances(conn, "bitcoin", time.time())
            total_entries = await conn.scalar(select(func.sum(m.ledger.c.amount)))
        assert all(b.balance >= 0 and b.immature_balance >= 0 for b in bal.values())
        assert sum(b.balance + b.immature_balance for b in bal.values()) == total_entries
        confirmed_income = sum(b["income"] for b in confirmed)
        assert sum(b.balance for b in bal.values()) == confirmed_income
        # Whoever had shares in the window of a confirmed block now has a balance.
        assert sum(1 for a in ("alice", "bob", "carol") if bal.get(a) and bal[a].balance) >= 2
        # The fee is 1.5% of each confirmed block, rounded down.
        assert bal[POOL_ACCOUNT].balance == sum(b["income"] * 150 // 10_000 for b in confirmed)

        async with pool.accounting.engine.connect() as conn:  # type: ignore[union-attr]
            now = time.time()
            before = {
                "rates": await stats.rates(conn, "bitcoin", now, 3600),
                "workers": await stats.workers(conn, "bitcoin", now),
                "totals": await stats.pool_totals(conn, "bitcoin", now),
                "balances": await balances(conn, "bitcoin", now),
                "blocks": await stats.blocks(conn, "bitcoin", limit=1000),
                "history": await stats.history(
                    conn, "bitcoin", start=now - 3600, end=now, interval=600, account="alice"
                ),
            }
        assert before["rates"].hashrate > 0
        assert {w.account for w in before["workers"]} == {"alice", "bob", "carol"}
        assert before["totals"].blocks_found == len(before["blocks"])
        assert sum(h["hash_rate"] for h in before["history"]) > 0
    finally:
        await stop_pool(pool)

    # The same figures come back from the store after a restart.
    pool = await start_pool(settings)
    try:
        async with pool.accounting.engine.connect() as conn:  # type: ignore[union-attr]
            after_rates = await stats.rates(conn, "bitcoin", now, 3600)
            assert after_rates == before["rates"]
            assert await stats.workers(conn, "bitcoin", now) == before["workers"]
            assert await stats.pool_totals(conn, "bitcoin", now) == before["totals"]
            assert await balances(conn, "bitcoin", now) == before["balances"]
            assert await stats.blocks(conn, "bitcoin", limit=1000) == before["blocks"]
        assert pool.accounting.replayed == 0  # type: ignore[union-attr]
    finally:
        await stop_pool(pool)


async def test_pps_daily_settlement(difficulty1: RegtestNode, tmp_path: Path) -> None:
    settings = pool_settings(
        difficulty1, data_dir=tmp_path, accounting={"scheme": "pps", "fee_bps": 200}
    )
    pool = await start_pool(settings)
    try:
        stop = asyncio.Event()
        url = f"stratum+tcp://127.0.0.1:{pool.ports[0]}"
        task = asyncio.create_task(run_miner(MinerOptions(url=url, users=ACCOUNTS), stop=stop))
        await wait_for(lambda: pool.stats.accepted >= 15, 120, "shares")
        stop.set()
        await asyncio.wait_for(task, 30)
        acc = pool.accounting
        assert acc is not None
        await acc.flush()
        now = time.time()
        async with acc.engine.connect() as conn:
            accrued = dict(
                (
                    await conn.execute(
                        select(
                            m.pps_accruals.c.account,
                            m.pps_accruals.c.sats * 10**9 + m.pps_accruals.c.nano,
                        )
                    )
                ).all()
            )
        assert set(accrued) == {"alice", "bob", "carol"} and all(accrued.values())
        # Nothing settles before the day is over...
        assert await acc.settle_due(now) == 0
        # ...and at 00:00 UTC the day's accruals become revenue entries.
        written = await acc.settle_due(now + 86_400)
        async with acc.engine.connect() as conn:
            entries = (
                (await conn.execute(select(m.ledger).where(m.ledger.c.kind == "revenue")))
                .mappings()
                .all()
            )
            carried = dict(
                (
                    await conn.execute(
                        select(
                            m.pps_accruals.c.account,
                            m.pps_accruals.c.sats * 10**9 + m.pps_accruals.c.nano,
                        ).where(m.pps_accruals.c.settled.is_(False))
                    )
                ).all()
            )
        assert written == len(entries)
        for e in entries:
            extra = e["extra"]
            for key in (
                "mining_date",
                "settle_date",
                "pps",
                "pps_fee_rate",
                "tx_fee",
                "tx_fee_rate",
                "hash_rate",
            ):
                assert key in extra
            assert extra["pps_fee_rate"] == 0.02
            assert e["bucket"] == "balance" and e["amount"] == extra["pps"]
        # Whole satoshis paid + carried nano-satoshis == what accrued, per account.
        paid = {e["account"]: e["amount"] for e in entries}
        for account, nano in accrued.items():
            assert paid.get(account, 0) * 10**9 + carried.get(account, 0) == nano
        # Settling again is a no-op.
        assert await acc.settle_due(now + 86_400) == 0
    finally:
        await stop_pool(pool)
