"""Payouts through the real regtest wallet, killed at every step: never twice, never lost.

Address-mode miners (user name = payout address) earn balances under PPLNS; each
is then withdrawn by `hashquarry payout withdraw` in a separate process that is
killed (exit 137, as by kill -9) at one step of the payout, and recovered with
`hashquarry payout reconcile`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hashquarry.accounting.ledger import balances
from hashquarry.chain.regtest import RegtestNode
from hashquarry.miner.runner import MinerOptions, run_miner
from hashquarry.payouts.tables import payouts
from hashquarry.store import models as m
from hashquarry.store.engine import default_url, make_engine

from .conftest import pool_settings, start_pool, stop_pool
from .helpers import wait_for

pytestmark = pytest.mark.e2e


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hashquarry", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _received(node: RegtestNode, address: str) -> int:
    return int(Decimal(str(node.call("getreceivedbyaddress", address, 0))) * 100_000_000)


async def _balances(data_dir: Path) -> dict[str, int]:
    engine = make_engine(default_url(data_dir))
    try:
        async with engine.connect() as conn:
            bal = await balances(conn, "bitcoin", time.time())
            total = await conn.scalar(select(func.coalesce(func.sum(m.ledger.c.amount), 0)))
    finally:
        await engine.dispose()
    # Balances are always exactly the ledger.
    assert sum(b.balance + b.immature_balance for b in bal.values()) == total
    return {a: b.balance for a, b in bal.items()}


async def test_payout_killed_at_each_step(regtest: RegtestNode, tmp_path: Path) -> None:
    regtest.mine(101)  # spendable wallet coins for the payouts
    addresses = [regtest.call("getnewaddress") for _ in range(3)]
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

    start = await _balances(tmp_path)
    assert all(start.get(a, 0) > 0 for a in addresses), start
    before = {a: _received(regtest, a) for a in addresses}

    env = dict(os.environ)
    env.update({
        "HASHQUARRY_NODE__URL": settings.node.url, "HASHQUARRY_NODE__USER": settings.node.user,
        "HASHQUARRY_NODE__PASSWORD": settings.node.password,
        "HASHQUARRY_POOL__ADDRESS": settings.pool.address,
        "HASHQUARRY_POOL__NETWORK": "regtest", "HASHQUARRY_DATA_DIR": str(tmp_path),
        "HASHQUARRY_PAYOUTS__ADDRESS_THRESHOLD": "1",
    })  # fmt: skip

    for address, point in zip(
        addresses, ["after_intent", "after_send", "after_record"], strict=True
    ):
        crashed = _cli(env | {"HASHQUARRY_PAYOUT_FAULT": point}, "payout", "withdraw", address)
        assert crashed.returncode == 137, crashed.stderr[-1500:]
        mid = await _balances(tmp_path)
        assert mid.get(address, 0) == 0  # debited by the intent, whatever happened next
        rec = _cli(env, "payout", "reconcile")
        assert rec.returncode == 0, rec.stderr[-1500:]
        if point == "after_intent":
            # Never reached the wallet: the intent is reversed and the balance is back.
            assert (await _balances(tmp_path))[address] == start[address]
            again = _cli(env, "payout", "withdraw", address)
            assert again.returncode == 0, again.stderr[-1500:]
        else:
            # Paid before the crash: a second withdrawal finds nothing to pay.
            again = _cli(env, "payout", "withdraw", address)
            assert again.returncode == 2 and "nothing to withdraw" in again.stderr
        assert (await _balances(tmp_path)).get(address, 0) == 0
        # The address got its balance exactly once.
        assert _received(regtest, address) - before[address] == start[address]

    # One wallet transaction per payout id, none twice.
    txs = regtest.call("listtransactions", "*", 1000, 0)
    comments = {
        (t["comment"], t["txid"])
        for t in txs
        if str(t.get("comment", "")).startswith("hashquarry:")
    }
    ids = [c for c, _ in comments]
    assert len(ids) == len(set(ids)) == 3

    # Confirmations are followed on the node.
    regtest.mine(1)
    tracked = _cli(env, "payout", "run")
    assert tracked.returncode == 0, tracked.stderr[-1500:]
    engine = make_engine(default_url(tmp_path))
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(payouts.c.status, payouts.c.confirmations, payouts.c.txid)
                )
            ).all()
    finally:
        await engine.dispose()
    sent = [r for r in rows if r.txid]
    assert len(sent) == 3 and all(r.status == "confirmed" and r.confirmations >= 1 for r in sent), (
        rows
    )
