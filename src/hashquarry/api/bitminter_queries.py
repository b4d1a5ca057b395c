"""The store reads behind the Bitminter dialect (H/s and base units; no API shapes here).

Hash rates are the accounting read models' 10-minute figures (`stats.workers`,
`stats.rates`): accepted share difficulty x 2^32 over the seconds the window covers.
A worker or user is *active* when it sent a proof of work in the last 5 minutes, the
rule Bitminter documents for a worker's `alive` flag.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounting import stats
from hashquarry.accounting.ledger import POOL_ACCOUNT
from hashquarry.store import models as m

HASHRATE_WINDOW = 600.0  # seconds: the "current" hash rate is a 10-minute average
ALIVE_SECONDS = 300.0  # "proof of work received in the last 5 minutes"
MANY_ACCOUNTS = 20  # past this many, one pool-wide worker query beats one per account


@dataclass(frozen=True)
class PoolSummary:
    hashrate: float  # H/s
    active_workers: int
    active_users: int


async def pool_summary(conn: AsyncConnection, coin: str, now: float) -> PoolSummary:
    rate = await stats.rates(conn, coin, now, HASHRATE_WINDOW)
    w = m.workers.c
    row = (
        await conn.execute(
            select(func.count(), func.count(func.distinct(w.account))).where(
                w.coin == coin, w.last_share >= now - ALIVE_SECONDS
            )
        )
    ).one()
    return PoolSummary(rate.hashrate, int(row[0]), int(row[1]))


async def open_shift(conn: AsyncConnection, coin: str) -> dict[str, Any] | None:
    s = m.shifts.c
    row = (
        (
            await conn.execute(
                select(m.shifts)
                .where(s.coin == coin, s.completed.is_(False))
                .order_by(s.id.desc())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def network_difficulty(conn: AsyncConnection, coin: str) -> float:
    """The latest network difficulty the pool's shares were checked against."""
    a = m.account_minutes.c
    value = await conn.scalar(
        select(a.network_difficulty)
        .where(a.coin == coin, a.network_difficulty > 0)
        .order_by(a.minute.desc())
        .limit(1)
    )
    return float(value or 0.0)


async def completed_shifts(
    conn: AsyncConnection, coin: str, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Completed shifts, newest first, each with `network_difficulty` at its completion."""
    s = m.shifts.c
    rows = [
        dict(r)
        for r in (
            await conn.execute(
                select(m.shifts)
                .where(s.coin == coin, s.completed.is_(True))
                .order_by(s.id.desc())
                .limit(limit)
                .offset(offset)
            )
        )
        .mappings()
        .all()
    ]
    minutes = {int(r["ended_at"] // 60) for r in rows if r["ended_at"] is not None}
    by_minute: dict[int, float] = {}
    if minutes:
        a = m.account_minutes.c
        q = (
            select(a.minute, func.max(a.network_difficulty))
            .where(a.coin == coin, a.minute.in_(minutes))
            .group_by(a.minute)
        )
        by_minute = {int(mi): float(d or 0.0) for mi, d in (await conn.execute(q)).all()}
    for r in rows:
        ended = r["ended_at"] if r["ended_at"] is not None else r["started_at"]
        r["ended_at"] = ended
        # The network's difficulty when the shift was completed; the shift's own span
        # (the work that completes it) if no share of that minute recorded one.
        r["network_difficulty"] = by_minute.get(int(ended // 60)) or float(r["span"])
    return rows


async def user_rates(
    conn: AsyncConnection, coin: str, now: float, accounts: Sequence[str] | None = None
) -> dict[str, list[stats.WorkerInfo]]:
    """account -> its workers (10-minute hash rate, last share), for these accounts or all."""
    if accounts is None or len(accounts) > MANY_ACCOUNTS:
        wanted = None if accounts is None else set(accounts)
        found = [
            w for w in await stats.workers(conn, coin, now) if wanted is None or w.account in wanted
        ]
    else:
        found = []
        for account in accounts:
            found.extend(await stats.workers(conn, coin, now, account=account))
    out: dict[str, list[stats.WorkerInfo]] = defaultdict(list)
    for w in found:
        if w.account != POOL_ACCOUNT:
            out[w.account].append(w)
    return out


async def work_totals(
    conn: AsyncConnection, coin: str, accounts: Sequence[str]
) -> dict[tuple[str, str], tuple[int, int]]:
    """(account, worker) -> (accepted, rejected) proofs of work, all time.

    Rejected counts stale and invalid shares alike: both were refused to the miner.
    """
    s = m.share_minutes.c
    q = (
        select(
            s.account,
            s.worker,
            func.coalesce(func.sum(s.accepted), 0),
            func.coalesce(func.sum(s.stale + s.invalid), 0),
        )
        .where(s.coin == coin, s.account.in_(list(accounts)))
        .group_by(s.account, s.worker)
    )
    return {(a, w): (int(acc), int(rej)) for a, w, acc, rej in (await conn.execute(q)).all()}


async def shift_accounts(
    conn: AsyncConnection, shift_id: int, accounts: Sequence[str]
) -> dict[str, tuple[float, int, int]]:
    """account -> (score, accepted, rejected) in one shift."""
    sa = m.shift_accounts.c
    q = select(sa.account, sa.score, sa.accepted, sa.rejected).where(
        sa.shift_id == shift_id, sa.account.in_(list(accounts))
    )
    return {a: (float(sc), int(acc), int(rej)) for a, sc, acc, rej in await conn.execute(q)}


async def spendable_balances(
    conn: AsyncConnection, coin: str, accounts: Sequence[str]
) -> dict[str, int]:
    """account -> matured balance in base units (`ledger.balances(...).balance`)."""
    lg = m.ledger.c
    q = (
        select(lg.account, func.coalesce(func.sum(lg.amount), 0))
        .where(lg.coin == coin, lg.bucket == "balance", lg.account.in_(list(accounts)))
        .group_by(lg.account)
    )
    return {a: int(v) for a, v in (await conn.execute(q)).all()}
