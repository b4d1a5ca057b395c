"""The f2pool answers carry the pool's own figures: hashrates the miners did, balances and
transactions the ledger holds, blocks the node has.

How hashrates are compared. The pool's hashrate is accepted share difficulty x 2^32 over a
fixed window (10 minutes, 1 hour, 1 day); the built-in miners ran for about a minute. So a rate
times its window is the work credited in it, and these tests compare work, not rates:

1. Exactly: with the clock stopped at the end of the run (every window then covers the
   whole run), rate x window for each user and worker equals the share difficulty the
   miners themselves saw accepted (`accepted_difficulty` x 2^32 in `world.miner_report`).
   That checks units (H/s), windows and attribution with no statistics involved.
2. Against the hashes the miners actually computed (`report["hashrate"]` x `elapsed`,
   summed over the workers the keys can see): (accepted + stale work) / elapsed is the
   pool's estimate of the miners' H/s over the run. It is a count of random shares, so it
   agrees within 25% only when there are enough of them: the relative error of N shares is
   about 1/sqrt(N). The shared run mines until these workers have at least 256 shares
   (checked), where a flat 25% is four standard deviations.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from hashquarry.accounting import stats
from hashquarry.accounting.ledger import balances
from hashquarry.store import models as m

from .conftest import MIN_SHARES, World
from .test_f2pool_spec import CURRENCY, frozen, ok

pytestmark = pytest.mark.asyncio(loop_scope="session")
__all__ = ["frozen"]  # a fixture, used by the tests below

BTC = {"currency": CURRENCY}
HASHES = 2**32
WINDOWS = {"hash_rate": 600, "h1_hash_rate": 3600, "h24_hash_rate": 86400}
OWNER = {"alice": "acme", "bob": "acme", "carol": "other"}


def workers_of(world: World, user: str) -> dict[str, dict[str, Any]]:
    return {
        name.split(".", 1)[1]: w
        for name, w in world.miner_report["workers"].items()
        if name.split(".", 1)[0] == user
    }


def settled(w: dict[str, Any]) -> bool:
    """Every share the worker sent was answered: the pool credited exactly what it saw."""
    answered = w["shares_accepted"] + w["shares_rejected"] + w["submit_errors"]
    return answered == w["shares_submitted"] and w["submit_errors"] == 0


def same_work(api_work: float, miner_work: float, exact: bool) -> None:
    if exact:
        assert api_work == pytest.approx(miner_work, rel=1e-6)
    else:  # shares the pool logged but whose answer the miner did not see
        assert api_work >= miner_work * (1 - 1e-6)


async def test_user_hashrates_are_the_work_the_miners_saw_accepted(
    world: World, frozen: tuple[httpx.AsyncClient, float]
) -> None:
    fc, _ = frozen
    for user, owner in OWNER.items():
        body = {"mining_user_name": user, **BTC}
        info = (await ok(fc, "/v2/hash_rate/info", body, world.keys[owner]))["info"]
        workers = workers_of(world, user)
        miner_work = sum(w["accepted_difficulty"] for w in workers.values()) * HASHES
        exact = all(settled(w) for w in workers.values())
        for field, seconds in WINDOWS.items():
            # At 59.5 s into a minute a window of W seconds covers W - 0.5 s of it.
            same_work(info[field] * (seconds - 0.5), miner_work, exact)


async def test_worker_hashrates_are_the_work_each_worker_saw_accepted(
    world: World, frozen: tuple[httpx.AsyncClient, float]
) -> None:
    fc, now = frozen
    for user, owner in OWNER.items():
        body = {"mining_user_name": user, **BTC}
        listed = (await ok(fc, "/v2/hash_rate/worker/list", body, world.keys[owner]))["workers"]
        expected = workers_of(world, user)
        assert {w["hash_rate_info"]["name"] for w in listed} == set(expected)
        for w in listed:
            mine = expected[w["hash_rate_info"]["name"]]
            work = mine["accepted_difficulty"] * HASHES
            same_work(w["hash_rate_info"]["h24_hash_rate"] * (86400 - 0.5), work, settled(mine))
            assert w["status"] == 0 and now - 120 < w["last_share_at"] <= now


async def test_hashrates_agree_with_what_the_miners_computed(
    world: World, frozen: tuple[httpx.AsyncClient, float]
) -> None:
    fc, _ = frozen
    report = world.miner_report
    pool_work = 0.0
    for user, owner in OWNER.items():
        body = {"mining_user_name": user, **BTC}
        info = (await ok(fc, "/v2/hash_rate/info", body, world.keys[owner]))["info"]
        pool_work += (info["h24_hash_rate"] + info["h24_stale_hash_rate"]) * (86400 - 0.5)
    visible = [w for user in OWNER for w in workers_of(world, user).values()]
    hashes = sum(w["hashes"] for w in visible)
    shares = sum(w["shares_accepted"] + w["shares_rejected"] for w in visible)
    # The miners' own H/s over the run, for the workers these keys can see; the fleet's
    # figure report["hashrate"] is the same quantity for every worker.
    measured = hashes / report["elapsed"]
    assert report["hashrate"] == pytest.approx(report["hashes"] / report["elapsed"])
    estimated = pool_work / report["elapsed"]
    assert shares >= MIN_SHARES, f"{shares} shares: too few for a 25% comparison"
    assert estimated == pytest.approx(measured, rel=0.25), (estimated, measured, shares)


async def test_hash_rate_info_matches_the_accounting_read_model(
    world: World, frozen: tuple[httpx.AsyncClient, float]
) -> None:
    fc, now = frozen
    body = {"mining_user_name": "bob", **BTC}
    info = (await ok(fc, "/v2/hash_rate/info", body, world.keys["acme"]))["info"]
    async with world.ctx.engine.connect() as conn:
        for field, seconds in WINDOWS.items():
            expected = await stats.rates(conn, CURRENCY, now, seconds, account="bob")
            assert info[field] == pytest.approx(expected.hashrate, rel=1e-12)
        day = await stats.rates(conn, CURRENCY, now, 86400, account="bob")
    assert info["h24_stale_hash_rate"] == pytest.approx(day.stale_hashrate, rel=1e-12)
    assert info["local_hash_rate"] == info["h24_local_hash_rate"] == 0.0


async def test_history_adds_up_to_the_day(
    world: World, client: httpx.AsyncClient, frozen: tuple[httpx.AsyncClient, float]
) -> None:
    fc, _ = frozen
    key = world.keys["acme"]
    info = (await ok(fc, "/v2/hash_rate/info", {"mining_user_name": "alice", **BTC}, key))["info"]
    body = {"mining_user_name": "alice", "interval": 600, "duration": 86400, **BTC}
    history = (await ok(fc, "/v2/hash_rate/history", body, key))["history"]
    work = sum(h["hash_rate"] * 600 for h in history)
    assert work == pytest.approx(info["h24_hash_rate"] * (86400 - 0.5), rel=1e-9)
    stale = sum(h["stale_hash_rate"] * 600 for h in history)
    assert stale == pytest.approx(info["h24_stale_hash_rate"] * (86400 - 0.5), rel=1e-9)
    assert max(h["online_miners"] for h in history) == 2  # rig1 and rig2
    # Rewards: what alice's blocks credited her (blocks that went stale are not).
    async with world.ctx.engine.connect() as conn:
        credited = await conn.scalar(
            select(func.sum(m.ledger.c.amount)).where(
                m.ledger.c.account == "alice",
                m.ledger.c.ref.like("block:%:credit"),
                m.ledger.c.bucket == "immature",
                m.ledger.c.block_id.in_(
                    select(m.blocks.c.id).where(m.blocks.c.status.in_(("confirmed", "unconfirmed")))
                ),
            )
        )
    # Credits are booked when the accounting flush writes them, which may be well after
    # the run's last share (the stopped clock): the rewards are read up to now.
    now_history = (await ok(client, "/v2/hash_rate/history", body, key))["history"]
    rewarded = sum(round(h["normal_reward"] * 1e8) for h in now_history)
    assert rewarded == int(credited) > 0


async def test_balances_are_the_ledger(world: World, client: httpx.AsyncClient) -> None:
    for user, owner in OWNER.items():
        body = {"mining_user_name": user, **BTC}
        info = (await ok(client, "/v2/assets/balance", body, world.keys[owner]))["balance_info"]
        async with world.ctx.engine.connect() as conn:
            ledger = (await balances(conn, CURRENCY, world.ctx.clock()))[user]
        got = {k: round(v * 100_000_000) for k, v in info.items()}
        assert got == {
            "balance": ledger.balance,
            "immature_balance": ledger.immature_balance,
            "paid": ledger.paid,
            "total_income": ledger.total_income,
            "yesterday_income": ledger.yesterday_income,
            "estimated_today_income": ledger.estimated_today_income,
        }
        assert ledger.paid > 0 and ledger.total_income > 0


async def test_transactions_are_the_ledger_movements(
    world: World, client: httpx.AsyncClient
) -> None:
    for user, owner in OWNER.items():
        body = {"mining_user_name": user, **BTC}
        items = (await ok(client, "/v2/assets/transactions/list", body, world.keys[owner]))[
            "transactions"
        ]
        async with world.ctx.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(m.ledger.c.id, m.ledger.c.amount).where(
                        m.ledger.c.account == user, m.ledger.c.bucket == "balance"
                    )
                )
            ).all()
        assert {t["id"]: round(t["changed_balance"] * 1e8) for t in items} == dict(rows)
        stamps = [t["created_at"] for t in items]
        assert stamps == sorted(stamps, reverse=True)
        revenue = [t for t in items if t["type"].startswith("revenue")]
        for t in revenue:  # the split of each credit adds up to it
            extra = t["mining_extra"]
            assert round((extra["pps"] + extra["tx_fee"]) * 1e8) == round(
                t["changed_balance"] * 1e8
            )
            assert extra["hash_rate"] > 0 and extra["mining_date"] % 86400 == 0


async def test_block_count_is_the_nodes(world: World, client: httpx.AsyncClient) -> None:
    key = world.keys["acme"]
    seen: list[dict[str, Any]] = []
    page = 1
    while True:
        data = await ok(client, "/v2/blocks/paging", {"page": page, "pagesize": 3, **BTC}, key)
        seen += data["blocklist"]
        if len(data["blocklist"]) < 3:
            break
        page += 1
    assert len(seen) == data["sum"] == len({b["block_hash"] for b in seen})
    async with world.ctx.engine.connect() as conn:
        stored = (await conn.execute(select(m.blocks.c.hash, m.blocks.c.income))).all()
    on_chain = {}
    for block_hash, income in stored:
        try:
            header = world.node.call("getblockheader", block_hash)
        except Exception:  # not known to the node at all
            continue
        if header.get("confirmations", 0) >= 1:
            on_chain[block_hash] = (header["height"], income)
    assert data["sum"] == len(on_chain) == world.pool.stats.blocks_accepted
    for b in seen:
        height, income = on_chain[b["block_hash"]]
        assert b["height"] == height
        assert world.node.call("getblockhash", height) == b["block_hash"]
        assert round(b["total_reward"] * 1e8) == income
        # Regtest halves the 50-coin subsidy every 150 blocks (the run mines hundreds).
        assert round(b["base_reward"] * 1e8) == (50 * 10**8) >> (height // 150)
        assert b["settle_timestamp"] >= b["timestamp"] > 0


async def test_user_blocks_are_the_users_credits(world: World, client: httpx.AsyncClient) -> None:
    body = {"mining_user_name": "alice", **BTC}
    listed = (await ok(client, "/v2/blocks/user", body, world.keys["acme"]))["blocklist"]
    async with world.ctx.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(m.blocks.c.hash, func.sum(m.ledger.c.amount))
                .join(m.ledger, m.ledger.c.block_id == m.blocks.c.id)
                .where(
                    m.ledger.c.account == "alice",
                    m.ledger.c.ref.like("block:%:credit"),
                    m.blocks.c.status.in_(("confirmed", "unconfirmed")),
                )
                .group_by(m.blocks.c.hash)
            )
        ).all()
    assert {b["block_hash"]: round(b["total_reward"] * 1e8) for b in listed} == dict(rows)
    # mining_reward keeps only the credits of at least that many base units.
    floor = sorted(dict(rows).values())[len(rows) // 2]
    body["mining_reward"] = floor
    big = (await ok(client, "/v2/blocks/user", body, world.keys["acme"]))["blocklist"]
    assert {b["block_hash"] for b in big} == {h for h, v in rows if v >= floor}
