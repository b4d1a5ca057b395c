"""Store reads only f2pool's endpoints need, on a connection the caller holds.

Hashrate windows follow `accounting.stats.rates` exactly (whole minutes back from the one
in progress, divided by the seconds they cover), so a user's figure here and on any other
dialect agree; a test holds the two together.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounts import tables as at
from hashquarry.payouts.tables import payout_items, payouts
from hashquarry.store import models as m

HASHES = 2**32  # hashes per unit of share difficulty (SHA-256d)
WINDOWS = {"m10": 600, "h1": 3600, "h24": 86400}
# Blocks the node accepted onto its chain: what f2pool lists as the pool's blocks. Stale
# (refused or beaten) and orphaned ones are not, and "processing" ones are not known yet.
LISTED = ("unconfirmed", "confirmed")
UNCREDITED = ("stale", "orphan")


async def owned_among(conn: AsyncConnection, owner: str, users: Sequence[str]) -> set[str]:
    """Which of `users` are the owner's mining users (one query for a whole request)."""
    mu, o = at.mining_users.c, at.owners.c
    q = (
        select(mu.name)
        .join(at.owners, o.id == mu.owner_id)
        .where(o.name == owner, mu.name.in_(list(set(users))))
    )
    return set((await conn.execute(q)).scalars())


async def user_by_address(
    conn: AsyncConnection, owner: str, currency: str, address: str
) -> str | None:
    """The owner's mining user whose `currency` wallet is `address` (canonical form)."""
    w, mu, o = at.user_wallets.c, at.mining_users.c, at.owners.c
    q = (
        select(w.user)
        .join(at.mining_users, mu.name == w.user)
        .join(at.owners, o.id == mu.owner_id)
        .where(o.name == owner, w.currency == currency, w.address == address)
        .order_by(w.user)
        .limit(1)
    )
    return await conn.scalar(q)


# -- hashrate --------------------------------------------------------------------------


