"""One real pool run shared by the API contract tests.

A regtest node, the pool with its store, registered owners and mining users with
wallets, built-in miners (registered users and one address-mode miner), blocks
found and matured, one payout made. The API app is then served in-process over
ASGI (and over real HTTP where a test needs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from hashquarry.api.app import create_app
from hashquarry.api.context import ApiContext
from hashquarry.chain.regtest import RegtestNode, free_port
from hashquarry.miner.runner import MinerOptions, run_miner
from hashquarry.pool import Pool
from hashquarry.shares.events import ShareEvent
from tests.e2e.conftest import pool_settings, start_pool, stop_pool
from tests.e2e.helpers import wait_for

log = logging.getLogger(__name__)
T = TypeVar("T")

ALL_SCOPES = (
    "read_hashrate,read_revenue,read_payments,manage_accounts,manage_payouts,"
    "manage_distributions,manage_schedulers"
)
# The address-mode miner runs several workers, so its address (one group the hashrate
# tests compare) gathers shares as fast as the registered users' four workers (the other).
ADDRESS_WORKERS = ("cpu", "cpu2", "cpu3", "cpu4")
# Shares each compared group must have: a hashrate estimated from N shares of equal
# difficulty is off by about 1/sqrt(N), so with 256 a flat 25% tolerance is four standard
# deviations. Counted as effective shares (see `world`), and a few more are awaited,
# since shares in flight at the stop may never reach the miner's count.
MIN_SHARES = 256
# The world's setup runs a pool for minutes (~220 s here, more on a busy CI
# machine): the first test that asks for it gets this budget instead of pytest's
# per-test default. Each wait below has its own, shorter bound.
WORLD_TIMEOUT = 1200


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and "world" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.timeout(WORLD_TIMEOUT))


@dataclass
class World:
    node: RegtestNode
    pool: Pool
    app: FastAPI
    ctx: ApiContext
    keys: dict[str, str]  # owner -> API secret (all scopes)
    users: dict[str, str]  # mining user -> owner
    wallets: dict[str, str]  # mining user -> address
    address_miner: str  # an address-mode account (its own payout address)
    miner_report: dict[str, Any]
    payout: Any
    extra: dict[str, Any] = field(default_factory=dict)


async def step(aw: Awaitable[T], what: str, seconds: float = 120.0) -> T:
    """One setup step, bounded: a hang names itself instead of eating the budget."""
    started = time.monotonic()
    try:
        return await asyncio.wait_for(aw, seconds)
    except TimeoutError:
        raise AssertionError(f"world setup: {what} did not finish in {seconds:.0f} s") from None
    finally:
        log.info("world setup: %s took %.1f s", what, time.monotonic() - started)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def world() -> AsyncIterator[World]:
    node = RegtestNode().start()
    node.mine(101)
    data_dir = Path(tempfile.mkdtemp(prefix="hashquarry-api-"))
    settings = pool_settings(
        node, data_dir=data_dir,
        accounting={"scheme": "pplns", "pplns_n": 1e8, "maturity": 2, "fee_bps": 100,
                    "shift_span": 0.002},
        accounts_cfg={"require_registration": True, "allow_address_mode": True},
        # On regtest every share is also a block the pool submits, and the node keeps up
        # with about 5 submitblock calls a second (at 8 a second it stalls for minutes):
        # 8 connections with a share every 1.6 s each stay at that rate. The start
        # difficulty is about what that takes from one CPU miner's 8 connections, so the
        # run starts at its rate instead of ramping up to it (nor bursting past it).
        ports=[{"port": 0, "difficulty": 0.00005, "host": "127.0.0.1"}],
        vardiff={"target_interval": 1.6, "retarget_window": 5.0},
    )  # fmt: skip
    pool = await start_pool(settings, start=False)
    accounts = pool.accounts
    assert accounts is not None
    keys: dict[str, str] = {}
    users = {"alice": "acme", "bob": "acme", "carol": "other"}
    wallets: dict[str, str] = {}
    for owner in ("acme", "other"):
        await accounts.create_owner(owner)
        _, keys[owner] = await accounts.create_api_key(owner, ALL_SCOPES)
    for user, owner in users.items():
        await accounts.add_mining_user(owner, user, f"{user} of {owner}")
        wallets[user] = node.call("getnewaddress")
        await accounts.update_wallet(owner, user, "bitcoin", wallets[user], 1)
    address_miner = node.call("getnewaddress")
    await pool.start()
    try:
        url = f"stratum+tcp://127.0.0.1:{pool.ports[0]}"
        miners = [f"{u}.rig1" for u in users] + ["alice.rig2"]
        miners += [f"{address_miner}.{w}" for w in ADDRESS_WORKERS]
        # Every accepted share's difficulty, per compared group: vardiff varies it, and
        # what bounds a hashrate estimate's spread is the effective number of shares,
        # (sum d)^2 / sum d^2, which equals the count only when all difficulties agree.
        feed: asyncio.Queue[ShareEvent] = asyncio.Queue()
        pool.share_listeners.append(feed)
        sums = {"users": [0.0, 0.0], "address": [0.0, 0.0]}
        seen: set[str] = set()

        def drain() -> None:
            while not feed.empty():
                ev = feed.get_nowait()
                if not ev.accepted:
                    continue
                seen.add(ev.account)
                group = sums["address" if ev.account == address_miner else "users"]
                group[0] += ev.difficulty
                group[1] += ev.difficulty * ev.difficulty

        def effective_shares() -> float:
            drain()
            return min(s * s / q if q else 0.0 for s, q in sums.values())

        def done() -> bool:
            drain()
            return pool.stats.blocks_accepted >= 8 and {*users, address_miner} <= seen

        stop = asyncio.Event()
        task = asyncio.create_task(run_miner(MinerOptions(url=url, users=miners), stop=stop))
        await wait_for(done, 300, "blocks with shares from every miner")
        # Keep mining until each group the hashrate tests compare has its shares.
        await wait_for(
            lambda: effective_shares() >= MIN_SHARES + 16,
            600,
            f"{MIN_SHARES} effective shares for the registered users and for the address",
        )
        stop.set()
        report = await asyncio.wait_for(task, 30)
        pool.share_listeners.remove(feed)
        assert pool.accounting is not None
        # Every share and block credit in the store before any test reads it: the writer
        # may lag the run (each block found is credited over the whole PPLNS window).
        await step(pool.accounting.flush(), "the accounting flush")
        await step(asyncio.to_thread(node.mine, 3), "mining 3 blocks")
        assert pool.payouts is not None
        await step(pool.accounting.track_once(), "the block tracker")
        payout = await step(pool.payouts.run_once(), "the payout")
        await step(asyncio.to_thread(node.mine, 1), "mining a block")
        await step(pool.payouts.track(), "following the payout")
        ctx = ApiContext.for_pool(pool)
        # No response cache here: tests change state and read it back at once.
        app = create_app(ctx, rate=1000, burst=1000, cache_ttl=0)
        yield World(node, pool, app, ctx, keys, users, wallets, address_miner, report, payout)
    finally:
        await stop_pool(pool)
        node.close()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest_asyncio.fixture(loop_scope="session")
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=world.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pool.test") as c:
        yield c


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """`app` over real HTTP on a free loopback port, in this event loop (so it reads the
    world's store as the in-process client does); yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", loop="none",
                       log_level="warning", access_log=False)
    )  # fmt: skip
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started, "the API server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
