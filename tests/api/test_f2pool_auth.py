"""Who may ask what: keys (missing, wrong, revoked, disabled owner), scopes, owners'
isolation on every endpoint that names a user, and the transport rules (POST, JSON)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from hashquarry.accounts.keys import Scope
from hashquarry.api.app import create_app
from hashquarry.api.f2pool import errors as e
from hashquarry.distribution import tables as dt

from .conftest import World
from .test_f2pool_spec import (
    CURRENCY,
    ENDPOINTS,
    SCOPES,
    assert_error,
    ensure_user,
    key_headers,
    ok,
    post,
    valid_bodies,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

USER, OTHER = "f2aa", "f2ab"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bodies(world: World) -> AsyncIterator[dict[str, dict[str, Any]]]:
    await ensure_user(world, USER)
    await ensure_user(world, OTHER)
    yield valid_bodies(time.time(), USER, OTHER, world.node.call("getnewaddress"))


async def test_every_endpoint_wants_a_key(
    client: httpx.AsyncClient, bodies: dict[str, dict[str, Any]]
) -> None:
    for path in ENDPOINTS:
        assert_error(await post(client, path, bodies[path], None), e.UNAUTHORIZED)
        assert_error(await post(client, path, bodies[path], ""), e.UNAUTHORIZED)


@pytest.mark.parametrize(
    "secret", ["nonsense", "hq_" + "A" * 43, "hq_short", "hq_" + "x" * 500, "Bearer hq_abc"]
)
async def test_wrong_keys_are_refused(
    client: httpx.AsyncClient, bodies: dict[str, dict[str, Any]], secret: str
) -> None:
    for path in ENDPOINTS:
        assert_error(await post(client, path, bodies[path], secret), e.INVALID_SECRET)


async def test_a_revoked_key_is_refused(
    world: World, client: httpx.AsyncClient, bodies: dict[str, dict[str, Any]]
) -> None:
    key_id, secret = await world.ctx.accounts.create_api_key("acme", "all")
    await ok(client, "/v2/hash_rate/info", bodies["/v2/hash_rate/info"], secret)
    await world.ctx.accounts.revoke_api_key("acme", key_id)
    for path in ENDPOINTS:
        assert_error(await post(client, path, bodies[path], secret), e.INVALID_SECRET)


async def test_a_disabled_owners_key_is_refused(world: World, client: httpx.AsyncClient) -> None:
    accounts = world.ctx.accounts
    await accounts.create_owner("f2off")
    _, secret = await accounts.create_api_key("f2off", "all")
    await ok(client, "/v2/mining_user/list", {}, secret)
    await accounts.set_owner_disabled("f2off", True)
    assert_error(await post(client, "/v2/mining_user/list", {}, secret), e.INVALID_SECRET)


async def test_each_endpoint_needs_its_scope(
    world: World, client: httpx.AsyncClient, bodies: dict[str, dict[str, Any]]
) -> None:
    accounts = world.ctx.accounts
    for path, scope in SCOPES.items():
        if scope is None:  # any live key: one with a single unrelated scope will do
            _, secret = await accounts.create_api_key("acme", "manage_schedulers")
            await ok(client, path, bodies[path], secret)
            continue
        others = [s for s in Scope if s.value != scope]
        _, secret = await accounts.create_api_key("acme", others)
        body = assert_error(await post(client, path, bodies[path], secret), e.FORBIDDEN)
        assert scope in body["msg"]


async def test_payouts_need_read_payments(world: World, client: httpx.AsyncClient) -> None:
    _, secret = await world.ctx.accounts.create_api_key("acme", "read_revenue")
    body = {"mining_user_name": "alice", "currency": CURRENCY}
    listed = await ok(client, "/v2/assets/transactions/list", body, secret)
    assert listed["transactions"] and all(
        not t["type"].startswith("payout") for t in listed["transactions"]
    )
    for kind in ("payout", "revenue,payout"):
        response = await post(
            client, "/v2/assets/transactions/list", {**body, "type": kind}, secret
        )
        assert_error(response, e.FORBIDDEN)
    # read_hashrate alone sees hashrates but no rewards in the history.
    _, secret = await world.ctx.accounts.create_api_key("acme", "read_hashrate")
    history = await ok(client, "/v2/hash_rate/history", body, secret)
    assert all(h["normal_reward"] == 0.0 for h in history["history"])


# -- one owner's key never reaches another owner's users ----------------------------------


def with_user(path: str, body: dict[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    """Every way the request can name a user, each naming `name`."""
    out: list[tuple[str, dict[str, Any]]] = []
    for field in ("mining_user_name", "distributor", "recipient"):
        if field in body:
            out.append((field, {**body, field: name}))
    if "mining_user_names" in body:
        out.append(("mining_user_names", {**body, "mining_user_names": [USER, name]}))
    if "params" in body:
        second = {**body["params"][0], "mining_user_name": name}
        out.append(("params", {"params": [body["params"][0], second]}))
    if "reqs" in body:
        out.append(
            ("reqs", {"reqs": [body["reqs"][0], {**body["reqs"][0], "mining_user_name": name}]})
        )
    return out


def with_address(path: str, body: dict[str, Any], address: str) -> list[tuple[str, dict[str, Any]]]:
    if "reqs" in body:
        req = {"address": address, "currency": CURRENCY}
        return [("reqs.address", {"reqs": [body["reqs"][0], req]})]
    if "address" in ENDPOINTS[path][0]:
        rest = {k: v for k, v in body.items() if k != "mining_user_name"}
        return [("address", {**rest, "address": address})]
    return []


async def test_another_owners_users_are_refused_everywhere(
    world: World, client: httpx.AsyncClient, bodies: dict[str, dict[str, Any]]
) -> None:
    key = world.keys["acme"]
    tried = set()
    for path, body in bodies.items():
        if path == "/v2/mining_user/add":  # names a new user: see the test below
            continue
        cases = with_user(path, body, "carol") + with_address(path, body, world.wallets["carol"])
        for label, bad in cases:
            response = await post(client, path, bad, key)
            got = assert_error(response, e.PERMISSION_DENIED)
            assert "carol" in got["msg"] or world.wallets["carol"] in got["msg"], (path, label)
            tried.add(path)
            # A user that does not exist reads exactly the same: no probing for names.
            if label != "reqs.address" and label != "address":
                ghost = with_user(path, body, "nosuchuser")
                missing = dict(ghost)[label]
                other = assert_error(await post(client, path, missing, key), e.PERMISSION_DENIED)
                assert other["msg"].replace("nosuchuser", "carol") == got["msg"], (path, label)
    takes_a_user = {
        p for p, (request, _) in ENDPOINTS.items() if p != "/v2/mining_user/add"
        if {"mining_user_name", "mining_user_names", "distributor", "params", "reqs"} & set(request)
    }  # fmt: skip
    assert takes_a_user - tried == set()
    # And the other way round: other's key cannot see acme's users.
    for path in ("/v2/hash_rate/info", "/v2/assets/balance", "/v2/mining_user/get"):
        body = {"mining_user_name": "alice", "currency": CURRENCY}
        assert_error(await post(client, path, body, world.keys["other"]), e.PERMISSION_DENIED)


async def test_adding_a_taken_name_says_only_that(world: World, client: httpx.AsyncClient) -> None:
    """Names are global (they are the Stratum user name), so add can tell one is taken;
    that is all it tells."""
    body = {"mining_user_name": "carol"}
    got = assert_error(await post(client, "/v2/mining_user/add", body, world.keys["acme"]))
    assert got["code"] == e.CONFLICT and "taken" in got["msg"] and "other" not in got["msg"]


async def test_refused_requests_change_nothing(world: World, client: httpx.AsyncClient) -> None:
    body = {"mining_user_names": [USER, "carol"], "currency": CURRENCY}
    assert_error(await post(client, "/v2/mining_user/payment/pause", body, world.keys["acme"]))
    mine = await world.ctx.accounts.get_mining_user("acme", USER)
    assert not any(w.paused for w in mine.wallets)
    carol = await world.ctx.accounts.get_mining_user("other", "carol")
    assert not any(w.paused for w in carol.wallets)


async def test_another_owners_orders_and_distributions_are_not_found(
    world: World, client: httpx.AsyncClient
) -> None:
    """Records are looked up through the key's users: acme's ids do not exist for other."""
    now = time.time()
    async with world.ctx.engine.begin() as conn:
        result = await conn.execute(
            dt.hashrate_orders.insert().values(
                coin=CURRENCY, distributor=USER, recipient=OTHER, hash_rate=1.0,
                start_at=now + 3600, end_at=now + 7200, terminate_at=None, created_at=now,
                status="active",
            )
        )  # fmt: skip
        assert result.inserted_primary_key is not None
        order_id = int(result.inserted_primary_key[0])
    response = await post(
        client, "/v2/hash_rate/distribution/terminate", {"order_id": order_id}, world.keys["other"]
    )
    assert_error(response, e.RECORD_NOT_FOUND)
    share = await world.ctx.distribution.revenue_add("acme", CURRENCY, USER, OTHER, 0.01)
    body = {"id": share.id, "distributor": "carol"}
    response = await post(client, "/v2/revenue/distribution/delete", body, world.keys["other"])
    assert_error(response, e.RECORD_NOT_FOUND)
    body = {"id": share.id, "distributor": USER}
    response = await post(client, "/v2/revenue/distribution/delete", body, world.keys["other"])
    assert_error(response, e.PERMISSION_DENIED)
    # Untouched: acme can still end both.
    done = await ok(
        client, "/v2/hash_rate/distribution/terminate", {"order_id": order_id}, world.keys["acme"]
    )
    assert str(order_id) in done["reason"]
    body = {"id": str(share.id), "distributor": USER}
    await ok(client, "/v2/revenue/distribution/delete", body, world.keys["acme"])


# -- transport: POST, JSON, known paths ----------------------------------------------------


async def test_only_post(world: World, client: httpx.AsyncClient) -> None:
    headers = key_headers(world.keys["acme"])
    for path in ENDPOINTS:
        for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS"):
            response = await client.request(method, path, headers=headers)
            assert_error(response, e.METHOD_NOT_ALLOWED)
            assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("content", "ctype", "code"),
    [
        (b"currency=bitcoin", "application/x-www-form-urlencoded", e.UNSUPPORTED_MEDIA_TYPE),
        (b'{"currency": "bitcoin"}', "text/plain", e.UNSUPPORTED_MEDIA_TYPE),
        (b'{"currency": "bitcoin"}', None, e.UNSUPPORTED_MEDIA_TYPE),
        (b"{not json", "application/json", e.INVALID_JSON),
        (b"\xff\xfe", "application/json", e.INVALID_JSON),
        (b"[1, 2]", "application/json", e.INVALID_JSON),
        (b'"text"', "application/json", e.INVALID_JSON),
        (b"null", "application/json", e.INVALID_JSON),
        (b"", "application/json", e.MISSING_PARAMETER),
        (b"{}", "application/json", e.MISSING_PARAMETER),
        (b" " * (2 << 20), "application/json", e.PAYLOAD_TOO_LARGE),
    ],
)
async def test_only_json_objects(
    world: World, client: httpx.AsyncClient, content: bytes, ctype: str | None, code: int
) -> None:
    headers = key_headers(world.keys["acme"])
    if ctype is not None:
        headers["content-type"] = ctype
    response = await client.post("/v2/hash_rate/info", content=content, headers=headers)
    assert_error(response, code)


async def test_json_with_a_charset_is_json(world: World, client: httpx.AsyncClient) -> None:
    headers = {**key_headers(world.keys["acme"]), "content-type": "application/json; charset=utf-8"}
    content = b'{"currency": "bitcoin", "mining_user_name": "alice"}'
    response = await client.post("/v2/hash_rate/info", content=content, headers=headers)
    assert response.status_code == 200


async def test_unknown_paths(world: World, client: httpx.AsyncClient) -> None:
    for path in ("/v2/nope", "/v2/hash_rate/info/", "/v2/", "/v2/blocks"):
        response = await post(client, path, {}, world.keys["acme"])
        assert_error(response, e.NOT_FOUND)


async def test_other_paths_keep_their_own_errors(client: httpx.AsyncClient) -> None:
    """f2pool's handlers only answer for /v2: elsewhere the app's own format stays."""
    response = await client.get("/no/such/path")
    assert response.status_code == 404 and "code" not in response.json()


async def test_rate_limits_answer_in_the_f2pool_format(world: World) -> None:
    app = create_app(world.ctx, rate=0.001, burst=2)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pool.test") as c:
        body = {"currency": CURRENCY, "mining_user_name": "alice"}
        statuses = [
            (await post(c, "/v2/hash_rate/info", body, world.keys["acme"])) for _ in range(3)
        ]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert_error(statuses[-1], e.RATE_LIMITED)
    assert int(statuses[-1].headers["retry-after"]) >= 1
