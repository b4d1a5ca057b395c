"""Builders shared by the store tests: share events, aggregators, rows read back.

All times are fixed (NOW is a Thursday 08:00:00 UTC, on a 10-minute boundary), so every
figure the tests expect can be worked out by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounting.aggregate import Aggregator, FlushBatch, RoundState, ShiftState
from hashquarry.accounting.writer import write_batch
from hashquarry.shares.events import ShareEvent, ShareResult

COIN = "bitcoin"
NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
TODAY = "2027-01-15"
YESTERDAY = "2027-01-14"
ND = 10_000.0  # network difficulty
SUBSIDY = 625_000_000
TX_FEES = 10_000
REWARD = SUBSIDY + TX_FEES  # coinbase value of every job in these tests
FEE_BPS = 100
MATURITY = 100
D32 = 2**32


def share(
    t: float,
    account: str,
    worker: str = "rig1",
    *,
    difficulty: float = 1000.0,
    result: ShareResult = ShareResult.ACCEPTED,
    delayed: bool = False,
    block: bool = False,
    remote: str = "192.0.2.1",
    network_difficulty: float = ND,
    height: int = 900_000,
) -> ShareEvent:
    return ShareEvent(
        time=t,
        account=account,
        worker=worker,
        job_id="1a",
        height=height,
        difficulty=difficulty,
        network_difficulty=network_difficulty,
        result=result,
        reason="" if result is ShareResult.ACCEPTED else result.value,
        hash_hex=f"{int(t):064x}" if result is ShareResult.ACCEPTED else None,
        is_block=block,
        delayed=delayed,
        remote=remote,
        session_id="s1",
        actual_difficulty=difficulty,
        block_reward=REWARD,
        tx_fees=TX_FEES,
        coin=COIN,
    )


def aggregator(
    *,
    modes: dict[str, str] | None = None,
    shift_span: float = 4000.0,
    round_started: float = NOW - 3600,
    next_block_id: int = 1,
) -> Aggregator:
    """A fresh pool: round 1 and shift 1 open, the given accounts in their modes."""
    modes = modes or {}

    def mode_of(_coin: str, account: str, _t: float) -> str:
        return modes.get(account, "pplns")

    return Aggregator(
        COIN,
        round_=RoundState(1, COIN, round_started, 1),
        shift=ShiftState(1, COIN, round_started, shift_span),
        next_block_id=next_block_id,
        mode_of=mode_of,
        fee_bps=FEE_BPS,
        shift_span=shift_span,
    )


async def write(
    conn: AsyncConnection,
    batch: FlushBatch,
    *,
    scheme: str = "pplns",
    pplns_n: float = 2.0,
) -> None:
    await write_batch(
        conn,
        batch,
        scheme_for_block=lambda _b: scheme,
        fee_bps=FEE_BPS,
        pplns_n=pplns_n,
        maturity=MATURITY,
    )


async def ingest(
    conn: AsyncConnection,
    events: Iterable[ShareEvent],
    *,
    agg: Aggregator | None = None,
    first_seq: int = 1,
    scheme: str = "pplns",
) -> Aggregator:
    """Fold events (seq from first_seq) into one batch and write it."""
    agg = agg or aggregator()
    for seq, ev in enumerate(events, first_seq):
        agg.apply(seq, ev)
    await write(conn, agg.take(), scheme=scheme)
    return agg


async def rows(
    conn: AsyncConnection,
    table: Table,
    *,
    where: Any = None,
    skip: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Every row of `table` as a dict, in primary-key order, without the `skip` columns."""
    q = select(table).order_by(*table.primary_key.columns)
    if where is not None:
        q = q.where(where)
    drop = set(skip)
    return [
        {k: v for k, v in r.items() if k not in drop}
        for r in (await conn.execute(q)).mappings().all()
    ]


def keyed(
    items: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
) -> dict[Any, dict[str, Any]]:
    return {key(r): r for r in items}
