"""The accounts service: owners, API keys, mining users, wallets, pages and settle modes.

Every operation validates all of its input before it writes, runs in one transaction, and
raises AccountsError (field, reason) on bad input, so a refused request changes nothing.
Every lookup of a mining user, wallet or page is made *through its owner*: another
owner's user is "not found", exactly like a missing one, so owners are isolated even from
the knowledge of each other's users (only `add_mining_user` can tell a name is taken,
because names are global: they are the first half of a Stratum user name).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting.ledger import POOL_ACCOUNT
from hashquarry.accounting.writer import upsert
from hashquarry.accounts import keys, names, pages, queries, settle
from hashquarry.accounts import tables as t
from hashquarry.accounts.authorizer import UserCache, make_authorizer
from hashquarry.accounts.errors import AccountsError, ConflictError, NotFoundError
from hashquarry.accounts.models import (
    ApiKey,
    Authenticated,
    MiningUser,
    Owner,
    Page,
    PageAccess,
    PayoutTarget,
    SettleSwitch,
    Wallet,
)
from hashquarry.store import models as m
from hashquarry.stratum.session import Authorizer

if TYPE_CHECKING:
    from hashquarry.config import Settings

__all__ = ["AccountsError", "AccountsService", "ConflictError", "NotFoundError"]

DEFAULT_THRESHOLD = 1_000_000  # 0.01 coin: until the operator configures one
# last_used_at is for the owner's eyes ("used 2 minutes ago"); writing it on every request
# would turn each API read into a store write.
LAST_USED_RESOLUTION = 60.0
MAX_USERS_PER_CALL = 1000


class AccountsService:
    def __init__(
        self,
        engine: AsyncEngine,
        networks: Mapping[str, str],
        *,
        default_threshold: int = DEFAULT_THRESHOLD,
        min_threshold: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`networks` maps each currency this pool pays (f2pool names) to its address
        network, e.g. {"bitcoin": "main"}; `default_threshold` applies to wallets created
        without one and to address-mode miners."""
        self.engine = engine
        self.networks = names.check_networks(networks)
        self.min_threshold = names.check_threshold(min_threshold)
        self.default_threshold = names.check_threshold(default_threshold, self.min_threshold)
        self.clock = clock
        self._cache = UserCache()

    @classmethod
    def from_settings(cls, engine: AsyncEngine, settings: Settings) -> AccountsService:
        """The service for the pool in `settings`: one currency (`pool.coin`, an f2pool
        name) on `pool.network`, new wallets and address-mode miners at the configured
        address-mode threshold."""
        return cls(
            engine,
            {settings.pool.coin: settings.pool.network},
            default_threshold=settings.payouts.address_threshold,
        )

    # -- owners -------------------------------------------------------------------

    async def create_owner(self, name: str) -> Owner:
        name = names.check_owner_name(name)
        now = self.clock()
        try:
            async with self.engine.begin() as conn:
                if await conn.scalar(select(t.owners.c.id).where(t.owners.c.name == name)):
                    raise ConflictError("owner", f"owner {name!r} already exists")
                await conn.execute(
                    t.owners.insert().values(name=name, created_at=now, disabled=False)
                )
        except IntegrityError:  # created concurrently, between the check and the insert
            raise ConflictError("owner", f"owner {name!r} already exists") from None
        return Owner(name, now, False)

    async def list_owners(self) -> list[Owner]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(t.owners).order_by(t.owners.c.name))
            return [Owner(r.name, r.created_at, r.disabled) for r in rows]

    async def set_owner_disabled(self, name: str, disabled: bool) -> Owner:
        """A disabled owner's keys and pages are refused and its users may not mine."""
        async with self.engine.begin() as conn:
            await queries.owner_id(conn, name)
            await conn.execute(
                update(t.owners).where(t.owners.c.name == name).values(disabled=disabled)
            )
            row = (await conn.execute(select(t.owners).where(t.owners.c.name == name))).one()
        await self.refresh_cache()
        return Owner(row.name, row.created_at, row.disabled)

    # -- API keys -----------------------------------------------------------------

    async def create_api_key(self, owner: str, scopes: str | Iterable[str]) -> tuple[int, str]:
        """A new key: (key id, secret). The secret is shown once; only its hash is kept."""
        chosen = keys.parse_scopes(scopes)
        secret = keys.generate_secret()
        async with self.engine.begin() as conn:
            owner_id = await queries.owner_id(conn, owner)
            result = await conn.execute(
                t.api_keys.insert().values(
                    owner_id=owner_id,
                    prefix=keys.shown_prefix(secret),
                    hash=keys.hash_secret(secret),
                    scopes=keys.format_scopes(chosen),
                    created_at=self.clock(),
                )
            )
            key_id = int(result.inserted_primary_key[0])
        return key_id, secret

    async def list_api_keys(self, owner: str) -> list[ApiKey]:
        async with self.engine.connect() as conn:
            owner_id = await queries.owner_id(conn, owner)
            return await queries.api_keys_of(conn, owner_id)

    async def revoke_api_key(self, owner: str, key_id: int) -> None:
        if isinstance(key_id, bool) or not isinstance(key_id, int):
            raise AccountsError("key_id", f"must be an integer key id, not {key_id!r}")
        async with self.engine.begin() as conn:
            owner_id = await queries.owner_id(conn, owner)
            revoked_at = await conn.execute(
                select(t.api_keys.c.revoked_at).where(
                    t.api_keys.c.id == key_id, t.api_keys.c.owner_id == owner_id
                )
            )
            row = revoked_at.first()
            if row is None:
                raise NotFoundError("key_id", f"API key {key_id} not found")
            if row.revoked_at is not None:
                raise ConflictError("key_id", f"API key {key_id} is already revoked")
            await conn.execute(
                update(t.api_keys).where(t.api_keys.c.id == key_id).values(revoked_at=self.clock())
            )

    async def authenticate(self, secret: object) -> Authenticated | None:
        """The owner and scopes of a live key, or None (unknown, revoked, disabled owner)."""
        if not keys.looks_like_secret(secret):
            return None
        assert isinstance(secret, str)
        digest = keys.hash_secret(secret)
        now = self.clock()
        async with self.engine.begin() as conn:
            # Candidates by the non-secret prefix, then a constant-time comparison of the
            # hashes: the store's index lookup never compares anything secret.
            rows = await queries.key_candidates(conn, keys.shown_prefix(secret))
            match = None
            for row in rows:  # every candidate is compared, so timing says nothing either
                if keys.hashes_match(digest, row.hash):
                    match = row
            if match is None or match.revoked_at is not None or match.disabled:
                return None
            if match.last_used_at is None or now - match.last_used_at >= LAST_USED_RESOLUTION:
                await conn.execute(
                    update(t.api_keys).where(t.api_keys.c.id == match.id).values(last_used_at=now)
                )
        return Authenticated(match.name, keys.parse_scopes(match.scopes))

    # -- mining users -------------------------------------------------------------

    async def add_mining_user(self, owner: str, name: str, description: str = "") -> MiningUser:
        name = names.check_mining_user_name(name)
        description = names.check_description(description)
        now = self.clock()
        taken = ConflictError("mining_user_name", f"mining user name {name!r} is already taken")
        try:
            async with self.engine.begin() as conn:
                owner_id = await queries.owner_id(conn, owner)
                exists = select(t.mining_users.c.name).where(t.mining_users.c.name == name)
                if await conn.scalar(exists):
                    raise taken
                await conn.execute(
                    t.mining_users.insert().values(
                        name=name, owner_id=owner_id, description=description, created_at=now
                    )
                )
        except IntegrityError:  # added concurrently, between the check and the insert
            raise taken from None
        self._cache.add(name)
        return MiningUser(name, description, now)

    async def get_mining_user(self, owner: str, name: str) -> MiningUser:
        name = names.check_mining_user_name(name)
        async with self.engine.connect() as conn:
            owner_id = await queries.owner_id(conn, owner)
            await queries.require_owned(conn, owner_id, [name])
            found = await queries.users_of(conn, owner_id, [name])
        return found[0]

    async def list_mining_users(self, owner: str) -> list[MiningUser]:
        async with self.engine.connect() as conn:
            owner_id = await queries.owner_id(conn, owner)
            return await queries.users_of(conn, owner_id, None)

    # -- wallets, pauses, thresholds ---------------------------------------------------

    async def update_wallet(
        self,
        owner: str,
        user: str,
        currency: str,
        address: str,
        threshold: int | None = None,
    ) -> Wallet:
        """Set a user's payout address for a currency (and its threshold, if given; else
        the current one, or the default for a new wallet)."""
        user = names.check_mining_user_name(user)
        address = names.normalize_address(currency, address, self.networks)
        if threshold is not None:
            threshold = names.check_threshold(threshold, self.min_threshold)
        values: dict[str, Any] = {"address": address}
        if threshold is not None:
            values["threshold"] = threshold
        return await self._set_wallet(owner, user, currency, values)

    async def update_threshold(self, owner: str, user: str, currency: str, threshold: int) -> int:
        user = names.check_mining_user_name(user)
        names.currency_network(currency, self.networks)
        threshold = names.check_threshold(threshold, self.min_threshold)
        wallet = await self._set_wallet(owner, user, currency, {"threshold": threshold})
        return wallet.threshold

    async def _set_wallet(
        self, owner: str, user: str, currency: str, values: dict[str, Any]
    ) -> Wallet:
        now = self.clock()
        async with self.engine.begin() as conn:
            owner_id = await queries.owner_id(conn, owner)
            await queries.require_owned(conn, owner_id, [user])
            row = {
                "user": user,
                "currency": currency,
                "address": None,
                "threshold": self.default_threshold,
                "paused": False,
                **values,
                "updated_at": now,
            }
            await upsert(
                conn, t.user_wallets, [row], ["user", "currency"], replace=[*values, "updated_at"]
            )
            return await queries.wallet(conn, user, currency)

    async def pause_payments(self, owner: str, users: Sequence[str], currency: str) -> list[str]:
        return await self._set_paused(owner, users, currency, True)

    async def resume_payments(self, owner: str, users: Sequence[str], currency: str) -> list[str]:
        return await self._set_paused(owner, users, currency, False)

    async def _set_paused(
        self, owner: str, users: Sequence[str], currency: str, paused: bool
    ) -> list[str]:
        """All or nothing: if any user is invalid or not the owner's, nothing changes.
        Returns the users (deduplicated, in the order given)."""
        field = "mining_user_names"
        if isinstance(users, str) or not isinstance(users, Sequence):
            raise AccountsError(field, "must be a list of mining user names")
        wanted = list(dict.fromkeys(names.check_mining_user_name(u, field) for u in users))
        if not wanted:
            raise AccountsError(field, "at least one mining user is needed")
        if len(wanted) > MAX_USERS_PER_CALL:
            raise AccountsError(field, f"{len(wanted)} users; at most {MAX_USERS_PER_CALL}")
        names.currency_network(currency, self.networks)
        now = self.clock()
        async with self.engine.begin() as conn:
            owner_id = await queries.owner_id(conn, owner)
            await queries.require_owned(conn, owner_id, wanted, field)
            rows = [
                {
                    "user": u,
                    "currency": currency,
                    "address": None,
                    "threshold": self.default_threshold,
                    "paused": paused,
                    "updated_at": now,
                }
                for u in wanted
            ]
            await upsert(
                conn, t.user_wallets, rows, ["user", "currency"], replace=["paused", "updated_at"]
            )
        return wanted

    # -- read-only pages ----------------------------------------------------------------

    async def add_page(
        self, owner: str, user: str, page_name: str, permissions: str | int | Iterable[int]
    ) -> Page:
        user = names.check_mining_user_name(user)
        page_name = pages.check_page_name(page_name)
        perms = pages.parse_permissions(permissions)
        page = Page(pages.new_page_key(), page_name, perms, self.clock())
        async with self.engine.begin() as conn:
            owner_id = await queries.owner_id(conn, owner)
            await queries.require_owned(conn, owner_id, [user])
            await conn.execute(
                t.read_only_pages.insert().values(
                    user=user,
                    page_key=page.key,
                    page_name=page.page_name,
                    permissions=pages.format_permissions(perms),
                    created_at=page.created_at,
                )
            )
        return page

    async def delete_page(self, owner: str, user: str, key: str) -> None:
        user = names.check_mining_user_name(user)
        if not isinstance(key, str) or not key:
            raise AccountsError("key", "a read-only page key is needed")
        p = t.read_only_pages.c
        async with self.engine.begin() as conn:
            owner_id = await queries.owner_id(conn, owner)
            await queries.require_owned(conn, owner_id, [user])
            result = await conn.execute(
                update(t.read_only_pages)
                .where(p.page_key == key, p.user == user, p.deleted_at.is_(None))
                .values(deleted_at=self.clock())
            )
            if result.rowcount != 1:
                raise NotFoundError("key", f"read-only page {key!r} of {user!r} not found")

    async def resolve_page(self, key: object) -> PageAccess | None:
        """What a page key opens, or None (unknown, deleted, or its owner is disabled)."""
        if not isinstance(key, str) or not key or len(key) > 64:
            return None
        async with self.engine.connect() as conn:
            row = await queries.page_access(conn, key)
        if row is None:
            return None
        return PageAccess(row.user, row.page_name, pages.parse_permissions(row.permissions))

    # -- settle modes ---------------------------------------------------------------------

    async def switch_settle_mode(
        self,
        owner: str,
        user: str,
        currency: str,
        mode: str,
        activate_at: float | None = None,
    ) -> SettleSwitch:
        """Schedule a user's switch to `mode` (default: from the next 00:00 UTC)."""
        user = names.check_mining_user_name(user)
        names.currency_network(currency, self.networks)
        mode = settle.check_mode(mode)
        now = self.clock()
        at = settle.activation_time(activate_at, now)
        async with self.engine.begin() as conn:
            owner_id = await queries.owner_id(conn, owner)
            await queries.require_owned(conn, owner_id, [user])
            await conn.execute(
                m.settle_modes.insert().values(
                    coin=currency, account=user, mode=mode, activate_at=at, created_at=now
                )
            )
        return SettleSwitch(mode, at)

    async def settle_mode(
        self, owner: str, user: str, currency: str, at: float | None = None
    ) -> SettleSwitch | None:
        """The switch in force at `at` (default now); None means the pool's default."""
        user = names.check_mining_user_name(user)
        names.currency_network(currency, self.networks)
        when = self.clock() if at is None else at
        async with self.engine.connect() as conn:
            owner_id = await queries.owner_id(conn, owner)
            await queries.require_owned(conn, owner_id, [user])
            row = await queries.settle_switch_at(conn, currency, user, when)
        return None if row is None else SettleSwitch(row.mode, row.activate_at)

    # -- for the payout engine and Stratum ---------------------------------------------------

    async def payout_targets(
        self,
        coin: str,
        currency: str | None = None,
        *,
        address_threshold: int | None = None,
        address_mode: bool = True,
    ) -> list[PayoutTarget]:
        """Every account of `coin`'s ledger that can be paid in `currency` (default: coin).

        Mining users with a wallet address for the currency (paused ones included, marked
        so), plus (unless `address_mode` is False) address-mode accounts: a ledger account
        whose name is itself a payout address on the currency's network is paid to that
        address, with `address_threshold` (default: the service's default threshold),
        never paused. Sorted by account.
        """
        currency = currency or coin
        net = names.currency_network(currency, self.networks)
        threshold = names.check_threshold(
            self.default_threshold if address_threshold is None else address_threshold
        )
        async with self.engine.connect() as conn:
            wallets = await queries.wallets_for(conn, currency)
            registered = await queries.all_user_names(conn)
            accounts = await queries.ledger_accounts(conn, coin) if address_mode else []
            out = [PayoutTarget(r.user, r.address, r.threshold, r.paused) for r in wallets]
            for account in accounts:
                if account == POOL_ACCOUNT or account in registered:
                    continue
                address = names.address_on(account, net)
                if address is not None:
                    out.append(PayoutTarget(account, address, threshold, False, True))
        return sorted(out, key=lambda target: target.account)

    async def refresh_cache(self) -> None:
        """Reload the users the Stratum authorizer knows (cheap: one small query)."""
        async with self.engine.connect() as conn:
            rows = await queries.users_and_owner_state(conn)
        self._cache.replace(
            (name for name, disabled in rows if not disabled),
            (name for name, disabled in rows if disabled),
            self.clock(),
        )

    async def keep_cache_fresh(self, interval: float = 5.0) -> None:
        """Refresh forever (run as a task; cancel it to stop). Users added by the CLI in
        another process can mine within `interval` seconds."""
        while True:
            await self.refresh_cache()
            await asyncio.sleep(interval)

    def stratum_authorizer(self, *, allow_address_mode: bool = True) -> Authorizer:
        """A synchronous authorizer over the cache: known users of enabled owners, and
        (if allowed) address-mode miners. Call `refresh_cache()` before serving."""
        return make_authorizer(self._cache, allow_address_mode=allow_address_mode)
