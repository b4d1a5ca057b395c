"""Every f2pool v2 endpoint answers with the document's keys and JSON types.

Reads go to the shared pool run (acme's alice and bob); anything that writes uses mining
users these tests create under acme (f2c*), so the other dialects' tests sharing the run
see the same world. Orders need a distributor with hashrate now: those calls go through a
second app over the same store whose clock is stopped at the end of the run, and the
order is terminated before it starts (zero length), so no settlement ever moves money.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from hashquarry.distribution import tables as dt
from hashquarry.store import models as m

from .conftest import World
from .test_f2pool_spec import CURRENCY, ENDPOINTS, SHAPES_CHECKED, ensure_user, frozen, ok

pytestmark = pytest.mark.asyncio(loop_scope="session")
__all__ = ["frozen"]  # a fixture, used by the tests below

BTC = {"currency": CURRENCY}


def acme(world: World) -> str:
    return world.keys["acme"]


# -- account management -----------------------------------------------------------------


async def test_mining_user_get_and_list(world: World, client: httpx.AsyncClient) -> None:
    got = await ok(client, "/v2/mining_user/get", {"mining_user_name": "alice"}, acme(world))
    assert got["mining_user_name"] == "alice"
    assert got["wallets"] == [
        {"currency": CURRENCY, "address": world.wallets["alice"], "threshold": "0.00000001"}
    ]
    listed = await ok(client, "/v2/mining_user/list", {}, acme(world))
    names = [u["mining_user_name"] for u in listed["mining_user_list"]]
    assert {"alice", "bob"} <= set(names) and "carol" not in names


async def test_mining_user_add(world: World, client: httpx.AsyncClient) -> None:
    body = {"mining_user_name": "f2cnew"}
    added = await ok(client, "/v2/mining_user/add", body, acme(world))
    assert added == {"mining_user_name": "f2cnew", "pages": [], "wallets": [], "description": ""}


async def test_wallet_update(world: World, client: httpx.AsyncClient) -> None:
    user = await ensure_user(world, "f2ca")
    address = world.node.call("getnewaddress")
    body = {
        "params": [
            {
                "mining_user_name": user,
                "wallets": [{"currency": CURRENCY, "address": address, "threshold": "0.005"}],
            }
        ]
    }
    data = await ok(client, "/v2/mining_user/wallet/update", body, acme(world))
    assert data["results"] == {
        user: {
            "mining_user_name": user,
            "wallet_result": [
                {"currency": CURRENCY, "address": address, "result": "true", "msg": ""}
            ],
        }
    }
    got = await ok(client, "/v2/mining_user/get", {"mining_user_name": user}, acme(world))
    assert got["wallets"] == [{"currency": CURRENCY, "address": address, "threshold": "0.005"}]


async def test_read_only_pages(world: World, client: httpx.AsyncClient) -> None:
    user = await ensure_user(world, "f2ca")
    body = {"mining_user_name": user, "page_name": "rig room", "permissions": "3,1"}
    added = await ok(client, "/v2/mining_user/read_only_page/add", body, acme(world))
    page = added["page"]
    assert added["mining_user_name"] == user
    assert page["permissions"] == "1,3" and page["page_name"] == "rig room" and page["key"]
    got = await ok(client, "/v2/mining_user/get", {"mining_user_name": user}, acme(world))
    assert page in got["pages"]
    body = {"mining_user_name": user, "key": page["key"]}
    deleted = await ok(client, "/v2/mining_user/read_only_page/delete", body, acme(world))
    assert deleted == {"mining_user_name": user}
    got = await ok(client, "/v2/mining_user/get", {"mining_user_name": user}, acme(world))
    assert page not in got["pages"]


async def credit(world: World, account: str, amount: int, ref: str) -> None:
    """Give one of the tests' own users a balance (a 'reward' entry), without mining."""
    now = time.time()
    async with world.ctx.engine.begin() as conn:
        await conn.execute(
            m.ledger.insert().values(
                coin=CURRENCY, account=account, kind="reward", bucket="balance", amount=amount,
                block_id=None, ref=ref, created_at=now, mining_date=None, extra=None,
            )
        )  # fmt: skip


