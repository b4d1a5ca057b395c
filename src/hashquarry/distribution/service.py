"""The distribution service: f2pool's hashrate and revenue distributions, owner-scoped.

Every operation takes the owner making the request. Both users must be that owner's
mining users, checked through the AccountsService, so another owner's user is refused
exactly like a missing one (NotFoundError naming the field: `distributor`, `recipient`,
`order_id`, `id`) and owners cannot probe each other's names. All input is validated
before anything is written and each operation is one transaction, so a refused request
changes nothing.

Settlements (`settle`, `settle_due`, and `terminate`, which settles the order's past days)
take the payout lock of the store and coin (payouts/lock.py), so a settlement and a
payout never interleave: see `holds` for the rule that keeps dividends payable.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from fractions import Fraction

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hashquarry.accounting.stats import rates
from hashquarry.accounts import names
from hashquarry.accounts.errors import AccountsError, ConflictError, NotFoundError
from hashquarry.accounts.service import AccountsService
from hashquarry.distribution import queries as q
from hashquarry.distribution import tables as t
from hashquarry.distribution import validate as v
from hashquarry.distribution.holds import SETTLE_LOOKBACK_DAYS
from hashquarry.distribution.math import DAY, PPM, exact, peak_sold, proportions_fit
from hashquarry.distribution.models import (
    HashrateInfo,
    HashrateOrder,
    HashrateSettlement,
    RevenueShare,
    SettleReport,
)
from hashquarry.distribution.settlement import days_between, settle_days
from hashquarry.payouts.lock import LockTimeout, payout_lock

__all__ = ["DistributionService"]

# The distributor's "current" hashrate: the same 10-minute figure its hashrate page shows.
RATE_WINDOW = 600.0
# A payout holds its lock across the wallet's sendmany; a settlement waits that long.
LOCK_TIMEOUT = 120.0


class DistributionService:
    def __init__(
        self,
        engine: AsyncEngine,
        accounts: AccountsService,
        *,
        clock: Callable[[], float] = time.time,
        start_tolerance: float = v.START_TOLERANCE,
        lock_timeout: float = LOCK_TIMEOUT,
    ) -> None:
        self.engine = engine
        self.accounts = accounts
        self.clock = clock
        self.start_tolerance = start_tolerance
        self.lock_timeout = lock_timeout

    # -- hashrate distribution ---------------------------------------------------------

    async def hashrate_info(
        self,
        owner: str,
        coin: str,
        distributor: str,
        hash_rate: float,
        start: float,
        end: float,
        recipient: str | None = None,
    ) -> HashrateInfo:
        """The distributor's current hashrate, the most already sold at one instant of
        [start, end), and what is left to sell there (f2pool hash_rate/distribution/info)."""
        v.hash_rate(hash_rate)
        lo, hi = v.window(start, end)
        await self._check_users(owner, coin, distributor, recipient)
        async with self.engine.connect() as conn:
            current, sold = await self._capacity(conn, coin, distributor, lo, hi, self.clock())
        return HashrateInfo(float(current), float(sold), float(max(current - sold, 0)))

    async def distribute(
        self,
        owner: str,
        coin: str,
        distributor: str,
        recipient: str,
        hash_rate: float,
        start: float,
        end: float,
    ) -> HashrateOrder:
        """Create an order selling `hash_rate` H/s of the distributor's work to the
        recipient over [start, end). Refused if, at any instant of the window, the orders
        already made plus this one would exceed the distributor's hashrate now."""
        now = self.clock()
        rate = v.hash_rate(hash_rate)
        lo, hi = v.future_window(start, end, now, self.start_tolerance)
        await self._check_users(owner, coin, distributor, recipient)
        async with self.engine.begin() as conn:
            await q.lock_user(conn, distributor)
            current, sold = await self._capacity(conn, coin, distributor, lo, hi, now)
            if sold + exact(rate) > current:
                left = max(current - sold, 0)
                raise ConflictError(
                    "hash_rate",
                    f"{rate:g} H/s would oversell {distributor!r}: it mines {float(current):g} "
                    f"H/s now, {float(sold):g} H/s of it is already sold in that window, "
                    f"{float(left):g} H/s is left",
                )
            result = await conn.execute(
                t.hashrate_orders.insert().values(
                    coin=coin, distributor=distributor, recipient=recipient, hash_rate=rate,
                    start_at=lo, end_at=hi, terminate_at=None, created_at=now, status="active",
                )
            )  # fmt: skip
            order_id = int(result.inserted_primary_key[0])
        return HashrateOrder(
            order_id, coin, distributor, recipient, rate, lo, hi, None, now, "active"
        )

    async def orders(self, owner: str, coin: str, distributor: str) -> list[HashrateOrder]:
        await self._check_users(owner, coin, distributor)
        async with self.engine.connect() as conn:
            return await q.orders_of(conn, coin, distributor)

    async def settlements(
        self, owner: str, coin: str, distributor: str
    ) -> list[HashrateSettlement]:
        await self._check_users(owner, coin, distributor)
        async with self.engine.connect() as conn:
            return await q.settlements_of(conn, coin, distributor)

    async def terminate(self, owner: str, order_id: int, at: float | None = None) -> HashrateOrder:
        """End an order early at `at` (default now; not in the past beyond the start
        tolerance) and settle the whole days before then whose income is final (all of
        the distributor's orders and revenue distributions for those days, so the revenue
        split of a day always sees every hashrate dividend of it). The day `at` falls in
        is settled by the daily run once that day is over, for the part the order ran."""
        order_id = v.record_id(order_id, "order_id")
        now = self.clock()
        when = now if at is None else v.timestamp(at, "terminate_at")
        if when < now - self.start_tolerance:
            raise AccountsError("terminate_at", f"{when:.0f} is in the past (now {now:.0f})")
        async with self.engine.connect() as conn:
            found = await q.order(conn, order_id)
        if found is None:
            raise NotFoundError("order_id", f"hashrate order {order_id} not found")
        try:
            await self.accounts.get_mining_user(owner, found.distributor)
        except NotFoundError as exc:
            if exc.field == "owner":
                raise
            raise NotFoundError("order_id", f"hashrate order {order_id} not found") from None
        if found.status == "terminated":
            raise ConflictError("order_id", f"hashrate order {order_id} is already terminated")
        if when >= found.end_at:
            raise ConflictError(
                "order_id",
                f"hashrate order {order_id} ends at {found.end_at:.0f} anyway, no later than "
                f"{when:.0f}: there is nothing to terminate",
            )
        async with self._settling(found.coin, "order_id"), self.engine.begin() as conn:
            await q.lock_user(conn, found.distributor)
            settled = await q.last_settled_end(conn, order_id)
            if settled is not None and when < settled:
                # Within the tolerance, `at` may reach back past a midnight whose day is
                # already settled for the whole order; shortening it now would leave the
                # recipient paid for hashes the order no longer covers.
                raise ConflictError(
                    "terminate_at",
                    f"{when:.0f} is before {settled:.0f}, up to which order {order_id} is "
                    "already settled",
                )
            result = await conn.execute(
                update(t.hashrate_orders)
                .where(t.hashrate_orders.c.id == order_id, t.hashrate_orders.c.status == "active")
                .values(terminate_at=when, status="terminated")
            )
            if result.rowcount != 1:  # terminated concurrently
                raise ConflictError("order_id", f"hashrate order {order_id} is already terminated")
            ended = await q.order(conn, order_id)
            assert ended is not None
            # From the order's first day: days already settled are skipped, and one that
            # was deferred (immature credits) is retried here.
            first = ended.start_at // DAY * DAY
            upto = min(ended.effective_end, now) // DAY * DAY
            await settle_days(
                conn, ended.coin, days_between(first, upto), now, distributor=ended.distributor
            )
        return ended

    # -- revenue distribution --------------------------------------------------------------

    async def revenue_add(
        self,
        owner: str,
        coin: str,
        distributor: str,
        recipient: str,
        proportion: float | str,
        description: str = "",
    ) -> RevenueShare:
        """Give the recipient `proportion` (0 < p <= 1, at most 6 decimals) of the
        distributor's revenue from now on; a distributor's live proportions never sum
        above 1."""
        ppm = v.proportion(proportion)
        description = names.check_description(description)
        await self._check_users(owner, coin, distributor, recipient)
        now = self.clock()
        async with self.engine.begin() as conn:
            await q.lock_user(conn, distributor)
            live = await q.live_rules(conn, coin, distributor)
            existing = [r.proportion_ppm for r in live]
            if not proportions_fit(existing, ppm):
                given = sum(existing) / PPM
                raise ConflictError(
                    "proportion",
                    f"{ppm / PPM:g} would make {distributor!r}'s revenue distributions sum to "
                    f"{given + ppm / PPM:g}; at most 1 ({given:g} is already distributed)",
                )
            result = await conn.execute(
                t.revenue_distributions.insert().values(
                    coin=coin, distributor=distributor, recipient=recipient,
                    description=description, proportion_ppm=ppm, created_at=now,
                    deleted_at=None,
                )
            )  # fmt: skip
            rule_id = int(result.inserted_primary_key[0])
        return RevenueShare(rule_id, coin, distributor, recipient, description, ppm, now, None)

    async def revenue_info(
        self, owner: str, coin: str, distributor: str, recipient: str | None = None
    ) -> list[RevenueShare]:
        """The distributor's live revenue distributions (to `recipient` only, if given)."""
        await self._check_users(owner, coin, distributor, recipient)
        async with self.engine.connect() as conn:
            return await q.live_rules(conn, coin, distributor, recipient)

    async def revenue_delete(
        self, owner: str, distributor: str, distribution_id: int
    ) -> RevenueShare:
        """Stop a revenue distribution from now on (days already settled keep theirs)."""
        rule_id = v.record_id(distribution_id, "id")
        await self._user(owner, distributor, "distributor")
        now = self.clock()
        r = t.revenue_distributions.c
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(t.revenue_distributions)
                .where(r.id == rule_id, r.distributor == distributor, r.deleted_at.is_(None))
                .values(deleted_at=now)
            )
            if result.rowcount != 1:
                raise NotFoundError(
                    "id", f"revenue distribution {rule_id} of {distributor!r} not found"
                )
            deleted = await q.rule(conn, rule_id)
        assert deleted is not None
        return deleted

    # -- settlement --------------------------------------------------------------------------

    async def settle(
        self, coin: str, period_start: float, period_end: float, now: float | None = None
    ) -> SettleReport:
        """Settle every order and revenue distribution of `coin` for the whole UTC days
        of [period_start, period_end), in one transaction. Idempotent: days already settled
        are skipped, days whose income is not final yet are reported as deferred."""
        names.currency_network(coin, self.accounts.networks)
        when = self.clock() if now is None else v.timestamp(now, "now")
        lo = v.day_aligned(period_start, "period_start")
        hi = v.day_aligned(period_end, "period_end")
        if hi <= lo:
            raise AccountsError("period_end", "must be later than period_start")
        if hi > when:
            raise AccountsError("period_end", f"{hi:.0f} has not come yet (now {when:.0f})")
        async with self._settling(coin, "currency"), self.engine.begin() as conn:
            return await settle_days(conn, coin, days_between(lo, hi), when)

    async def settle_due(
        self, coin: str, now: float | None = None, days: int = SETTLE_LOOKBACK_DAYS
    ) -> SettleReport:
        """Settle the last `days` complete UTC days: the daily job. Run it after the PPS
        settlement and before payouts, so the day's income is final and still in the
        distributor's balance when it is split."""
        when = self.clock() if now is None else now
        today = when // DAY * DAY
        return await self.settle(coin, today - days * DAY, today, when)

    # -- helpers --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _settling(self, coin: str, field: str) -> AsyncIterator[None]:
        """The payout lock, for a body that may move dividends. Taken before the
        transaction opens: a payout holding it may be waiting for the node's wallet."""
        try:
            async with payout_lock(self.engine, coin, self.lock_timeout).hold():
                yield
        except LockTimeout:
            raise ConflictError(
                field, f"a {coin} payout or settlement is running; try again shortly"
            ) from None

    async def _capacity(
        self,
        conn: AsyncConnection,
        coin: str,
        distributor: str,
        start: float,
        end: float,
        now: float,
    ) -> tuple[Fraction, Fraction]:
        """(the distributor's hashrate now, the most sold at one instant of [start, end)),
        as exact fractions so the overselling rule has no rounding slack either way."""
        current = await rates(conn, coin, now, RATE_WINDOW, account=distributor)
        existing = await q.orders_of(conn, coin, distributor)
        spans = ((o.start_at, o.effective_end, o.hash_rate) for o in existing)
        return exact(current.hashrate), peak_sold(spans, start, end)

    async def _check_users(
        self, owner: str, coin: str, distributor: str, recipient: str | None = None
    ) -> None:
        names.currency_network(coin, self.accounts.networks)
        await self._user(owner, distributor, "distributor")
        if recipient is not None:
            await self._user(owner, recipient, "recipient")
            if recipient == distributor:
                raise AccountsError("recipient", "must be a different user than the distributor")

    async def _user(self, owner: str, name: str, field: str) -> None:
        """The user must be the owner's; errors name the request's field."""
        try:
            await self.accounts.get_mining_user(owner, name)
        except AccountsError as exc:
            if exc.field != "mining_user_name":
                raise
            raise type(exc)(field, exc.reason) from None
