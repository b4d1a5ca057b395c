"""What the payout engine takes and returns: errors, targets, results, and the reserve."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection


class PayoutError(Exception):
    pass


class PayoutBusy(PayoutError):
    """Another payout holds the lock; nothing was debited."""


class Target(Protocol):
    account: str
    address: str
    threshold: int
    paused: bool


@dataclass(frozen=True)
class PayoutTarget:
    account: str
    address: str
    threshold: int
    paused: bool = False


@dataclass(frozen=True)
class PayoutResult:
    payout_id: str
    status: str  # sent | failed | sending (the wallet's answer is still to be found)
    txid: str | None
    total: int
    items: dict[str, int]
    error: str | None = None


class Reserve(Protocol):
    """Money a payout must leave in balances because someone else may still be owed it
    (distribution.reserve.DividendReserve: dividends of days not settled yet). Both are
    called with the payout lock held."""

    async def settle(self, now: float) -> object:
        """Settle what can be settled now, so it need not be held back any more."""
        ...

    async def held(self, conn: AsyncConnection, now: float) -> Mapping[str, int]:
        """account -> amount to leave in its balance, read on the caller's connection."""
        ...
