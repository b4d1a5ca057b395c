"""Replaying the share log changes nothing already applied, on every backend.

The aggregator skips records at or below the store's applied seq, and a flush of
nothing writes nothing (above all, it does not move the applied seq back), so a
restarted pool can replay its whole log; records past the applied seq land once.
"""

from __future__ import annotations

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hashquarry.accounting.writer import APPLIED_SEQ, get_state
from hashquarry.store import models as m

from .builders import COIN, NOW, aggregator, rows, write
from .test_store import ACCOUNTING_TABLES, _run


async def test_replayed_records_change_nothing(engine: AsyncEngine) -> None:
    """After a flush, the same records again (a replay) make empty batches, and writing
    them (as a restarted pool's flush would) leaves every table as it was."""
    events = _run()
    agg = aggregator(modes={"carol": "pps"})
    for seq, ev in enumerate(events, 1):
        agg.apply(seq, ev)
    async with engine.begin() as conn:
        await _carol_in_pps(conn)
        await write(conn, agg.take())
    async with engine.connect() as conn:
        before = {t.name: await rows(conn, t, skip=["updated_at"]) for t in ACCOUNTING_TABLES}
        applied = await get_state(conn, APPLIED_SEQ)
    assert applied == len(events) and before["ledger"] and before["shares"]
    # A restarted aggregator is told what the store has; the share log replays from 1.
    again = aggregator(modes={"carol": "pps"})
    again.applied_seq = applied
    for seq, ev in enumerate(events, 1):
        again.apply(seq, ev)
        agg.apply(seq, ev)
    replayed = [again.take(), agg.take()]
    async with engine.begin() as conn:
        for batch in replayed:
            await write(conn, batch)
    async with engine.connect() as conn:
        after = {t.name: await rows(conn, t, skip=["updated_at"]) for t in ACCOUNTING_TABLES}
    assert after == before


async def test_a_replay_past_the_applied_seq_is_written_once(engine: AsyncEngine) -> None:
    """The store applied seq 1-4; the log replays 1-9: only 5-9 land, and the result is
    the same as one flush of 1-9 on a fresh store, row for row."""
    events = _run()
    agg = aggregator(modes={"carol": "pps"})
    for seq, ev in enumerate(events[:4], 1):
        agg.apply(seq, ev)
    async with engine.begin() as conn:
        await _carol_in_pps(conn)
        await write(conn, agg.take())
    for seq, ev in enumerate(events, 1):  # the replay, as Accounting.start feeds it
        agg.apply(seq, ev)
    async with engine.begin() as conn:
        await write(conn, agg.take())
    async with engine.connect() as conn:
        got = await _comparable(conn)
    fresh = aggregator(modes={"carol": "pps"})
    for seq, ev in enumerate(events, 1):
        fresh.apply(seq, ev)
    async with engine.begin() as conn:
        for t in ACCOUNTING_TABLES:
            # The span marks are the migration's, as on a fresh store.
            keep = m.state.c.key.like("share_spans_%") if t is m.state else None
            await conn.execute(t.delete() if keep is None else t.delete().where(~keep))
        await _carol_in_pps(conn)
        await write(conn, fresh.take())
    async with engine.connect() as conn:
        once = await _comparable(conn)
    assert got == once
    assert len(got["shares"]) == 6 and len(got["blocks"]) == 1 and len(got["ledger"]) == 3


async def _carol_in_pps(conn: AsyncConnection) -> None:
    await conn.execute(
        insert(m.settle_modes).values(
            coin=COIN, account="carol", mode="pps", activate_at=NOW - 86400, created_at=0.0
        )
    )


async def _comparable(conn: AsyncConnection) -> dict[str, list[dict[str, object]]]:
    """Every accounting row but wall-clock times and the ids the database assigns."""
    out = {}
    for t in ACCOUNTING_TABLES:
        skip = ["updated_at", "created_at"] + (["id"] if t in (m.ledger, m.settle_modes) else [])
        out[t.name] = await rows(conn, t, skip=skip)
    return out