async def test_withdraw(world: World, client: httpx.AsyncClient) -> None:
    user = await ensure_user(world, "f2cw")
    await credit(world, user, 123_456, "test:f2pool:contract:withdraw")
    before = time.time()
    body = {"mining_user_name": user, **BTC}
    data = await ok(client, "/v2/mining_user/balance/withdraw", body, acme(world))
    assert before - 1 <= data["paid_time"] <= time.time() + 1
    balance = await ok(client, "/v2/assets/balance", body, acme(world))
    assert balance["balance_info"]["balance"] == 0.0
    assert balance["balance_info"]["paid"] == 0.00123456


async def test_payment_pause_and_resume(world: World, client: httpx.AsyncClient) -> None:
    users = [await ensure_user(world, "f2ca"), await ensure_user(world, "f2cb")]
    body = {"mining_user_names": users, **BTC}
    paused = await ok(client, "/v2/mining_user/payment/pause", body, acme(world))
    assert paused == {"results": dict.fromkeys(users, "true")}
    resumed = await ok(client, "/v2/mining_user/payment/resume", body, acme(world))
    assert resumed == {"results": dict.fromkeys(users, "true")}


async def test_thresholds(world: World, client: httpx.AsyncClient) -> None:
    user = await ensure_user(world, "f2ca")
    body = {"mining_user_name": user, "threshold": "0.05", **BTC}
    assert await ok(client, "/v2/mining_user/threshold/update", body, acme(world)) == {
        "threshold": "0.05"
    }
    body = {"mining_user_name": user, **BTC}
    assert await ok(client, "/v2/mining_user/threshold/update_value", body, acme(world)) == {
        "threshold": "0.05"
    }
    body["threshold"] = "0.1"
    assert await ok(client, "/v2/mining_user/threshold/update_value", body, acme(world)) == {
        "threshold": "0.1"
    }


# -- assets ---------------------------------------------------------------------------------


async def test_assets_balance_by_name_and_address(world: World, client: httpx.AsyncClient) -> None:
    by_name = await ok(
        client, "/v2/assets/balance", {"mining_user_name": "alice", **BTC}, acme(world)
    )
    by_address = await ok(
        client, "/v2/assets/balance", {"address": world.wallets["alice"], **BTC}, acme(world)
    )
    assert by_name == by_address
    assert by_name["balance_info"]["total_income"] > 0


async def test_transactions_list(world: World, client: httpx.AsyncClient) -> None:
    body = {"mining_user_name": "alice", **BTC}
    data = await ok(client, "/v2/assets/transactions/list", body, acme(world))
    types = {t["type"] for t in data["transactions"]}
    assert {"revenue_pplns", "payout"} <= types
    txids = set()
    for t in data["transactions"]:
        if t["type"] == "payout":
            assert t["payout_extra"] is not None and t["mining_extra"] is None
            assert t["changed_balance"] < 0
            txids.add(t["payout_extra"]["tx_id"])
        else:
            assert t["mining_extra"] is not None and t["payout_extra"] is None
            assert t["changed_balance"] > 0
    if "alice" in world.payout.items:
        assert world.payout.txid in txids


async def test_settle_mode_switch(world: World, client: httpx.AsyncClient) -> None:
    user = await ensure_user(world, "f2ca")
    body = {"mining_user_name": user, "mode": "PPS", **BTC}
    data = await ok(client, "/v2/assets/settle_mode/switch", body, acme(world))
    assert data["mode"] == "pps"
    assert data["activated_at"] % 86400 == 0 and data["activated_at"] > time.time()


# -- hashrate ---------------------------------------------------------------------------------


async def test_hash_rate_info_and_list(world: World, client: httpx.AsyncClient) -> None:
    info = await ok(client, "/v2/hash_rate/info", {"mining_user_name": "alice", **BTC}, acme(world))
    assert info["currency"] == CURRENCY and info["info"]["name"] == "alice"
    assert info["info"]["h24_hash_rate"] > 0
    reqs = [{"mining_user_name": "alice", **BTC}, {"address": world.wallets["bob"], **BTC}]
    listed = await ok(client, "/v2/hash_rate/info_list", {"reqs": reqs}, acme(world))
    assert [i["name"] for i in listed["info"]] == ["alice", "bob"]


