"""What the distribution service returns: small frozen records, no ORM objects.

Hashrate is H/s, money integer base units, times Unix seconds; the API edge turns these
into f2pool's HashRateDistributionOrder, HashRateDistributionSettlement and
RevenueDistribution (e.g. `terminate_at` None -> 0, `proportion_ppm` -> a double).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hashquarry.distribution.math import PPM


@dataclass(frozen=True)
class HashrateOrder:
    id: int
    coin: str
    distributor: str
    recipient: str
    hash_rate: float
    start_at: float
    end_at: float
    terminate_at: float | None
    created_at: float
    status: str  # active | terminated

    @property
    def effective_end(self) -> float:
        """When the order stops: its end, or its termination if that came first."""
        if self.terminate_at is None:
            return self.end_at
        return max(self.start_at, min(self.end_at, self.terminate_at))

    def state(self, now: float) -> str:
        """pending, running, ended or terminated, at `now`."""
        if self.status == "terminated":
            return "terminated"
        if now < self.start_at:
            return "pending"
        return "running" if now < self.end_at else "ended"

    @classmethod
    def from_row(cls, row: Any) -> HashrateOrder:
        return cls(
            int(row.id),
            row.coin,
            row.distributor,
            row.recipient,
            float(row.hash_rate),
            float(row.start_at),
            float(row.end_at),
            None if row.terminate_at is None else float(row.terminate_at),
            float(row.created_at),
            row.status,
        )


@dataclass(frozen=True)
class HashrateInfo:
    """f2pool's hash_rate/distribution/info: the distributor's hashrate now, the most
    already sold at any instant of the proposed window, and what is left to sell."""

    current_hash_rate: float
    sold_hash_rate: float
    remaining_hash_rate: float


@dataclass(frozen=True)
class HashrateSettlement:
    id: int
    order: HashrateOrder
    period_start: float
    period_end: float
    hashes: float  # hashes delivered, not a rate
    income: int
    distributor_hashes: float
    distributor_income: int
    settled_at: float  # f2pool's `timestamp`


@dataclass(frozen=True)
class RevenueShare:
    id: int
    coin: str
    distributor: str
    recipient: str
    description: str
    proportion_ppm: int
    created_at: float
    deleted_at: float | None

    @property
    def proportion(self) -> float:
        return self.proportion_ppm / PPM

    @classmethod
    def from_row(cls, row: Any) -> RevenueShare:
        return cls(
            int(row.id),
            row.coin,
            row.distributor,
            row.recipient,
            row.description,
            int(row.proportion_ppm),
            float(row.created_at),
            None if row.deleted_at is None else float(row.deleted_at),
        )


@dataclass(frozen=True)
class RevenueMove:
    distribution_id: int
    period_start: float
    amount: int


@dataclass
class SettleReport:
    """What one settlement run did. `deferred` lists (distributor, day start) pairs whose
    income was not final yet (immature block credits or unsettled PPS accruals dated in
    the day); a later run settles them."""

    hashrate: list[HashrateSettlement] = field(default_factory=list)
    revenue: list[RevenueMove] = field(default_factory=list)
    deferred: list[tuple[str, float]] = field(default_factory=list)

    @property
    def moved(self) -> int:
        return sum(s.income for s in self.hashrate) + sum(r.amount for r in self.revenue)
