"""SiaMining contract tests against the shared real pool run.

The document's sample responses are copied below verbatim: a response conforms when it
has every key a sample has, with the same JSON type (int and float told apart), nested
lists and objects alike. Values are checked against their sources: the node, the ledger,
the store and the built-in miners' own report.

Two apps are used: the shared server (`client`, the real clock), and this dialect alone
with its clock frozen just after the mining run (`frozen`), so every time window is known
exactly whenever the test runs (the run lasts about 25 s; earlier test modules may take
minutes, after which live windows no longer cover it).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import func, select

from hashquarry.accounting.ledger import balances
from hashquarry.api import siamining
from hashquarry.api.context import ApiContext
from hashquarry.api.siamining_network import coin_string, subsidy
from hashquarry.payouts.engine import payout_entries
from hashquarry.store import models as m

from .conftest import ADDRESS_WORKERS, MIN_SHARES, World

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The document's sample responses, verbatim (shared/seeds: SiaMining API).
SAMPLES: dict[str, Any] = {
    name: json.loads(text)
    for name, text in {
        "network": """{"block_height": 63530, "block_reward": 236469,
            "hash_rate": 14122541938687, "difficulty": "8080167148533014",
            "next_difficulty": 8.8479801164007e+15, "blocks_to_retarget": 470,
            "time_to_retarget": 268909}""",
        "market": """{"btc_price": 0.00000096, "usd_price": 0.000551}""",
        "pool": """{"hash_rate": 5613303033583, "active_addresses": 988,
            "hashes": 1.1229951969152e+19, "blocks_found": 1650, "pps_fee": 0.03,
            "hash_price": 2.8387399144539e-11}""",
        "summary": """{"address":
            "00091d9619f1e697ddf80e751b68baffc444e7b59eeb54e131f136711d84aebf3bc6e0b820af",
            "hashes": 1.9618752941261e+14, "valid_shares": 11693688, "stale_shares": 13912,
            "invalid_shares": 107348, "blocks_found": 1,
            "balance": "189.416961314711681210000000",
            "paid": "6214.094623445710594630000000", "last_share_time": 1470419569,
            "intervals": [{"interval": 300, "hash_rate": 1309965025, "valid_shares": 23424,
                "stale_shares": 0, "invalid_shares": 0, "rewards": 11.155950011433}]}""",
        "hashrate-history": """[[1510498802, 40447843000], [1510499700, 44483590000],
            [1510500601, 45280275000]]""",
        "payouts": """[{"time": 1470414317, "amount": "2062.912422526560652140000000",
            "txid": "4ab9f415f7a67cfc9fa3c0b93867f458fb826fa690e3b9b90bf69949f03c3222"}]""",
        "workers": """[{"name": "my_worker", "last_share_time": 1470419569,
            "intervals": [{"interval": 300, "hash_rate": 901943132, "valid_shares": 16128,
                "stale_shares": 0, "invalid_shares": 0, "rewards": 7.6811459095115}]}]""",
    }.items()
}
ADDRESS_ENDPOINTS = ("summary", "hashrate-history", "payouts", "workers")
COIN_DECIMALS = 8


def conforms(actual: Any, sample: Any, where: str = "$") -> None:
    """`actual` has the sample's shape: its keys and JSON types, recursively."""
    if isinstance(sample, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in sample.items():
            assert key in actual, f"{where}: missing {key!r}"
            conforms(actual[key], value, f"{where}.{key}")
    elif isinstance(sample, list) and sample and not isinstance(sample[0], dict | list):
        # a tuple, as a hashrate-history point [timestamp, hashrate]
        assert isinstance(actual, list) and len(actual) == len(sample), f"{where}: {actual!r}"
        for i, (a, s) in enumerate(zip(actual, sample, strict=True)):
            conforms(a, s, f"{where}[{i}]")
    elif isinstance(sample, list):
        assert isinstance(actual, list), f"{where}: expected an array, got {actual!r}"
        for i, item in enumerate(actual):
            conforms(item, sample[0], f"{where}[{i}]")
    else:
        assert type(actual) is type(sample), (
            f"{where}: {actual!r} is {type(actual).__name__}, the document has "
            f"{type(sample).__name__} ({sample!r})"
        )


def coin_decimal_string(value: str) -> bool:
    whole, _, frac = value.partition(".")
    return whole.isdigit() and frac.isdigit() and len(frac) == COIN_DECIMALS


def hashes_tolerance(shares: int) -> float:
    """Relative tolerance between credited work and hashes really done. Shares found in H
    hashes at difficulty d are ~Poisson(H / (d 2^32)): the credited work's relative
    standard deviation is 1/sqrt(shares). The shared run mines at least MIN_SHARES (256)
    per compared group, so a flat 25% is four of those."""
    assert shares >= MIN_SHARES, f"{shares} shares: too few for a 25% comparison"
    return 0.25


def dialect_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI()
    app.include_router(siamining.router(ctx))
    siamining.install(app)
    return app


async def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sia.test")


@dataclasses.dataclass
class Frozen:
    client: httpx.AsyncClient
    now: float
    first_share: float
    last_share: float


async def _frozen(world: World, now: float) -> tuple[httpx.AsyncClient, float, float]:
    async with world.ctx.engine.connect() as conn:
        first = await conn.scalar(select(func.min(m.account_minutes.c.first_share)))
        last = await conn.scalar(select(func.max(m.account_minutes.c.last_share)))
    app = dialect_app(dataclasses.replace(world.ctx, clock=lambda: now))
    return await asgi_client(app), float(first), float(last)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def frozen(world: World) -> AsyncIterator[Frozen]:
    """The dialect with its clock at the first minute boundary after the last share."""
    async with world.ctx.engine.connect() as conn:
        last = float(await conn.scalar(select(func.max(m.account_minutes.c.last_share))))
    now = (math.floor(last / 60) + 1) * 60.0
    client, first, last = await _frozen(world, now)
    async with client:
        yield Frozen(client, now, first, last)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def paid(world: World) -> list[dict[str, Any]]:
    """The address miner's payouts: the shared run's payout may have paid it already;
    otherwise withdraw its balance now."""
    addr, coin = world.address_miner, world.ctx.coin
    async with world.ctx.engine.connect() as conn:
        entries = await payout_entries(conn, coin, addr)
    if not entries:
        assert world.pool.payouts is not None
        await world.pool.payouts.withdraw([addr])
        async with world.ctx.engine.connect() as conn:
            entries = await payout_entries(conn, coin, addr)
    assert entries, "the address miner has no payout to show"
    return entries


def worker_report(world: World) -> dict[str, Any]:
    """The miner's own counts for the address, summed over its workers."""
    workers = [
        w for n, w in world.miner_report["workers"].items()
        if n.split(".", 1)[0] == world.address_miner
    ]  # fmt: skip
    assert len(workers) == len(ADDRESS_WORKERS)
    fields = ("shares_accepted", "shares_rejected", "accepted_difficulty", "hashes")
    return {f: sum(w[f] for w in workers) for f in fields}


# -- network --------------------------------------------------------------------------------


async def test_network_matches_the_node(world: World, client: httpx.AsyncClient) -> None:
    tip = world.node.call("getbestblockhash")
    got = (await client.get("/api/v1/network")).json()
    info = world.node.call("getblockchaininfo")
    hashps = world.node.call("getnetworkhashps")
    assert world.node.call("getbestblockhash") == tip, "the chain moved during the test"
    conforms(got, SAMPLES["network"])
    assert got["block_height"] == info["blocks"]
    assert float(got["difficulty"]) == info["difficulty"]
    assert "e" not in got["difficulty"].lower()
    # In coins, the document's unit: regtest halves every 150 blocks.
    assert got["block_reward"] == subsidy(info["blocks"] + 1, 150) / 100_000_000
    assert got["hash_rate"] == round(hashps)
    # Regtest never retargets: the same difficulty, nothing to wait for, said so.
    assert info["chain"] == "regtest"
    assert got["next_difficulty"] == info["difficulty"]
    assert (got["blocks_to_retarget"], got["time_to_retarget"]) == (0, 0)
    assert got["retargets"] is False


# -- pool -----------------------------------------------------------------------------------


async def test_pool_contract(client: httpx.AsyncClient) -> None:
    got = (await client.get("/api/v1/pool")).json()
    conforms(got, SAMPLES["pool"])
    assert got["hash_rate"] >= 0 and got["hashes"] > 0


async def test_pool_figures(world: World, frozen: Frozen) -> None:
    got = (await frozen.client.get("/api/v1/pool")).json()
    conforms(got, SAMPLES["pool"])
    report = world.miner_report
    # Blocks found: the blocks the node accepted, each on the node's main chain.
    accepted = [b for b in world.pool.stats.blocks if b.accepted]
    assert got["blocks_found"] == world.pool.stats.blocks_accepted == len(accepted)
    for b in accepted:
        assert world.node.call("getblockhash", b.height) == b.hash
    # Work: exactly the accepted difficulty the miners were told was accepted...
    credited = report["accepted_difficulty"] * 2**32
    if report["submit_errors"] == 0:
        assert got["hashes"] == pytest.approx(credited, rel=1e-9)
    else:  # a share in flight at the stop: accepted by the pool, unknown to the miner
        assert got["hashes"] >= credited * (1 - 1e-9)
    # ... and, statistically, the hashes the miners really did.
    tol = hashes_tolerance(report["shares_accepted"])
    assert got["hashes"] == pytest.approx(report["hashes"], rel=tol)
    # The 10-minute rate: the run lies inside the window, which is exactly 600 s here.
    assert frozen.now - 600 <= frozen.first_share
    assert abs(got["hash_rate"] - got["hashes"] / 600) <= 1
    assert got["active_addresses"] == len({*world.users, world.address_miner})
    fee = world.ctx.settings.accounting.fee_bps / 10_000
    assert got["pps_fee"] == fee == 0.01
    # Coins per hash: the next subsidy after the fee over the hashes a block needs.
    difficulty = world.node.call("getblockchaininfo")["difficulty"]
    height = world.node.call("getblockcount")
    expected = subsidy(height + 1, 150) / 1e8 * (1 - fee) / (difficulty * 2**32)
    assert got["hash_price"] == pytest.approx(expected, rel=1e-9)


# -- address: summary, workers, history, payouts --------------------------------------------


async def test_every_address_endpoint_has_the_samples_shape(
    world: World, client: httpx.AsyncClient, paid: list[dict[str, Any]]
) -> None:
    for endpoint in ADDRESS_ENDPOINTS:
        resp = await client.get(f"/api/v1/addresses/{world.address_miner}/{endpoint}")
        assert resp.status_code == 200, resp.text
        assert resp.json(), f"{endpoint}: nothing to check the types of"
        conforms(resp.json(), SAMPLES[endpoint], endpoint)


async def test_summary_matches_the_miner_and_the_ledger(
    world: World, frozen: Frozen, paid: list[dict[str, Any]]
) -> None:
    addr = world.address_miner
    got = (await frozen.client.get(f"/api/v1/addresses/{addr}/summary")).json()
    conforms(got, SAMPLES["summary"])
    mine = worker_report(world)
    assert got["address"] == addr
    # The same shares on both sides: the work the miner was told was accepted.
    assert got["valid_shares"] == mine["shares_accepted"]
    assert got["stale_shares"] + got["invalid_shares"] == mine["shares_rejected"]
    assert got["hashes"] == pytest.approx(mine["accepted_difficulty"] * 2**32, rel=1e-9)
    assert frozen.now - 60 <= got["last_share_time"] <= frozen.now
    found = [b for b in world.pool.stats.blocks if b.accepted and b.account == addr]
    assert got["blocks_found"] == len(found)
    by_interval = {i["interval"]: i for i in got["intervals"]}
    assert sorted(by_interval) == [300, 900, 3600, 10800, 43200, 86400]
    # The run (about a minute) lies inside every interval, and at a minute boundary a window
    # covers exactly its length: hash_rate x interval is the work, whatever the interval.
    assert frozen.now - 300 <= frozen.first_share
    for seconds, rec in by_interval.items():
        assert rec["valid_shares"] == got["valid_shares"]
        assert rec["stale_shares"] == got["stale_shares"]
        assert abs(rec["hash_rate"] - got["hashes"] / seconds) <= 1
    # Against the hashes the miner really did (its own count), within the statistics of
    # its share count: windows longer than the run spread its work, so compare work.
    rate = by_interval[300]["hash_rate"]
    tol = hashes_tolerance(mine["shares_accepted"])
    assert rate * 300 == pytest.approx(mine["hashes"], rel=tol)
    # Money, as the ledger has it.
    async with world.ctx.engine.connect() as conn:
        ledger = (await balances(conn, world.ctx.coin, world.ctx.clock()))[addr]
    assert got["balance"] == coin_string(ledger.balance)
    assert got["paid"] == coin_string(ledger.paid)
    assert got["immature_balance"] == coin_string(ledger.immature_balance)
    assert coin_decimal_string(got["balance"]) and coin_decimal_string(got["paid"])


async def test_summary_rewards_are_the_ledgers_income(
    world: World, client: httpx.AsyncClient
) -> None:
    got = (await client.get(f"/api/v1/addresses/{world.address_miner}/summary")).json()
    async with world.ctx.engine.connect() as conn:
        ledger = (await balances(conn, world.ctx.coin, world.ctx.clock()))[world.address_miner]
    # The whole run was within the last day: the day's rewards are everything it earned
    # (credits of blocks still on the chain, matured or not).
    day = next(i for i in got["intervals"] if i["interval"] == 86400)
    assert day["rewards"] == pytest.approx(
        (ledger.total_income + ledger.immature_balance) / 1e8, rel=1e-12
    )
    assert day["rewards"] > 0
    rewards = [i["rewards"] for i in got["intervals"]]
    assert rewards == sorted(rewards), "a longer interval cannot have earned less"


async def test_workers_match_the_summary(world: World, frozen: Frozen) -> None:
    addr = world.address_miner
    workers = (await frozen.client.get(f"/api/v1/addresses/{addr}/workers")).json()
    summary = (await frozen.client.get(f"/api/v1/addresses/{addr}/summary")).json()
    conforms(workers, SAMPLES["workers"])
    # The miner ran `<address>.cpu`, `.cpu2`, ...: the address's workers, by name.
    assert [w["name"] for w in workers] == sorted(ADDRESS_WORKERS)
    assert max(w["last_share_time"] for w in workers) == summary["last_share_time"]
    # The workers did all the address's work between them: their figures add up to the
    # address's (each hash rate rounded on its own: within one H/s per worker).
    for i, whole in enumerate(summary["intervals"]):
        mine = [w["intervals"][i] for w in workers]
        assert {m["interval"] for m in mine} == {whole["interval"]}
        for field in ("valid_shares", "stale_shares", "invalid_shares"):
            assert sum(m[field] for m in mine) == whole[field], (whole["interval"], field)
        assert abs(sum(m["hash_rate"] for m in mine) - whole["hash_rate"]) <= len(mine)
        assert sum(m["rewards"] for m in mine) == pytest.approx(whole["rewards"], rel=1e-9)
        assert all(m["valid_shares"] > 0 for m in mine), "every worker mined"


async def test_hashrate_history_integrates_to_the_work(world: World) -> None:
    addr = world.address_miner
    async with world.ctx.engine.connect() as conn:
        last = float(await conn.scalar(select(func.max(m.account_minutes.c.last_share))))
    now = (math.floor(last / 900) + 1) * 900.0  # the first 15-minute boundary after it
    client, first, _ = await _frozen(world, now)
    async with client:
        points = (await client.get(f"/api/v1/addresses/{addr}/hashrate-history")).json()
        summary = (await client.get(f"/api/v1/addresses/{addr}/summary")).json()
    conforms(points, SAMPLES["hashrate-history"])
    stamps = [ts for ts, _ in points]
    assert stamps == list(range(stamps[0], int(now), 900)), "every 15 min up to now"
    assert stamps[0] <= first
    assert sum(rate * 900 for _, rate in points) == pytest.approx(summary["hashes"], rel=1e-3)


async def test_payouts_are_the_wallets(
    world: World, client: httpx.AsyncClient, paid: list[dict[str, Any]]
) -> None:
    addr = world.address_miner
    got = (await client.get(f"/api/v1/addresses/{addr}/payouts")).json()
    conforms(got, SAMPLES["payouts"])
    assert [p["txid"] for p in got] == [e["tx_id"] for e in paid]
    times = [p["time"] for p in got]
    assert times == sorted(times, reverse=True)
    for p in got:
        assert coin_decimal_string(p["amount"])
        tx = world.node.call("gettransaction", p["txid"])
        sent = sum(-d["amount"] for d in tx["details"] if d["category"] == "send")
        to_addr = [d for d in tx["details"] if d.get("address") == addr]
        assert to_addr, f"{p['txid']} pays nothing to {addr}"
        assert any(f"{abs(d['amount']):.8f}" == p["amount"] for d in to_addr)
        assert sent > 0
    summary = (await client.get(f"/api/v1/addresses/{addr}/summary")).json()
    total = sum(int(p["amount"].replace(".", "")) for p in got)
    assert coin_string(total) == summary["paid"]  # the pool pays the tip: nothing deducted


async def test_registered_users_are_not_public(world: World, client: httpx.AsyncClient) -> None:
    """Registered mining users' data is for their owners' keys: their wallet addresses are
    not found here, by any endpoint."""
    for user, wallet in world.wallets.items():
        for endpoint in ADDRESS_ENDPOINTS:
            resp = await client.get(f"/api/v1/addresses/{wallet}/{endpoint}")
            assert resp.status_code == 404, (user, endpoint, resp.text)
            assert resp.json()["error"] == "not_found"


async def test_openapi_describes_the_dialect(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in ("network", "market", "pool"):
        assert "get" in paths[f"/api/v1/{path}"]
    for endpoint in ADDRESS_ENDPOINTS:
        assert "get" in paths[f"/api/v1/addresses/{{address}}/{endpoint}"]
    schemas = spec["components"]["schemas"]
    for model, sample in (
        ("SiaNetwork", "network"),
        ("SiaMarket", "market"),
        ("SiaPool", "pool"),
        ("SiaSummary", "summary"),
    ):
        assert set(SAMPLES[sample]) <= set(schemas[model]["properties"]), model
    assert set(SAMPLES["summary"]["intervals"][0]) <= set(schemas["SiaInterval"]["properties"])
    assert set(SAMPLES["payouts"][0]) <= set(schemas["SiaPayout"]["properties"])
    assert set(SAMPLES["workers"][0]) <= set(schemas["SiaWorker"]["properties"])
