"""The store queries behind the accounts service, on a connection the caller holds.

Kept apart from the service so the service reads as rules and transactions; every
function here scopes its rows by owner where an owner is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from hashquarry.accounts import keys, pages
from hashquarry.accounts import tables as t
from hashquarry.accounts.errors import AccountsError, NotFoundError
from hashquarry.accounts.models import ApiKey, MiningUser, Page, Wallet
from hashquarry.store import models as m


async def owner_id(conn: AsyncConnection, owner: object) -> int:
    if not isinstance(owner, str) or not owner:
        raise AccountsError("owner", "an owner name is needed")
    found = await conn.scalar(select(t.owners.c.id).where(t.owners.c.name == owner))
    if found is None:
        raise NotFoundError("owner", f"unknown owner {owner!r}")
    return int(found)


async def require_owned(
    conn: AsyncConnection, owner: int, users: Sequence[str], field: str = "mining_user_name"
) -> None:
    """Refuse unless every user belongs to the owner; the error names all the others."""
    mu = t.mining_users.c
    rows = await conn.execute(select(mu.name).where(mu.owner_id == owner, mu.name.in_(users)))
    found = set(rows.scalars())
    missing = [u for u in users if u not in found]
    if missing:
        shown = ", ".join(repr(u) for u in missing)
        plural = "s" if len(missing) > 1 else ""
        raise NotFoundError(field, f"mining user{plural} {shown} not found")


async def api_keys_of(conn: AsyncConnection, owner: int) -> list[ApiKey]:
    k = t.api_keys.c
    rows = await conn.execute(select(t.api_keys).where(k.owner_id == owner).order_by(k.id))
    return [
        ApiKey(
            r.id, r.prefix, keys.parse_scopes(r.scopes), r.created_at, r.revoked_at, r.last_used_at
        )
        for r in rows
    ]


async def key_candidates(conn: AsyncConnection, prefix: str) -> list[Any]:
    """Keys sharing a shown prefix, with their owner's name and state."""
    k, o = t.api_keys.c, t.owners.c
    q = (
        select(k.id, k.hash, k.scopes, k.revoked_at, k.last_used_at, o.name, o.disabled)
        .join(t.owners, o.id == k.owner_id)
        .where(k.prefix == prefix)
    )
    return list((await conn.execute(q)).all())


async def users_of(
    conn: AsyncConnection, owner: int, only: Sequence[str] | None = None
) -> list[MiningUser]:
    """An owner's users (or those of `only` it owns) with wallets and live pages."""
    mu, w, p = t.mining_users.c, t.user_wallets.c, t.read_only_pages.c
    where = [mu.owner_id == owner]
    if only is not None:
        where.append(mu.name.in_(only))
    users = (await conn.execute(select(t.mining_users).where(*where).order_by(mu.name))).all()
    wallets: dict[str, list[Wallet]] = {}
    q = select(t.user_wallets).join(t.mining_users, mu.name == w.user).where(*where)
    for r in await conn.execute(q.order_by(w.currency)):
        wallets.setdefault(r.user, []).append(wallet_from(r))
    live: dict[str, list[Page]] = {}
    q = (
        select(t.read_only_pages)
        .join(t.mining_users, mu.name == p.user)
        .where(*where, p.deleted_at.is_(None))
    )
    for r in await conn.execute(q.order_by(p.id)):
        live.setdefault(r.user, []).append(page_from(r))
    return [
        MiningUser(
            u.name,
            u.description,
            u.created_at,
            tuple(wallets.get(u.name, ())),
            tuple(live.get(u.name, ())),
        )
        for u in users
    ]


async def wallet(conn: AsyncConnection, user: str, currency: str) -> Wallet:
    w = t.user_wallets.c
    q = select(t.user_wallets).where(w.user == user, w.currency == currency)
    return wallet_from((await conn.execute(q)).one())


async def page_access(conn: AsyncConnection, key: str) -> Any:
    """(user, page_name, permissions) of a live page whose owner is enabled, or None."""
    p, mu, o = t.read_only_pages.c, t.mining_users.c, t.owners.c
    q = (
        select(p.user, p.page_name, p.permissions)
        .join(t.mining_users, mu.name == p.user)
        .join(t.owners, o.id == mu.owner_id)
        .where(p.page_key == key, p.deleted_at.is_(None), o.disabled.is_(False))
    )
    return (await conn.execute(q)).first()


async def settle_switch_at(conn: AsyncConnection, currency: str, user: str, at: float) -> Any:
    s = m.settle_modes.c
    q = (
        select(s.mode, s.activate_at)
        .where(s.coin == currency, s.account == user, s.activate_at <= at)
        .order_by(s.activate_at.desc(), s.id.desc())
        .limit(1)
    )
    return (await conn.execute(q)).first()


async def wallets_for(conn: AsyncConnection, currency: str) -> list[Any]:
    """(user, address, threshold, paused) of every wallet with an address for `currency`."""
    w = t.user_wallets.c
    q = select(w.user, w.address, w.threshold, w.paused).where(
        w.currency == currency, w.address.is_not(None)
    )
    return list((await conn.execute(q)).all())


async def all_user_names(conn: AsyncConnection) -> set[str]:
    return set((await conn.execute(select(t.mining_users.c.name))).scalars())


async def ledger_accounts(conn: AsyncConnection, coin: str) -> list[str]:
    q = select(m.ledger.c.account).where(m.ledger.c.coin == coin).distinct()
    return list((await conn.execute(q)).scalars())


async def users_and_owner_state(conn: AsyncConnection) -> list[tuple[str, bool]]:
    """(user name, owner disabled) of every mining user: what the authorizer caches."""
    mu, o = t.mining_users.c, t.owners.c
    q = select(mu.name, o.disabled).join(t.owners, o.id == mu.owner_id)
    return [(name, bool(disabled)) for name, disabled in await conn.execute(q)]


def wallet_from(r: Any) -> Wallet:
    return Wallet(r.currency, r.address, r.threshold, r.paused, r.updated_at)


def page_from(r: Any) -> Page:
    return Page(r.page_key, r.page_name, pages.parse_permissions(r.permissions), r.created_at)
