"""The Bitminter dialect against the shared real pool run (see conftest.World).

The expected fields and JSON types below are copied from Bitminter's API page
(shared/seeds/001_b81bac9e61bb61e3.txt): pool figures in GH/s, user and worker
figures in MH/s, times in Unix seconds, balances in coins.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import func, select

from hashquarry.accounting import stats
from hashquarry.accounting.ledger import balances
from hashquarry.api import bitminter
from hashquarry.store import models as m

from .conftest import ADDRESS_WORKERS, MIN_SHARES, World, served

pytestmark = pytest.mark.asyncio(loop_scope="session")

NUM = (int, float)  # a JSON number (bool excluded separately)
COIN = 100_000_000

# -- the document's field lists, as data --------------------------------------------------
POOL_STATS = {"hash_rate": NUM, "active_workers": int, "active_users": int}
ROUND = {
    **POOL_STATS,
    "shift_accepted": int,
    "shift_rejected": int,
    "shift_duration": int,
    "shift_score": NUM,
    "chains": dict,
}
CHAIN = {"accepted": int, "rejected": int, "duration": int, "difficulty": NUM}
BLOCK = {
    "id": int, "chain": str, "hash": str, "height": int, "difficulty": NUM, "income": NUM,
    "accepted": int, "rejected": int, "status": str, "confirmations_left": int,
    "generator": str, "generated": int, "duration": int,
}  # fmt: skip
BLOCK_STATUSES = {"processing", "unconfirmed", "stale", "orphan", "confirmed"}
SHIFT = {
    "id": int, "difficulty": NUM, "accepted": int, "rejected": int, "score": NUM,
    "completed": int, "duration": int,
}  # fmt: skip
USER = {
    "name": str, "active_workers": int, "hash_rate": NUM, "now": int, "round_start": dict,
    "shift": dict, "balances": dict, "workers": list,
}  # fmt: skip
USER_SHIFT = {"start": int, "accepted": int, "rejected": int, "user_score": NUM, "total_score": NUM}
WORKER = {"name": str, "hash_rate": NUM, "last_work": int, "alive": bool, "work": dict}
WORK = {
    "total_accepted": int, "total_rejected": int, "round_accepted": int, "round_rejected": int,
    "checkpoint_accepted": int, "checkpoint_rejected": int,
}  # fmt: skip


def assert_shape(obj: Any, spec: dict[str, Any], what: str) -> None:
    assert isinstance(obj, dict), f"{what}: not an object: {obj!r}"
    assert set(obj) == set(spec), f"{what}: keys {sorted(obj)} != {sorted(spec)}"
    for key, kind in spec.items():
        value = obj[key]
        assert isinstance(value, kind), f"{what}.{key}: {value!r} is not {kind}"
        if kind is not bool:
            assert not isinstance(value, bool), f"{what}.{key}: {value!r} is a bool"


def assert_user_shape(user: Any, what: str) -> None:
    assert_shape(user, USER, what)
    assert_shape(user["shift"], USER_SHIFT, f"{what}.shift")
    assert set(user["round_start"]) == {"BTC"} and isinstance(user["round_start"]["BTC"], int)
    assert set(user["balances"]) == {"BTC"} and isinstance(user["balances"]["BTC"], NUM)
    for i, worker in enumerate(user["workers"]):
        assert_shape(worker, WORKER, f"{what}.workers[{i}]")
        assert set(worker["work"]) == {"BTC"}
        assert_shape(worker["work"]["BTC"], WORK, f"{what}.workers[{i}].work.BTC")


def key_header(secret: str) -> dict[str, str]:
    return {"Authorization": f"key={secret}"}


def basic_header(secret: str) -> dict[str, str]:
    token = base64.b64encode(f"key:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def last_share_time(world: World) -> float:
    async with world.ctx.engine.connect() as conn:
        return float(await conn.scalar(select(func.max(m.workers.c.last_share))))


@pytest_asyncio.fixture(loop_scope="session")
async def frozen(world: World) -> AsyncIterator[tuple[httpx.AsyncClient, float]]:
    """The dialect alone, on a clock stopped 20 s after the last share: the window sums
    and the 5-minute activity rule then do not depend on how long the tests take."""
    now = await last_share_time(world) + 20
    ctx = dataclasses.replace(world.ctx, clock=lambda: now)
    app = FastAPI()
    app.include_router(bitminter.router(ctx))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pool.test") as c:
        yield c, now


async def get_ok(client: httpx.AsyncClient, url: str, **kw: Any) -> Any:
    r = await client.get(url, **kw)
    assert r.status_code == 200, f"{url}: {r.status_code} {r.text}"
    return r.json()


async def all_blocks(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = await get_ok(
            client, "/api/pool/blocks", params={"max": 50, "offset": len(out), **params}
        )
        out.extend(page)
        if len(page) < 50:
            return out


# -- public pool data ---------------------------------------------------------------------


async def test_pool_stats_and_plain_numbers(frozen: tuple[httpx.AsyncClient, float]) -> None:
    client, _ = frozen
    s = await get_ok(client, "/api/pool/stats")
    assert_shape(s, POOL_STATS, "stats")
    rate = await get_ok(client, "/api/pool/hashrate")
    workers = await get_ok(client, "/api/pool/workers")
    users = await get_ok(client, "/api/pool/users")
    assert isinstance(rate, float) and rate == s["hash_rate"] and rate > 0
    assert isinstance(workers, int) and workers == s["active_workers"]
    assert isinstance(users, int) and users == s["active_users"]
    # Every miner of the run sent work in the last 5 minutes (the clock is 20 s after):
    # alice.rig1, alice.rig2, bob.rig1, carol.rig1 and the address-mode miner's workers.
    assert workers == 4 + len(ADDRESS_WORKERS)
    assert users == 4


def window_seconds(now: float) -> float:
    """Seconds the "current" hash rate averages over: the 10 whole minutes up to `now`,
    the current one partly (the accounting read models' 10-minute window)."""
    return now - (math.ceil(now / 60) - 10) * 60


async def test_pool_hashrate_matches_the_miners(
    world: World, frozen: tuple[httpx.AsyncClient, float]
) -> None:
    """The pool hash rate is a 10-minute average, but the miners mined for only
    `elapsed` seconds (~15 s) and stopped 20 s before the frozen clock, so the API's rate
    is their rate diluted by the idle part of the window. Rates are compared as work:
    the API's rate x the seconds its window covers = the work the pool credited.

    1. Exactly: that work is the accepted share difficulty x 2^32 the miners themselves
       report (`accepted_difficulty`), so units and window are right to the hash.
    2. Against the hashes the miners computed (`hashes`, i.e. their own `hashrate` x
       `elapsed`): the pool only ever sees shares, so its figure is an estimate with the
       spread of the share count, and on regtest every share is a block, so the miners
       also hash on jobs made stale by each other's blocks (work the pool refuses: a
       pool's hash rate counts accepted work). The stale work the pool recorded is added
       back, and the two must agree within 25%: the run has enough shares for that to be
       four standard deviations of the estimate (checked).
    """
    client, now = frozen
    covered = window_seconds(now)
    async with world.ctx.engine.connect() as conn:
        a = m.account_minutes.c
        first, accepted, stale_diff = (
            await conn.execute(
                select(func.min(a.first_share), func.sum(a.accepted), func.sum(a.stale_diff))
            )
        ).one()
        d = m.shares.c.difficulty
        sum_d, sum_d2 = (await conn.execute(select(func.sum(d), func.sum(d * d)))).one()
    assert first >= now - covered, "the whole run must lie in the 10-minute window"
    ghps = await get_ok(client, "/api/pool/hashrate")
    credited = ghps * 1e9 * covered
    report = world.miner_report
    assert accepted == report["shares_accepted"]
    assert credited == pytest.approx(report["accepted_difficulty"] * 2**32, rel=1e-9)
    assert credited / report["elapsed"] == pytest.approx(report["hashrate_accepted"], rel=1e-9)

    hashed = report["hashes"]
    estimate = credited + stale_diff * 2**32
    sigma = math.sqrt(sum_d2) / sum_d  # relative spread of a sum of exponential draws
    # The run mines at least 2 x MIN_SHARES: sigma is 1/sqrt(512) with equal difficulties,
    # and must stay under 1/16 (256 shares' worth) for 25% to be four of it.
    assert sigma <= 1 / math.sqrt(MIN_SHARES), (sigma, accepted)
    tolerance = 0.25
    print(
        f"pool {estimate / report['elapsed']:.0f} H/s (accepted {credited / report['elapsed']:.0f})"
        f" vs miners {report['hashrate']:.0f} H/s; {accepted} shares, sigma {sigma:.1%}"
    )
    assert estimate == pytest.approx(hashed, rel=tolerance)


async def test_round(world: World, frozen: tuple[httpx.AsyncClient, float]) -> None:
    client, now = frozen
    r = await get_ok(client, "/api/pool/round")
    assert_shape(r, ROUND, "round")
    assert set(r["chains"]) == {"BTC"}
    chain = r["chains"]["BTC"]
    assert_shape(chain, CHAIN, "round.chains.BTC")
    s = await get_ok(client, "/api/pool/stats")
    assert {k: r[k] for k in POOL_STATS} == s
    async with world.ctx.engine.connect() as conn:
        rnd = await stats.current_round(conn, world.ctx.coin)
        shift = (
            (await conn.execute(select(m.shifts).where(m.shifts.c.completed.is_(False))))
            .mappings()
            .one()
        )
    assert rnd is not None
    assert (chain["accepted"], chain["rejected"]) == (rnd["accepted"], rnd["rejected"])
    assert chain["duration"] == int(now - rnd["started_at"])
    assert chain["difficulty"] == pytest.approx(world.node.call("getdifficulty"))
    assert (r["shift_accepted"], r["shift_rejected"]) == (shift["accepted"], shift["rejected"])
    assert r["shift_score"] == pytest.approx(shift["score"])
    assert r["shift_duration"] == int(now - shift["started_at"])


async def test_blocks_equal_the_nodes(world: World, client: httpx.AsyncClient) -> None:
    assert world.pool.accounting is not None
    await world.pool.accounting.track_once()  # follow the node's last block, as the loop does
    blocks = await all_blocks(client)
    for b in blocks:
        assert_shape(b, BLOCK, f"block {b.get('id')}")
        assert b["chain"] == "BTC" and b["status"] in BLOCK_STATUSES
    ids = [b["id"] for b in blocks]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)

    found = {fb.hash: fb for fb in world.pool.stats.blocks if fb.accepted}
    on_chain = {b["hash"]: b for b in blocks if b["status"] in ("unconfirmed", "confirmed")}
    assert set(on_chain) == set(found)
    assert len(on_chain) == world.pool.stats.blocks_accepted >= 8
    maturity = world.pool.settings.accounting.maturity
    for h, b in on_chain.items():
        header = world.node.call("getblockheader", h)
        assert header["height"] == b["height"] == found[h].height
        assert header["confirmations"] >= 1
        assert b["confirmations_left"] == max(0, maturity - header["confirmations"])
        assert b["status"] == (
            "confirmed" if header["confirmations"] >= maturity else "unconfirmed"
        )
        assert b["difficulty"] == pytest.approx(header["difficulty"])
        coinbase = world.node.call("getblock", h, 2)["tx"][0]
        assert round(b["income"] * COIN) == sum(round(o["value"] * COIN) for o in coinbase["vout"])
        fb = found[h]
        assert b["generator"] == fb.account
        assert abs(b["generated"] - fb.time) <= 1
        assert b["accepted"] >= 1 and b["rejected"] >= 0 and b["duration"] >= 0
    for b in blocks:
        if b["status"] in ("stale", "orphan"):
            assert b["confirmations_left"] == -1


