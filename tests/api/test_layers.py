"""The layers in front of every dialect: rate limits, catch-all errors and the response
cache, on the full app over the shared pool run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from hashquarry.api.app import create_app
from hashquarry.api.cache_policy import RECHECK_SECONDS

from .conftest import World
from .test_f2pool_spec import CURRENCY, assert_error, key_headers

pytestmark = pytest.mark.asyncio(loop_scope="session")


def asgi(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://pool.test")  # type: ignore[arg-type]


# -- rate limits: each dialect's own error body, always with Retry-After ---------------------


async def test_rate_limits_answer_in_each_dialects_shape(world: World) -> None:
    page = await world.ctx.accounts.add_page("acme", "alice", "limits", "1")
    # One request per IP, then nothing for a thousand seconds.
    async with asgi(create_app(world.ctx, rate=0.001, burst=1, cache_ttl=0)) as c:
        assert (await c.get("/openapi.json")).status_code == 200
        f2 = await c.post("/v2/hash_rate/info", json={}, headers=key_headers(world.keys["acme"]))
        assert assert_error(f2)["code"] == 42901 and f2.json()["msg"].startswith("rate_limited: ")
        bm = await c.get("/api/pool/stats")
        assert bm.status_code == 429 and set(bm.json()) == {"error"}
        sia = await c.get("/api/v1/pool")
        assert sia.status_code == 429 and sia.json()["error"] == "rate_limited"
        assert set(sia.json()) == {"error", "message"}
        pg = await c.get(f"/mining-user-{CURRENCY}/{page.key}")
        assert pg.status_code == 429 and set(pg.json()) == {"error", "message"}
        other = await c.get("/openapi.json")
        assert other.status_code == 429 and set(other.json()) == {"detail"}
        for r in (f2, bm, sia, pg, other):
            assert int(r.headers["Retry-After"]) >= 1, r.headers
        # /metrics is never limited (the scraper must always get through).
        assert (await c.get("/metrics")).status_code == 200


async def test_rate_limits_per_key(world: World) -> None:
    """A key's bucket is its own: past it, that key is refused from any IP, while the IP
    itself may still ask without it."""
    app = create_app(world.ctx, rate=0.001, burst=2, cache_ttl=0)
    headers = {"Authorization": f"key={world.keys['other']}"}

    def at(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(ip, 4242))
        return httpx.AsyncClient(transport=transport, base_url="http://pool.test")

    async with at("10.0.0.1") as a, at("10.0.0.2") as b:
        assert (await a.get("/api/users", headers=headers)).status_code == 200
        assert (await a.get("/api/users", headers=headers)).status_code == 200
        refused = await b.get("/api/users", headers=headers)
        assert refused.status_code == 429 and "Retry-After" in refused.headers
        assert (await b.get("/api/pool/stats")).status_code == 200


# -- Bitminter's paths answer in Bitminter's shape -------------------------------------------


async def test_bitminter_unknown_paths_and_methods(client: httpx.AsyncClient) -> None:
    for path in ("/api/pool/nosuch", "/api/pool", "/api/users/a/b"):
        r = await client.get(path)
        assert r.status_code == 404, (path, r.text)
        assert set(r.json()) == {"error"} and "Bitminter" in r.json()["error"], r.json()
    r = await client.post("/api/pool/stats")
    assert r.status_code == 405 and set(r.json()) == {"error"}, r.text
    assert "GET" in r.headers["allow"]
    r = await client.delete("/api/users")
    assert r.status_code == 405 and set(r.json()) == {"error"}, r.text
    # Not Bitminter's: other dialects and other paths keep their own.
    assert set((await client.get("/api/usersx")).json()) == {"detail"}
    assert set((await client.get("/api/v1/nosuch")).json()) == {"error", "message"}
    assert set((await client.get("/v2/nosuch")).json()) == {"code", "msg"}


# -- the response cache -------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def cached(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """The full app with entries kept for a minute: any stale answer would show."""
    async with asgi(create_app(world.ctx, rate=1000, burst=1000, cache_ttl=60)) as c:
        yield c


async def make_owner(world: World, owner: str, user: str) -> tuple[int, str]:
    accounts = world.ctx.accounts
    await accounts.create_owner(owner)
    key_id, secret = await accounts.create_api_key(owner, "all")
    await accounts.add_mining_user(owner, user)
    await accounts.update_wallet(owner, user, CURRENCY, world.node.call("getnewaddress"), 1)
    return key_id, secret


async def test_a_revoked_key_gets_no_cached_answer(world: World, cached: httpx.AsyncClient) -> None:
    key_id, secret = await make_owner(world, "cacherev", "crva")
    body = {"mining_user_name": "crva", "currency": CURRENCY}
    for _ in range(2):
        assert (
            await cached.post("/v2/hash_rate/info", json=body, headers=key_headers(secret))
        ).status_code == 200
        bm = await cached.get("/api/users", headers={"Authorization": f"key={secret}"})
        assert bm.status_code == 200
    await world.ctx.accounts.revoke_api_key("cacherev", key_id)
    # Another process (the CLI) may revoke: the cache finds out within RECHECK_SECONDS.
    await asyncio.sleep(RECHECK_SECONDS + 0.05)
    r = await cached.post("/v2/hash_rate/info", json=body, headers=key_headers(secret))
    assert assert_error(r)["code"] == 40102
    bm = await cached.get("/api/users", headers={"Authorization": f"key={secret}"})
    assert bm.status_code == 401 and "error" in bm.json()
    bm = await cached.get(f"/api/users?key={secret}")
    assert bm.status_code == 401


async def test_an_entry_is_only_for_its_owner(world: World, cached: httpx.AsyncClient) -> None:
    _, mine = await make_owner(world, "cacheown", "cowa")
    _, theirs = await make_owner(world, "cacheoth", "coxa")
    body = {"mining_user_name": "cowa"}
    assert (
        await cached.post("/v2/mining_user/get", json=body, headers=key_headers(mine))
    ).status_code == 200
    r = await cached.post("/v2/mining_user/get", json=body, headers=key_headers(theirs))
    assert assert_error(r)["code"] == 40302


async def test_only_a_successful_write_empties_the_cache(
    world: World, cached: httpx.AsyncClient
) -> None:
    _, secret = await make_owner(world, "cachejunk", "cja")
    headers = key_headers(secret)
    read = {"mining_user_name": "cja"}

    async def pages() -> list[object]:
        r = await cached.post("/v2/mining_user/get", json=read, headers=headers)
        assert r.status_code == 200, r.text
        return list(r.json()["pages"])

    assert await pages() == []
    # A change made outside the API: the cached answer is still served (that is the cache).
    await world.ctx.accounts.add_page("cachejunk", "cja", "outside", "1")
    assert await pages() == []
    junk = [
        cached.get("/nosuch"),
        cached.get("/metrics"),
        cached.get("/openapi.json"),
        cached.get("/api/pool/nosuch"),
        cached.get("/api/users"),  # no key: 401
        cached.post("/v2/nosuch", json={}),
        cached.post("/v2/mining_user/get", json=read),  # no key: 401
        cached.post("/v2/mining_user/add", json={"mining_user_name": "cjb"}),  # no key
        cached.post("/v2/mining_user/add", json={"mining_user_name": "A!"}, headers=headers),
        cached.post("/v2/mining_user/read_only_page/delete",
                    json={"mining_user_name": "cja", "key": "nosuch"}, headers=headers),
    ]  # fmt: skip
    for request in junk:
        response = await request
        assert response.status_code != 200 or response.request.url.path in (
            "/metrics",
            "/openapi.json",
        ), response.text
        assert await pages() == [], f"{response.request.url} emptied the cache"
    # A write that succeeds empties it: the next read sees the page.
    added = await cached.post(
        "/v2/mining_user/add", json={"mining_user_name": "cjb"}, headers=headers
    )
    assert added.status_code == 200, added.text
    assert [p["page_name"] for p in await pages()] == ["outside"]  # type: ignore[index]
