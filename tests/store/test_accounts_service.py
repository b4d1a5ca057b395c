"""The accounts service against a real store: SQLite always, PostgreSQL when available.

Every rule of the service is exercised through its public methods; the isolation test
tries every owner-scoped call with another owner's names and checks nothing changed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting.ledger import POOL_ACCOUNT, mode_resolver
from hashquarry.accounts import tables as t
from hashquarry.accounts.keys import Scope
from hashquarry.accounts.service import (
    AccountsError,
    AccountsService,
    ConflictError,
    NotFoundError,
)
from hashquarry.chain.address import script_to_address
from hashquarry.store import models as m
from hashquarry.store.models import metadata

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
MIDNIGHT = 1_700_006_400.0  # the next 00:00 UTC
REGTEST_A = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"
REGTEST_B = "mzK2FFDEhxqHcmrJw1ysqFkVyhUULo45hZ"
MAINNET = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
REGTEST_BECH32 = script_to_address(b"\x00\x14" + bytes(range(20)), "regtest")
DEFAULT_THRESHOLD = 50_000


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def service(engine: AsyncEngine, clock: Clock) -> AccountsService:
    # Until the Alembic migration has the accounts tables, create them after upgrading
    # (checkfirst: a no-op once the migration does).
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: metadata.create_all(c, tables=list(t.ACCOUNTS_TABLES)))
    return AccountsService(
        engine, {"bitcoin": "regtest"}, default_threshold=DEFAULT_THRESHOLD, clock=clock
    )


async def _two_owners(svc: AccountsService) -> None:
    """Owner acme with users alice and amy, owner bolt with user bob."""
    await svc.create_owner("acme")
    await svc.create_owner("bolt")
    await svc.add_mining_user("acme", "alice", "rigs in hall 1")
    await svc.add_mining_user("acme", "amy")
    await svc.add_mining_user("bolt", "bob")


async def _snapshot(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    async with engine.connect() as conn:
        for table in (*t.ACCOUNTS_TABLES, m.settle_modes):
            rows = await conn.execute(select(table).order_by(*table.primary_key.columns))
            out[table.name] = [tuple(r) for r in rows]
    return out


# -- owners and API keys -----------------------------------------------------------------


async def test_owners(service: AccountsService) -> None:
    owner = await service.create_owner("acme")
    assert (owner.name, owner.created_at, owner.disabled) == ("acme", NOW, False)
    with pytest.raises(ConflictError, match="owner 'acme' already exists"):
        await service.create_owner("acme")
    with pytest.raises(AccountsError) as err:
        await service.create_owner("Acme Corp")
    assert err.value.field == "owner"
    await service.create_owner("bolt")
    assert [o.name for o in await service.list_owners()] == ["acme", "bolt"]
    assert (await service.set_owner_disabled("bolt", True)).disabled
    with pytest.raises(NotFoundError, match="unknown owner 'nobody'"):
        await service.set_owner_disabled("nobody", True)


async def test_api_keys_are_shown_once_hashed_scoped_and_revocable(
    service: AccountsService, engine: AsyncEngine, clock: Clock
) -> None:
    await service.create_owner("acme")
    key_id, secret = await service.create_api_key("acme", ["read_hashrate", "read_revenue"])
    async with engine.connect() as conn:
        row = (await conn.execute(select(t.api_keys))).one()
    assert secret not in repr(tuple(row))  # only the hash and the shown prefix are kept
    assert row.prefix == secret[:8] and len(row.hash) == 64

    [listed] = await service.list_api_keys("acme")
    assert (listed.id, listed.prefix, listed.last_used_at) == (key_id, secret[:8], None)
    assert listed.scopes == {Scope.READ_HASHRATE, Scope.READ_REVENUE}

    owner, scopes = await service.authenticate(secret)  # type: ignore[misc]
    assert owner == "acme" and scopes == {Scope.READ_HASHRATE, Scope.READ_REVENUE}
    assert (await service.list_api_keys("acme"))[0].last_used_at == NOW
    clock.now += 10  # within the resolution: no write
    assert await service.authenticate(secret)
    assert (await service.list_api_keys("acme"))[0].last_used_at == NOW
    clock.now += 60
    assert await service.authenticate(secret)
    assert (await service.list_api_keys("acme"))[0].last_used_at == NOW + 70

    # Wrong keys: same shown prefix but another secret, garbage, another prefix.
    last = "A" if secret[-1] != "A" else "B"
    assert await service.authenticate(secret[:-1] + last) is None
    assert await service.authenticate(secret[:8]) is None
    assert await service.authenticate("hq_" + "x" * 43) is None
    assert await service.authenticate(None) is None

    await service.revoke_api_key("acme", key_id)
    assert await service.authenticate(secret) is None
    assert (await service.list_api_keys("acme"))[0].revoked_at == NOW + 70
    with pytest.raises(ConflictError, match="already revoked"):
        await service.revoke_api_key("acme", key_id)
    with pytest.raises(NotFoundError, match="API key 999 not found"):
        await service.revoke_api_key("acme", 999)
    with pytest.raises(AccountsError, match="integer key id"):
        await service.revoke_api_key("acme", "1")  # type: ignore[arg-type]

    before = await _snapshot(engine)
    with pytest.raises(AccountsError, match="unknown scope 'god_mode'"):
        await service.create_api_key("acme", ["read_hashrate", "god_mode"])
    with pytest.raises(NotFoundError, match="unknown owner"):
        await service.create_api_key("nobody", ["all"])
    assert await _snapshot(engine) == before


async def test_disabled_owner_is_refused_everywhere(service: AccountsService) -> None:
    await _two_owners(service)
    _, secret = await service.create_api_key("acme", "all")
    page = await service.add_page("acme", "alice", "shop window", "1")
    await service.refresh_cache()
    authorize = service.stratum_authorizer()
    assert await service.authenticate(secret) is not None
    assert await service.resolve_page(page.key) is not None
    assert authorize("alice", "rig1", False) is None

    await service.set_owner_disabled("acme", True)
    assert await service.authenticate(secret) is None
    assert await service.resolve_page(page.key) is None
    assert authorize("alice", "rig1", False) == "mining user 'alice' is disabled"
    assert authorize("bob", "rig1", False) is None

    await service.set_owner_disabled("acme", False)
    assert await service.authenticate(secret) is not None
    assert authorize("alice", "rig1", False) is None


# -- mining users --------------------------------------------------------------------------


async def test_mining_users(service: AccountsService, engine: AsyncEngine) -> None:
    await _two_owners(service)
    alice = await service.get_mining_user("acme", "alice")
    assert (alice.name, alice.description, alice.wallets, alice.pages) == (
        "alice",
        "rigs in hall 1",
        (),
        (),
    )
    assert [u.name for u in await service.list_mining_users("acme")] == ["alice", "amy"]
    assert [u.name for u in await service.list_mining_users("bolt")] == ["bob"]

    before = await _snapshot(engine)
    # Names are global (Stratum user names carry no owner): another owner's name is taken.
    with pytest.raises(ConflictError, match="'alice' is already taken") as err:
        await service.add_mining_user("bolt", "alice")
    assert err.value.field == "mining_user_name"
    with pytest.raises(AccountsError, match="must begin with a lowercase letter"):
        await service.add_mining_user("acme", "1st")
    with pytest.raises(AccountsError, match="is 16 characters long"):
        await service.add_mining_user("acme", "a" * 16)
    with pytest.raises(AccountsError) as err:
        await service.add_mining_user("acme", "carol", "x" * 300)
    assert err.value.field == "description"
    with pytest.raises(NotFoundError, match="unknown owner"):
        await service.add_mining_user("nobody", "carol")
    with pytest.raises(NotFoundError, match="mining user 'zed' not found"):
        await service.get_mining_user("acme", "zed")
    assert await _snapshot(engine) == before


async def test_the_same_name_added_concurrently_is_taken_once(service: AccountsService) -> None:
    await _two_owners(service)
    results = await asyncio.gather(
        service.add_mining_user("acme", "race"),
        service.add_mining_user("bolt", "race"),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["ConflictError", "MiningUser"]
    holders = [
        owner
        for owner in ("acme", "bolt")
        if "race" in {u.name for u in await service.list_mining_users(owner)}
    ]
    assert len(holders) == 1


# -- owners are isolated -------------------------------------------------------------------


async def test_an_owner_cannot_read_or_change_another_owners_things(
    service: AccountsService, engine: AsyncEngine
) -> None:
    await _two_owners(service)
    key_id, secret = await service.create_api_key("acme", "all")
    await service.update_wallet("acme", "alice", "bitcoin", REGTEST_A, 70_000)
    page = await service.add_page("acme", "alice", "for the accountant", "2")
    await service.switch_settle_mode("acme", "alice", "bitcoin", "pps")
    before = await _snapshot(engine)

    attempts = {
        "get_mining_user": service.get_mining_user("bolt", "alice"),
        "update_wallet": service.update_wallet("bolt", "alice", "bitcoin", REGTEST_B, 1),
        "update_threshold": service.update_threshold("bolt", "alice", "bitcoin", 1),
        "pause_payments": service.pause_payments("bolt", ["alice"], "bitcoin"),
        "resume_payments": service.resume_payments("bolt", ["alice"], "bitcoin"),
        "add_page": service.add_page("bolt", "alice", "stolen", "1,2"),
        "delete_page": service.delete_page("bolt", "alice", page.key),
        "switch_settle_mode": service.switch_settle_mode("bolt", "alice", "bitcoin", "solo"),
        "settle_mode": service.settle_mode("bolt", "alice", "bitcoin"),
    }
    for name, call in attempts.items():
        with pytest.raises(NotFoundError) as err:
            await call
        # Exactly what a missing user says: no hint that 'alice' exists elsewhere.
        assert err.value.reason == "mining user 'alice' not found", name

    # Their own user name with the other owner's page key, and the other owner's key id.
    with pytest.raises(NotFoundError, match=r"read-only page .* of 'bob' not found"):
        await service.delete_page("bolt", "bob", page.key)
    with pytest.raises(NotFoundError, match=f"API key {key_id} not found"):
        await service.revoke_api_key("bolt", key_id)
    assert await service.list_api_keys("bolt") == []
    assert [u.name for u in await service.list_mining_users("bolt")] == ["bob"]

    assert await _snapshot(engine) == before
    assert await service.authenticate(secret) is not None
    assert await service.resolve_page(page.key) is not None


# -- wallets, thresholds, pauses -------------------------------------------------------------


async def test_wallets(service: AccountsService, engine: AsyncEngine, clock: Clock) -> None:
    await _two_owners(service)
    wallet = await service.update_wallet("acme", "alice", "bitcoin", REGTEST_A)
    assert (wallet.currency, wallet.address, wallet.threshold, wallet.paused) == (
        "bitcoin",
        REGTEST_A,
        DEFAULT_THRESHOLD,
        False,
    )
    clock.now += 5
    wallet = await service.update_wallet("acme", "alice", "bitcoin", REGTEST_BECH32.upper(), 1)
    assert (wallet.address, wallet.threshold, wallet.updated_at) == (REGTEST_BECH32, 1, NOW + 5)
    # A new address without a threshold keeps the one chosen before.
    wallet = await service.update_wallet("acme", "alice", "bitcoin", REGTEST_B)
    assert (wallet.address, wallet.threshold) == (REGTEST_B, 1)
    assert (await service.get_mining_user("acme", "alice")).wallets == (wallet,)

    before = await _snapshot(engine)
    with pytest.raises(AccountsError) as err:
        await service.update_wallet("acme", "alice", "bitcoin", MAINNET)
    assert err.value.field == "address"
    assert "is for mainnet, but the pool runs on regtest" in err.value.reason
    with pytest.raises(AccountsError, match="bad checksum") as err:
        await service.update_wallet("acme", "alice", "bitcoin", REGTEST_A[:-1] + "x")
    with pytest.raises(AccountsError, match="'litecoin' is not mined on this pool") as err:
        await service.update_wallet("acme", "alice", "litecoin", REGTEST_A)
    assert err.value.field == "currency"
    with pytest.raises(AccountsError, match="below the minimum") as err:
        await service.update_wallet("acme", "alice", "bitcoin", REGTEST_A, -1)
    assert err.value.field == "threshold"
    with pytest.raises(AccountsError, match="must be an integer"):
        await service.update_threshold("acme", "alice", "bitcoin", 0.001)  # type: ignore[arg-type]
    assert await _snapshot(engine) == before

    assert await service.update_threshold("acme", "alice", "bitcoin", 123_456) == 123_456
    assert (await service.get_mining_user("acme", "alice")).wallets[0].threshold == 123_456
    # A threshold before any address: kept, never paid (no address).
    assert await service.update_threshold("acme", "amy", "bitcoin", 7) == 7
    [amy_wallet] = (await service.get_mining_user("acme", "amy")).wallets
    assert (amy_wallet.address, amy_wallet.threshold) == (None, 7)


async def test_pause_and_resume_are_all_or_nothing(
    service: AccountsService, engine: AsyncEngine
) -> None:
    await _two_owners(service)
    await service.update_wallet("acme", "alice", "bitcoin", REGTEST_A, 1000)

    async def paused() -> dict[str, bool]:
        return {
            u.name: w.paused for u in await service.list_mining_users("acme") for w in u.wallets
        }

    assert await service.pause_payments("acme", ["alice", "amy", "alice"], "bitcoin") == [
        "alice",
        "amy",
    ]
    assert await paused() == {"alice": True, "amy": True}
    wallet = (await service.get_mining_user("acme", "alice")).wallets[0]
    assert (wallet.address, wallet.threshold) == (REGTEST_A, 1000)  # untouched by a pause

    before = await _snapshot(engine)
    with pytest.raises(NotFoundError) as err:
        await service.resume_payments("acme", ["alice", "bob", "ghost"], "bitcoin")
    assert err.value.field == "mining_user_names"
    assert err.value.reason == "mining users 'bob', 'ghost' not found"
    with pytest.raises(AccountsError, match="'Amy' begins with 'A'"):
        await service.resume_payments("acme", ["alice", "Amy"], "bitcoin")
    with pytest.raises(AccountsError, match="at least one mining user"):
        await service.resume_payments("acme", [], "bitcoin")
    with pytest.raises(AccountsError, match="must be a list"):
        await service.resume_payments("acme", "alice", "bitcoin")
    with pytest.raises(AccountsError, match="not mined on this pool"):
        await service.resume_payments("acme", ["alice"], "litecoin")
    assert await _snapshot(engine) == before

    assert await service.resume_payments("acme", ["alice"], "bitcoin") == ["alice"]
    assert await paused() == {"alice": False, "amy": True}


# -- read-only pages -------------------------------------------------------------------------


async def test_read_only_pages(service: AccountsService, engine: AsyncEngine) -> None:
    await _two_owners(service)
    page = await service.add_page("acme", "alice", "hashrate only", "1")
    both = await service.add_page("acme", "alice", "all but payments", [3, 1])
    assert page.key != both.key and len(page.key) == 24
    assert (page.page_name, page.permissions) == ("hashrate only", {1})
    assert (await service.get_mining_user("acme", "alice")).pages == (page, both)

    access = await service.resolve_page(both.key)
    assert access is not None
    assert (access.user, access.page_name, access.permissions) == (
        "alice",
        "all but payments",
        {1, 3},
    )
    assert await service.resolve_page("no-such-key") is None
    assert await service.resolve_page("") is None
    assert await service.resolve_page(None) is None

    before = await _snapshot(engine)
    with pytest.raises(AccountsError) as err:
        await service.add_page("acme", "alice", "bad", "1,4")
    assert err.value.field == "permissions"
    with pytest.raises(AccountsError) as err:
        await service.add_page("acme", "alice", "n" * 65, "1")
    assert err.value.field == "page_name"
    assert await _snapshot(engine) == before

    await service.delete_page("acme", "alice", page.key)
    assert await service.resolve_page(page.key) is None
    assert (await service.get_mining_user("acme", "alice")).pages == (both,)
    with pytest.raises(NotFoundError, match="not found"):
        await service.delete_page("acme", "alice", page.key)  # already deleted
    with pytest.raises(NotFoundError, match="not found"):
        await service.delete_page("acme", "amy", both.key)  # another user's page


# -- settle modes ----------------------------------------------------------------------------


async def test_settle_mode_switch(
    service: AccountsService, engine: AsyncEngine, clock: Clock
) -> None:
    await _two_owners(service)
    switch = await service.switch_settle_mode("acme", "alice", "bitcoin", "PPS")
    assert (switch.mode, switch.activate_at) == ("pps", MIDNIGHT)
    assert await service.settle_mode("acme", "alice", "bitcoin") is None  # not yet active
    later = await service.switch_settle_mode("acme", "alice", "bitcoin", "solo", MIDNIGHT + 3600)
    assert later.activate_at == MIDNIGHT + 3600

    # The accounting code reads the same history.
    async with engine.connect() as conn:
        mode_of = await mode_resolver(conn, "bitcoin", "pplns")
    assert mode_of("alice", NOW) == "pplns"
    assert mode_of("alice", MIDNIGHT) == "pps"
    assert mode_of("alice", MIDNIGHT + 3600) == "solo"
    assert mode_of("amy", MIDNIGHT + 3600) == "pplns"

    clock.now = MIDNIGHT + 10
    current = await service.settle_mode("acme", "alice", "bitcoin")
    assert current is not None and current.mode == "pps"
    assert (await service.settle_mode("acme", "alice", "bitcoin", MIDNIGHT + 3600)).mode == "solo"  # type: ignore[union-attr]

    before = await _snapshot(engine)
    with pytest.raises(AccountsError, match="is in the past") as err:
        await service.switch_settle_mode("acme", "alice", "bitcoin", "pps", NOW)
    assert err.value.field == "activated_at"
    with pytest.raises(AccountsError, match="not a settle mode") as err:
        await service.switch_settle_mode("acme", "alice", "bitcoin", "ppsplus")
    assert err.value.field == "mode"
    with pytest.raises(AccountsError, match="not mined on this pool"):
        await service.switch_settle_mode("acme", "alice", "litecoin", "pps")
    assert await _snapshot(engine) == before


# -- payout targets and Stratum ----------------------------------------------------------------


async def _ledger(engine: AsyncEngine, coin: str, *accounts: str) -> None:
    rows = [
        {
            "coin": coin,
            "account": a,
            "kind": "revenue",
            "bucket": "balance",
            "amount": 1000,
            "ref": f"test:{i}",
            "created_at": NOW,
        }
        for i, a in enumerate(accounts)
    ]
    async with engine.begin() as conn:
        await conn.execute(m.ledger.insert(), rows)


async def test_payout_targets(service: AccountsService, engine: AsyncEngine) -> None:
    await _two_owners(service)
    await service.add_mining_user("bolt", "bea")
    await service.update_wallet("acme", "alice", "bitcoin", REGTEST_A, 10_000)
    await service.update_wallet("bolt", "bob", "bitcoin", REGTEST_BECH32, 20_000)
    await service.pause_payments("bolt", ["bob"], "bitcoin")
    await service.update_threshold("acme", "amy", "bitcoin", 5)  # no address: not a target
    await _ledger(
        engine,
        "bitcoin",
        "alice",
        "amy",
        "bea",  # a user without a wallet: its balance waits
        "carol",  # mined before accounts existed: not an address, not payable
        POOL_ACCOUNT,
        REGTEST_B,  # address mode
        REGTEST_BECH32.upper(),  # address mode, same address as bob's wallet
        MAINNET,  # an address, but for another network
    )
    await _ledger(engine, "litecoin", "mzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz")

    found = await service.payout_targets("bitcoin", address_threshold=30_000)
    assert [(p.account, p.address, p.threshold, p.paused, p.address_mode) for p in found] == [
        (REGTEST_BECH32.upper(), REGTEST_BECH32, 30_000, False, True),
        ("alice", REGTEST_A, 10_000, False, False),
        ("bob", REGTEST_BECH32, 20_000, True, False),
        (REGTEST_B, REGTEST_B, 30_000, False, True),
    ]
    default = await service.payout_targets("bitcoin", "bitcoin")
    assert {p.threshold for p in default if p.address_mode} == {DEFAULT_THRESHOLD}
    users_only = await service.payout_targets("bitcoin", address_mode=False)
    assert [p.account for p in users_only] == ["alice", "bob"]
    with pytest.raises(AccountsError, match="not mined on this pool"):
        await service.payout_targets("litecoin")


async def test_stratum_authorizer(service: AccountsService, engine: AsyncEngine) -> None:
    authorize = service.stratum_authorizer()
    assert "loading" in (authorize("alice", "rig1", False) or "")
    await _two_owners(service)
    await service.refresh_cache()
    assert authorize("alice", "rig1", False) is None
    assert authorize("bob", "default", False) is None
    assert authorize("zed", "rig1", False) == "unknown mining user 'zed'"
    assert authorize(REGTEST_A, "rig1", True) is None
    assert "address mode is off" in (
        service.stratum_authorizer(allow_address_mode=False)(REGTEST_A, "rig1", True) or ""
    )

    await service.add_mining_user("bolt", "zed")  # this process: at once
    assert authorize("zed", "rig1", False) is None
    # Another process (the CLI) adds a user straight to the store: seen after a refresh.
    async with engine.begin() as conn:
        bolt = await conn.scalar(select(t.owners.c.id).where(t.owners.c.name == "bolt"))
        await conn.execute(
            t.mining_users.insert().values(name="yan", owner_id=bolt, created_at=NOW)
        )
    assert authorize("yan", "rig1", False) is not None
    task = asyncio.create_task(service.keep_cache_fresh(0.01))
    try:
        for _ in range(200):
            if authorize("yan", "rig1", False) is None:
                break
            await asyncio.sleep(0.01)
        assert authorize("yan", "rig1", False) is None
    finally:
        task.cancel()


def test_service_rejects_a_bad_network_mapping() -> None:
    with pytest.raises(ValueError, match="unknown network"):
        AccountsService(None, {"bitcoin": "mainnet"})  # type: ignore[arg-type]
    with pytest.raises(AccountsError, match="below the minimum"):
        AccountsService(None, {"bitcoin": "main"}, default_threshold=5, min_threshold=10)  # type: ignore[arg-type]