async def test_blocks_paging_and_commodity(client: httpx.AsyncClient) -> None:
    every = await all_blocks(client)
    default = await get_ok(client, "/api/pool/blocks")
    assert default == every[:10]
    assert await get_ok(client, "/api/pool/blocks", params={"max": 1}) == every[:1]
    assert await get_ok(client, "/api/pool/blocks", params={"max": 3, "offset": 2}) == every[2:5]
    assert await get_ok(client, "/api/pool/blocks", params={"max": 50}) == every[:50]
    assert await get_ok(client, "/api/pool/blocks", params={"offset": len(every)}) == []
    assert await get_ok(client, "/api/pool/blocks", params={"offset": 10**9}) == []
    assert await all_blocks(client, commodity="BTC") == every
    assert await all_blocks(client, commodity="btc") == every
    assert await get_ok(client, "/api/pool/blocks", params={"commodity": "NMC"}) == []


async def test_shifts(world: World, client: httpx.AsyncClient) -> None:
    shifts = await get_ok(client, "/api/pool/shifts", params={"max": 50})
    assert shifts, "the run completes shifts (shift_span 0.002)"
    for s in shifts:
        assert_shape(s, SHIFT, f"shift {s['id']}")
    async with world.ctx.engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    select(m.shifts)
                    .where(m.shifts.c.completed.is_(True))
                    .order_by(m.shifts.c.id.desc())
                )
            )
            .mappings()
            .all()
        )
    assert [s["id"] for s in shifts] == [r["id"] for r in rows][:50]
    difficulty = world.node.call("getdifficulty")
    for s, r in zip(shifts, rows, strict=False):
        assert (s["accepted"], s["rejected"]) == (r["accepted"], r["rejected"])
        assert s["score"] == pytest.approx(r["score"])
        assert s["score"] >= world.pool.settings.accounting.shift_span  # what completes one
        assert s["completed"] == int(r["ended_at"])
        assert s["duration"] == round(r["ended_at"] - r["started_at"])
        assert s["difficulty"] == pytest.approx(difficulty)
    assert await get_ok(client, "/api/pool/shifts") == shifts[:10]
    assert await get_ok(client, "/api/pool/shifts", params={"max": 2, "offset": 1}) == shifts[1:3]


