"""JSON shapes of the read-only pages, and the conversion from the read service's data.

Field names follow f2pool's own (hash_rate, h1_hash_rate, balance, paid, tx_id, ...), as
the pages are f2pool's ReadOnlyPage. Hashrates in H/s, amounts as doubles of coins (the
read service keeps base units; this edge converts), times in Unix seconds.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from hashquarry.api.pages import read

COIN = 100_000_000  # base units per coin (8 decimals: bitcoin, bitcoin-cash, litecoin)


def coins(units: int) -> float:
    return units / COIN  # int / int is correctly rounded


class HashratePointOut(BaseModel):
    timestamp: int = Field(description="start of the hour, Unix seconds")
    hash_rate: float
    stale_hash_rate: float


class HashrateOut(BaseModel):
    hash_rate: float = Field(description="H/s over the last 10 minutes")
    h1_hash_rate: float
    h24_hash_rate: float
    h1_stale_hash_rate: float
    h24_stale_hash_rate: float
    history: list[HashratePointOut] = Field(description="hourly, over the last day")


class WorkerOut(BaseModel):
    name: str
    hash_rate: float
    h1_hash_rate: float
    h24_hash_rate: float
    h1_stale_hash_rate: float
    h24_stale_hash_rate: float
    last_share_at: int
    status: str = Field(description="online, offline or invalid")


class WorkersOut(BaseModel):
    workers: list[WorkerOut]


class IncomeOut(BaseModel):
    created_at: int
    type: str = Field(description="revenue, dividend or reward")
    amount: float = Field(description="coins")
    mining_date: str = Field(description="YYYY-MM-DD (UTC) mined, or empty")


class RevenueOut(BaseModel):
    balance: float
    immature_balance: float
    total_income: float
    yesterday_income: float
    estimated_today_income: float
    income: list[IncomeOut] = Field(description="matured income, newest first (at most 100)")


class PayoutOut(BaseModel):
    paid_time: int
    amount: float = Field(description="coins the address received")
    address: str
    tx_id: str
    status: str


class PaymentsOut(BaseModel):
    paid: float = Field(description="coins paid out in total")
    payouts: list[PayoutOut] = Field(description="newest first (at most 100)")


class PageOut(BaseModel):
    """Only the sections the page's permissions allow are present."""

    page_name: str
    mining_user_name: str
    currency: str
    permissions: str = Field(description="comma list: 1 hashrate and workers, 2 revenue "
                             "with payments, 3 revenue without payments")  # fmt: skip
    hashrate: HashrateOut | None = Field(None, description="permission 1")
    workers: list[WorkerOut] | None = Field(None, description="permission 1")
    revenue: RevenueOut | None = Field(None, description="permission 2 or 3")
    payments: PaymentsOut | None = Field(None, description="permission 2")


def hashrate_out(h: read.Hashrate) -> HashrateOut:
    return HashrateOut(
        hash_rate=h.hash_rate,
        h1_hash_rate=h.h1_hash_rate,
        h24_hash_rate=h.h24_hash_rate,
        h1_stale_hash_rate=h.h1_stale_hash_rate,
        h24_stale_hash_rate=h.h24_stale_hash_rate,
        history=[
            HashratePointOut(
                timestamp=p.timestamp, hash_rate=p.hash_rate, stale_hash_rate=p.stale_hash_rate
            )
            for p in h.history
        ],
    )


def worker_out(w: read.Worker) -> WorkerOut:
    return WorkerOut(
        name=w.name,
        hash_rate=w.hash_rate,
        h1_hash_rate=w.h1_hash_rate,
        h24_hash_rate=w.h24_hash_rate,
        h1_stale_hash_rate=w.h1_stale_hash_rate,
        h24_stale_hash_rate=w.h24_stale_hash_rate,
        last_share_at=w.last_share_at,
        status=w.status,
    )


def revenue_out(r: read.Revenue) -> RevenueOut:
    return RevenueOut(
        balance=coins(r.balance),
        immature_balance=coins(r.immature_balance),
        total_income=coins(r.total_income),
        yesterday_income=coins(r.yesterday_income),
        estimated_today_income=coins(r.estimated_today_income),
        income=[
            IncomeOut(
                created_at=i.created_at,
                type=i.type,
                amount=coins(i.amount),
                mining_date=i.mining_date,
            )
            for i in r.income
        ],
    )


def payments_out(p: read.Payments) -> PaymentsOut:
    return PaymentsOut(
        paid=coins(p.paid),
        payouts=[
            PayoutOut(
                paid_time=x.paid_time,
                amount=coins(x.amount),
                address=x.address,
                tx_id=x.tx_id,
                status=x.status,
            )
            for x in p.payouts
        ],
    )


def page_out(d: read.PageData) -> PageOut:
    """Sections not allowed are left unset, so they are absent from the JSON (the route
    drops unset fields), not null."""
    access = d.page.access
    sections: dict[str, object] = {}
    if d.hashrate is not None:
        sections["hashrate"] = hashrate_out(d.hashrate)
    if d.workers is not None:
        sections["workers"] = [worker_out(w) for w in d.workers]
    if d.revenue is not None:
        sections["revenue"] = revenue_out(d.revenue)
    if d.payments is not None:
        sections["payments"] = payments_out(d.payments)
    return PageOut(
        page_name=access.page_name,
        mining_user_name=access.user,
        currency=d.page.currency,
        permissions=",".join(str(p) for p in sorted(access.permissions)),
        **sections,  # type: ignore[arg-type]
    )
