"""SiaMining read models: what one payout address (and the pool) did, from the store.

An address is public, so only address-mode accounts are found by it: a miner that
authorized with the address as its user name. Registered mining users are never found
by their wallet address (their data is for their owner's API keys only). An address may
have been mined under more than one spelling of itself (bech32 in either case), so every
query takes the list of account names that spell it.

Hashrate is H/s: accepted share difficulty x 2^32 over the seconds a window covers.
Windows are whole minutes ending with the one `now` falls in; the divisor is the seconds
from the window's first minute to `now`, so the current, partial minute neither hides
new shares nor dilutes the rate (as in accounting.stats).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounting.ledger import POOL_ACCOUNT
from hashquarry.payouts.engine import payout_entries
from hashquarry.store import models as m

HASHES = 2**32
INTERVALS = (300, 900, 3600, 10800, 43200, 86400)
HISTORY_SPAN = 86400  # hashrate history: the last day ...
HISTORY_BUCKET = 900  # ... in 15-minute points, as SiaMining's history shows
ON_CHAIN = ("unconfirmed", "confirmed")  # blocks the node has on its main chain
INCOME_KINDS = ("revenue", "dividend", "reward")
PAYOUTS_SHOWN = 100


@dataclass(frozen=True)
class Window:
    seconds: int
    lo: int  # first minute (unix minute) in the window
    covered: float  # seconds from that minute to now: the rate's divisor


def windows(now: float, intervals: Sequence[int] = INTERVALS) -> tuple[int, list[Window]]:
    """(last minute, a window per interval) ending with the minute `now` falls in."""
    end = math.ceil(now / 60) - 1
    out = []
    for seconds in intervals:
        lo = end - seconds // 60 + 1
        out.append(Window(seconds, lo, max(now - lo * 60, 1.0)))
    return end, out


@dataclass
class IntervalSums:
    interval: int
    hash_rate: float
    valid: int
    stale: int
    invalid: int
    accepted_diff: float


async def known_accounts(conn: AsyncConnection, coin: str, spellings: Sequence[str]) -> list[str]:
    """Which spellings of an address are accounts here: mined, or have ledger entries."""
    spellings = [s for s in spellings if s != POOL_ACCOUNT]
    mined = select(m.workers.c.account).where(
        m.workers.c.coin == coin, m.workers.c.account.in_(spellings)
    )
    booked = select(m.ledger.c.account).where(
        m.ledger.c.coin == coin, m.ledger.c.account.in_(spellings)
    )
    found = set((await conn.execute(mined.distinct())).scalars())
    found |= set((await conn.execute(booked.distinct())).scalars())
    return sorted(found)


@dataclass(frozen=True)
class Totals:
    accepted_diff: float
    valid: int
    stale: int
    invalid: int
    last_share: float | None
    blocks_found: int


async def totals(conn: AsyncConnection, coin: str, accounts: Sequence[str]) -> Totals:
    a = m.account_minutes.c
    row = (
        await conn.execute(
            select(
                func.coalesce(func.sum(a.accepted_diff), 0.0),
                func.coalesce(func.sum(a.accepted), 0),
                func.coalesce(func.sum(a.stale), 0),
                func.coalesce(func.sum(a.invalid), 0),
            ).where(a.coin == coin, a.account.in_(accounts))
        )
    ).one()
    last = await conn.scalar(
        select(func.max(m.workers.c.last_share)).where(
            m.workers.c.coin == coin, m.workers.c.account.in_(accounts)
        )
    )
    found = await conn.scalar(
        select(func.count()).where(
            m.blocks.c.coin == coin,
            m.blocks.c.finder_account.in_(accounts),
            m.blocks.c.status.in_(ON_CHAIN),
        )
    )
    return Totals(
        float(row[0]),
        int(row[1]),
        int(row[2]),
        int(row[3]),
        None if last is None else float(last),
        int(found or 0),
    )


@dataclass(frozen=True)
class Money:
    balance: int  # matured, unpaid: what the next payout pays
    immature: int
    paid: int


async def money(conn: AsyncConnection, coin: str, accounts: Sequence[str]) -> Money:
    """The ledger's sums, as accounting.ledger.balances computes them for one account."""
    c = m.ledger.c
    row = (
        await conn.execute(
            select(
                func.coalesce(func.sum(case((c.bucket == "balance", c.amount), else_=0)), 0),
                func.coalesce(func.sum(case((c.bucket == "immature", c.amount), else_=0)), 0),
                func.coalesce(func.sum(case((c.kind == "payout", -c.amount), else_=0)), 0),
            ).where(c.coin == coin, c.account.in_(accounts))
        )
    ).one()
    return Money(int(row[0]), int(row[1]), int(row[2]))