async def test_top50(world: World, frozen: tuple[httpx.AsyncClient, float]) -> None:
    client, _ = frozen
    top = await get_ok(client, "/api/pool/top50")
    assert isinstance(top, dict) and 0 < len(top) <= 50
    assert set(top) == {*world.users, world.address_miner}
    rates = list(top.values())
    assert all(isinstance(v, float) and v > 0 for v in rates)
    assert rates == sorted(rates, reverse=True)
    key = world.keys["acme"]
    for name in ("alice", "bob"):
        user = await get_ok(client, f"/api/users/{name}", headers=key_header(key))
        assert top[name] == pytest.approx(user["hash_rate"])  # both MH/s
    pool_ghps = await get_ok(client, "/api/pool/hashrate")
    assert sum(rates) / 1e3 == pytest.approx(pool_ghps)  # MH/s -> GH/s


# -- user data -----------------------------------------------------------------------------


async def ledger_balance(world: World, account: str) -> int:
    async with world.ctx.engine.connect() as conn:
        bals = await balances(conn, world.ctx.coin, world.ctx.clock())
    return bals[account].balance if account in bals else 0


async def test_user(world: World, frozen: tuple[httpx.AsyncClient, float]) -> None:
    client, now = frozen
    user = await get_ok(client, "/api/users/alice", headers=key_header(world.keys["acme"]))
    assert_user_shape(user, "alice")
    assert user["name"] == "alice" and user["now"] == int(now)
    assert {w["name"] for w in user["workers"]} == {"rig1", "rig2"}
    assert user["active_workers"] == 2 and all(w["alive"] for w in user["workers"])
    assert user["hash_rate"] == pytest.approx(sum(w["hash_rate"] for w in user["workers"]))
    assert user["hash_rate"] > 0
    assert round(user["balances"]["BTC"] * COIN) == await ledger_balance(world, "alice")
    for w in user["workers"]:
        accepted, rejected = world.pool.stats.per_worker[f"alice.{w['name']}"]
        work = w["work"]["BTC"]
        assert (work["total_accepted"], work["total_rejected"]) == (accepted, rejected)
        assert work["round_accepted"] == work["round_rejected"] == 0
        assert now - 30 < w["last_work"] <= now
    async with world.ctx.engine.connect() as conn:
        rnd = await stats.current_round(conn, world.ctx.coin)
        shift = (
            (await conn.execute(select(m.shifts).where(m.shifts.c.completed.is_(False))))
            .mappings()
            .one()
        )
        mine = await stats.shift_scores(conn, shift["id"])
    assert rnd is not None and user["round_start"]["BTC"] == int(rnd["started_at"])
    assert user["shift"]["start"] == int(shift["started_at"])
    assert user["shift"]["user_score"] == pytest.approx(mine.get("alice", 0.0))
    assert user["shift"]["total_score"] == pytest.approx(shift["score"])
    assert user["shift"]["accepted"] <= shift["accepted"]


