"""Writes a FlushBatch to the store in one transaction, with the last applied seq.

Because the aggregates and the share-log position move together, a crash at
any point either keeps the whole batch or none of it, and replay picks up
exactly where the store left off.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, case, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounting import spans
from hashquarry.accounting.aggregate import FlushBatch, FoundBlock, RoundState, ShiftState
from hashquarry.accounting.ledger import credit_block
from hashquarry.store import models as m

APPLIED_SEQ = "share_log_applied_seq"


def _insert(conn: AsyncConnection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def upsert(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Iterable[str],
    *,
    add: Iterable[str] = (),
    least: Iterable[str] = (),
    greatest: Iterable[str] = (),
    replace: Iterable[str] = (),
    keep_nonzero: Iterable[str] = (),
) -> None:
    """INSERT ... ON CONFLICT DO UPDATE with additive, min, max and replace columns."""
    if not rows:
        return
    stmt = _insert(conn, table)
    ex = stmt.excluded
    c = table.c
    lo = func.least if conn.dialect.name == "postgresql" else func.min
    hi = func.greatest if conn.dialect.name == "postgresql" else func.max
    sets: dict[str, Any] = {}
    for col in add:
        sets[col] = c[col] + ex[col]
    for col in least:
        sets[col] = lo(c[col], ex[col])
    for col in greatest:
        sets[col] = hi(c[col], ex[col])
    for col in replace:
        sets[col] = ex[col]
    for col in keep_nonzero:
        # A flush with only rejected shares knows no value; keep the stored one.
        sets[col] = case((ex[col] != 0, ex[col]), else_=c[col])
    await conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=sets), rows)


async def get_state(conn: AsyncConnection, key: str, default: int = 0) -> int:
    value = await conn.scalar(select(m.state.c.value).where(m.state.c.key == key))
    return default if value is None else int(value)


async def set_state(conn: AsyncConnection, key: str, value: int) -> None:
    await upsert(conn, m.state, [{"key": key, "value": value}], ["key"], replace=["value"])


_MINUTE_ADD = (
    "accepted",
    "accepted_diff",
    "stale",
    "stale_diff",
    "invalid",
    "invalid_diff",
    "delayed_diff",
)


async def write_batch(
    conn: AsyncConnection,
    batch: FlushBatch,
    *,
    scheme_for_block: Any,
    fee_bps: int,
    pplns_n: float,
    maturity: int,
) -> None:
    if batch.empty:
        return  # nothing applied: above all, the applied seq must not move back to 0
    now = time.time()
    await upsert(
        conn,
        m.share_minutes,
        [
            {"coin": k[0], "account": k[1], "worker": k[2], "minute": k[3], **_agg(a)}
            for k, a in batch.minutes.items()
        ],
        ["coin", "account", "worker", "minute"],
        add=_MINUTE_ADD,
        least=["first_share"],
        greatest=["last_share"],
        keep_nonzero=["network_difficulty"],
    )
    await upsert(
        conn,
        m.account_minutes,
        [
            {"coin": k[0], "account": k[1], "minute": k[2], **_agg(a)}
            for k, a in batch.account_minutes.items()
        ],
        ["coin", "account", "minute"],
        add=_MINUTE_ADD,
        least=["first_share"],
        greatest=["last_share"],
        keep_nonzero=["network_difficulty"],
    )
    await upsert(
        conn,
        m.workers,
        [
            {
                "coin": k[0],
                "account": k[1],
                "worker": k[2],
                "first_seen": w.first_seen,
                "last_share": w.last_share,
                "last_host": w.last_host,
                "accepted": w.accepted,
                "invalid": w.invalid,
            }
            for k, w in batch.workers.items()
        ],
        ["coin", "account", "worker"],
        add=["accepted", "invalid"],
        least=["first_seen"],
        greatest=["last_share"],
        replace=["last_host"],
    )
    if batch.shares:
        # The bulk of a flush: plain tuples through the driver, no per-row dicts.
        marks = ", ".join(_placeholders(conn, 6))
        await conn.exec_driver_sql(
            f"INSERT INTO shares (seq, coin, time, account, worker, difficulty) VALUES ({marks})",
            batch.shares,
        )
    # Before the blocks below: their PPLNS windows read the spans this batch completes.
    await spans.close_spans(conn, batch.last_seq, batch.shares)
    await _rounds(conn, batch.rounds.values())
    await _shifts(conn, batch.shifts.values())
    for block in batch.blocks:
        await _block(conn, block, scheme_for_block(block), fee_bps, pplns_n, maturity, now)
    await upsert(
        conn,
        m.pps_accruals,
        [
            {
                "coin": k[0],
                "account": k[1],
                "day": k[2],
                "sats": p.nano // 10**9,
                "nano": p.nano % 10**9,
                "fee_nano": p.fee_nano,
                "tx_fee_nano": p.tx_fee_nano,
                "accepted_diff": p.accepted_diff,
                "settled": False,
            }
            for k, p in batch.pps.items()
        ],
        ["coin", "account", "day"],
        add=["sats", "nano", "fee_nano", "tx_fee_nano", "accepted_diff"],
    )
    await set_state(conn, APPLIED_SEQ, batch.last_seq)


def _placeholders(conn: AsyncConnection, n: int) -> list[str]:
    style = conn.dialect.paramstyle
    if style == "qmark":
        return ["?"] * n
    if style in ("numeric_dollar", "dollar"):
        return [f"${i + 1}" for i in range(n)]
    if style == "format":
        return ["%s"] * n
    raise RuntimeError(f"unsupported paramstyle {style}")


def _agg(a: Any) -> dict[str, Any]:
    return {
        "accepted": a.accepted,
        "accepted_diff": a.accepted_diff,
        "stale": a.stale,
        "stale_diff": a.stale_diff,
        "invalid": a.invalid,
        "invalid_diff": a.invalid_diff,
        "delayed_diff": a.delayed_diff,
        "first_share": a.first_share,
        "last_share": a.last_share,
        "network_difficulty": a.network_difficulty,
    }


async def _rounds(conn: AsyncConnection, rounds: Iterable[RoundState]) -> None:
    for r in rounds:
        await upsert(
            conn,
            m.rounds,
            [
                {
                    "id": r.id,
                    "coin": r.coin,
                    "started_at": r.started_at,
                    "start_seq": r.start_seq,
                    "accepted": r.accepted,
                    "accepted_diff": r.accepted_diff,
                    "rejected": r.rejected,
                    "rejected_diff": r.rejected_diff,
                    "network_difficulty": r.network_difficulty,
                    "ended_at": r.ended_at,
                    "end_seq": r.end_seq,
                    "block_id": r.block_id,
                }
            ],
            ["id"],
            add=["accepted", "accepted_diff", "rejected", "rejected_diff"],
            replace=["network_difficulty"]
            + (["ended_at", "end_seq", "block_id"] if r.ended_at is not None else []),
        )
        await upsert(
            conn,
            m.round_accounts,
            [
                {
                    "round_id": r.id,
                    "account": a,
                    "accepted_diff": v[0],
                    "accepted": v[1],
                    "rejected": v[2],
                }
                for a, v in r.accounts.items()
            ],
            ["round_id", "account"],
            add=["accepted_diff", "accepted", "rejected"],
        )


async def _shifts(conn: AsyncConnection, shifts: Iterable[ShiftState]) -> None:
    for s in shifts:
        await upsert(
            conn,
            m.shifts,
            [
                {
                    "id": s.id,
                    "coin": s.coin,
                    "started_at": s.started_at,
                    "span": s.span,
                    "accepted": s.accepted,
                    "accepted_diff": s.accepted_diff,
                    "rejected": s.rejected,
                    "score": s.accepted_diff,
                    "ended_at": s.ended_at,
                    "completed": s.completed,
                }
            ],
            ["id"],
            add=["accepted", "accepted_diff", "rejected", "score"],
            replace=["ended_at", "completed"] if s.completed else [],
        )
        await upsert(
            conn,
            m.shift_accounts,
            [
                {"shift_id": s.id, "account": a, "score": v[0], "accepted": v[1], "rejected": v[2]}
                for a, v in s.accounts.items()
            ],
            ["shift_id", "account"],
            add=["score", "accepted", "rejected"],
        )


async def _block(
    conn: AsyncConnection,
    b: FoundBlock,
    scheme: str,
    fee_bps: int,
    pplns_n: float,
    maturity: int,
    now: float,
) -> None:
    effort = b.round_diff / b.network_difficulty if b.network_difficulty else 0.0
    await conn.execute(
        insert(m.blocks).values(
            id=b.id,
            coin=b.coin,
            height=b.height,
            hash=b.hash,
            difficulty=b.network_difficulty,
            income=b.income,
            tx_fees=b.tx_fees,
            finder_account=b.account,
            finder_worker=b.worker,
            found_at=b.found_at,
            seq=b.seq,
            round_id=b.round_id,
            round_duration=max(0.0, b.found_at - b.round_started_at),
            round_accepted=b.round_accepted,
            round_rejected=b.round_rejected,
            round_diff=b.round_diff,
            effort=effort,
            status="processing",
            confirmations=0,
            confirmations_left=maturity,
            scheme=scheme,
            credited=False,
            updated_at=now,
        )
    )
    await credit_block(conn, b, scheme=scheme, fee_bps=fee_bps, pplns_n=pplns_n, now=now)
    await conn.execute(update(m.blocks).where(m.blocks.c.id == b.id).values(credited=True))
