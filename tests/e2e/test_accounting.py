"""Accounting end to end: real regtest node, built-in miners under three accounts,
blocks credited, matured, orphaned and brought back (reconsiderblock, also while the
pool is down); PPS settlement; figures back after a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hashquarry.accounting import stats
from hashquarry.accounting.aggregate import utc_day
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

    def everyone() -> bool:
        # On regtest every share is a block: wait until every account has found some.
        have = {name.split(".")[0] for name, (acc, _) in pool.stats.per_worker.items() if acc}
        return accounts <= have

    try:
        await wait_for(everyone, 240, "shares from every account")
        # Two more blocks after that: an account's only share may be a block that lost
        # a race (stale), and then only later blocks' windows credit it.
        enough = max(blocks, pool.stats.blocks_accepted + 2)
        await wait_for(lambda: pool.stats.blocks_accepted >= enough, 240, f"{enough} blocks")
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
            accrued = {
                (a, day): nano
                for a, day, nano in (
                    await conn.execute(
                        select(
                            m.pps_accruals.c.account,
                            m.pps_accruals.c.day,
                            m.pps_accruals.c.sats * 10**9 + m.pps_accruals.c.nano,
                        )
                    )
                ).all()
            }
            mined_on = {
                (a, utc_day(t))
                for a, t in (await conn.execute(select(m.shares.c.account, m.shares.c.time))).all()
            }
        # One accrual per account and UTC day its shares were mined on (one day, unless
        # the run straddled 00:00), each worth whole satoshis at this share difficulty.
        assert set(accrued) == mined_on
        assert {a for a, _ in accrued} == {"alice", "bob", "carol"}
        assert all(nano >= 10**9 for nano in accrued.values())
        # Nothing settles before its day is over...
        ended = {key for key in accrued if key[1] < utc_day(now)}
        assert await acc.settle_due(now) == len(ended)
        # ...and at 00:00 UTC each account's day becomes one revenue entry.
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
        assert written + len(ended) == len(entries) == len(accrued) >= 3
        by_day = {(e["account"], e["mining_date"]): e for e in entries}
        assert set(by_day) == set(accrued)  # one per account and share day, no more
        for (_account, day), e in by_day.items():
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
            assert extra["mining_date"] == day
            assert extra["settle_date"] in (utc_day(now), utc_day(now + 86_400))
            assert extra["pps_fee_rate"] == 0.02
            assert e["bucket"] == "balance" and e["amount"] == extra["pps"] > 0
            assert e["ref"] == f"pps:bitcoin:{day}"
        # Whole satoshis paid + carried nano-satoshis == what accrued, per account.
        paid: dict[str, int] = {}
        for e in entries:
            paid[e["account"]] = paid.get(e["account"], 0) + e["amount"]
        for account in {a for a, _ in accrued}:
            nano = sum(v for (a, _), v in accrued.items() if a == account)
            assert paid[account] * 10**9 + carried.get(account, 0) == nano
        # Settling again is a no-op.
        assert await acc.settle_due(now + 86_400) == 0
    finally:
        await stop_pool(pool)


# -- blocks that leave the chain and come back ---------------------------------------------


def _settings(node: RegtestNode, data_dir: Path) -> Any:
    return pool_settings(
        node,
        data_dir=data_dir,
        accounting={
            "scheme": "pplns",
            "maturity": MATURITY,
            "pplns_n": 1e12,  # every share of the run in the window (see above)
            "fee_bps": 150,
            "tracker_interval": 0.5,
        },
    )


def _back_on_the_chain(node: RegtestNode, tip: str) -> None:
    """reconsiderblock, and preciousblock: on regtest two of our miners often find a block
    at the same height, and the node may have moved to the other one meanwhile."""
    node.call("reconsiderblock", tip)
    node.call("preciousblock", tip)
    assert node.call("getbestblockhash") == tip


async def _status(pool: Pool, block_id: int) -> str:
    return next(b["status"] for b in await _block_rows(pool) if b["id"] == block_id)


async def _immature(pool: Pool) -> dict[str, int]:
    assert pool.accounting is not None
    async with pool.accounting.engine.connect() as conn:
        bal = await balances(conn, "bitcoin", time.time())
    return {a: b.immature_balance for a, b in bal.items() if b.immature_balance}


async def test_orphan_back_on_the_chain_after_reconsiderblock(
    regtest: RegtestNode, tmp_path: Path
) -> None:
    """invalidateblock takes the pool's newest block off the chain: reversed. Then
    reconsiderblock brings it back: credited again (immature), and it matures."""
    pool = await start_pool(_settings(regtest, tmp_path))
    try:
        await _mine(pool, 3)
        await _settle_tracker(pool)
        tip = regtest.call("getbestblockhash")
        block = next(b for b in await _block_rows(pool) if b["hash"] == tip)
        assert block["status"] == "unconfirmed"
        credited = await _immature(pool)

        regtest.call("invalidateblock", tip)
        await _settle_tracker(pool)
        assert await _status(pool, block["id"]) == "orphan"
        # Every block's entries match its status: the orphan's sum to nothing, and a
        # block of ours at the same height that had lost the race (stale) and is now on
        # the chain in its place is credited again.
        await _check_ledger_matches_blocks(pool)

        _back_on_the_chain(regtest, tip)
        await _settle_tracker(pool)
        assert await _status(pool, block["id"]) == "unconfirmed"
        await _check_ledger_matches_blocks(pool)
        assert await _immature(pool) == credited  # the same credits as when it was found

        await asyncio.to_thread(regtest.mine, MATURITY)
        await _settle_tracker(pool)
        rows = await _block_rows(pool)
        assert next(b for b in rows if b["id"] == block["id"])["status"] == "confirmed"
        await _check_ledger_matches_blocks(pool)
        assert pool.accounting is not None
        async with pool.accounting.engine.connect() as conn:
            bal = await balances(conn, "bitcoin", time.time())
        confirmed = sum(b["income"] for b in rows if b["status"] == "confirmed")
        assert sum(b.balance for b in bal.values()) == confirmed
        assert all(b.balance >= 0 and b.immature_balance >= 0 for b in bal.values())
    finally:
        await stop_pool(pool)


async def test_transitions_while_the_pool_was_down(regtest: RegtestNode, tmp_path: Path) -> None:
    """The chain moves while the pool is stopped: its newest block is invalidated (an
    orphan at the next start), then reconsidered and buried under MATURITY blocks (the
    start after that confirms it, straight from orphan, with every other block)."""
    settings = _settings(regtest, tmp_path)
    pool = await start_pool(settings)
    try:
        await _mine(pool, 3)
        await _settle_tracker(pool)
        # Early blocks of the run may have matured already; all of them end confirmed.
        ours = [b for b in await _block_rows(pool) if b["status"] in ("unconfirmed", "confirmed")]
        tip = regtest.call("getbestblockhash")
        block = next(b for b in ours if b["hash"] == tip)
    finally:
        await stop_pool(pool)

    regtest.call("invalidateblock", tip)
    pool = await start_pool(settings)
    try:
        await _settle_tracker(pool)
        rows = {b["id"]: b["status"] for b in await _block_rows(pool)}
        assert rows[block["id"]] == "orphan"
        assert all(rows[b["id"]] == b["status"] for b in ours if b["id"] != block["id"])
        await _check_ledger_matches_blocks(pool)
    finally:
        await stop_pool(pool)

    _back_on_the_chain(regtest, tip)
    await asyncio.to_thread(regtest.mine, MATURITY)
    pool = await start_pool(settings)
    try:
        await _settle_tracker(pool)
        rows = {b["id"]: b for b in await _block_rows(pool)}
        assert all(rows[b["id"]]["status"] == "confirmed" for b in ours)
        await _check_ledger_matches_blocks(pool)
        assert pool.accounting is not None
        async with pool.accounting.engine.connect() as conn:
            bal = await balances(conn, "bitcoin", time.time())
        assert sum(b.balance for b in bal.values()) == sum(b["income"] for b in ours)
        assert bal[POOL_ACCOUNT].balance == sum(b["income"] * 150 // 10_000 for b in ours)
        assert all(b.immature_balance == 0 for b in bal.values())
    finally:
        await stop_pool(pool)