async def test_balances_equal_the_ledger(world: World, client: httpx.AsyncClient) -> None:
    for name, owner in world.users.items():
        user = await get_ok(client, f"/api/users/{name}", headers=key_header(world.keys[owner]))
        assert round(user["balances"]["BTC"] * COIN) == await ledger_balance(world, name)
    # The run mined, matured and paid: someone has been credited.
    assert world.payout is not None and world.payout.items


async def test_owner_summary(world: World, frozen: tuple[httpx.AsyncClient, float]) -> None:
    client, _ = frozen
    acme = await get_ok(client, "/api/users", headers=key_header(world.keys["acme"]))
    assert_user_shape(acme, "acme")
    assert acme["name"] == "acme"
    assert {w["name"] for w in acme["workers"]} == {"alice.rig1", "alice.rig2", "bob.rig1"}
    want = await ledger_balance(world, "alice") + await ledger_balance(world, "bob")
    assert round(acme["balances"]["BTC"] * COIN) == want
    parts = [
        await get_ok(client, f"/api/users/{u}", headers=key_header(world.keys["acme"]))
        for u in ("alice", "bob")
    ]
    assert acme["hash_rate"] == pytest.approx(sum(p["hash_rate"] for p in parts))
    assert acme["active_workers"] == 3
    other = await get_ok(client, "/api/users", headers=basic_header(world.keys["other"]))
    assert other["name"] == "other"
    assert {w["name"] for w in other["workers"]} == {"carol.rig1"}
    # A Bitminter client puts its own name in the path: the owner's name means the owner.
    by_name = await get_ok(client, "/api/users/acme", headers=key_header(world.keys["acme"]))
    assert by_name == acme
    r = await client.get("/api/users/acme", headers=key_header(world.keys["other"]))
    assert r.status_code == 403, r.text


