"""What the accounts service returns: small frozen records, no ORM objects.

Amounts are integer base units; times are Unix seconds. The API edge turns these into
each dialect's shapes (f2pool's MiningUserInfo, Wallet, ReadOnlyPage, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from hashquarry.accounts.keys import Scope


@dataclass(frozen=True)
class Owner:
    name: str
    created_at: float
    disabled: bool


@dataclass(frozen=True)
class ApiKey:
    """A key as listed: never the secret, only its first characters."""

    id: int
    prefix: str
    scopes: frozenset[Scope]
    created_at: float
    revoked_at: float | None
    last_used_at: float | None


class Authenticated(NamedTuple):
    owner: str
    scopes: frozenset[Scope]


@dataclass(frozen=True)
class Wallet:
    currency: str
    address: str | None  # None: pause or threshold set before any address
    threshold: int
    paused: bool
    updated_at: float


@dataclass(frozen=True)
class Page:
    key: str
    page_name: str
    permissions: frozenset[int]
    created_at: float


@dataclass(frozen=True)
class MiningUser:
    name: str
    description: str
    created_at: float
    wallets: tuple[Wallet, ...] = ()
    pages: tuple[Page, ...] = ()


@dataclass(frozen=True)
class PageAccess:
    """What a read-only page key opens: one mining user, within these permissions."""

    user: str
    page_name: str
    permissions: frozenset[int]


@dataclass(frozen=True)
class SettleSwitch:
    mode: str
    activate_at: float


@dataclass(frozen=True)
class PayoutTarget:
    """Where the payout engine sends one ledger account's balance.

    `account` is the ledger account; `address` is what the wallet pays (canonical form).
    Several accounts can share one address (a user's wallet that is also mined to in
    address mode, or a bech32 address typed in both cases), so a batch must sum per address.
    """

    account: str
    address: str
    threshold: int
    paused: bool
    address_mode: bool = False
