"""Payouts through the real regtest wallet, killed at every step: never twice, never lost.

Each payout runs in a separate `hashquarry payout ...` process that is killed (exit
137, as by kill -9) at one step, and is recovered by `hashquarry payout reconcile` or
by the next `payout run`. Every check compares the store with the wallet (`audit`):
each payout's ledger debits equal what its wallet transaction sent to each address,
no payout id is in two wallet transactions, and each address received exactly the
balance it earned.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.chain.regtest import RegtestNode
from hashquarry.miner.runner import MinerOptions, run_miner
from hashquarry.payouts.tables import payouts
from hashquarry.store.engine import default_url, make_engine
from hashquarry.store.migrate import upgrade_async

from .conftest import pool_settings, start_pool, stop_pool
from .helpers import wait_for
from .payout_kit import audit, current_balances, received, seed

pytestmark = pytest.mark.e2e


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hashquarry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _env(node: RegtestNode, data_dir: Path, pool_address: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("HASHQUARRY_PAYOUT_FAULT", None)
    env.update({
        "HASHQUARRY_NODE__URL": node.rpc_url, "HASHQUARRY_NODE__USER": node.user,
        "HASHQUARRY_NODE__PASSWORD": node.password,
        "HASHQUARRY_POOL__ADDRESS": pool_address,
        "HASHQUARRY_POOL__NETWORK": "regtest", "HASHQUARRY_DATA_DIR": str(data_dir),
        "HASHQUARRY_PAYOUTS__ADDRESS_THRESHOLD": "1",
    })  # fmt: skip
    return env


def _fund(node: RegtestNode) -> None:
    if node.call("getbalance") < 200:
        node.mine(110)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = default_url(tmp_path)
    await upgrade_async(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _owed(store: AsyncEngine, accounts: list[str]) -> int:
    """What these accounts are still owed (the pool's own account pays the tips)."""
    bals = await current_balances(store)
    return sum(abs(bals.get(a, 0)) for a in accounts)


async def _statuses(store: AsyncEngine) -> list[str]:
    async with store.connect() as conn:
        return sorted((await conn.execute(select(payouts.c.status))).scalars())


async def test_withdraw_killed_at_each_step(regtest: RegtestNode, tmp_path: Path) -> None:
    """Address-mode miners earn under PPLNS in a real pool run; each withdraws alone."""
    _fund(regtest)
    addresses = [regtest.call("getnewaddress") for _ in range(4)]
    settings = pool_settings(
        regtest,
        data_dir=tmp_path,
        accounting={"scheme": "pplns", "pplns_n": 1e8, "maturity": 2, "fee_bps": 100},
    )
    pool = await start_pool(settings)
    try:
        stop = asyncio.Event()
        url = f"stratum+tcp://127.0.0.1:{pool.ports[0]}"
        task = asyncio.create_task(
            run_miner(MinerOptions(url=url, users=[f"{a}.rig" for a in addresses]), stop=stop)
        )
        await wait_for(lambda: pool.stats.blocks_accepted >= 6, 180, "blocks")
        stop.set()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(regtest.mine, 3)
        assert pool.accounting is not None
        await pool.accounting.track_once()
    finally:
        await stop_pool(pool)

    store = make_engine(default_url(tmp_path))
    try:
        start = await current_balances(store)
        assert all(start.get(a, 0) > 0 for a in addresses), start
        before = {a: received(regtest, a) for a in addresses}
        env = _env(regtest, tmp_path, settings.pool.address)
        points = ["after_intent", "before_send", "after_send", "after_record"]
        for address, point in zip(addresses, points, strict=True):
            crashed = _cli(env | {"HASHQUARRY_PAYOUT_FAULT": point}, "payout", "withdraw", address)
            assert crashed.returncode == 137, crashed.stderr[-1500:]
            # Debited by the intent, whatever happened next; the wallet has it at most once.
            assert (await current_balances(store)).get(address, 0) == 0
            await audit(store, regtest, settled=False)
            # The crashed payer is gone: its unanswered sendmany can be judged at once.
            rec = _cli(env, "payout", "reconcile", "--settle-after", "0")
            assert rec.returncode == 0, rec.stderr[-1500:]
            paid = point in ("after_send", "after_record")
            assert orjson.loads(rec.stdout)["reconciled"] == (0 if point == "after_record" else 1)
            if not paid:
                # Never reached the wallet: the intent is reversed and the balance is back.
                assert (await current_balances(store))[address] == start[address]
                again = _cli(env, "payout", "withdraw", address)
                assert again.returncode == 0, again.stderr[-1500:]
            else:
                again = _cli(env, "payout", "withdraw", address)
                assert again.returncode == 2 and "nothing to withdraw" in again.stderr
            assert (await current_balances(store)).get(address, 0) == 0
            assert received(regtest, address) - before[address] == start[address]

        result = await audit(store, regtest)
        assert result.sent == 4 and result.failed == 2  # two reversed intents, repaid
        for a in addresses:
            assert result.paid_to[a] == received(regtest, a) - before[a] == start[a]

        # Confirmations are followed on the node.
        regtest.mine(1)
        tracked = _cli(env, "payout", "run")
        assert tracked.returncode == 0, tracked.stderr[-1500:]
        assert orjson.loads(tracked.stdout)["confirmed"] == 4
        assert await _statuses(store) == ["confirmed"] * 4 + ["failed"] * 2
    finally:
        await store.dispose()


async def test_batched_payout_run_killed_at_each_step(
    regtest: RegtestNode, store: AsyncEngine, tmp_path: Path
) -> None:
    """The automatic path: one sendmany to several addresses, killed at every step, and
    recovered by the next `payout run` (which reconciles first)."""
    _fund(regtest)
    addresses = [regtest.call("getnewaddress") for _ in range(3)]
    env = _env(regtest, tmp_path, regtest.call("getnewaddress"))
    earned = dict.fromkeys(addresses, 0)
    points = ["after_intent", "before_send", "after_send", "after_record"]
    for n, point in enumerate(points):
        amounts = {a: 10_000_000 * (n + 1) + 1_000 * i + 7 for i, a in enumerate(addresses)}
        await seed(store, amounts, tag=f"round{n}")
        for a, v in amounts.items():
            earned[a] += v
        crashed = _cli(env | {"HASHQUARRY_PAYOUT_FAULT": point}, "payout", "run")
        assert crashed.returncode == 137, crashed.stderr[-1500:]
        assert await _owed(store, addresses) == 0
        await audit(store, regtest, settled=False)

        rerun = _cli(env, "payout", "run", "--settle-after", "0")
        assert rerun.returncode == 0, rerun.stderr[-1500:]
        out = orjson.loads(rerun.stdout)
        if point in ("after_intent", "before_send"):
            # Reversed, then paid again in one new batch.
            assert out["reconciled"] == 1
            assert out["payout"]["status"] == "sent"
            assert out["payout"]["items"] == amounts
        else:
            # Paid before the crash: found by its comment; nothing is due any more.
            assert out["reconciled"] == (1 if point == "after_send" else 0)
            assert out["payout"] is None
        assert await _owed(store, addresses) == 0
        result = await audit(store, regtest)
        assert result.paid_to == earned

    assert await _statuses(store) == ["failed"] * 2 + ["sent"] * 4
    for a in addresses:
        assert received(regtest, a) == earned[a]


async def test_reconcile_killed_midway(
    regtest: RegtestNode, store: AsyncEngine, tmp_path: Path
) -> None:
    """Three intents left by crashed payers, one paid and two not; reconcile is killed
    after each decision and started again until all are settled. (Each withdrawal
    reconciles first, so only intents whose sendmany may still be running survive it.)"""
    _fund(regtest)
    addresses = [regtest.call("getnewaddress") for _ in range(3)]
    env = _env(regtest, tmp_path, regtest.call("getnewaddress"))
    amounts = {a: 30_000_000 + i for i, a in enumerate(addresses)}
    await seed(store, amounts)
    for address, point in zip(addresses, ["before_send", "before_send", "after_send"], strict=True):
        crashed = _cli(env | {"HASHQUARRY_PAYOUT_FAULT": point}, "payout", "withdraw", address)
        assert crashed.returncode == 137, crashed.stderr[-1500:]
    assert await _statuses(store) == ["sending"] * 3

    killed = env | {"HASHQUARRY_PAYOUT_FAULT": "during_reconcile"}
    for pending in (2, 1):
        crashed = _cli(killed, "payout", "reconcile", "--settle-after", "0")
        assert crashed.returncode == 137, crashed.stderr[-1500:]
        statuses = await _statuses(store)
        assert sum(s in ("intent", "sending") for s in statuses) == pending, statuses
        await audit(store, regtest, settled=False)
    done = _cli(env, "payout", "reconcile", "--settle-after", "0")
    assert done.returncode == 0 and orjson.loads(done.stdout)["reconciled"] == 1
    assert await _statuses(store) == ["failed", "failed", "sent"]
    assert received(regtest, addresses[2]) == amounts[addresses[2]]
    assert received(regtest, addresses[0]) == received(regtest, addresses[1]) == 0

    run = _cli(env, "payout", "run")
    assert run.returncode == 0, run.stderr[-1500:]
    assert orjson.loads(run.stdout)["payout"]["items"] == {a: amounts[a] for a in addresses[:2]}
    result = await audit(store, regtest)
    assert result.paid_to == amounts
    assert all(received(regtest, a) == amounts[a] for a in addresses)
    assert await _owed(store, addresses) == 0