async def test_owner_without_users(world: World, client: httpx.AsyncClient) -> None:
    accounts = world.pool.accounts
    assert accounts is not None
    await accounts.create_owner("empty")
    _, secret = await accounts.create_api_key("empty", "read_hashrate,read_revenue")
    body = await get_ok(client, "/api/users", params={"key": secret})
    assert_user_shape(body, "empty")
    assert body["name"] == "empty" and body["workers"] == [] and body["hash_rate"] == 0
    assert body["balances"] == {"BTC": 0} and body["active_workers"] == 0
    await assert_refused(await client.get("/api/users/alice", params={"key": secret}), 403)


# -- keys ----------------------------------------------------------------------------------


def strip_now(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "now"}


async def test_each_key_form_works(world: World, frozen: tuple[httpx.AsyncClient, float]) -> None:
    client, _ = frozen
    secret = world.keys["acme"]
    for path in ("/api/users", "/api/users/bob"):
        bodies = [
            await get_ok(client, path, headers=key_header(secret)),
            await get_ok(client, path, headers=basic_header(secret)),
            await get_ok(client, path, params={"key": secret}),
            await get_ok(client, path, headers={"Authorization": f"KEY= {secret} "}),
        ]
        assert all(b == bodies[0] for b in bodies), path


async def assert_refused(r: httpx.Response, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["error"], str) and body["error"]
    for word in words:
        assert word in body["error"].lower(), body


