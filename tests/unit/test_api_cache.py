"""The API response cache with the real read/write classification of the API's paths:
hits, expiry, single flight, what is never cached. (tests/api/test_cache.py holds the
identity rules; here identities come from the credential headers, without a store.)"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from hashquarry.api.cache import ResponseCache
from hashquarry.api.cache_policy import CachePolicy


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class HeaderIdentities(CachePolicy):
    """The API's own is_read / is_write; the caller's identity is its credential header."""

    def __init__(self) -> None:  # no store: identities are not looked up
        pass

    async def identity(self, scope: Any) -> str | None:
        path = scope["path"]
        if path.startswith(("/api/pool", "/api/v1")):
            return ""  # public
        headers = dict(scope["headers"])
        secret = headers.get(b"f2p-api-secret") or headers.get(b"authorization")
        return secret.decode() if secret else None


def cache(app: Any, ttl: float, clock: Clock) -> ResponseCache:
    return ResponseCache(app, HeaderIdentities(), ttl=ttl, clock=clock)


def counting_app(status: int = 200, delay: float = 0.0) -> tuple[Any, list[bytes]]:
    calls: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = (await receive()).get("body", b"")
        calls.append(body)
        await asyncio.sleep(delay)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"n": %d}' % len(calls)})

    return app, calls


async def test_hit_until_ttl_then_recomputed() -> None:
    inner, calls = counting_app()
    clock = Clock()
    app = cache(inner, 1.0, clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        a = await c.get("/api/pool/stats")
        b = await c.get("/api/pool/stats")
        assert a.json() == b.json() == {"n": 1} and len(calls) == 1
        # Past the ttl and the stale grace (another ttl, during which the old answer is
        # served while one request refreshes it behind): computed again.
        clock.now += 2.5
        assert (await c.get("/api/pool/stats")).json() == {"n": 2}


async def test_body_and_credentials_are_part_of_the_key() -> None:
    inner, calls = counting_app()
    app = cache(inner, 10, Clock())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.post("/v2/hash_rate/info", json={"u": "a"}, headers={"F2P-API-SECRET": "k1"})
        await c.post("/v2/hash_rate/info", json={"u": "b"}, headers={"F2P-API-SECRET": "k1"})
        await c.post("/v2/hash_rate/info", json={"u": "a"}, headers={"F2P-API-SECRET": "k2"})
        await c.post("/v2/hash_rate/info", json={"u": "a"}, headers={"F2P-API-SECRET": "k1"})
    assert len(calls) == 3
    assert calls[0] == b'{"u":"a"}'  # the body reached the app intact


async def test_single_flight_for_concurrent_identical_requests() -> None:
    inner, calls = counting_app(delay=0.05)
    app = cache(inner, 10, Clock())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        rs = await asyncio.gather(*(c.get("/api/v1/pool") for _ in range(20)))
    assert len(calls) == 1 and all(r.json() == {"n": 1} for r in rs)


async def test_errors_and_writes_are_never_cached() -> None:
    inner, calls = counting_app(status=401)
    app = cache(inner, 10, Clock())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.get("/api/users", headers={"authorization": "key=k1"})
        await c.get("/api/users", headers={"authorization": "key=k1"})
    assert len(calls) == 2
    inner, calls = counting_app()
    app = cache(inner, 10, Clock())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await c.post("/v2/mining_user/wallet/update", json={}, headers={"F2P-API-SECRET": "k"})
        await c.post("/v2/mining_user/wallet/update", json={}, headers={"F2P-API-SECRET": "k"})
    assert len(calls) == 2


async def test_a_write_clears_the_cache() -> None:
    inner, calls = counting_app()
    app = cache(inner, 10, Clock())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        key = {"F2P-API-SECRET": "k"}
        await c.post("/v2/hash_rate/distribution/orders", json={}, headers=key)
        await c.post("/v2/hash_rate/distribution/terminate", json={"order_id": 1}, headers=key)
        await c.post("/v2/hash_rate/distribution/orders", json={}, headers=key)
    assert len(calls) == 3  # the second read was not served from before the write


async def test_memory_is_bounded_in_bytes() -> None:
    async def big(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        size = int(scope["query_string"].decode().split("&")[0].split("=")[1])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * size})

    app = ResponseCache(big, HeaderIdentities(), ttl=10, clock=Clock(), max_bytes=1_000)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for i in range(5):  # five distinct 200-byte answers fill the bound exactly
            await c.get(f"/api/pool/stats?size=200&i={i}")
            assert app._bytes <= 1_000
        assert len(app) == 5 and app._bytes == 1_000
        await c.get("/api/pool/stats?size=300&i=9")  # over a quarter of the bound: not kept
        assert app._bytes == 1_000 and len(app) == 5
        await c.get("/api/pool/stats?size=200&i=10")  # the oldest goes
        assert app._bytes == 1_000 and len(app) == 5
