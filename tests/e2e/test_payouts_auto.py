"""Automatic payouts for registered mining users, through the real regtest wallet."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import pytest

from hashquarry.accounting.ledger import balances
from hashquarry.accounts.service import AccountsService
from hashquarry.chain.regtest import RegtestNode
from hashquarry.miner.runner import MinerOptions, run_miner
from hashquarry.payouts.engine import payout_entries

from .conftest import pool_settings, start_pool, stop_pool
from .helpers import wait_for

pytestmark = pytest.mark.e2e

USERS = ("alice", "bob", "carol")


async def test_automatic_payout_pays_each_balance_once_and_respects_pause(
    regtest: RegtestNode, tmp_path: Path
) -> None:
    regtest.mine(101)
    settings = pool_settings(
        regtest, data_dir=tmp_path,
        # A window wider than the run: every block credits every user who has shares.
        accounting={"scheme": "pplns", "pplns_n": 1e12, "maturity": 2, "fee_bps": 100},
        accounts_cfg={"require_registration": True, "allow_address_mode": False},
    )  # fmt: skip
    pool = await start_pool(settings, start=False)
    store = pool.accounting.engine  # type: ignore[union-attr]
    accounts = AccountsService.from_settings(store, settings)
    await accounts.create_owner("acme")
    wallets = {}
    for name in USERS:
        await accounts.add_mining_user("acme", name)
        wallets[name] = regtest.call("getnewaddress")
        await accounts.update_wallet("acme", name, "bitcoin", wallets[name], 1)
    await accounts.pause_payments("acme", ["carol"], "bitcoin")
    await pool.start()
    try:
        url = f"stratum+tcp://127.0.0.1:{pool.ports[0]}"
        # An unregistered name is refused by the authorizer.
        stop = asyncio.Event()
        stranger = await run_miner(MinerOptions(url=url, users=["mallory.x"], seconds=2))
        assert stranger["shares_submitted"] == 0
        task = asyncio.create_task(
            run_miner(MinerOptions(url=url, users=[f"{u}.rig" for u in USERS]), stop=stop)
        )

        everyone_at: list[int] = []  # blocks accepted when every user had a share

        def done() -> bool:
            # A block found after every user's first share credits them all; before that,
            # a block can leave one out (a CI run found alice without any). The second
            # accepted after that moment surely was (one may have been in flight).
            have = {n.split(".")[0] for n, (acc, _) in pool.stats.per_worker.items() if acc}
            if set(USERS) <= have and not everyone_at:
                everyone_at.append(pool.stats.blocks_accepted)
            return bool(everyone_at) and pool.stats.blocks_accepted >= max(6, everyone_at[0] + 2)

        await wait_for(done, 240, "blocks with shares from every user")
        stop.set()
        await asyncio.wait_for(task, 30)
        await asyncio.to_thread(regtest.mine, 3)
        assert pool.accounting is not None and pool.payouts is not None
        await pool.accounting.track_once()

        async with store.connect() as conn:
            before = await balances(conn, "bitcoin", time.time())
        due = {u: before[u].balance for u in USERS if u in before and before[u].balance > 0}
        assert {"alice", "bob"} <= set(due), before

        result = await pool.payouts.run_once()
        assert result is not None and result.status == "sent" and result.txid
        paid_now = {u for u in due if u != "carol"}
        assert set(result.items) == paid_now  # carol is paused
        tx = regtest.call("gettransaction", result.txid)
        received = {}
        for d in tx["details"]:
            if d["category"] == "send":
                received[d["address"]] = -int(Decimal(str(d["amount"])) * 100_000_000)
        for u in paid_now:
            assert received[wallets[u]] == due[u]  # exactly its balance, in one sendmany
        assert wallets["carol"] not in received

        async with store.connect() as conn:
            after = await balances(conn, "bitcoin", time.time())
            entries = await payout_entries(conn, "bitcoin", "alice")
        assert all(after[u].balance == 0 for u in paid_now)
        assert after["carol"].balance == before["carol"].balance
        assert entries and entries[0]["tx_id"] == result.txid
        assert entries[0]["value"] == due["alice"] and entries[0]["address"] == wallets["alice"]
        assert after["alice"].paid == due["alice"]

        assert await pool.payouts.run_once() is None  # nothing due any more
        await accounts.resume_payments("acme", ["carol"], "bitcoin")
        second = await pool.payouts.run_once()
        assert second is not None and set(second.items) == {"carol"}

        await asyncio.to_thread(regtest.mine, 1)
        assert await pool.payouts.track() == 2
        async with store.connect() as conn:
            entries = await payout_entries(conn, "bitcoin", "carol")
        assert entries[0]["confirmations"] >= 1
    finally:
        await stop_pool(pool)