async def test_hash_rate_history(world: World, client: httpx.AsyncClient) -> None:
    body = {"mining_user_name": "alice", "interval": 1800, "duration": 86400, **BTC}
    data = await ok(client, "/v2/hash_rate/history", body, acme(world))
    stamps = [h["timestamp"] for h in data["history"]]
    assert stamps == sorted(stamps) and all(s % 1800 == 0 for s in stamps)
    assert len(stamps) in (48, 49)
    assert sum(h["hash_rate"] for h in data["history"]) > 0


async def test_worker_list_and_history(world: World, client: httpx.AsyncClient) -> None:
    body: dict[str, Any] = {"mining_user_name": "alice", **BTC}
    data = await ok(client, "/v2/hash_rate/worker/list", body, acme(world))
    assert sorted(w["hash_rate_info"]["name"] for w in data["workers"]) == ["rig1", "rig2"]
    assert all(w["host"] == "127.0.0.1" and w["status"] in (0, 1) for w in data["workers"])
    body = {"worker_name": "rig2", "duration": 3 * 86400, "interval": 3600, **body}
    history = await ok(client, "/v2/hash_rate/worker/history", body, acme(world))
    assert len(history["history"]) in (72, 73)
    assert max(h["online_miners"] for h in history["history"]) == 1


# -- distribution ---------------------------------------------------------------------------


async def test_hashrate_distribution(world: World, frozen: tuple[httpx.AsyncClient, float]) -> None:
    """distribution/info, distribute, orders and terminate, through the stopped clock."""
    fc, now = frozen
    recipient = await ensure_user(world, "f2cb")
    info = await ok(fc, "/v2/hash_rate/info", {"mining_user_name": "alice", **BTC}, acme(world))
    window = {"start_date": int(now) + 60, "end_date": int(now) + 3600}
    ask = {"distributor": "alice", "recipient": recipient, "hash_rate": 1000.0, **window, **BTC}
    capacity = await ok(fc, "/v2/hash_rate/distribution/info", ask, acme(world))
    assert capacity["current_hash_rate"] == pytest.approx(info["info"]["hash_rate"])
    assert capacity["remaining_hash_rate"] >= 1000.0
    order = (await ok(fc, "/v2/hash_rate/distribute", ask, acme(world)))["order"]
    assert order["distributor"] == "alice" and order["recipient"] == recipient
    assert order["hash_rate"] == 1000.0 and order["terminate_at"] == 0
    assert (order["start_date"], order["end_date"]) == (window["start_date"], window["end_date"])
    orders = await ok(
        fc, "/v2/hash_rate/distribution/orders", {"distributor": "alice", **BTC}, acme(world)
    )
    assert order in orders["orders"]
    # Terminated before it starts: a zero-length order that no settlement will ever pay.
    done = await ok(
        fc, "/v2/hash_rate/distribution/terminate", {"order_id": order["id"]}, acme(world)
    )
    assert str(order["id"]) in done["reason"]
    orders = await ok(
        fc, "/v2/hash_rate/distribution/orders", {"distributor": "alice", **BTC}, acme(world)
    )
    ended = next(o for o in orders["orders"] if o["id"] == order["id"])
    assert ended["terminate_at"] == int(now)