async def test_missing_wrong_and_revoked_keys(world: World, client: httpx.AsyncClient) -> None:
    accounts = world.pool.accounts
    assert accounts is not None
    for path in ("/api/users", "/api/users/alice"):
        r = await client.get(path)
        await assert_refused(r, 401, "api key is required")
        assert r.headers["WWW-Authenticate"].startswith("Basic")
        wrong = "hq_" + "A" * 43
        await assert_refused(await client.get(path, headers=key_header(wrong)), 401, "not valid")
        await assert_refused(await client.get(path, params={"key": wrong}), 401, "not valid")
        await assert_refused(await client.get(path, headers=basic_header(wrong)), 401, "not valid")
        await assert_refused(await client.get(path, params={"key": ""}), 401, "required")
        bad_basic = {"Authorization": "Basic %%%"}
        await assert_refused(await client.get(path, headers=bad_basic), 401, "base64")
        user_basic = {"Authorization": "Basic " + base64.b64encode(b"alice:x").decode()}
        await assert_refused(await client.get(path, headers=user_basic), 401, "key:apikey")
        bearer = {"Authorization": f"Bearer {world.keys['acme']}"}
        await assert_refused(await client.get(path, headers=bearer), 401, "not understood")

    key_id, secret = await accounts.create_api_key("acme", "read_hashrate,read_revenue")
    await get_ok(client, "/api/users/alice", headers=key_header(secret))
    await accounts.revoke_api_key("acme", key_id)
    for kw in (
        {"headers": key_header(secret)},
        {"headers": basic_header(secret)},
        {"params": {"key": secret}},
    ):
        await assert_refused(await client.get("/api/users/alice", **kw), 401, "revoked")
        await assert_refused(await client.get("/api/users", **kw), 401, "revoked")


async def test_key_without_the_scopes_is_forbidden(world: World, client: httpx.AsyncClient) -> None:
    assert world.pool.accounts is not None
    _, secret = await world.pool.accounts.create_api_key("acme", "read_payments")
    for path in ("/api/users", "/api/users/alice"):
        r = await client.get(path, headers=key_header(secret))
        await assert_refused(r, 403, "read_hashrate", "read_revenue")


async def test_one_owner_cannot_read_anothers_users(
    world: World, client: httpx.AsyncClient
) -> None:
    acme, other = world.keys["acme"], world.keys["other"]
    forms = (
        lambda s: {"headers": key_header(s)},
        lambda s: {"headers": basic_header(s)},
        lambda s: {"params": {"key": s}},
    )
    for form in forms:
        for secret, name in ((acme, "carol"), (other, "alice"), (other, "bob")):
            r = await client.get(f"/api/users/{name}", **form(secret))
            await assert_refused(r, 403, "no access", repr(name))
        # A user nobody has is refused the same way: a key cannot probe for names.
        await assert_refused(await client.get("/api/users/nobody", **form(acme)), 403, "no access")
        mine = await get_ok(client, "/api/users", **form(acme))
        assert not any(w["name"].startswith("carol") for w in mine["workers"])
    # The address-mode miner is nobody's mining user.
    r = await client.get(f"/api/users/{world.address_miner}", headers=key_header(acme))
    assert r.status_code in (400, 403) and "error" in r.json()


# -- bad input ---------------------------------------------------------------------------

BAD_PARAMS = [
    ("/api/pool/blocks", "max", "0"),
    ("/api/pool/blocks", "max", "51"),
    ("/api/pool/blocks", "max", "abc"),
    ("/api/pool/blocks", "max", "1.5"),
    ("/api/pool/blocks", "max", ""),
    ("/api/pool/blocks", "offset", "-1"),
    ("/api/pool/blocks", "offset", "x"),
    ("/api/pool/blocks", "offset", str(10**30)),
    ("/api/pool/blocks", "commodity", "B-T-C"),
    ("/api/pool/blocks", "commodity", "X" * 40),
    ("/api/pool/shifts", "max", "0"),
    ("/api/pool/shifts", "max", "51"),
    ("/api/pool/shifts", "max", "abc"),
    ("/api/pool/shifts", "offset", "-1"),
]


