"""The f2pool v2 document (tests/api/seeds/003_872a0e2bc9a6b9bb.txt, parsed by
`seed_docs`) as data, and the checker the contract tests hold every answer to. No tests
here: the other test_f2pool* modules import it.

Types are the document's: string, int64, int32, uint32, double, float, a message name, and
`X repeated`. The document's `XxxEntry repeated` (ResultsEntry, LuckyEntry: key + value)
are protobuf map fields, which JSON renders as objects; they are written `map X` here.
WorkerStatus is an enum the document does not spell out: an integer in JSON.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import func, select

from hashquarry.api.app import create_app
from hashquarry.api.f2pool.errors import ERROR_CODES
from hashquarry.distribution.service import DistributionService
from hashquarry.store import models as m

from .conftest import World
from .seed_docs import parse_f2pool

DOC = parse_f2pool()
# message -> {field: type}: the document's tables (ResultsEntry and the other map entries
# are not messages a body carries: they become `map X` field types).
MESSAGES: dict[str, dict[str, str]] = {
    name: DOC.message(name) for name in DOC.messages if not name.endswith("Entry")
}
# path -> (request fields, response fields), in the document's order.
ENDPOINTS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    path: tuple(  # type: ignore[misc]
        {n: DOC.field_type(path, n, t) for n, t in side.items()} for side in sides
    )
    for path, sides in DOC.endpoints.items()
}

# Sub-messages that may be absent (null): an unset protobuf message field.
OPTIONAL_MESSAGES = {"MiningExtra", "PayoutExtra"}
NUMBERS = {"double", "float"}
INTEGERS = {"int64", "int32", "uint32", "WorkerStatus"}


def type_problems(value: Any, kind: str, where: str = "") -> list[str]:
    """Why `value` is not of the document's type `kind` (empty: it is)."""
    if kind.endswith(" repeated"):
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r:.60}"]
        inner = kind.removesuffix(" repeated")
        return [p for i, v in enumerate(value) for p in type_problems(v, inner, f"{where}[{i}]")]
    if kind.startswith("map "):
        if not isinstance(value, dict):
            return [f"{where}: expected an object (a map), got {value!r:.60}"]
        inner = kind.removeprefix("map ")
        out = [f"{where}: map key {k!r} is not a string" for k in value if not isinstance(k, str)]
        return out + [p for k, v in value.items() for p in type_problems(v, inner, f"{where}.{k}")]
    if kind == "string":
        return [] if isinstance(value, str) else [f"{where}: expected a string, got {value!r:.60}"]
    if kind in INTEGERS:
        if isinstance(value, int) and not isinstance(value, bool):
            if kind == "uint32" and value < 0:
                return [f"{where}: negative uint32 {value}"]
            return []
        return [f"{where}: expected an integer, got {value!r:.60}"]
    if kind in NUMBERS:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return []
        return [f"{where}: expected a number, got {value!r:.60}"]
    if kind in MESSAGES:
        if value is None and kind in OPTIONAL_MESSAGES:
            return []
        return shape_problems(value, MESSAGES[kind], where)
    raise AssertionError(f"unknown type {kind}")


def shape_problems(value: Any, fields: dict[str, str], where: str = "") -> list[str]:
    """Exactly the documented keys, each of its documented type."""
    if not isinstance(value, dict):
        return [f"{where}: expected an object, got {value!r:.60}"]
    out = []
    if set(value) != set(fields):
        out.append(f"{where or 'body'}: keys {sorted(value)} != documented {sorted(fields)}")
    for name, kind in fields.items():
        if name in value:
            out += type_problems(value[name], kind, f"{where}.{name}" if where else name)
    return out


def assert_shape(path: str, body: Any) -> None:
    problems = shape_problems(body, ENDPOINTS[path][1])
    assert not problems, f"{path}: " + "; ".join(problems[:10])


