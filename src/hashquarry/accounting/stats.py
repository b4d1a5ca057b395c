"""Read models: every figure the APIs show, computed from the store.

Hashrate is H/s: sum of accepted share difficulty x 2^32 / seconds (SHA-256d).
Windows are whole minutes ending at `now`; history buckets are multiples of
600 s aligned to the epoch, as f2pool's hash_rate/history expects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.store import models as m

HASHES = 2**32
MAX_HISTORY_SECONDS = 30 * 86400
MAX_WORKER_HISTORY_SECONDS = 3 * 86400


class StatsError(ValueError):
    pass


def _minute_range(now: float, seconds: float) -> tuple[int, int]:
    """Minutes back from the last one that has begun before `now` (maybe partly over)."""
    end = math.ceil(now / 60) - 1
    return end - int(seconds // 60) + 1, end


def _covered(now: float, lo: int) -> float:
    """Seconds the minutes from `lo` up to `now` span: the divisor of a rate, so the
    current, partial minute neither hides new shares nor dilutes the rate."""
    return max(now - lo * 60, 1.0)


def _table(account: str | None, worker: str | None) -> Any:
    return m.share_minutes if worker is not None or account is None else m.account_minutes


def _where(q: Select[Any], t: Any, coin: str, account: str | None, worker: str | None) -> Any:
    q = q.where(t.c.coin == coin)
    if account is not None:
        q = q.where(t.c.account == account)
    if worker is not None:
        q = q.where(t.c.worker == worker)
    return q


@dataclass(frozen=True)
class Rates:
    hashrate: float
    stale_hashrate: float
    delayed_hashrate: float
    invalid_hashrate: float
    accepted: int
    stale: int
    invalid: int


async def rates(
    conn: AsyncConnection,
    coin: str,
    now: float,
    seconds: float,
    account: str | None = None,
    worker: str | None = None,
) -> Rates:
    t = _table(account, worker)
    lo, hi = _minute_range(now, seconds)
    q = select(
        func.coalesce(func.sum(t.c.accepted_diff), 0.0),
        func.coalesce(func.sum(t.c.stale_diff), 0.0),
        func.coalesce(func.sum(t.c.delayed_diff), 0.0),
        func.coalesce(func.sum(t.c.invalid_diff), 0.0),
        func.coalesce(func.sum(t.c.accepted), 0),
        func.coalesce(func.sum(t.c.stale), 0),
        func.coalesce(func.sum(t.c.invalid), 0),
    ).where(t.c.minute >= lo, t.c.minute <= hi)
    row = (await conn.execute(_where(q, t, coin, account, worker))).one()
    f = HASHES / _covered(now, lo)
    return Rates(
        row[0] * f, row[1] * f, row[2] * f, row[3] * f, int(row[4]), int(row[5]), int(row[6])
    )


async def history(
    conn: AsyncConnection,
    coin: str,
    *,
    start: float,
    end: float,
    interval: int,
    account: str | None = None,
    worker: str | None = None,
) -> list[dict[str, float]]:
    """Buckets of `interval` seconds in [start, end): hashrate, stale, delayed per bucket."""
    if interval <= 0 or interval % 600:
        raise StatsError("interval must be a positive multiple of 600 seconds")
    limit = MAX_WORKER_HISTORY_SECONDS if worker is not None else MAX_HISTORY_SECONDS
    if end <= start:
        raise StatsError("end must be after start")
    if end - start > limit:
        raise StatsError(f"the range may span at most {limit // 86400} days")
    t = _table(account, worker)
    first = int(start // interval) * interval
    bucket = t.c.minute * 60 - (t.c.minute * 60) % interval
    q = select(
        bucket, func.sum(t.c.accepted_diff), func.sum(t.c.stale_diff), func.sum(t.c.delayed_diff)
    ).where(t.c.minute >= int(first // 60), t.c.minute * 60 < end)
    q = _where(q, t, coin, account, worker).group_by(bucket)
    got = {int(r[0]): r for r in (await conn.execute(q)).all()}
    out = []
    f = HASHES / interval
    for ts in range(first, int(end), interval):
        r = got.get(ts)
        out.append(
            {
                "timestamp": ts,
                "hash_rate": (r[1] if r else 0.0) * f,
                "stale_hash_rate": (r[2] if r else 0.0) * f,
                "delay_hash_rate": (r[3] if r else 0.0) * f,
            }
        )
    return out


@dataclass(frozen=True)
class WorkerInfo:
    account: str
    worker: str
    hashrate: float  # 10 min
    h1: float
    h24: float
    stale_h1: float
    stale_h24: float
    last_share: float
    last_host: str
    status: str  # online | offline | invalid


async def workers(
    conn: AsyncConnection,
    coin: str,
    now: float,
    account: str | None = None,
    offline_after: float = 600.0,
    invalid_ratio: float = 0.5,
) -> list[WorkerInfo]:
    w = m.workers
    q = select(w.c.account, w.c.worker, w.c.last_share, w.c.last_host).where(w.c.coin == coin)
    if account is not None:
        q = q.where(w.c.account == account)
    base = (await conn.execute(q.order_by(w.c.account, w.c.worker))).all()
    if not base:
        return []
    s = m.share_minutes
    lo24, hi = _minute_range(now, 86400)
    lo1, _ = _minute_range(now, 3600)
    lo10, _ = _minute_range(now, 600)

    def win(col: Any, lo: int) -> Any:
        return func.coalesce(func.sum(case((s.c.minute >= lo, col), else_=0)), 0)

    agg = select(
        s.c.account,
        s.c.worker,
        win(s.c.accepted_diff, lo10),
        win(s.c.accepted_diff, lo1),
        func.sum(s.c.accepted_diff),
        win(s.c.stale_diff, lo1),
        func.sum(s.c.stale_diff),
        win(s.c.invalid, lo1),
        win(s.c.accepted, lo1),
    ).where(s.c.coin == coin, s.c.minute >= lo24, s.c.minute <= hi)
    if account is not None:
        agg = agg.where(s.c.account == account)
    sums = {(r[0], r[1]): r for r in (await conn.execute(agg.group_by(s.c.account, s.c.worker)))}
    out = []
    for acct, name, last_share, host in base:
        r = sums.get((acct, name))
        d10, d1, d24, st1, st24, inv1, acc1 = (float(x or 0) for x in r[2:]) if r else (0.0,) * 7
        if now - last_share > offline_after:
            status = "offline"
        elif inv1 + acc1 >= 10 and inv1 >= invalid_ratio * (inv1 + acc1):
            status = "invalid"
        else:
            status = "online"
        c10, c1, c24 = _covered(now, lo10), _covered(now, lo1), _covered(now, lo24)
        out.append(
            WorkerInfo(
                acct,
                name,
                d10 * HASHES / c10,
                d1 * HASHES / c1,
                d24 * HASHES / c24,
                st1 * HASHES / c1,
                st24 * HASHES / c24,
                last_share,
                host,
                status,
            )
        )
    return out


@dataclass(frozen=True)
class PoolTotals:
    hashrate: float
    workers_online: int
    accounts_online: int
    total_hashes: float
    blocks_found: int


async def pool_totals(
    conn: AsyncConnection, coin: str, now: float, offline_after: float = 600.0
) -> PoolTotals:
    r = await rates(conn, coin, now, 600)
    w = m.workers
    since = now - offline_after
    online = (
        await conn.execute(
            select(func.count(), func.count(func.distinct(w.c.account))).where(
                w.c.coin == coin, w.c.last_share >= since
            )
        )
    ).one()
    total = await conn.scalar(
        select(func.coalesce(func.sum(m.account_minutes.c.accepted_diff), 0.0)).where(
            m.account_minutes.c.coin == coin
        )
    )
    found = await conn.scalar(select(func.count()).where(m.blocks.c.coin == coin))
    return PoolTotals(
        r.hashrate, int(online[0]), int(online[1]), float(total or 0) * HASHES, int(found or 0)
    )


async def blocks(
    conn: AsyncConnection,
    coin: str,
    *,
    limit: int = 10,
    offset: int = 0,
    status: str | None = None,
    account: str | None = None,
) -> list[dict[str, Any]]:
    q = select(m.blocks).where(m.blocks.c.coin == coin)
    if status is not None:
        q = q.where(m.blocks.c.status == status)
    if account is not None:
        q = q.where(m.blocks.c.finder_account == account)
    q = q.order_by(m.blocks.c.id.desc()).limit(limit).offset(offset)
    return [dict(r) for r in (await conn.execute(q)).mappings().all()]


DAY = 86_400.0
# Luck periods: the 3/7/30/90 days, and the 24 hours f2pool's `lucky` map shows.
LUCK_PERIODS: dict[str, float] = {
    "24h": DAY,
    "3d": 3 * DAY,
    "7d": 7 * DAY,
    "30d": 30 * DAY,
    "90d": 90 * DAY,
}
ON_CHAIN = ("unconfirmed", "confirmed")


async def luck(
    conn: AsyncConnection, coin: str, now: float, periods: Mapping[str, float] = LUCK_PERIODS
) -> dict[str, float]:
    """Period name -> expected work / actual work over the last `seconds` of each period;
    above 1 is lucky. Periods without any work are left out.

    Expected work: the network difficulty of every block found in the period that is on
    the chain (unconfirmed or confirmed). Actual work: the accepted difficulty of the
    rounds those blocks, and any stale or orphaned ones found in the period, ended, plus
    the round in progress (work without a block yet). Both in difficulty-1 units, so
    the ratio is exact; one small query over the blocks table (each block records its
    network difficulty and its round's work), not a scan of share minutes."""
    b, r = m.blocks.c, m.rounds.c
    columns = []
    for seconds in periods.values():
        recent = b.found_at >= now - seconds
        columns.append(
            func.sum(case((and_(recent, b.status.in_(ON_CHAIN)), b.difficulty), else_=0))
        )
        columns.append(func.sum(case((recent, b.round_diff), else_=0)))
    row = (await conn.execute(select(*columns).where(b.coin == coin))).one()
    open_round = await conn.scalar(
        select(func.coalesce(func.sum(r.accepted_diff), 0.0)).where(
            r.coin == coin, r.ended_at.is_(None)
        )
    )
    out = {}
    for i, key in enumerate(periods):
        expected, work = float(row[2 * i] or 0.0), float(row[2 * i + 1] or 0.0)
        work += float(open_round or 0.0)
        if work > 0:
            out[key] = expected / work
    return out


async def current_round(conn: AsyncConnection, coin: str) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                select(m.rounds)
                .where(m.rounds.c.coin == coin, m.rounds.c.ended_at.is_(None))
                .order_by(m.rounds.c.id.desc())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def shifts(conn: AsyncConnection, coin: str, limit: int = 10) -> list[dict[str, Any]]:
    rows = (
        (
            await conn.execute(
                select(m.shifts)
                .where(m.shifts.c.coin == coin)
                .order_by(m.shifts.c.id.desc())
                .limit(limit)
            )
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows]


async def shift_scores(conn: AsyncConnection, shift_id: int) -> dict[str, float]:
    rows = await conn.execute(
        select(m.shift_accounts.c.account, m.shift_accounts.c.score).where(
            m.shift_accounts.c.shift_id == shift_id
        )
    )
    return {a: float(s) for a, s in rows.all()}


async def ledger_totals_by_block(conn: AsyncConnection, coin: str) -> dict[int, int]:
    rows = await conn.execute(
        select(m.ledger.c.block_id, func.sum(m.ledger.c.amount))
        .where(m.ledger.c.coin == coin, m.ledger.c.block_id.is_not(None))
        .group_by(m.ledger.c.block_id)
    )
    return {int(b): int(s) for b, s in rows.all()}


async def accepted_totals(conn: AsyncConnection, coin: str) -> dict[str, int]:
    rows = await conn.execute(
        select(m.account_minutes.c.account, func.sum(m.account_minutes.c.accepted))
        .where(m.account_minutes.c.coin == coin)
        .group_by(m.account_minutes.c.account)
    )
    return {a: int(n) for a, n in rows.all()}
