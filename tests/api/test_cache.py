"""The response cache on its own: a counting ASGI app, a policy and a clock of the test's.
(test_layers holds the real app to the same rules: revoked keys, deleted pages, junk.)"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest

from hashquarry.api.cache import ResponseCache
from hashquarry.api.cache_policy import Rechecked

Scope = MutableMapping[str, Any]


class Policy:
    def __init__(self) -> None:
        self.live = {"good"}  # keys that identify

    def is_read(self, method: str, path: str) -> bool:
        return method == "GET" and path.startswith("/r")

    def is_write(self, method: str, path: str) -> bool:
        return method == "POST" and path.startswith("/w")

    async def identity(self, scope: Scope) -> str | None:
        key = dict(scope["headers"]).get(b"key", b"").decode()
        return key if key in self.live else None


class App:
    """Answers its call count (reads), or the status asked for (writes)."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.calls += 1
        n = self.calls
        if self.gate is not None:
            await self.gate.wait()
        status = int(scope["path"].rsplit("/", 1)[1]) if scope["path"].startswith("/w") else 200
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": str(n).encode()})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(ttl: float = 1.0) -> tuple[App, Policy, Clock, httpx.AsyncClient]:
    app, policy, clock = App(), Policy(), Clock()
    cache = ResponseCache(app, policy, ttl=ttl, clock=clock)  # type: ignore[arg-type]
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=cache), base_url="http://c")
    return app, policy, clock, client


GOOD = {"key": "good"}


async def get(c: httpx.AsyncClient, path: str = "/r", headers: dict[str, str] = GOOD) -> str:
    r = await c.get(path, headers=headers)
    return r.text


@pytest.mark.asyncio
async def test_identical_reads_are_computed_once_per_ttl_then_refreshed_behind() -> None:
    app, _, clock, c = setup()
    async with c:
        assert [await get(c) for _ in range(5)] == ["1"] * 5
        clock.now += 1.5  # expired, within the stale grace: the old answer, refreshed behind
        assert await get(c) == "1"
        for _ in range(20):
            await asyncio.sleep(0)
        assert app.calls == 2 and await get(c) == "2"
        clock.now += 5  # long unused: computed while the caller waits
        assert await get(c) == "3"


@pytest.mark.asyncio
async def test_identities_get_their_own_entries_and_unknown_ones_none() -> None:
    _, policy, _, c = setup()
    async with c:
        policy.live.add("other")
        assert await get(c) == "1"
        assert await get(c, headers={"key": "other"}) == "2"
        assert await get(c, headers={"key": "nobody"}) == "3"
        assert await get(c, headers={"key": "nobody"}) == "4"  # never cached
        policy.live.discard("good")  # revoked: no answer from the cache
        assert await get(c) == "5"


@pytest.mark.asyncio
async def test_only_successful_writes_clear() -> None:
    app, _, _, c = setup()
    async with c:
        assert await get(c) == "1"
        for path in ("/w/400", "/w/401", "/w/500", "/nosuch", "/metrics"):
            await c.post(path) if path.startswith("/w") else await c.get(path)
            assert await get(c) == "1", path
        await c.post("/w/200")
        assert await get(c) == str(app.calls)


@pytest.mark.asyncio
async def test_a_read_computed_across_a_write_is_not_kept() -> None:
    app, _, _, c = setup()
    async with c:
        app.gate = asyncio.Event()
        slow = asyncio.create_task(get(c))
        await asyncio.sleep(0.01)
        write = asyncio.create_task(c.post("/w/200"))
        await asyncio.sleep(0.01)
        app.gate.set()
        first, _ = await asyncio.gather(slow, write)
        assert await get(c) != first  # computed again: the slow answer predates the write


@pytest.mark.asyncio
async def test_concurrent_identical_reads_share_one_computation() -> None:
    app, _, _, c = setup()
    async with c:
        app.gate = asyncio.Event()
        tasks = [asyncio.create_task(get(c)) for _ in range(10)]
        await asyncio.sleep(0.01)
        app.gate.set()
        assert await asyncio.gather(*tasks) == ["1"] * 10 and app.calls == 1


@pytest.mark.asyncio
async def test_identities_are_rechecked_behind_and_never_used_past_their_ttl() -> None:
    live = {"k": "owner"}
    checks: list[str] = []

    async def check(key: str) -> str | None:
        checks.append(key)
        await asyncio.sleep(0)
        return live.get(key)

    clock = Clock()
    known = Rechecked(check, ttl=0.25, clock=clock)
    assert await known.get("k") == "owner" and checks == ["k"]
    clock.now += 0.1
    assert await known.get("k") == "owner" and checks == ["k"]  # fresh: no store read
    clock.now += 0.1  # past half the ttl: answered at once, re-checked behind
    del live["k"]  # revoked meanwhile
    assert await known.get("k") == "owner"
    await asyncio.sleep(0.01)
    assert checks == ["k", "k"] and await known.get("k") is None  # the re-check landed
    clock.now += 1.0  # long unused: the caller waits for a fresh check
    live["k"] = "again"
    assert await known.get("k") == "again" and len(checks) == 3
    assert await known.get("nobody") is None