def minute_range(now: float, seconds: float) -> tuple[int, int]:
    end = math.ceil(now / 60) - 1
    return end - int(seconds // 60) + 1, end


def covered(now: float, lo: int) -> float:
    return max(now - lo * 60, 1.0)


@dataclass(frozen=True)
class Windows:
    """H/s over the last 10 minutes, hour and day."""

    m10: float = 0.0
    h1: float = 0.0
    h24: float = 0.0
    stale_h1: float = 0.0
    stale_h24: float = 0.0
    delay_h24: float = 0.0


async def rate_windows(
    conn: AsyncConnection, coin: str, now: float, accounts: Sequence[str]
) -> dict[str, Windows]:
    """Each account's rates in one query (accounts without shares are left out)."""
    if not accounts:
        return {}
    a = m.account_minutes.c
    lo = {k: minute_range(now, s)[0] for k, s in WINDOWS.items()}
    hi = minute_range(now, 0)[1]

    def since(col: Any, key: str) -> Any:
        return func.coalesce(func.sum(case((a.minute >= lo[key], col), else_=0.0)), 0.0)

    q = (
        select(
            a.account,
            since(a.accepted_diff, "m10"),
            since(a.accepted_diff, "h1"),
            func.coalesce(func.sum(a.accepted_diff), 0.0),
            since(a.stale_diff, "h1"),
            func.coalesce(func.sum(a.stale_diff), 0.0),
            func.coalesce(func.sum(a.delayed_diff), 0.0),
        )
        .where(
            a.coin == coin,
            a.account.in_(list(set(accounts))),
            a.minute >= lo["h24"],
            a.minute <= hi,
        )
        .group_by(a.account)
    )
    f = {k: HASHES / covered(now, v) for k, v in lo.items()}
    out = {}
    for account, d10, d1, d24, s1, s24, l24 in await conn.execute(q):
        out[account] = Windows(
            d10 * f["m10"], d1 * f["h1"], d24 * f["h24"], s1 * f["h1"], s24 * f["h24"],
            l24 * f["h24"],
        )  # fmt: skip
    return out


async def online_per_bucket(
    conn: AsyncConnection,
    coin: str,
    account: str,
    first: int,
    end: float,
    interval: int,
    worker: str | None = None,
) -> dict[int, int]:
    """bucket start -> workers with accepted shares in it."""
    s = m.share_minutes.c
    bucket = s.minute * 60 - (s.minute * 60) % interval
    q = select(bucket, func.count(func.distinct(s.worker))).where(
        s.coin == coin,
        s.account == account,
        s.accepted > 0,
        s.minute >= first // 60,
        s.minute * 60 < end,
    )
    if worker is not None:
        q = q.where(s.worker == worker)
    return {int(b): int(n) for b, n in await conn.execute(q.group_by(bucket))}


async def rewards_per_bucket(
    conn: AsyncConnection, coin: str, account: str, first: int, end: float, interval: int
) -> dict[int, int]:
    """bucket start -> revenue credited then (base units): block credits when the block
    was found (unless it went stale or orphan) and PPS/FPPS days when settled."""
    lg, b = m.ledger.c, m.blocks.c
    dead = select(b.id).where(b.coin == coin, b.status.in_(UNCREDITED))
    q = select(lg.created_at, lg.amount).where(
        lg.coin == coin,
        lg.account == account,
        lg.kind == "revenue",
        lg.created_at >= first,
        lg.created_at < end,
        or_(
            and_(
                lg.bucket == "immature",
                lg.ref.like("block:%:credit"),
                lg.amount > 0,
                lg.block_id.not_in(dead),
            ),
            and_(lg.bucket == "balance", lg.ref.like("pps:%")),
        ),
    )
    out: dict[int, int] = {}
    for created, amount in await conn.execute(q):
        ts = int(created // interval * interval)
        out[ts] = out.get(ts, 0) + int(amount)
    return out


async def worker_exists(conn: AsyncConnection, coin: str, account: str, worker: str) -> bool:
    w = m.workers.c
    q = select(w.worker).where(w.coin == coin, w.account == account, w.worker == worker)
    return (await conn.scalar(q)) is not None


# -- transactions --------------------------------------------------------------------------


async def ledger_entries(
    conn: AsyncConnection, coin: str, account: str, start: float | None, end: float | None
) -> list[Any]:
    """The account's balance movements, newest first: each is one f2pool transaction."""
    lg = m.ledger.c
    q = select(m.ledger).where(lg.coin == coin, lg.account == account, lg.bucket == "balance")
    if start is not None:
        q = q.where(lg.created_at >= start)
    if end is not None:
        q = q.where(lg.created_at < end)
    return list((await conn.execute(q.order_by(lg.created_at.desc(), lg.id.desc()))).all())


async def block_info(conn: AsyncConnection, block_ids: Sequence[int]) -> dict[int, Any]:
    if not block_ids:
        return {}
    b = m.blocks.c
    q = select(b.id, b.scheme, b.income, b.tx_fees).where(b.id.in_(list(set(block_ids))))
    return {int(r.id): r for r in await conn.execute(q)}


async def payout_items_of(
    conn: AsyncConnection, account: str, payout_ids: Sequence[str]
) -> dict[str, Any]:
    if not payout_ids:
        return {}
    i, p = payout_items.c, payouts.c
    q = (
        select(i.payout_id, i.amount, i.paid, i.address, p.txid, p.sent_at, p.status)
        .join(payouts, p.id == i.payout_id)
        .where(i.account == account, i.payout_id.in_(list(set(payout_ids))))
    )
    return {r.payout_id: r for r in await conn.execute(q)}


async def day_hashrates(
    conn: AsyncConnection, coin: str, account: str, days: Sequence[str]
) -> dict[str, float]:
    """'YYYY-MM-DD' -> the account's average H/s over that UTC day."""
    if not days:
        return {}
    first = dt.date.fromisoformat(min(days))
    last = dt.date.fromisoformat(max(days))
    lo = int(dt.datetime.combine(first, dt.time(), dt.UTC).timestamp()) // 60
    hi = int(dt.datetime.combine(last, dt.time(), dt.UTC).timestamp()) // 60 + 1440
    a = m.account_minutes.c
    day = a.minute // 1440
    q = (
        select(day, func.sum(a.accepted_diff))
        .where(a.coin == coin, a.account == account, a.minute >= lo, a.minute < hi)
        .group_by(day)
    )
    sums = {int(d): float(total or 0.0) for d, total in await conn.execute(q)}
    epoch = dt.date(1970, 1, 1)
    return {
        d: sums.get((dt.date.fromisoformat(d) - epoch).days, 0.0) * HASHES / 86400
        for d in set(days)
    }


# -- blocks ------------------------------------------------------------------------------------


def _blocks(coin: str) -> Any:
    b = m.blocks.c
    return select(m.blocks).where(b.coin == coin, b.status.in_(LISTED))


async def block_page(
    conn: AsyncConnection, coin: str, offset: int, limit: int
) -> tuple[list[Any], int]:
    b = m.blocks.c
    rows = await conn.execute(
        _blocks(coin).order_by(b.found_at.desc(), b.id.desc()).offset(offset).limit(limit)
    )
    total = await conn.scalar(select(func.count()).where(b.coin == coin, b.status.in_(LISTED)))
    return list(rows.all()), int(total or 0)


async def blocks_between(
    conn: AsyncConnection, coin: str, start: float, end: float, offset: int, limit: int
) -> tuple[list[Any], int]:
    """One page of the blocks found in [start, end), newest first, and how many there are."""
    b = m.blocks.c
    q = _blocks(coin).where(b.found_at >= start, b.found_at < end)
    rows = await conn.execute(
        q.order_by(b.found_at.desc(), b.id.desc()).offset(offset).limit(limit)
    )
    total = await conn.scalar(
        select(func.count()).where(
            b.coin == coin, b.status.in_(LISTED), b.found_at >= start, b.found_at < end
        )
    )
    return list(rows.all()), int(total or 0)


async def user_block_credits(
    conn: AsyncConnection,
    coin: str,
    account: str,
    start: float | None,
    end: float | None,
    minimum: int,
) -> list[tuple[Any, int]]:
    """(block, the account's credit from it) for listed blocks that credited it."""
    b, lg = m.blocks.c, m.ledger.c
    credit = (
        select(lg.block_id, func.sum(lg.amount).label("credit"))
        .where(
            lg.coin == coin,
            lg.account == account,
            lg.bucket == "immature",
            lg.ref.like("block:%:credit"),
        )
        .group_by(lg.block_id)
        .subquery()
    )
    q = (
        select(m.blocks, credit.c.credit)
        .join(credit, credit.c.block_id == b.id)
        .where(b.coin == coin, b.status.in_(LISTED), credit.c.credit >= max(minimum, 1))
    )
    if start is not None:
        q = q.where(b.found_at >= start)
    if end is not None:
        q = q.where(b.found_at < end)
    rows = await conn.execute(q.order_by(b.found_at.desc(), b.id.desc()))
    return [(r, int(r.credit)) for r in rows.all()]