async def interval_sums(
    conn: AsyncConnection,
    coin: str,
    accounts: Sequence[str],
    now: float,
    *,
    per_worker: bool = False,
    intervals: Sequence[int] = INTERVALS,
) -> dict[str, list[IntervalSums]]:
    """Share figures per interval: {"": [...]} for the address, or {worker: [...]}."""
    end, wins = windows(now, intervals)
    t = m.share_minutes if per_worker else m.account_minutes
    c = t.c
    cols: list[Any] = []
    for w in wins:
        for col in (c.accepted_diff, c.accepted, c.stale, c.invalid):
            cols.append(func.coalesce(func.sum(case((c.minute >= w.lo, col), else_=0)), 0))
    keys = [c.worker] if per_worker else []
    q = select(*keys, *cols).where(
        c.coin == coin,
        c.account.in_(accounts),
        c.minute >= min(w.lo for w in wins),
        c.minute <= end,
    )
    if per_worker:
        q = q.group_by(c.worker)
    out: dict[str, list[IntervalSums]] = {}
    for row in (await conn.execute(q)).all():
        name = str(row[0]) if per_worker else ""
        values = row[len(keys) :]
        sums = out.setdefault(name, [IntervalSums(w.seconds, 0.0, 0, 0, 0, 0.0) for w in wins])
        for i, w in enumerate(wins):
            diff, valid, stale, invalid = values[4 * i : 4 * i + 4]
            s = sums[i]
            s.accepted_diff += float(diff)
            s.hash_rate = s.accepted_diff * HASHES / w.covered
            s.valid += int(valid)
            s.stale += int(stale)
            s.invalid += int(invalid)
    return out


async def interval_rewards(
    conn: AsyncConnection,
    coin: str,
    accounts: Sequence[str],
    now: float,
    intervals: Sequence[int] = INTERVALS,
) -> list[int]:
    """Base units earned in each interval up to `now`, by when the ledger booked them.

    Earnings are block credits (booked when the block is found; blocks since found stale
    or orphaned earn nothing) and income booked straight to the balance (PPS days,
    dividends). Maturing a block only moves money between buckets and is not income.
    """
    c, b = m.ledger.c, m.blocks.c
    earned = or_(
        and_(c.block_id.is_(None), c.bucket == "balance"),
        and_(c.ref.like("%:credit"), b.status.not_in(("stale", "orphan"))),
    )
    cols = [
        func.coalesce(func.sum(case((c.created_at > now - s, c.amount), else_=0)), 0)
        for s in intervals
    ]
    q = (
        select(*cols)
        .select_from(m.ledger.outerjoin(m.blocks, b.id == c.block_id))
        .where(
            c.coin == coin,
            c.account.in_(accounts),
            c.kind.in_(INCOME_KINDS),
            c.created_at > now - max(intervals),
            c.created_at <= now,
            earned,
        )
    )
    row = (await conn.execute(q)).one()
    return [int(v) for v in row]


