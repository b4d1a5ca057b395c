"""Distributions as the payout engine sees them (`payouts.engine.Reserve`): settle what can
be settled, then say what to hold back. The rule is in `holds`.

The engine calls both while it holds the payout lock, so nothing here takes that lock;
every other settlement (the daily run, a termination) goes through DistributionService,
which does.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from hashquarry.distribution.holds import SETTLE_LOOKBACK_DAYS, held_back
from hashquarry.distribution.math import DAY
from hashquarry.distribution.models import SettleReport
from hashquarry.distribution.settlement import days_between, settle_days

log = logging.getLogger(__name__)


class DividendReserve:
    def __init__(self, engine: AsyncEngine, coin: str) -> None:
        self.engine = engine
        self.coin = coin

    async def settle(self, now: float) -> SettleReport:
        """Settle every complete day of the lookback whose income is final (days already
        settled are skipped), so none of them needs holding any more. The caller holds
        the payout lock."""
        today = now // DAY * DAY
        days = days_between(today - SETTLE_LOOKBACK_DAYS * DAY, today)
        async with self.engine.begin() as conn:
            report = await settle_days(conn, self.coin, days, now)
        if report.moved:
            log.info(
                "dividends settled before paying: %d base units in %d moves",
                report.moved,
                len(report.hashrate) + len(report.revenue),
            )
        return report

    async def held(self, conn: AsyncConnection, now: float) -> dict[str, int]:
        """account -> what a payout must leave in its balance, on the caller's connection
        (so a payout can re-check it inside the transaction that debits)."""
        return await held_back(conn, self.coin, now)