async def test_distribution_settlements(world: World, client: httpx.AsyncClient) -> None:
    """A settlement of the tests' own users' (empty) order, written to the store as the
    daily settlement would, then read back."""
    distributor, recipient = await ensure_user(world, "f2ca"), await ensure_user(world, "f2cb")
    day = int(time.time()) // 86400 * 86400 - 2 * 86400
    async with world.ctx.engine.begin() as conn:
        result = await conn.execute(
            dt.hashrate_orders.insert().values(
                coin=CURRENCY, distributor=distributor, recipient=recipient, hash_rate=5.0,
                start_at=day, end_at=day + 86400, terminate_at=None, created_at=day,
                status="active",
            )
        )  # fmt: skip
        assert result.inserted_primary_key is not None
        order_id = int(result.inserted_primary_key[0])
        await conn.execute(
            dt.hashrate_settlements.insert().values(
                order_id=order_id, period_start=day, period_end=day + 86400, hashes=0.0,
                income=0, distributor_hashes=0.0, distributor_income=0,
                settled_at=day + 86400 + 60, ref=f"test:f2pool:settlement:{order_id}",
            )
        )  # fmt: skip
    body = {"distributor": distributor, **BTC}
    data = await ok(client, "/v2/hash_rate/distribution/settlements", body, acme(world))
    mine = [s for s in data["settlements"] if s["order"]["id"] == order_id]
    assert len(mine) == 1 and mine[0]["timestamp"] == day + 86400 + 60
    assert mine[0]["order"]["hash_rate"] == 5.0 and mine[0]["income"] == 0.0


async def test_revenue_distribution(world: World, client: httpx.AsyncClient) -> None:
    distributor, recipient = await ensure_user(world, "f2ca"), await ensure_user(world, "f2cb")
    body = {"distributor": distributor, "recipient": recipient, "description": "rent",
            "proportion": 0.3, **BTC}  # fmt: skip
    added = await ok(client, "/v2/revenue/distribution/add", body, acme(world))
    assert added == {"id": added["id"], **body}
    info = await ok(
        client, "/v2/revenue/distribution/info", {"distributor": distributor, **BTC}, acme(world)
    )
    assert added in info["data"]
    gone = await ok(
        client,
        "/v2/revenue/distribution/delete",
        {"id": int(added["id"]), "distributor": distributor},
        acme(world),
    )
    assert added["id"] in gone["reason"]
    info = await ok(
        client, "/v2/revenue/distribution/info", {"distributor": distributor, **BTC}, acme(world)
    )
    assert added not in info["data"]


# -- blocks ----------------------------------------------------------------------------------


async def test_blocks(world: World, client: httpx.AsyncClient) -> None:
    page = await ok(client, "/v2/blocks/paging", {"page": 1, "pagesize": 5, **BTC}, acme(world))
    assert len(page["blocklist"]) == min(5, page["sum"]) and page["sum"] >= 8
    assert set(page["lucky"]) <= {"24h", "3d", "7d", "30d", "90d"}
    span = {"start_time": 0, "end_time": int(time.time()) + 10, **BTC}
    ranged = await ok(client, "/v2/blocks/date_range", span, acme(world))
    assert ranged["sum"] == page["sum"] == len(ranged["blocklist"])
    # At most 1,000 blocks an answer; the extension fields page and pagesize reach the rest.
    first = await ok(client, "/v2/blocks/date_range", {**span, "pagesize": 3}, acme(world))
    second = await ok(
        client, "/v2/blocks/date_range", {**span, "page": 2, "pagesize": 3}, acme(world)
    )
    assert first["sum"] == second["sum"] == ranged["sum"]
    assert first["blocklist"] + second["blocklist"] == ranged["blocklist"][:6]
    mine = await ok(client, "/v2/blocks/user", {"mining_user_name": "alice", **BTC}, acme(world))
    assert 0 < len(mine["blocklist"]) <= page["sum"]


async def test_every_endpoint_was_checked() -> None:
    assert set(ENDPOINTS) - SHAPES_CHECKED == set()


async def test_openapi_describes_every_endpoint_with_the_document_names(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        return schemas[ref.rsplit("/", 1)[1]] if ref else schema

    for path, (request, response) in ENDPOINTS.items():
        operation = spec["paths"][path]
        assert set(operation) == {"post"}, path
        post = operation["post"]
        assert {"F2P-API-SECRET": []} in post["security"], path
        answer = resolve(post["responses"]["200"]["content"]["application/json"]["schema"])
        assert set(answer["properties"]) == set(response), path
        if request:
            body = resolve(post["requestBody"]["content"]["application/json"]["schema"])
            assert set(request) <= set(body["properties"]), path