async def history(
    conn: AsyncConnection,
    coin: str,
    accounts: Sequence[str],
    now: float,
    *,
    span: int = HISTORY_SPAN,
    bucket: int = HISTORY_BUCKET,
) -> list[tuple[int, float]]:
    """(bucket start, H/s) from the first bucket with shares in the last `span` seconds up
    to the current bucket, empty buckets included (a miner that stopped shows zeros).
    The current bucket's rate is over the seconds it has covered so far; at the very
    instant a bucket begins it is not shown yet."""
    current = int(now // bucket) * bucket
    first = current - span + bucket
    c = m.account_minutes.c
    start = c.minute * 60 - (c.minute * 60) % bucket
    q = (
        select(start, func.sum(c.accepted_diff))
        .where(
            c.coin == coin,
            c.account.in_(accounts),
            c.minute >= first // 60,
            c.minute * 60 < now,
        )
        .group_by(start)
    )
    got = {int(ts): float(d or 0) for ts, d in (await conn.execute(q)).all()}
    if not got:
        return []
    out = []
    newest = current if now > current else current - bucket  # one that has begun
    for ts in range(min(got), newest + 1, bucket):
        seconds = bucket if ts < current else now - ts
        out.append((ts, got.get(ts, 0.0) * HASHES / seconds))
    return out


async def worker_last_shares(
    conn: AsyncConnection, coin: str, accounts: Sequence[str]
) -> dict[str, float]:
    """worker name -> last share time (the latest over the address's spellings)."""
    w = m.workers.c
    rows = await conn.execute(
        select(w.worker, func.max(w.last_share))
        .where(w.coin == coin, w.account.in_(accounts))
        .group_by(w.worker)
    )
    return {str(name): float(last) for name, last in rows.all()}


async def payouts(conn: AsyncConnection, coin: str, accounts: Sequence[str]) -> list[Any]:
    """Sent and confirmed payouts, newest first."""
    rows = []
    for account in accounts:
        rows += await payout_entries(conn, coin, account, limit=PAYOUTS_SHOWN)
    rows.sort(key=lambda r: r["paid_time"] or 0.0, reverse=True)
    return rows[:PAYOUTS_SHOWN]


@dataclass(frozen=True)
class PoolFigures:
    hash_rate: float
    active_accounts: int
    accepted_diff: float
    blocks_found: int


SETTLED_MINUTES = 5  # minute rows this far back no longer change


class WorkTotal:
    """All work ever accepted, without summing every minute row of the pool's history on
    each request: the sum of settled minutes is kept, and only newer rows are added."""

    def __init__(self) -> None:
        self.upto: int | None = None  # last minute in `settled`
        self.settled = 0.0

    async def read(self, conn: AsyncConnection, coin: str, end: int) -> float:
        a = m.account_minutes.c

        async def work(*where: Any) -> float:
            q = select(func.coalesce(func.sum(a.accepted_diff), 0.0))
            return float(await conn.scalar(q.where(a.coin == coin, *where)) or 0.0)

        stable = end - SETTLED_MINUTES
        upto = self.upto
        if upto is None or upto < stable:
            newer = [] if upto is None else [a.minute > upto]
            delta = await work(*newer, a.minute <= stable)
            if self.upto == upto:  # no concurrent request added it meanwhile
                self.settled += delta
                self.upto = stable
        assert self.upto is not None
        return self.settled + await work(a.minute > self.upto)


async def pool_figures(
    conn: AsyncConnection,
    coin: str,
    now: float,
    work: WorkTotal,
    *,
    window: int = 600,
    active: float = 600.0,
) -> PoolFigures:
    """The pool's rate over `window`, accounts with a share in the last `active` seconds,
    all work ever accepted, and blocks on the main chain."""
    end, (w,) = windows(now, (window,))
    a = m.account_minutes.c
    recent = await conn.scalar(
        select(func.coalesce(func.sum(a.accepted_diff), 0.0)).where(
            a.coin == coin, a.minute >= w.lo, a.minute <= end
        )
    )
    ever = await work.read(conn, coin, end)
    online = await conn.scalar(
        select(func.count(func.distinct(m.workers.c.account))).where(
            m.workers.c.coin == coin,
            m.workers.c.last_share >= now - active,
            m.workers.c.last_share <= now,
        )
    )
    found = await conn.scalar(
        select(func.count()).where(m.blocks.c.coin == coin, m.blocks.c.status.in_(ON_CHAIN))
    )
    return PoolFigures(
        float(recent or 0) * HASHES / w.covered, int(online or 0), float(ever or 0), int(found or 0)
    )
