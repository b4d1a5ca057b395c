"""The settlement run: each UTC day, each distributor's income is split by its hashrate
orders and then by its revenue distributions, as `dividend` ledger entries.

Rules, in order, per (distributor, day):

1. Only final days are settled (see `queries.day_is_final`); others are reported as
   deferred and a later run picks them up.
2. Income is the distributor's own `revenue` balance entries dated that day (settled
   PPS/FPPS and matured block credits), by the ledger's `mining_date`.
3. Hashrate orders: an order's weight is hash_rate x seconds of the day it covered; the
   distributor's hashes are its accepted difficulty x 2^32 over the day. Each order gets
   floor(income x weight / max(distributor hashes, all orders' weights)) (math.split).
4. Revenue distributions apply to what is left after the hashrate orders (the
   distributor's own mining revenue of the day minus what its orders took; dividends it
   *received* are not re-distributed, so chains of distributions cannot loop), each
   floor(left x proportion x covered seconds / day).
5. Everything moved for a (distributor, day) is capped by what is left of the income,
   even if settlements happen in several runs (an order made after its first day was
   already settled), so a distributor can never give away more than it earned.
6. And by what is still in the distributor's balance outside the holds of its open days
   (`holds.Funds`): income paid out before any distribution covered its day is no longer
   there to give, so such a dividend is capped (and logged) instead of driving the
   balance below zero. Payouts hold back the income of unsettled days (`holds`), so in
   the normal course this cap never bites.

Every settlement runs under the payout lock (payouts/lock.py): DistributionService takes
it, the payout engine settles through `reserve` while holding it.

Idempotency: an order's day is settled once (its `hashrate_settlements` row, unique per
order and day, written with the entries under ref "hrdist:{order}:{day}"); a revenue
distribution's day once (ledger ref "revdist:{id}:{day}"). A re-run changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounting.aggregate import utc_day
from hashquarry.distribution import queries as q
from hashquarry.distribution import tables as t
from hashquarry.distribution.holds import Funds
from hashquarry.distribution.math import DAY, PPM, delivered_hashes, exact, overlap, split
from hashquarry.distribution.models import (
    HashrateOrder,
    HashrateSettlement,
    RevenueMove,
    RevenueShare,
    SettleReport,
)
from hashquarry.store import models as m

log = logging.getLogger(__name__)


def hashrate_ref(order_id: int, period_start: float) -> str:
    return f"hrdist:{order_id}:{int(period_start)}"


def revenue_ref(distribution_id: int, period_start: float) -> str:
    return f"revdist:{distribution_id}:{int(period_start)}"


def days_between(start: float, end: float) -> list[float]:
    """The UTC day starts of [start, end) (both day-aligned)."""
    return [float(d) for d in range(int(start), int(end), DAY)]


async def settle_days(
    conn: AsyncConnection,
    coin: str,
    day_starts: Iterable[float],
    now: float,
    *,
    distributor: str | None = None,
) -> SettleReport:
    """Settle the given days (of every distributor, or only of `distributor`) on `conn`;
    the caller owns the transaction, so a run is all or nothing."""
    report = SettleReport()
    funds = await Funds.load(conn, coin, now)
    for day_start in day_starts:
        await _settle_day(conn, coin, day_start, now, distributor, report, funds)
    return report


async def _settle_day(
    conn: AsyncConnection,
    coin: str,
    start: float,
    now: float,
    only: str | None,
    report: SettleReport,
    funds: Funds,
) -> None:
    end = start + DAY
    orders = await q.orders_overlapping(conn, coin, start, end, only)
    rules = await q.rules_overlapping(conn, coin, start, end, only)
    work: dict[str, tuple[list[HashrateOrder], list[RevenueShare]]] = {}
    for o in orders:
        work.setdefault(o.distributor, ([], []))[0].append(o)
    for r in rules:
        work.setdefault(r.distributor, ([], []))[1].append(r)
    day = utc_day(start)
    for distributor in sorted(work):
        if not await q.day_is_final(conn, coin, distributor, day):
            report.deferred.append((distributor, start))
            continue
        its_orders, its_rules = work[distributor]
        income = await q.revenue_of_day(conn, coin, distributor, day)
        taken = await _settle_orders(
            conn, coin, distributor, its_orders, start, income, now, report, funds
        )
        left = income - taken
        await _settle_rules(conn, coin, distributor, its_rules, start, left, now, report, funds)


async def _settle_orders(
    conn: AsyncConnection,
    coin: str,
    distributor: str,
    orders: list[HashrateOrder],
    start: float,
    income: int,
    now: float,
    report: SettleReport,
    funds: Funds,
) -> int:
    """Settle the day of each order not settled yet; returns all the orders took that day."""
    if not orders:
        return 0
    end = start + DAY
    done = await q.settled_incomes(conn, [o.id for o in orders], start)
    taken = sum(done.values())
    if len(done) == len(orders):
        return taken
    mined = await q.hashes_between(conn, coin, distributor, start, end)
    weights = {
        o.id: exact(o.hash_rate) * overlap(o.start_at, o.effective_end, start, end) for o in orders
    }
    sold = sum(weights.values(), Fraction(0))
    # Negative income (never expected: revenue entries are credits) splits as nothing.
    parts, _ = split(max(income, 0), weights, mined)
    day = utc_day(start)
    for o in orders:
        if o.id in done:
            continue
        due = max(0, min(parts[o.id], income - taken))
        amount = await _capped(funds, distributor, due, f"order {o.id}", start)
        hashes = delivered_hashes(weights[o.id], mined, sold)
        ref = hashrate_ref(o.id, start)
        result = await conn.execute(
            t.hashrate_settlements.insert().values(
                order_id=o.id, period_start=start, period_end=end, hashes=float(hashes),
                income=amount, distributor_hashes=float(mined), distributor_income=income,
                settled_at=now, ref=ref,
            )
        )  # fmt: skip
        if amount:
            extra = {"distribution": "hashrate", "order_id": o.id, "hashes": float(hashes)}
            await _move(conn, coin, distributor, o.recipient, amount, ref, now, day, extra)
            funds.moved(distributor, o.recipient, amount)
        taken += amount
        report.hashrate.append(
            HashrateSettlement(
                int(result.inserted_primary_key[0]),
                o,
                start,
                end,
                float(hashes),
                amount,
                float(mined),
                income,
                now,
            )
        )
    return taken


async def _settle_rules(
    conn: AsyncConnection,
    coin: str,
    distributor: str,
    rules: list[RevenueShare],
    start: float,
    left: int,
    now: float,
    report: SettleReport,
    funds: Funds,
) -> None:
    if not rules or left <= 0:
        return
    end = start + DAY
    refs = {r.id: revenue_ref(r.id, start) for r in rules}
    done = await q.moved_by_refs(conn, coin, distributor, list(refs.values()))
    # A rule added or deleted during the day takes its proportion for the time it was in
    # force, like an order for the seconds it ran.
    weights = {
        r.id: Fraction(r.proportion_ppm, PPM)
        * overlap(r.created_at, end if r.deleted_at is None else r.deleted_at, start, end)
        / DAY
        for r in rules
    }
    parts, _ = split(left, weights, Fraction(1))
    moved = sum(done.values())
    day = utc_day(start)
    for r in rules:
        if refs[r.id] in done:
            continue
        due = max(0, min(parts[r.id], left - moved))
        amount = await _capped(funds, distributor, due, f"revenue distribution {r.id}", start)
        if not amount:
            continue  # nothing written: a re-run recomputes the same 0 from final figures
        extra = {
            "distribution": "revenue",
            "distribution_id": r.id,
            "proportion_ppm": r.proportion_ppm,
        }
        await _move(conn, coin, distributor, r.recipient, amount, refs[r.id], now, day, extra)
        funds.moved(distributor, r.recipient, amount)
        moved += amount
        report.revenue.append(RevenueMove(r.id, start, amount))


async def _capped(funds: Funds, distributor: str, due: int, what: str, start: float) -> int:
    """`due`, or less if the distributor's free balance cannot cover it (rule 6)."""
    if not due:
        return 0
    free = await funds.free(distributor)
    if due <= free:
        return due
    log.warning(
        "%s, day %s: dividend capped at %d of %d base units: %r's balance holds no more "
        "of that day's income (paid out before a distribution covered it)",
        what, utc_day(start), free, due, distributor,
    )  # fmt: skip
    return free


async def _move(
    conn: AsyncConnection,
    coin: str,
    source: str,
    target: str,
    amount: int,
    ref: str,
    now: float,
    day: str,
    extra: dict[str, Any],
) -> None:
    """Two balance entries under one ref: the journal stays zero-sum. They carry the
    income's mining date, so each side's daily income reads right in revenue reports."""
    rows = [
        _dividend(coin, source, -amount, ref, now, day, {**extra, "to": target}),
        _dividend(coin, target, amount, ref, now, day, {**extra, "from": source}),
    ]
    await conn.execute(m.ledger.insert(), rows)


def _dividend(
    coin: str, account: str, amount: int, ref: str, now: float, day: str, extra: dict[str, Any]
) -> dict[str, Any]:
    return {
        "coin": coin,
        "account": account,
        "kind": "dividend",
        "bucket": "balance",
        "amount": amount,
        "block_id": None,
        "ref": ref,
        "created_at": now,
        "mining_date": day,
        "extra": extra,
    }
