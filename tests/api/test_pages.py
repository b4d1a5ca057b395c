"""Read-only pages (/mining-user-{currency}/{key}) on the shared pool run.

Every permission set is tried: the page shows exactly the sections its permissions name,
each allowed section agrees with the f2pool endpoint that serves the same figure (same
clock, same store), every other section is a 403, and a deleted or unknown key a 404.
Pages of users of two owners are held apart: a page shows only its own user's workers,
hashrate, money and payouts.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from hashquarry.accounting.ledger import balances
from hashquarry.api.app import create_app
from hashquarry.api.cache_policy import RECHECK_SECONDS
from hashquarry.payouts.book import payout_entries

from .conftest import World
from .test_f2pool_spec import CURRENCY, frozen, ok

pytestmark = pytest.mark.asyncio(loop_scope="session")
__all__ = ["frozen"]

SECTIONS = ("hashrate", "workers", "revenue", "payments")
ALLOWS = {"1": {"hashrate", "workers"}, "2": {"revenue", "payments"}, "3": {"revenue"}}
PERMISSION_SETS = [
    ",".join(c) for n in (1, 2, 3) for c in itertools.combinations(("1", "2", "3"), n)
]
OWNER = {"alice": "acme", "bob": "acme", "carol": "other"}
BTC = {"currency": CURRENCY}


def allowed(permissions: str) -> set[str]:
    return set().union(*(ALLOWS[p] for p in permissions.split(",")))


def url(key: str, section: str | None = None, currency: str = CURRENCY) -> str:
    return f"/mining-user-{currency}/{key}" + (f"/{section}" if section else "")


async def new_page(world: World, user: str, permissions: str, name: str = "") -> str:
    page = await world.ctx.accounts.add_page(
        OWNER[user], user, name or f"p{permissions}", permissions
    )
    return page.key


def assert_page_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == kind, body
    assert body["message"], body
    return str(body["message"])


async def test_each_permission_set_shows_exactly_its_sections(
    world: World, frozen: tuple[httpx.AsyncClient, float]
) -> None:
    fc, _ = frozen
    for permissions in PERMISSION_SETS:
        key = await new_page(world, "alice", permissions)
        whole = await fc.get(url(key))
        assert whole.status_code == 200, whole.text
        page = whole.json()
        shows = allowed(permissions)
        assert set(page) == {"page_name", "mining_user_name", "currency", "permissions", *shows}
        assert page["mining_user_name"] == "alice" and page["currency"] == CURRENCY
        assert page["permissions"] == permissions and page["page_name"] == f"p{permissions}"
        for section in SECTIONS:
            response = await fc.get(url(key, section))
            if section in shows:
                assert response.status_code == 200, (permissions, section, response.text)
                got = response.json()
                assert (got["workers"] if section == "workers" else got) == page[section]
            else:
                message = assert_page_error(response, 403, "forbidden")
                assert section in message and permissions in message, message


async def test_sections_carry_the_users_own_figures(
    world: World, frozen: tuple[httpx.AsyncClient, float]
) -> None:
    """Each section equals what f2pool serves for the same user at the same instant."""
    fc, now = frozen
    for user, owner in OWNER.items():
        key = await new_page(world, user, "1,2")
        page = (await fc.get(url(key))).json()
        secret = world.keys[owner]
        body = {"mining_user_name": user, **BTC}
        info = (await ok(fc, "/v2/hash_rate/info", body, secret))["info"]
        for field in ("hash_rate", "h1_hash_rate", "h24_hash_rate", "h1_stale_hash_rate",
                      "h24_stale_hash_rate"):  # fmt: skip
            assert page["hashrate"][field] == info[field], (user, field)
        history = page["hashrate"]["history"]
        assert 24 <= len(history) <= 25 and all(p["timestamp"] % 3600 == 0 for p in history)
        workers = (await ok(fc, "/v2/hash_rate/worker/list", body, secret))["workers"]
        assert {w["name"] for w in page["workers"]} == {
            w["hash_rate_info"]["name"] for w in workers
        }
        mined = {
            n.split(".", 1)[1] for n in world.miner_report["workers"] if n.startswith(user + ".")
        }
        assert {w["name"] for w in page["workers"]} == mined
        for w in workers:
            mine = next(p for p in page["workers"] if p["name"] == w["hash_rate_info"]["name"])
            assert mine["h24_hash_rate"] == w["hash_rate_info"]["h24_hash_rate"]
            assert mine["last_share_at"] == w["last_share_at"]
        balance = (await ok(fc, "/v2/assets/balance", body, secret))["balance_info"]
        for field in ("balance", "immature_balance", "total_income", "yesterday_income",
                      "estimated_today_income"):  # fmt: skip
            assert page["revenue"][field] == balance[field], (user, field)
        assert page["payments"]["paid"] == balance["paid"]
        async with world.ctx.engine.connect() as conn:
            paid = await payout_entries(conn, world.ctx.coin, user)
            ledger = (await balances(conn, world.ctx.coin, now)).get(user)
        assert [p["tx_id"] for p in page["payments"]["payouts"]] == [p["tx_id"] for p in paid]
        assert ledger is not None
        listed = page["revenue"]["income"]
        assert len(listed) < 100  # all of it, so it adds up to the total
        assert sum(round(i["amount"] * 1e8) for i in listed) == ledger.total_income
        assert all(i["type"] in ("revenue", "dividend", "reward") for i in listed)


async def test_a_page_never_shows_another_users_data(
    world: World, frozen: tuple[httpx.AsyncClient, float]
) -> None:
    fc, _ = frozen
    pages = {user: (await fc.get(url(await new_page(world, user, "1,2")))).json() for user in OWNER}
    for user, page in pages.items():
        assert page["mining_user_name"] == user
        expected = {
            n.split(".", 1)[1] for n in world.miner_report["workers"] if n.split(".")[0] == user
        }
        assert {w["name"] for w in page["workers"]} == expected
        # Payouts go to the user's own wallet (a batch may share one txid between users).
        assert all(p["address"] == world.wallets[user] for p in page["payments"]["payouts"])
        for other, theirs in pages.items():
            if other != user:
                assert page["hashrate"]["h24_hash_rate"] != theirs["hashrate"]["h24_hash_rate"]
    # The payout run paid the registered users: the lists are not trivially empty.
    assert any(page["payments"]["payouts"] for page in pages.values())


async def test_deleted_unknown_and_foreign_keys_are_not_found(
    world: World, client: httpx.AsyncClient
) -> None:
    key = await new_page(world, "bob", "1,2")
    assert (await client.get(url(key))).status_code == 200
    await world.ctx.accounts.delete_page("acme", "bob", key)
    for section in (None, *SECTIONS):
        assert_page_error(await client.get(url(key, section)), 404, "not_found")
    assert_page_error(await client.get(url("nosuchkey")), 404, "not_found")
    assert_page_error(await client.get(url("x" * 200)), 404, "not_found")
    live = await new_page(world, "bob", "1")
    assert_page_error(await client.get(url(live, currency="litecoin")), 404, "not_found")
    assert_page_error(await client.get(url(live, "nosuchsection")), 404, "not_found")
    assert_page_error(await client.post(url(live)), 405, "method_not_allowed")


async def test_pages_added_and_deleted_through_f2pool(
    world: World, client: httpx.AsyncClient
) -> None:
    secret = world.keys["acme"]
    body = {"mining_user_name": "bob", "page_name": "shared", "permissions": "3"}
    page = (await ok(client, "/v2/mining_user/read_only_page/add", body, secret))["page"]
    got = (await client.get(url(page["key"]))).json()
    assert set(got) - {"page_name", "mining_user_name", "currency", "permissions"} == {"revenue"}
    assert "paid" not in got["revenue"]  # permission 3: nothing about payments
    assert_page_error(await client.get(url(page["key"], "payments")), 403, "forbidden")
    body = {"mining_user_name": "bob", "key": page["key"]}
    await ok(client, "/v2/mining_user/read_only_page/delete", body, secret)
    assert_page_error(await client.get(url(page["key"])), 404, "not_found")


@pytest_asyncio.fixture(loop_scope="session")
async def cached(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """The full app with a response cache that would keep entries for a minute."""
    app = create_app(world.ctx, rate=1000, burst=1000, cache_ttl=60)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://pool.test"
    ) as c:
        yield c


async def test_a_deleted_page_stops_even_when_cached(
    world: World, cached: httpx.AsyncClient
) -> None:
    key = await new_page(world, "alice", "1")
    first = await cached.get(url(key, "workers"))
    assert first.status_code == 200
    assert (await cached.get(url(key, "workers"))).json() == first.json()
    # Deleted outside the API (the CLI does this), so nothing clears the cache; the
    # page is found gone within RECHECK_SECONDS, long before the entry's minute is up.
    await world.ctx.accounts.delete_page("acme", "alice", key)
    await asyncio.sleep(RECHECK_SECONDS + 0.05)
    assert_page_error(await cached.get(url(key, "workers")), 404, "not_found")
    assert_page_error(await cached.get(url(key)), 404, "not_found")


async def test_every_section_is_documented(world: World) -> None:
    spec: dict[str, Any] = world.app.openapi()
    paths = {p for p in spec["paths"] if p.startswith("/mining-user-")}
    base = "/mining-user-{currency}/{key}"
    assert paths == {base, *(f"{base}/{s}" for s in SECTIONS)}
