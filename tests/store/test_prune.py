"""Pruning share rows never shortens a PPLNS window or a round that a block still needs.

`window.prune_shares` directly (which rows go, which stay, SOLO shares not counting
towards the window, the mark that tells round reads the rows are gone), and the
accounting service end to end: shares older than keep_shares_days that the window
still covers survive a prune, and the next block is credited exactly as without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hashquarry.accounting.ledger import POOL_ACCOUNT
from hashquarry.accounting.schemes import pplns_window_weight
from hashquarry.accounting.service import Accounting
from hashquarry.accounting.window import ModeHistory, prune_shares, round_weights
from hashquarry.accounting.writer import get_state
from hashquarry.config import AccountingConfig
from hashquarry.store import models as m

from .builders import COIN, D32, NOW, share

DAY = 86_400.0
OLD = NOW - 10 * DAY


async def add_shares(conn: AsyncConnection, shares: list[tuple[int, float, str, float]]) -> None:
    await conn.execute(
        insert(m.shares),
        [
            {"seq": s, "coin": COIN, "time": t, "account": a, "worker": "w", "difficulty": d}
            for s, t, a, d in shares
        ],
    )


async def seqs(conn: AsyncConnection) -> list[int]:
    return list((await conn.scalars(select(m.shares.c.seq).order_by(m.shares.c.seq))).all())


async def test_prune_keeps_the_window_and_the_open_round(engine: AsyncEngine) -> None:
    # seq 1-10 are ten days old, 11-12 new; every share is difficulty 1
    async with engine.begin() as conn:
        await add_shares(conn, [(s, OLD + s, "alice", 1.0) for s in range(1, 11)])
        await add_shares(conn, [(s, NOW - s, "bob", 1.0) for s in (11, 12)])
        modes = ModeHistory("pplns", {})
        # window of 5 shares back from seq 12: 8..12 stay although 8..10 are old
        gone = await prune_shares(
            conn, COIN, before_time=NOW - 3 * DAY, window=5 * D32, modes=modes, keep_from_seq=99
        )
        assert gone == 7
        assert await seqs(conn) == [8, 9, 10, 11, 12]
        assert await get_state(conn, f"shares_pruned_below:{COIN}") == 8
        # the open round began at seq 9... nothing more goes; the window is still 5
        assert (
            await prune_shares(
                conn, COIN, before_time=NOW - 3 * DAY, window=2 * D32, modes=modes, keep_from_seq=9
            )
            == 1
        )
        assert await seqs(conn) == [9, 10, 11, 12]
        # without the time limit nothing newer than the retention goes either
        assert (
            await prune_shares(
                conn, COIN, before_time=OLD, window=D32, modes=modes, keep_from_seq=99
            )
            == 0
        )
        assert await get_state(conn, f"shares_pruned_below:{COIN}") == 9


async def test_solo_shares_do_not_fill_the_window(engine: AsyncEngine) -> None:
    """The window is pool work only: carol's SOLO shares between do not count towards
    it, so the older pool shares it reaches stay."""
    async with engine.begin() as conn:
        await add_shares(conn, [(1, OLD + 1, "alice", 1.0), (2, OLD + 2, "alice", 1.0)])
        await add_shares(conn, [(s, OLD + s, "carol", 1.0) for s in range(3, 9)])
        modes = ModeHistory("pplns", {"carol": [(0.0, "solo")]})
        gone = await prune_shares(
            conn, COIN, before_time=NOW, window=2 * D32, modes=modes, keep_from_seq=99
        )
        assert gone == 0
        assert len(await seqs(conn)) == 8


async def test_round_reads_fall_back_once_its_rows_are_pruned(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await add_shares(conn, [(s, OLD + s, a, 1.0) for s, a in [(1, "a"), (2, "b"), (3, "a")]])
        await conn.execute(insert(m.rounds).values(id=7, coin=COIN, started_at=OLD, start_seq=1))
        await conn.execute(
            insert(m.round_accounts),
            [{"round_id": 7, "account": "a", "accepted_diff": 2.0, "accepted": 2, "rejected": 0}],
        )
        modes = ModeHistory("prop", {"b": [(OLD + 2.5, "pps")]})
        rows_read = await round_weights(conn, COIN, 7, 3, modes, OLD + 3)
        assert rows_read == {("a", "prop"): 2 * D32, ("b", "prop"): D32}  # b switched later
        await prune_shares(
            conn, COIN, before_time=OLD + 1.5, window=1, modes=modes, keep_from_seq=2
        )
        # the totals: every account under its mode when the block was found
        assert await round_weights(conn, COIN, 7, 3, modes, OLD + 3) == {("a", "prop"): 2 * D32}


async def _pool(engine: AsyncEngine, tmp_path: Path, **cfg: Any) -> Accounting:
    acc = Accounting(
        engine,
        AccountingConfig(scheme="pplns", fee_bps=100, **cfg),
        coin=COIN,
        log_dir=tmp_path / "sharelog",
    )
    await acc.start()
    return acc


async def test_a_prune_does_not_change_the_next_blocks_credits(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """A slow pool: the window (N = 2 at difficulty 10,000) reaches back past the three
    days of keep_shares_days. Pruning leaves what it covers (twice the window, in case
    the difficulty rises); the next block credits alice, whose shares are ten days old,
    exactly her part of the window."""
    acc = await _pool(engine, tmp_path, pplns_n=2.0, keep_shares_days=3.0)
    try:
        events = [
            share(OLD - 7200, "zed", difficulty=50_000.0),  # beyond twice the window
            share(OLD - 7100, "zed", difficulty=50_000.0, block=True),  # block 1
            share(OLD, "alice", difficulty=5000.0),
            share(OLD + 1, "alice", difficulty=5000.0),
            share(NOW - 60, "bob", difficulty=5000.0),
        ]
        for ev in events:
            await acc.record(ev)
        assert await acc.prune_shares(NOW) == 1  # zed's first share only
        async with engine.connect() as conn:
            accounts = list((await conn.scalars(select(m.shares.c.account))).all())
        assert sorted(accounts) == ["alice", "alice", "bob", "zed"]
        await acc.record(share(NOW - 30, "bob", difficulty=5000.0, block=True))
        await acc.flush()
        async with engine.connect() as conn:
            credits = dict(
                (
                    await conn.execute(
                        select(m.ledger.c.account, m.ledger.c.amount).where(
                            m.ledger.c.account != POOL_ACCOUNT, m.ledger.c.block_id == 2
                        )
                    )
                ).all()
            )
    finally:
        await acc.stop()
    # window 20,000 newest first: bob 5000 + 5000, alice 5000 + 5000; fee 1%
    net = 625_010_000 - 6_250_100
    assert credits == {"alice": net // 2, "bob": net // 2}
    assert pplns_window_weight(2.0, 10_000.0) == 20_000 * D32