@pytest.mark.parametrize(("path", "param", "value"), BAD_PARAMS)
async def test_bad_parameters(client: httpx.AsyncClient, path: str, param: str, value: str) -> None:
    r = await client.get(path, params={param: value})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["parameter"] == param
    assert body["error"].startswith(f"{param}: ")


async def test_bad_user_names(world: World, client: httpx.AsyncClient) -> None:
    for name in ("A", "x" * 40, "al!ce", "9lives"):
        r = await client.get(f"/api/users/{name}", headers=key_header(world.keys["acme"]))
        await assert_refused(r, 400, "name")
        assert r.json()["parameter"] == "name"
    # The key is checked first: without one, even a bad name is a 401.
    await assert_refused(await client.get("/api/users/A"), 401)


async def test_in_openapi(client: httpx.AsyncClient) -> None:
    spec = await get_ok(client, "/openapi.json")
    paths = spec["paths"]
    for path in (
        "/api/pool/stats", "/api/pool/hashrate", "/api/pool/workers", "/api/pool/users",
        "/api/pool/round", "/api/pool/blocks", "/api/pool/shifts", "/api/pool/top50",
        "/api/users", "/api/users/{name}",
    ):  # fmt: skip
        assert "get" in paths[path], path
    params = {p["name"] for p in paths["/api/pool/blocks"]["get"]["parameters"]}
    assert params == {"max", "offset", "commodity"}
    schemas = spec["components"]["schemas"]

    def schema(ref: str) -> dict[str, Any]:
        return schemas[ref.rsplit("/", 1)[1]]

    def response(path: str) -> dict[str, Any]:
        ok = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        return schema(ok["items"]["$ref"]) if "items" in ok else schema(ok["$ref"])

    assert set(response("/api/pool/stats")["properties"]) == set(POOL_STATS)
    assert set(response("/api/pool/round")["properties"]) == set(ROUND)
    assert set(response("/api/pool/blocks")["properties"]) == set(BLOCK)
    assert set(response("/api/pool/shifts")["properties"]) == set(SHIFT)
    user = response("/api/users/{name}")
    assert set(user["properties"]) == set(USER)
    assert response("/api/users") == user
    worker = schema(user["properties"]["workers"]["items"]["$ref"])
    assert set(worker["properties"]) == set(WORKER)
    work = schema(worker["properties"]["work"]["additionalProperties"]["$ref"])
    assert set(work["properties"]) == set(WORK)


# -- fuzzing -------------------------------------------------------------------------------


def fuzz(spec: dict[str, Any], base_url: str, secret: str) -> list[str]:
    """schemathesis over the dialect's part of /openapi.json, positive and negative cases,
    each sent once without a key and once with a valid one. Runs in a worker thread; the
    server answers on the test's event loop."""
    import hypothesis
    import hypothesis.errors
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ]
    schema = schemathesis.openapi.from_dict(spec)
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=40,
                deadline=None,
                database=None,
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(op.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                for headers in ({}, key_header(secret)):
                    response = case.call(base_url=base_url, headers=headers)
                    case.validate_response(response, checks=checks, headers=headers)

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                assert mode is schemathesis.GenerationMode.NEGATIVE  # nothing to get wrong
            except Exception as exc:
                failures.append(f"{op.method.upper()} {op.path} ({mode.value}): {exc}")
    return failures


async def test_fuzzed_requests_get_documented_answers(
    world: World, client: httpx.AsyncClient
) -> None:
    import asyncio

    spec = await get_ok(client, "/openapi.json")
    spec["paths"] = {
        p: v for p, v in spec["paths"].items() if p.startswith(("/api/pool/", "/api/users"))
    }
    assert len(spec["paths"]) == 10
    app = FastAPI()
    app.include_router(bitminter.router(world.ctx))
    async with served(app) as url:
        failures = await asyncio.to_thread(fuzz, spec, url, world.keys["acme"])
    assert not failures, "\n\n".join(failures)
