"""What payouts must leave in a distributor's balance: the income its dividends may still take.

Why: payouts run on a schedule (hourly by default) and pay whole balances, while a day's
dividends (hashrate orders, revenue distributions) are settled only once the day is over
and its income is final, which for block credits is after maturity, hours later. Paid out
first, that income would be gone when the settlement takes its dividends from it, and the
distributor's balance would go negative.

The rule. A day D is *open* for a distributor while one of its hashrate orders or revenue
distributions covers part of D and D is not settled: D is today, or D is over but its
income is not final yet (immature block credits or unsettled PPS/FPPS accruals dated D,
`queries.unfinal_days`). For every open day of the last SETTLE_LOOKBACK_DAYS, the income
dated D (its `revenue` balance entries of that mining date, paid out or not) less the
dividends already taken for D is held back: payable = balance - held back, never below 0.

Over, final days are not held because they are settled before any payout reads the holds:
each payout first settles, under the payout lock, every complete day whose income is final
(`reserve.DividendReserve`), and every other settlement takes the same lock. So a day
stops being held exactly when its dividends have been taken, and a settlement never meets
a balance a payout is halfway through.

A last guard in the settlement (`Funds`): a dividend never takes more than the
distributor's balance outside the holds of its open days. Income paid out before any
distribution covered its day (a revenue distribution added in the afternoon splits the
whole day's income; an order may start a few minutes in the past, into a day already
settled and paid) is then no longer there to give; such a dividend is capped, and logged,
rather than driving the balance below zero.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounting.aggregate import utc_day
from hashquarry.distribution import queries as q
from hashquarry.distribution.math import DAY
from hashquarry.store import models as m

# How many past days are settled by the daily run and the payouts, and held meanwhile:
# deferred days wait for block maturity (100 confirmations, under a day on mainnet), so a
# week leaves a wide margin. Older days are neither settled nor held.
SETTLE_LOOKBACK_DAYS = 7


def days_covered(start: float, end: float, lo: float, hi: float) -> list[float]:
    """Starts of the UTC days in [lo, hi) that meet [start, end)."""
    out = []
    day = max(start, lo) // DAY * DAY
    while day < min(end, hi):
        out.append(float(day))
        day += DAY
    return out


async def covered_days(
    conn: AsyncConnection, coin: str, lo: float, hi: float
) -> dict[str, set[float]]:
    """distributor -> the day starts in [lo, hi) its orders or revenue distributions cover."""
    out: dict[str, set[float]] = {}
    for o in await q.orders_overlapping(conn, coin, lo, hi):
        out.setdefault(o.distributor, set()).update(
            days_covered(o.start_at, o.effective_end, lo, hi)
        )
    for r in await q.rules_overlapping(conn, coin, lo, hi):
        end = hi if r.deleted_at is None else r.deleted_at
        out.setdefault(r.distributor, set()).update(days_covered(r.created_at, end, lo, hi))
    return {a: days for a, days in out.items() if days}


async def held_by_day(
    conn: AsyncConnection, coin: str, now: float, lookback: int = SETTLE_LOOKBACK_DAYS
) -> dict[str, dict[float, int]]:
    """distributor -> {open day start: amount held back for it} (see the module doc)."""
    today = now // DAY * DAY
    covered = await covered_days(conn, coin, today - lookback * DAY, today + DAY)
    if not covered:
        return {}
    accounts = sorted(covered)
    names = {d: utc_day(d) for days in covered.values() for d in days}
    unfinal = await q.unfinal_days(conn, coin, accounts, sorted(set(names.values())))
    figures = await _income_and_taken(conn, coin, accounts, sorted(set(names.values())))
    out: dict[str, dict[float, int]] = {}
    for account, days in covered.items():
        for d in sorted(days):
            if d < today and (account, names[d]) not in unfinal:
                continue  # over and final: settled before any payout reads this
            income, taken = figures.get((account, names[d]), (0, 0))
            held = max(0, income - taken)
            if held:
                out.setdefault(account, {})[d] = held
    return out


async def held_back(
    conn: AsyncConnection, coin: str, now: float, lookback: int = SETTLE_LOOKBACK_DAYS
) -> dict[str, int]:
    """account -> what payouts must leave in its balance now (only accounts holding any)."""
    by_day = await held_by_day(conn, coin, now, lookback)
    return {account: sum(days.values()) for account, days in by_day.items()}


async def _income_and_taken(
    conn: AsyncConnection, coin: str, accounts: Sequence[str], days: Sequence[str]
) -> dict[tuple[str, str], tuple[int, int]]:
    """(account, day) -> (its own income dated that day in the balance, the dividends it
    already gave for that day). Dividends it received are not income it can be asked to
    share (the settlement splits `revenue` entries only, `queries.revenue_of_day`)."""
    lg = m.ledger.c
    given = and_(lg.kind == "dividend", lg.amount < 0)
    rows = await conn.execute(
        select(
            lg.account,
            lg.mining_date,
            func.sum(case((lg.kind == "revenue", lg.amount), else_=0)),
            func.sum(case((given, -lg.amount), else_=0)),
        )
        .where(
            lg.coin == coin,
            lg.account.in_(list(accounts)),
            lg.bucket == "balance",
            lg.kind.in_(("revenue", "dividend")),
            lg.mining_date.in_(list(days)),
        )
        .group_by(lg.account, lg.mining_date)
    )
    return {(str(a), str(d)): (int(inc or 0), int(tak or 0)) for a, d, inc, tak in rows.all()}


async def balance_of(conn: AsyncConnection, coin: str, account: str) -> int:
    lg = m.ledger.c
    value = await conn.scalar(
        select(func.coalesce(func.sum(lg.amount), 0)).where(
            lg.coin == coin, lg.account == account, lg.bucket == "balance"
        )
    )
    return int(value or 0)


class Funds:
    """What each distributor can still give in one settlement run: its balance less the
    holds of its open days, kept up to date as dividends move. The days being settled are
    over and final, so they are not among the open days and their income is in here."""

    def __init__(self, conn: AsyncConnection, coin: str, held: dict[str, int]) -> None:
        self.conn = conn
        self.coin = coin
        self.held = held
        self._free: dict[str, int] = {}

    @classmethod
    async def load(cls, conn: AsyncConnection, coin: str, now: float) -> Funds:
        return cls(conn, coin, await held_back(conn, coin, now))

    async def free(self, account: str) -> int:
        if account not in self._free:
            balance = await balance_of(self.conn, self.coin, account)
            self._free[account] = balance - self.held.get(account, 0)
        return max(0, self._free[account])

    def moved(self, source: str, target: str, amount: int) -> None:
        self._free[source] = self._free.get(source, 0) - amount
        if target in self._free:  # otherwise read fresh, with this move, when needed
            self._free[target] += amount
