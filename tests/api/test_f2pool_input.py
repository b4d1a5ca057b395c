"""Bad input on every endpoint: wrong JSON types, missing fields and out-of-range values
each get an f2pool error naming the field (never a 5xx), and change nothing in the store.
Then schemathesis fuzzes every /v2 operation of /openapi.json (valid and invalid bodies).

The requests are built from a valid one per endpoint, naming users these tests create
under acme, so a case wrongly accepted would show up in the store snapshot.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.openapi import from_dict
from sqlalchemy import select

from hashquarry.accounts import tables as at
from hashquarry.api.f2pool import errors as e
from hashquarry.distribution import tables as dt
from hashquarry.payouts.tables import payout_items, payouts
from hashquarry.store import models as m

from .conftest import World
from .test_f2pool_spec import (
    CURRENCY,
    ENDPOINTS,
    assert_error,
    assert_shape,
    ensure_user,
    ok,
    post,
    valid_bodies,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

USER, OTHER = "f2ia", "f2ib"
DAY = 86400

# Fields each request cannot do without (the rest have f2pool's protobuf defaults).
REQUIRED: dict[str, set[str]] = {
    "/v2/mining_user/get": {"mining_user_name"},
    "/v2/mining_user/add": {"mining_user_name"},
    "/v2/mining_user/list": set(),
    "/v2/mining_user/wallet/update": {"params"},
    "/v2/mining_user/read_only_page/add": {"mining_user_name", "permissions"},
    "/v2/mining_user/read_only_page/delete": {"mining_user_name", "key"},
    "/v2/mining_user/balance/withdraw": {"mining_user_name", "currency"},
    "/v2/mining_user/payment/pause": {"mining_user_names", "currency"},
    "/v2/mining_user/payment/resume": {"mining_user_names", "currency"},
    "/v2/mining_user/threshold/update": {"mining_user_name", "currency", "threshold"},
    "/v2/mining_user/threshold/update_value": {"mining_user_name", "currency"},
    "/v2/assets/balance": {"currency", "mining_user_name"},
    "/v2/assets/transactions/list": {"currency", "mining_user_name"},
    "/v2/assets/settle_mode/switch": {"currency", "mode", "mining_user_name"},
    "/v2/hash_rate/info": {"currency", "mining_user_name"},
    "/v2/hash_rate/info_list": {"reqs"},
    "/v2/hash_rate/history": {"currency", "mining_user_name"},
    "/v2/hash_rate/worker/list": {"currency", "mining_user_name"},
    "/v2/hash_rate/worker/history": {"currency", "mining_user_name", "worker_name"},
    # start_date, end_date and hash_rate default to now, a day later and 0.
    "/v2/hash_rate/distribution/info": {"currency", "distributor"},
    "/v2/hash_rate/distribution/orders": {"currency", "distributor"},
    "/v2/hash_rate/distribution/settlements": {"currency", "distributor"},
    "/v2/hash_rate/distribute": {
        "currency",
        "distributor",
        "recipient",
        "start_date",
        "end_date",
        "hash_rate",
    },
    "/v2/hash_rate/distribution/terminate": {"order_id"},
    "/v2/revenue/distribution/info": {"currency", "distributor"},
    "/v2/revenue/distribution/add": {"currency", "distributor", "recipient", "proportion"},
    "/v2/revenue/distribution/delete": {"id", "distributor"},
    "/v2/blocks/paging": {"currency"},
    "/v2/blocks/date_range": {"start_time", "end_time", "currency"},
    "/v2/blocks/user": {"currency", "mining_user_name"},
}

# JSON values that are not of the document's type (null only where a field is required).
WRONG: dict[str, list[Any]] = {
    "string": [123, 1.5, True, [], {}, ["a"]],
    "int64": ["abc", 1.5, True, [], {}, 2**64, "1e3", ""],
    "int32": ["abc", 2.5, False, [], 2**40],
    "double": ["abc", True, [], {}, ""],
    "string repeated": ["abc", 5, [1], [None], {}, [[]]],
    "WalletParams repeated": ["abc", 5, [1], {}, [{"mining_user_name": 5}], [{"wallets": 1}]],
    "UserMiningReq repeated": ["abc", 5, [1], {}, [{"currency": 5}], [[]]],
}
TYPE_CODES = {e.INVALID_PARAMETER, e.MISSING_PARAMETER}


async def snapshot(world: World) -> dict[str, list[Any]]:
    """Every row a request could change (API keys aside: using one stamps last_used_at)."""
    tables = [
        at.owners, at.mining_users, at.user_wallets, at.read_only_pages, m.settle_modes,
        m.ledger, dt.hashrate_orders, dt.hashrate_settlements, dt.revenue_distributions,
        payouts, payout_items,
    ]  # fmt: skip
    async with world.ctx.engine.connect() as conn:
        return {t.name: sorted(map(repr, (await conn.execute(select(t))).all())) for t in tables}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bodies(world: World) -> AsyncIterator[dict[str, dict[str, Any]]]:
    await ensure_user(world, USER)
    await ensure_user(world, OTHER)
    yield valid_bodies(time.time(), USER, OTHER, world.node.call("getnewaddress"))


Case = tuple[dict[str, Any], int]


def out_of_range(world: World, now: float) -> dict[str, list[Case]]:
    """Per endpoint: (fields to change, the error code) for values of the right JSON type
    that are still wrong."""
    t = int(now)
    invalid, unsupported = e.INVALID_PARAMETER, e.UNSUPPORTED_CURRENCY
    mainnet = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
    names: list[Case] = [
        ({"mining_user_name": n}, invalid) for n in ("A", "1abc", "a" * 16, "ab-c", "é")
    ]
    currencies: list[Case] = [({"currency": c}, unsupported) for c in ("litecoin", "dogecoin", "")]
    who: list[Case] = [
        ({"address": world.wallets["alice"]}, invalid),  # both name and address
        ({"mining_user_name": None}, e.MISSING_PARAMETER),  # neither
        ({"mining_user_name": None, "address": "notanaddress"}, invalid),
        ({"mining_user_name": None, "address": mainnet}, invalid),
        *currencies,
    ]
    bad_thresholds = ("-0.1", "0.123456789", "abc", "1e9", "", "NaN", "Infinity")
    thresholds: list[Case] = [*[({"threshold": v}, invalid) for v in bad_thresholds], *currencies]
    history: list[Case] = [
        *[({"interval": v}, invalid) for v in (601, -600, 300)],
        ({"duration": 31 * DAY}, invalid),
        ({"duration": -5}, invalid),
    ]
    span: list[Case] = [
        ({"start_date": t + 3600, "end_date": t + 60}, invalid),
        ({"start_date": -5}, invalid),
        ({"hash_rate": -1.0}, invalid),
        ({"hash_rate": 0}, invalid),
        ({"recipient": USER}, invalid),
        *currencies,
    ]
    times: list[Case] = [
        ({"start_time": -1}, invalid),
        ({"start_time": t, "end_time": t - 10}, invalid),
    ]

    def wallet(user: str = USER, **fields: Any) -> dict[str, Any]:
        address = world.node.call("getnewaddress")
        entry = {"currency": CURRENCY, "address": address, **fields}
        return {"mining_user_name": user, "wallets": [entry]}

    def wallets(*params: dict[str, Any]) -> dict[str, Any]:
        return {"params": list(params)}

    return {
        "/v2/mining_user/get": names,
        "/v2/mining_user/add": [
            *names[:4],
            ({"description": "x" * 300}, invalid),
            ({"description": "bad\x00"}, invalid),
        ],
        "/v2/mining_user/wallet/update": [
            (wallets(), invalid),
            (wallets({"mining_user_name": USER, "wallets": []}), invalid),
            (wallets(*[wallet()] * 101), invalid),
            (wallets(wallet(address="notanaddress")), invalid),
            (wallets(wallet(address=mainnet)), invalid),
            (wallets(wallet(currency="litecoin")), unsupported),
            (wallets(wallet(threshold="-1")), invalid),
            (wallets(wallet(threshold="0.000000001")), invalid),
            (wallets(wallet(threshold="1e30")), invalid),
            # One bad wallet after a good one: neither is written.
            (wallets(wallet(), wallet(OTHER, address="bogus")), invalid),
        ],
        "/v2/mining_user/read_only_page/add": [
            *names[:2],
            *[({"permissions": p}, invalid) for p in ("4", "", "1,x", "0", "-1")],
            ({"page_name": "x" * 65}, invalid),
        ],
        "/v2/mining_user/read_only_page/delete": [
            ({"key": ""}, invalid),
            ({"key": "x" * 65}, invalid),
            ({"key": "nokey"}, e.RECORD_NOT_FOUND),
        ],
        "/v2/mining_user/balance/withdraw": [*names[:2], *currencies],
        "/v2/mining_user/payment/pause": [
            ({"mining_user_names": []}, invalid),
            ({"mining_user_names": [USER, "Bad"]}, invalid),
            ({"mining_user_names": [USER] * 1001}, invalid),
            *currencies,
        ],
        "/v2/mining_user/payment/resume": [({"mining_user_names": []}, invalid), *currencies],
        "/v2/mining_user/threshold/update": thresholds,
        # update_value without a threshold ("" is proto3's unset) reads the current one.
        "/v2/mining_user/threshold/update_value": [
            c for c in thresholds if c[0].get("threshold") != ""
        ],
        "/v2/assets/balance": who,
        "/v2/assets/transactions/list": [
            *who,
            *times,
            ({"type": "bogus"}, invalid),
            ({"type": "revenue,nope"}, invalid),
        ],
        "/v2/assets/settle_mode/switch": [
            *currencies,
            ({"mode": "xyz"}, invalid),
            ({"activated_at": t - 3600}, invalid),
            ({"activated_at": t * 1000}, invalid),
        ],
        "/v2/hash_rate/info": who,
        "/v2/hash_rate/info_list": [
            ({"reqs": []}, invalid),
            ({"reqs": [{"mining_user_name": "alice", "currency": CURRENCY}] * 101}, invalid),
            ({"reqs": [{"mining_user_name": "alice", "currency": "litecoin"}]}, unsupported),
            ({"reqs": [{"currency": CURRENCY}]}, e.MISSING_PARAMETER),
        ],
        "/v2/hash_rate/history": [*who, *history],
        "/v2/hash_rate/worker/list": who,
        "/v2/hash_rate/worker/history": [
            *who,
            *history[:3],
            ({"duration": 4 * DAY}, invalid),
            ({"worker_name": "nosuchrig"}, e.RECORD_NOT_FOUND),
        ],
        "/v2/hash_rate/distribution/info": [c for c in span if c[0] != {"hash_rate": 0}],
        "/v2/hash_rate/distribution/orders": currencies,
        "/v2/hash_rate/distribution/settlements": currencies,
        "/v2/hash_rate/distribute": [
            *span,
            ({"start_date": t - DAY}, invalid),
            ({"hash_rate": 1e30}, e.CONFLICT),  # more than the distributor mines
        ],
        "/v2/hash_rate/distribution/terminate": [
            ({"order_id": 0}, invalid),
            ({"order_id": -1}, invalid),
            ({"order_id": 2**62}, e.RECORD_NOT_FOUND),
        ],
        "/v2/revenue/distribution/info": [*currencies, ({"recipient": USER}, invalid)],
        "/v2/revenue/distribution/add": [
            *currencies,
            *[({"proportion": p}, invalid) for p in (0, 1.5, -0.1, 0.1234567)],
            ({"recipient": USER}, invalid),
            ({"description": "x" * 300}, invalid),
        ],
        "/v2/revenue/distribution/delete": [
            ({"id": 0}, invalid),
            ({"id": 2**62}, e.RECORD_NOT_FOUND),
        ],
        "/v2/blocks/paging": [
            *currencies,
            ({"page": -1}, invalid),
            ({"pagesize": 101}, invalid),
            ({"pagesize": -1}, invalid),
            ({"pagesize": 2**31}, invalid),
        ],
        "/v2/blocks/date_range": [
            *currencies,
            ({"start_time": t, "end_time": t}, invalid),
            ({"start_time": -1}, invalid),
            ({"page": -1}, invalid),
            ({"pagesize": 1001}, invalid),
            ({"pagesize": -1}, invalid),
        ],
        "/v2/blocks/user": [
            *currencies,
            *times,
            ({"mining_reward": -1}, invalid),
            ({"mining_user_name": "A"}, invalid),
        ],
    }


def changed(body: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    out = {**body, **fields}
    return {k: v for k, v in out.items() if v is not None}


async def test_wrong_types_are_refused(
    world: World, client: httpx.AsyncClient, bodies: dict[str, dict[str, Any]]
) -> None:
    key = world.keys["acme"]
    before = await snapshot(world)
    tried = 0
    for path, (request, _) in ENDPOINTS.items():
        for field, kind in request.items():
            wrong = WRONG.get(kind) or WRONG["string"]
            if field in REQUIRED[path]:
                wrong = [*wrong, None]
            for value in wrong:
                body = {**bodies[path], field: value}
                got = assert_error(await post(client, path, body, key))
                assert got["code"] in TYPE_CODES, (path, field, value, got)
                assert field in got["msg"], (path, field, value, got)
                tried += 1
    assert tried > 300
    assert await snapshot(world) == before


async def test_missing_fields_are_named(
    world: World, client: httpx.AsyncClient, bodies: dict[str, dict[str, Any]]
) -> None:
    key = world.keys["acme"]
    before = await snapshot(world)
    for path, required in REQUIRED.items():
        for field in required:
            body = {k: v for k, v in bodies[path].items() if k != field}
            got = assert_error(await post(client, path, body, key), e.MISSING_PARAMETER)
            assert field in got["msg"], (path, field, got)
        if required:
            got = assert_error(await post(client, path, {}, key), e.MISSING_PARAMETER)
    assert await snapshot(world) == before


async def test_out_of_range_values_are_refused(
    world: World, client: httpx.AsyncClient, bodies: dict[str, dict[str, Any]]
) -> None:
    key = world.keys["acme"]
    cases = out_of_range(world, time.time())
    assert {p for p, (request, _) in ENDPOINTS.items() if request} - set(cases) == set()
    before = await snapshot(world)
    for path, variants in cases.items():
        for fields, code in variants:
            body = changed(bodies[path], fields)
            got = assert_error(await post(client, path, body, key), code)
            if code in (e.INVALID_PARAMETER, e.UNSUPPORTED_CURRENCY):
                assert any(f in got["msg"] for f in (*fields, "body")), (path, fields, got)
    assert await snapshot(world) == before


async def test_proportions_never_sum_above_one(
    world: World, client: httpx.AsyncClient, bodies: dict[str, dict[str, Any]]
) -> None:
    key = world.keys["acme"]
    body = {**bodies["/v2/revenue/distribution/add"], "proportion": 0.75}
    added = await ok(client, "/v2/revenue/distribution/add", body, key)
    before = await snapshot(world)
    got = assert_error(await post(client, "/v2/revenue/distribution/add", body, key), e.CONFLICT)
    assert "proportion" in got["msg"]
    assert await snapshot(world) == before
    body = {"id": int(added["id"]), "distributor": USER}
    await ok(client, "/v2/revenue/distribution/delete", body, key)


async def test_the_proto_json_forms_of_numbers_are_accepted(
    world: World, client: httpx.AsyncClient
) -> None:
    """proto3 JSON sends int64 as strings of digits; integral doubles may come as 1.0."""
    key = world.keys["acme"]
    body = {"mining_user_name": "alice", "currency": CURRENCY, "interval": "1200",
            "duration": 7200.0}  # fmt: skip
    history = await ok(client, "/v2/hash_rate/history", body, key)
    assert all(h["timestamp"] % 1200 == 0 for h in history["history"])
    body = {"page": "1", "pagesize": "2", "currency": CURRENCY}
    assert len((await ok(client, "/v2/blocks/paging", body, key))["blocklist"]) == 2


# -- schemathesis over /openapi.json ---------------------------------------------------------


async def test_fuzzing_every_operation_never_breaks_the_format(
    world: World, client: httpx.AsyncClient
) -> None:
    """Valid and invalid bodies for every /v2 operation, from the published schema, with a
    key of an owner of its own (so whatever the fuzzer adds stays there): each answer is
    the documented shape or an f2pool error, never a 5xx."""
    accounts = world.ctx.accounts
    await accounts.create_owner("f2fuzz")
    _, secret = await accounts.create_api_key("f2fuzz", "all")
    await ensure_user(world, "f2fza", owner="f2fuzz")
    spec = (await client.get("/openapi.json")).json()
    spec["paths"] = {p: v for p, v in spec["paths"].items() if p.startswith("/v2/")}
    schema = from_dict(spec)
    loop = asyncio.get_running_loop()
    problems: list[str] = []
    sent: list[int] = []

    async def send(path: str, case: Any) -> None:
        headers = {"F2P-API-SECRET": secret, "content-type": "application/json"}
        body = case.body
        if isinstance(body, bytes):
            content = body
        elif type(body).__name__ == "NotSet":  # an operation without a body
            content = b""
        else:
            content = json.dumps(body).encode()
        response = await client.post(path, content=content, headers=headers)
        sent.append(response.status_code)
        try:
            if response.status_code == 200:
                assert_shape(path, response.json())
            else:
                assert_error(response)
        except AssertionError as exc:
            problems.append(f"{path} {content[:200]!r}: {exc}")

    def fuzz(path: str, mode: GenerationMode) -> None:
        operation = schema[path]["POST"]

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(case: Any) -> None:
            asyncio.run_coroutine_threadsafe(send(path, case), loop).result(timeout=60)

        run()

    for path in ENDPOINTS:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            await asyncio.to_thread(fuzz, path, mode)
    assert not problems, "\n".join(problems[:20])
    assert len(sent) >= 20 * len(ENDPOINTS) and 200 in sent