def assert_error(response: httpx.Response, code: int | None = None) -> dict[str, Any]:
    """An f2pool error: {"code": N, "msg": "error_type: description"} with the table's
    status and type, never a 5xx."""
    assert response.status_code < 500, response.text
    body = response.json()
    assert set(body) == {"code", "msg"}, body
    assert isinstance(body["code"], int) and isinstance(body["msg"], str), body
    assert body["code"] in ERROR_CODES, body
    status, error_type, _ = ERROR_CODES[body["code"]]
    assert response.status_code == status, (response.status_code, body)
    kind, _, description = body["msg"].partition(": ")
    assert kind == error_type and description, body
    if code is not None:
        assert body["code"] == code, body
    return body  # type: ignore[no-any-return]


# -- helpers shared by the test_f2pool* modules ------------------------------------------

CURRENCY = "bitcoin"


def key_headers(secret: str) -> dict[str, str]:
    return {"F2P-API-SECRET": secret}


async def post(
    client: httpx.AsyncClient, path: str, body: Any, secret: str | None
) -> httpx.Response:
    headers = key_headers(secret) if secret is not None else {}
    return await client.post(path, json=body, headers=headers)


async def ok(client: httpx.AsyncClient, path: str, body: Any, secret: str) -> Any:
    """A successful call whose answer has exactly the documented keys and types."""
    response = await post(client, path, body, secret)
    assert response.status_code == 200, (path, response.status_code, response.text)
    data = response.json()
    assert_shape(path, data)
    SHAPES_CHECKED.add(path)
    return data


SHAPES_CHECKED: set[str] = set()


async def ensure_user(world: Any, name: str, owner: str = "acme", wallet: bool = True) -> str:
    """A mining user of the tests' own (created once per session), with a wallet."""
    from hashquarry.accounts.errors import ConflictError

    accounts = world.ctx.accounts
    try:
        await accounts.add_mining_user(owner, name, "f2pool tests")
    except ConflictError:
        return name
    if wallet:
        address = world.node.call("getnewaddress")
        await accounts.update_wallet(owner, name, CURRENCY, address, 1)
    return name


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def frozen(world: World) -> AsyncIterator[tuple[httpx.AsyncClient, float]]:
    """A client of an app whose clock stands just after the run's last share, at the end
    of a minute: every hashrate window then covers the whole run."""
    async with world.ctx.engine.connect() as conn:
        last = float(await conn.scalar(select(func.max(m.workers.c.last_share))))
    now = math.floor(last / 60) * 60 + 59.5
    if now < last:
        now += 60

    def clock() -> float:
        return now

    ctx = dataclasses.replace(
        world.ctx,
        clock=clock,
        distribution=DistributionService(world.ctx.engine, world.ctx.accounts, clock=clock),
    )
    transport = httpx.ASGITransport(app=create_app(ctx, rate=1000, burst=1000))
    async with httpx.AsyncClient(transport=transport, base_url="http://pool.test") as c:
        yield c, now


# The scope each endpoint needs (None: any live key), as the package documents it.
SCOPES: dict[str, str | None] = {
    **dict.fromkeys(
        [
            "/v2/mining_user/get",
            "/v2/mining_user/add",
            "/v2/mining_user/list",
            "/v2/mining_user/wallet/update",
            "/v2/mining_user/read_only_page/add",
            "/v2/mining_user/read_only_page/delete",
            "/v2/assets/settle_mode/switch",
        ],
        "manage_accounts",
    ),
    **dict.fromkeys(
        [
            "/v2/mining_user/balance/withdraw",
            "/v2/mining_user/payment/pause",
            "/v2/mining_user/payment/resume",
            "/v2/mining_user/threshold/update",
            "/v2/mining_user/threshold/update_value",
        ],
        "manage_payouts",
    ),
    **dict.fromkeys(
        ["/v2/assets/balance", "/v2/assets/transactions/list", "/v2/blocks/user"], "read_revenue"
    ),
    **dict.fromkeys(
        [
            "/v2/hash_rate/info",
            "/v2/hash_rate/info_list",
            "/v2/hash_rate/history",
            "/v2/hash_rate/worker/list",
            "/v2/hash_rate/worker/history",
        ],
        "read_hashrate",
    ),
    **dict.fromkeys(
        [
            "/v2/hash_rate/distribution/info",
            "/v2/hash_rate/distribution/orders",
            "/v2/hash_rate/distribution/settlements",
            "/v2/hash_rate/distribute",
            "/v2/hash_rate/distribution/terminate",
            "/v2/revenue/distribution/info",
            "/v2/revenue/distribution/add",
            "/v2/revenue/distribution/delete",
        ],
        "manage_distributions",
    ),
    "/v2/blocks/paging": None,
    "/v2/blocks/date_range": None,
}


