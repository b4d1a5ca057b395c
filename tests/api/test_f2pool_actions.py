"""What the state-changing endpoints do, seen through the rest of the pool: the payout
engine, the accounts service, the node's wallet. Only mining users these tests create
under acme are changed (f2x*)."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import select

from hashquarry.api.f2pool import errors as e
from hashquarry.payouts.tables import payout_items, payouts
from hashquarry.store import models as m

from .conftest import World
from .test_f2pool_spec import CURRENCY, assert_error, ensure_user, frozen, ok, post

pytestmark = pytest.mark.asyncio(loop_scope="session")
__all__ = ["frozen"]  # a fixture, used by the tests below

BTC = {"currency": CURRENCY}


async def reward(world: World, account: str, amount: int, ref: str) -> None:
    async with world.ctx.engine.begin() as conn:
        await conn.execute(
            m.ledger.insert().values(
                coin=CURRENCY, account=account, kind="reward", bucket="balance", amount=amount,
                block_id=None, ref=ref, created_at=time.time(), mining_date=None, extra=None,
            )
        )  # fmt: skip


async def test_added_users_are_listed_and_names_stay_unique(
    world: World, client: httpx.AsyncClient
) -> None:
    key = world.keys["acme"]
    body = {"mining_user_name": "f2xadd", "description": "rack 7"}
    added = await ok(client, "/v2/mining_user/add", body, key)
    assert added["description"] == "rack 7"
    listed = await ok(client, "/v2/mining_user/list", {}, key)
    assert added in listed["mining_user_list"]
    assert_error(await post(client, "/v2/mining_user/add", body, key), e.CONFLICT)
    other = await ok(client, "/v2/mining_user/list", {}, world.keys["other"])
    assert "f2xadd" not in {u["mining_user_name"] for u in other["mining_user_list"]}


async def test_pages_open_what_their_permissions_say(
    world: World, client: httpx.AsyncClient
) -> None:
    user = await ensure_user(world, "f2xpage")
    key = world.keys["acme"]
    body = {"mining_user_name": user, "page_name": "for the landlord", "permissions": "2"}
    page = (await ok(client, "/v2/mining_user/read_only_page/add", body, key))["page"]
    access = await world.ctx.accounts.resolve_page(page["key"])
    assert access is not None and access.user == user and access.permissions == {2}
    body = {"mining_user_name": user, "key": page["key"]}
    await ok(client, "/v2/mining_user/read_only_page/delete", body, key)
    assert await world.ctx.accounts.resolve_page(page["key"]) is None
    again = await post(client, "/v2/mining_user/read_only_page/delete", body, key)
    assert_error(again, e.RECORD_NOT_FOUND)


async def test_withdrawal_pays_the_whole_balance_once(
    world: World, client: httpx.AsyncClient
) -> None:
    user = await ensure_user(world, "f2xpay")
    key = world.keys["acme"]
    await reward(world, user, 2_500_000, "test:f2pool:actions:withdraw")
    body = {"mining_user_name": user, **BTC}
    paid = await ok(client, "/v2/mining_user/balance/withdraw", body, key)
    async with world.ctx.engine.connect() as conn:
        row = (
            await conn.execute(
                select(
                    payouts.c.txid, payouts.c.kind, payout_items.c.amount, payout_items.c.address
                )
                .join(payout_items, payout_items.c.payout_id == payouts.c.id)
                .where(payout_items.c.account == user)
            )
        ).one()
    assert row.kind == "withdraw" and row.amount == 2_500_000
    tx = world.node.call("gettransaction", row.txid)
    sent = [d for d in tx["details"] if d["category"] == "send" and d["address"] == row.address]
    assert sent and round(-sent[0]["amount"] * 1e8) == 2_500_000
    items = (await ok(client, "/v2/assets/transactions/list", body, key))["transactions"]
    payout = next(t for t in items if t["type"] == "payout")
    assert payout["changed_balance"] == -0.025 and payout["payout_extra"]["tx_id"] == row.txid
    assert payout["payout_extra"]["paid_time"] == paid["paid_time"]
    assert payout["payout_extra"]["address"] == row.address
    # Nothing left: a second withdrawal is refused and debits nothing.
    got = assert_error(await post(client, "/v2/mining_user/balance/withdraw", body, key))
    assert got["code"] == e.PAYOUT_REFUSED and "nothing to withdraw" in got["msg"]
    balance = (await ok(client, "/v2/assets/balance", body, key))["balance_info"]
    assert balance["balance"] == 0.0 and balance["paid"] == 0.025


async def test_paused_payments_are_not_paid(world: World, client: httpx.AsyncClient) -> None:
    user = await ensure_user(world, "f2xhold")
    key = world.keys["acme"]
    await reward(world, user, 1_000_000, "test:f2pool:actions:paused")
    names = {"mining_user_names": [user], **BTC}
    await ok(client, "/v2/mining_user/payment/pause", names, key)
    targets = {t.account: t for t in await world.ctx.accounts.payout_targets(CURRENCY)}
    assert targets[user].paused
    body = {"mining_user_name": user, **BTC}
    got = assert_error(await post(client, "/v2/mining_user/balance/withdraw", body, key))
    assert got["code"] == e.PAYOUT_REFUSED and "paused" in got["msg"]
    balance = (await ok(client, "/v2/assets/balance", body, key))["balance_info"]
    assert balance["balance"] == 0.01 and balance["paid"] == 0.0
    await ok(client, "/v2/mining_user/payment/resume", names, key)
    targets = {t.account: t for t in await world.ctx.accounts.payout_targets(CURRENCY)}
    assert not targets[user].paused
    await ok(client, "/v2/mining_user/balance/withdraw", body, key)


async def test_a_user_without_a_wallet_cannot_withdraw(
    world: World, client: httpx.AsyncClient
) -> None:
    user = await ensure_user(world, "f2xnowal", wallet=False)
    await reward(world, user, 1_000, "test:f2pool:actions:nowallet")
    body = {"mining_user_name": user, **BTC}
    got = assert_error(
        await post(client, "/v2/mining_user/balance/withdraw", body, world.keys["acme"])
    )
    assert got["code"] == e.PAYOUT_REFUSED and "wallet" in got["msg"]


async def test_thresholds_reach_the_payout_engine(world: World, client: httpx.AsyncClient) -> None:
    user = await ensure_user(world, "f2xthr")
    key = world.keys["acme"]
    body = {"mining_user_name": user, "threshold": "0.25", **BTC}
    await ok(client, "/v2/mining_user/threshold/update", body, key)
    targets = {t.account: t for t in await world.ctx.accounts.payout_targets(CURRENCY)}
    assert targets[user].threshold == 25_000_000
    read = await ok(
        client, "/v2/mining_user/threshold/update_value", {"mining_user_name": user, **BTC}, key
    )
    assert read == {"threshold": "0.25"}


async def test_settle_mode_switch_is_scheduled(world: World, client: httpx.AsyncClient) -> None:
    user = await ensure_user(world, "f2xmode")
    at = int(time.time()) + 7200
    body = {"mining_user_name": user, "mode": "fpps", "activated_at": at, **BTC}
    data = await ok(client, "/v2/assets/settle_mode/switch", body, world.keys["acme"])
    assert data == {"mode": "fpps", "activated_at": at}
    accounts = world.ctx.accounts
    assert await accounts.settle_mode("acme", user, CURRENCY, at - 1) is None
    switch = await accounts.settle_mode("acme", user, CURRENCY, at + 1)
    assert switch is not None and switch.mode == "fpps"


async def test_orders_cannot_oversell_and_end_once(
    world: World, frozen: tuple[httpx.AsyncClient, float]
) -> None:
    fc, now = frozen
    key = world.keys["acme"]
    recipient = await ensure_user(world, "f2xbuy")
    window = {"start_date": int(now) + 600, "end_date": int(now) + 1200}
    ask = {"distributor": "bob", "recipient": recipient, **window, **BTC}
    capacity = await ok(fc, "/v2/hash_rate/distribution/info", {**ask, "hash_rate": 1.0}, key)
    too_much = {**ask, "hash_rate": capacity["remaining_hash_rate"] * 1.5}
    got = assert_error(await post(fc, "/v2/hash_rate/distribute", too_much, key), e.CONFLICT)
    assert "oversell" in got["msg"]
    half = {**ask, "hash_rate": capacity["remaining_hash_rate"] / 2}
    order = (await ok(fc, "/v2/hash_rate/distribute", half, key))["order"]
    after = await ok(fc, "/v2/hash_rate/distribution/info", {**ask, "hash_rate": 1.0}, key)
    assert after["sold_hash_rate"] == pytest.approx(half["hash_rate"])
    body = {"order_id": order["id"]}
    await ok(fc, "/v2/hash_rate/distribution/terminate", body, key)  # before it starts
    again = await post(fc, "/v2/hash_rate/distribution/terminate", body, key)
    assert_error(again, e.CONFLICT)


async def test_distribution_info_fields_have_protobuf_defaults(
    world: World, frozen: tuple[httpx.AsyncClient, float]
) -> None:
    """start_date, end_date and hash_rate may be left out (or 0): now, a day later, none
    in particular. The answer is the same as for those values written out."""
    fc, now = frozen
    key = world.keys["acme"]
    recipient = await ensure_user(world, "f2xdef")
    sold = {"distributor": "bob", "recipient": recipient, "hash_rate": 1.0, **BTC,
            "start_date": int(now) + 3600, "end_date": int(now) + 7200}  # fmt: skip
    order = (await ok(fc, "/v2/hash_rate/distribute", sold, key))["order"]
    bare = await ok(fc, "/v2/hash_rate/distribution/info", {"distributor": "bob", **BTC}, key)
    zeros = {"distributor": "bob", "start_date": 0, "end_date": 0, "hash_rate": 0, **BTC}
    assert await ok(fc, "/v2/hash_rate/distribution/info", zeros, key) == bare
    spelled = {"distributor": "bob", "start_date": int(now), "end_date": int(now) + 86400,
               "hash_rate": 1.0, **BTC}  # fmt: skip
    assert await ok(fc, "/v2/hash_rate/distribution/info", spelled, key) == bare
    assert bare["sold_hash_rate"] >= 1.0  # the order an hour from now is within the day
    only_start = {"distributor": "bob", "start_date": int(now) + 2 * 86400, **BTC}
    later = await ok(fc, "/v2/hash_rate/distribution/info", only_start, key)
    assert later["sold_hash_rate"] == 0.0  # a day from start_date: past the order's end
    await ok(fc, "/v2/hash_rate/distribution/terminate", {"order_id": order["id"]}, key)


async def test_revenue_distributions_are_listed_until_deleted(
    world: World, client: httpx.AsyncClient
) -> None:
    key = world.keys["acme"]
    giver = await ensure_user(world, "f2xgive")
    takers = [await ensure_user(world, "f2xtake1"), await ensure_user(world, "f2xtake2")]
    made = []
    for taker, share in zip(takers, (0.25, 0.5), strict=True):
        body = {"distributor": giver, "recipient": taker, "proportion": share, **BTC}
        made.append(await ok(client, "/v2/revenue/distribution/add", body, key))
    everything = await ok(
        client, "/v2/revenue/distribution/info", {"distributor": giver, **BTC}, key
    )
    assert everything["data"] == made
    one = {"distributor": giver, "recipient": takers[1], **BTC}
    assert (await ok(client, "/v2/revenue/distribution/info", one, key))["data"] == made[1:]
    body = {"id": int(made[0]["id"]), "distributor": giver}
    await ok(client, "/v2/revenue/distribution/delete", body, key)
    assert_error(
        await post(client, "/v2/revenue/distribution/delete", body, key), e.RECORD_NOT_FOUND
    )
    left = await ok(client, "/v2/revenue/distribution/info", {"distributor": giver, **BTC}, key)
    assert left["data"] == made[1:]
