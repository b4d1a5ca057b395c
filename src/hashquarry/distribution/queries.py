"""Store reads behind distribution, on a connection the caller holds (and so inside the
caller's transaction): orders, rules, and a distributor's income and hashes for a day."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounts import tables as at
from hashquarry.distribution import tables as t
from hashquarry.distribution.math import HASHES_PER_DIFF1
from hashquarry.distribution.models import HashrateOrder, HashrateSettlement, RevenueShare
from hashquarry.store import models as m


async def lock_user(conn: AsyncConnection, name: str) -> None:
    """Serialize writers that check a distributor's totals (sold hashrate, proportions).

    On PostgreSQL two transactions could both read "0.6 distributed" and both add 0.4;
    locking the distributor's row makes the second wait and then see the first. SQLite
    renders no FOR UPDATE: it allows one writer at a time, and a concurrent writer fails
    with "database is locked" rather than overselling.
    """
    mu = at.mining_users.c
    await conn.execute(select(mu.name).where(mu.name == name).with_for_update())


# -- hashrate orders ------------------------------------------------------------------


async def order(conn: AsyncConnection, order_id: int) -> HashrateOrder | None:
    row = (
        await conn.execute(select(t.hashrate_orders).where(t.hashrate_orders.c.id == order_id))
    ).first()
    return None if row is None else HashrateOrder.from_row(row)


async def orders_of(conn: AsyncConnection, coin: str, distributor: str) -> list[HashrateOrder]:
    o = t.hashrate_orders.c
    rows = await conn.execute(
        select(t.hashrate_orders).where(o.coin == coin, o.distributor == distributor).order_by(o.id)
    )
    return [HashrateOrder.from_row(r) for r in rows]


async def orders_overlapping(
    conn: AsyncConnection, coin: str, start: float, end: float, distributor: str | None = None
) -> list[HashrateOrder]:
    """Orders whose effective interval meets [start, end), in id order."""
    o = t.hashrate_orders.c
    q = select(t.hashrate_orders).where(
        o.coin == coin,
        o.start_at < end,
        o.end_at > start,
        or_(o.terminate_at.is_(None), and_(o.terminate_at > start, o.terminate_at > o.start_at)),
    )
    if distributor is not None:
        q = q.where(o.distributor == distributor)
    return [HashrateOrder.from_row(r) for r in await conn.execute(q.order_by(o.id))]


async def settled_incomes(
    conn: AsyncConnection, order_ids: Sequence[int], period_start: float
) -> dict[int, int]:
    """order id -> income already settled for the day starting at `period_start`."""
    if not order_ids:
        return {}
    s = t.hashrate_settlements.c
    rows = await conn.execute(
        select(s.order_id, s.income).where(
            s.order_id.in_(order_ids), s.period_start == period_start
        )
    )
    return {int(r.order_id): int(r.income) for r in rows}


async def last_settled_end(conn: AsyncConnection, order_id: int) -> float | None:
    s = t.hashrate_settlements.c
    value = await conn.scalar(select(func.max(s.period_end)).where(s.order_id == order_id))
    return None if value is None else float(value)


async def settlements_of(
    conn: AsyncConnection, coin: str, distributor: str
) -> list[HashrateSettlement]:
    o, s = t.hashrate_orders.c, t.hashrate_settlements.c
    q = (
        select(
            s.id.label("settlement_id"),
            s.period_start,
            s.period_end,
            s.hashes,
            s.income,
            s.distributor_hashes,
            s.distributor_income,
            s.settled_at,
            *t.hashrate_orders.c,
        )
        .join(t.hashrate_orders, o.id == s.order_id)
        .where(o.coin == coin, o.distributor == distributor)
        .order_by(s.period_start, s.order_id)
    )
    return [
        HashrateSettlement(
            int(r.settlement_id),
            HashrateOrder.from_row(r),
            float(r.period_start),
            float(r.period_end),
            float(r.hashes),
            int(r.income),
            float(r.distributor_hashes),
            int(r.distributor_income),
            float(r.settled_at),
        )
        for r in (await conn.execute(q)).all()
    ]


# -- revenue distributions ---------------------------------------------------------------


async def live_rules(
    conn: AsyncConnection, coin: str, distributor: str, recipient: str | None = None
) -> list[RevenueShare]:
    r = t.revenue_distributions.c
    q = select(t.revenue_distributions).where(
        r.coin == coin, r.distributor == distributor, r.deleted_at.is_(None)
    )
    if recipient is not None:
        q = q.where(r.recipient == recipient)
    return [RevenueShare.from_row(row) for row in await conn.execute(q.order_by(r.id))]


async def rules_overlapping(
    conn: AsyncConnection, coin: str, start: float, end: float, distributor: str | None = None
) -> list[RevenueShare]:
    """Revenue distributions in force at some time of [start, end), in id order."""
    r = t.revenue_distributions.c
    q = select(t.revenue_distributions).where(
        r.coin == coin,
        r.created_at < end,
        or_(r.deleted_at.is_(None), r.deleted_at > start),
    )
    if distributor is not None:
        q = q.where(r.distributor == distributor)
    return [RevenueShare.from_row(row) for row in await conn.execute(q.order_by(r.id))]


async def rule(conn: AsyncConnection, rule_id: int) -> RevenueShare | None:
    row = (
        await conn.execute(
            select(t.revenue_distributions).where(t.revenue_distributions.c.id == rule_id)
        )
    ).first()
    return None if row is None else RevenueShare.from_row(row)


# -- a distributor's day -----------------------------------------------------------------


async def day_is_final(conn: AsyncConnection, coin: str, account: str, day: str) -> bool:
    """Whether all of an account's income dated `day` is in its balance (see `unfinal_days`)."""
    return not await unfinal_days(conn, coin, [account], [day])


