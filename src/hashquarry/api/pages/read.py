"""The read service behind read-only pages: what a page key opens, and each section of it.

Framework-free, so the JSON endpoints here and the web pages to come render the same
data and enforce the same permissions: every section read goes through `PageReader`,
which refuses what the page's permissions do not name (`PageForbidden`) and knows only
the page's own mining user (every query is filtered by it), so a page can never show
another user's figures. Money stays in integer base units here; each renderer converts.

Figures come from the same read models as the APIs (accounting.stats, the ledger's
balances, the payout book), so a page and f2pool's endpoints agree to the last digit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounting import ledger, stats
from hashquarry.accounts.models import PageAccess
from hashquarry.accounts.pages import View, format_permissions, page_allows
from hashquarry.api.context import ApiContext
from hashquarry.payouts.book import payout_entries
from hashquarry.store import models as m

HISTORY_SECONDS = 86_400
HISTORY_INTERVAL = 3_600
LISTED = 100  # income entries and payouts shown, newest first
INCOME_KINDS = ("revenue", "dividend", "reward")
ALL_VIEWS = (View.HASHRATE, View.WORKERS, View.REVENUE, View.PAYMENTS)


class PageNotFound(Exception):
    """Unknown or deleted key, a disabled owner, or another currency: all read the same."""


class PageForbidden(Exception):
    def __init__(self, view: View, permissions: frozenset[int]) -> None:
        needs = "1" if view in (View.HASHRATE, View.WORKERS) else "2 or 3"
        if view is View.PAYMENTS:
            needs = "2"
        super().__init__(
            f"this read-only page (permissions {format_permissions(permissions)}) does not "
            f"show {view.value}; that needs permission {needs}"
        )
        self.view = view


@dataclass(frozen=True)
class OpenPage:
    key: str
    currency: str
    access: PageAccess

    @property
    def user(self) -> str:
        return self.access.user

    def allows(self, view: View) -> bool:
        return page_allows(self.access.permissions, view)


@dataclass(frozen=True)
class HashratePoint:
    timestamp: int
    hash_rate: float
    stale_hash_rate: float


@dataclass(frozen=True)
class Hashrate:
    """H/s over the last 10 minutes, hour and day, and a day of hourly points."""

    hash_rate: float
    h1_hash_rate: float
    h24_hash_rate: float
    h1_stale_hash_rate: float
    h24_stale_hash_rate: float
    history: list[HashratePoint]


@dataclass(frozen=True)
class Worker:
    name: str
    hash_rate: float
    h1_hash_rate: float
    h24_hash_rate: float
    h1_stale_hash_rate: float
    h24_stale_hash_rate: float
    last_share_at: int
    status: str  # online | offline | invalid


@dataclass(frozen=True)
class Income:
    created_at: int
    type: str  # revenue | dividend | reward
    amount: int  # base units
    mining_date: str  # YYYY-MM-DD (UTC), "" when the entry has none


@dataclass(frozen=True)
class Revenue:
    """Base units. Nothing here tells what was paid out (that is permission 2's)."""

    balance: int
    immature_balance: int
    total_income: int
    yesterday_income: int
    estimated_today_income: int
    income: list[Income]


@dataclass(frozen=True)
class Payout:
    paid_time: int
    amount: int  # base units the address received
    address: str
    tx_id: str
    status: str


@dataclass(frozen=True)
class Payments:
    paid: int
    payouts: list[Payout]


@dataclass(frozen=True)
class PageData:
    """A whole page: the sections its permissions allow, None for the others."""

    page: OpenPage
    hashrate: Hashrate | None
    workers: list[Worker] | None
    revenue: Revenue | None
    payments: Payments | None


class PageReader:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def open(self, currency: str, key: str) -> OpenPage:
        if currency != self.ctx.coin:
            raise PageNotFound(f"this pool has no read-only pages for {currency!r}")
        access = await self.ctx.accounts.resolve_page(key)
        if access is None:
            raise PageNotFound("no such read-only page (the key is unknown or was deleted)")
        return OpenPage(key, currency, access)

    def require(self, page: OpenPage, view: View) -> None:
        if not page.allows(view):
            raise PageForbidden(view, page.access.permissions)

    async def whole(self, page: OpenPage) -> PageData:
        allowed = [v for v in ALL_VIEWS if page.allows(v)]
        async with self.ctx.engine.connect() as conn:  # one snapshot for every section
            money = None
            if View.REVENUE in allowed or View.PAYMENTS in allowed:
                money = await self._balance(conn, page)
            return PageData(
                page,
                await self._hashrate(conn, page) if View.HASHRATE in allowed else None,
                await self._workers(conn, page) if View.WORKERS in allowed else None,
                await self._revenue(conn, page, money) if View.REVENUE in allowed else None,
                await self._payments(conn, page, money) if View.PAYMENTS in allowed else None,
            )

    async def hashrate(self, page: OpenPage) -> Hashrate:
        self.require(page, View.HASHRATE)
        async with self.ctx.engine.connect() as conn:
            return await self._hashrate(conn, page)

    async def workers(self, page: OpenPage) -> list[Worker]:
        self.require(page, View.WORKERS)
        async with self.ctx.engine.connect() as conn:
            return await self._workers(conn, page)

    async def revenue(self, page: OpenPage) -> Revenue:
        self.require(page, View.REVENUE)
        async with self.ctx.engine.connect() as conn:
            return await self._revenue(conn, page)

    async def payments(self, page: OpenPage) -> Payments:
        self.require(page, View.PAYMENTS)
        async with self.ctx.engine.connect() as conn:
            return await self._payments(conn, page)

    # -- the sections, on a connection the caller holds --------------------------------------

    async def _hashrate(self, conn: AsyncConnection, page: OpenPage) -> Hashrate:
        now, coin, user = self.ctx.clock(), self.ctx.coin, page.user
        m10 = await stats.rates(conn, coin, now, 600, account=user)
        h1 = await stats.rates(conn, coin, now, 3600, account=user)
        h24 = await stats.rates(conn, coin, now, 86400, account=user)
        points = await stats.history(
            conn, coin, start=now - HISTORY_SECONDS, end=now, interval=HISTORY_INTERVAL,
            account=user,
        )  # fmt: skip
        return Hashrate(
            m10.hashrate,
            h1.hashrate,
            h24.hashrate,
            h1.stale_hashrate,
            h24.stale_hashrate,
            [
                HashratePoint(int(p["timestamp"]), p["hash_rate"], p["stale_hash_rate"])
                for p in points
            ],
        )

    async def _workers(self, conn: AsyncConnection, page: OpenPage) -> list[Worker]:
        found = await stats.workers(
            conn, self.ctx.coin, self.ctx.clock(), page.user,
            self.ctx.settings.accounting.offline_after,
        )  # fmt: skip
        return [
            Worker(
                w.worker,
                w.hashrate,
                w.h1,
                w.h24,
                w.stale_h1,
                w.stale_h24,
                int(w.last_share),
                w.status,
            )
            for w in found
            if w.account == page.user
        ]

    async def _balance(self, conn: AsyncConnection, page: OpenPage) -> ledger.Balance | None:
        return (await ledger.balances(conn, self.ctx.coin, self.ctx.clock())).get(page.user)

    async def _revenue(
        self, conn: AsyncConnection, page: OpenPage, found: ledger.Balance | None = None
    ) -> Revenue:
        if found is None:
            found = await self._balance(conn, page)
        income = await _income(conn, self.ctx.coin, page.user)
        if found is None:
            return Revenue(0, 0, 0, 0, 0, income)
        return Revenue(
            found.balance,
            found.immature_balance,
            found.total_income,
            found.yesterday_income,
            found.estimated_today_income,
            income,
        )

    async def _payments(
        self, conn: AsyncConnection, page: OpenPage, found: ledger.Balance | None = None
    ) -> Payments:
        if found is None:
            found = await self._balance(conn, page)
        rows = await payout_entries(conn, self.ctx.coin, page.user, limit=LISTED)
        return Payments(
            found.paid if found is not None else 0,
            [
                Payout(
                    int(r["paid_time"] or 0),
                    int(r["received"] if r["received"] is not None else r["value"]),
                    str(r["address"] or ""),
                    str(r["tx_id"] or ""),
                    str(r["status"]),
                )
                for r in rows
            ],
        )


async def _income(conn: AsyncConnection, coin: str, account: str) -> list[Income]:
    """The account's matured income entries, newest first (what made its balance grow)."""
    lg = m.ledger.c
    q = (
        select(lg.created_at, lg.kind, lg.amount, lg.mining_date)
        .where(
            lg.coin == coin,
            lg.account == account,
            lg.bucket == "balance",
            lg.kind.in_(INCOME_KINDS),
        )
        .order_by(lg.created_at.desc(), lg.id.desc())
        .limit(LISTED)
    )
    rows: Sequence[tuple[float, str, int, str | None]] = (await conn.execute(q)).all()  # type: ignore[assignment]
    return [Income(int(t), str(k), int(a), d or "") for t, k, a, d in rows]