def valid_bodies(now: float, user: str, other: str, address: str) -> dict[str, dict[str, Any]]:
    """A well-formed request for every endpoint, naming acme's users: `user` and `other`
    (the tests' own, for anything that writes) and alice (for reads of the pool run)."""
    t = int(now)
    btc = {"currency": CURRENCY}
    alice = {"mining_user_name": "alice", **btc}
    mine = {"mining_user_name": user, **btc}
    dist = {"distributor": user, **btc}
    order = {**dist, "recipient": other, "start_date": t + 60, "end_date": t + 3600,
             "hash_rate": 1.0}  # fmt: skip
    wallet = {"currency": CURRENCY, "address": address, "threshold": "0.01"}
    return {
        "/v2/mining_user/get": {"mining_user_name": user},
        "/v2/mining_user/add": {"mining_user_name": user + "x"},
        "/v2/mining_user/list": {},
        "/v2/mining_user/wallet/update": {
            "params": [{"mining_user_name": user, "wallets": [wallet]}]
        },
        "/v2/mining_user/read_only_page/add": {
            "mining_user_name": user,
            "page_name": "p",
            "permissions": "1",
        },
        "/v2/mining_user/read_only_page/delete": {"mining_user_name": user, "key": "nokey"},
        "/v2/mining_user/balance/withdraw": mine,
        "/v2/mining_user/payment/pause": {"mining_user_names": [user], **btc},
        "/v2/mining_user/payment/resume": {"mining_user_names": [user], **btc},
        "/v2/mining_user/threshold/update": {**mine, "threshold": "0.01"},
        "/v2/mining_user/threshold/update_value": {**mine, "threshold": "0.01"},
        "/v2/assets/balance": alice,
        "/v2/assets/transactions/list": {
            **alice,
            "type": "all",
            "start_time": 0,
            "end_time": t + 60,
        },
        "/v2/assets/settle_mode/switch": {**mine, "mode": "pplns", "activated_at": t + 3600},
        "/v2/hash_rate/info": alice,
        "/v2/hash_rate/info_list": {"reqs": [alice]},
        "/v2/hash_rate/history": {**alice, "interval": 600, "duration": 3600},
        "/v2/hash_rate/worker/list": alice,
        "/v2/hash_rate/worker/history": {
            **alice,
            "worker_name": "rig1",
            "interval": 600,
            "duration": 3600,
        },
        "/v2/hash_rate/distribution/info": order,
        "/v2/hash_rate/distribution/orders": dist,
        "/v2/hash_rate/distribution/settlements": dist,
        "/v2/hash_rate/distribute": order,
        "/v2/hash_rate/distribution/terminate": {"order_id": 1},
        "/v2/revenue/distribution/info": dist,
        "/v2/revenue/distribution/add": {
            **dist,
            "recipient": other,
            "description": "d",
            "proportion": 0.1,
        },
        "/v2/revenue/distribution/delete": {"id": 1, "distributor": user},
        "/v2/blocks/paging": {"page": 1, "pagesize": 10, **btc},
        "/v2/blocks/date_range": {"start_time": 0, "end_time": t + 60, **btc},
        "/v2/blocks/user": {**alice, "mining_reward": 0, "start_time": 0, "end_time": t + 60},
    }