async def unfinal_days(
    conn: AsyncConnection, coin: str, accounts: Sequence[str], days: Sequence[str]
) -> set[tuple[str, str]]:
    """The (account, day) pairs whose income is not all in the balance yet.

    Not yet while block credits dated that day are immature (they may still mature or be
    reversed) or PPS/FPPS accruals of that day are unsettled: splitting a partial figure
    would either shortchange the recipients or, once the rest arrived, need a second
    split under the same idempotency ref. One definition for the settlement (which waits
    for such days) and the payout holds (which keep their income back meanwhile).
    """
    if not accounts or not days:
        return set()
    lg = m.ledger.c
    immature = await conn.execute(
        select(lg.account, lg.mining_date)
        .where(
            lg.coin == coin,
            lg.account.in_(list(accounts)),
            lg.bucket == "immature",
            lg.mining_date.in_(list(days)),
        )
        .group_by(lg.account, lg.mining_date)
        .having(func.sum(lg.amount) != 0)
    )
    out = {(str(a), str(d)) for a, d in immature.all()}
    p = m.pps_accruals.c
    pending = await conn.execute(
        select(p.account, p.day)
        .where(
            p.coin == coin,
            p.account.in_(list(accounts)),
            p.day.in_(list(days)),
            p.settled.is_(False),
            (p.nano > 0) | (p.sats > 0),
        )
        .distinct()
    )
    out.update((str(a), str(d)) for a, d in pending.all())
    return out


async def revenue_of_day(conn: AsyncConnection, coin: str, account: str, day: str) -> int:
    """The account's own mining income dated `day`: settled PPS/FPPS revenue and matured
    block credits (both are `revenue` entries in the balance bucket)."""
    lg = m.ledger.c
    value = await conn.scalar(
        select(func.coalesce(func.sum(lg.amount), 0)).where(
            lg.coin == coin,
            lg.account == account,
            lg.kind == "revenue",
            lg.bucket == "balance",
            lg.mining_date == day,
        )
    )
    return int(value or 0)


async def hashes_between(
    conn: AsyncConnection, coin: str, account: str, start: float, end: float
) -> Fraction:
    """Hashes the account's accepted shares represent in [start, end) (whole minutes)."""
    a = m.account_minutes.c
    total = await conn.scalar(
        select(func.coalesce(func.sum(a.accepted_diff), 0.0)).where(
            a.coin == coin,
            a.account == account,
            a.minute >= int(start // 60),
            a.minute < int(end // 60),
        )
    )
    return Fraction(float(total or 0.0)) * HASHES_PER_DIFF1


async def moved_by_refs(
    conn: AsyncConnection, coin: str, account: str, refs: Sequence[str]
) -> dict[str, int]:
    """ref -> amount taken from `account` under it (positive), for refs already written."""
    if not refs:
        return {}
    lg = m.ledger.c
    rows = await conn.execute(
        select(lg.ref, func.sum(lg.amount))
        .where(lg.coin == coin, lg.account == account, lg.ref.in_(refs), lg.bucket == "balance")
        .group_by(lg.ref)
    )
    return {ref: -int(amount) for ref, amount in rows.all()}
