"""A revenue distributor paid through the real regtest wallet while its days are open.

alice gives ann 30% of her revenue from yesterday 00:00 UTC on. Her income: a day from
before the distribution, yesterday's (PPS in the balance, a block credit still immature)
and today's (a block that already matured). Each payout pays only what no settlement can
still take; the dividends reach ann once their day is settled (by the payout run itself,
under the payout lock), and ann's dividend is paid too. The store is audited against the
wallet, and no balance is ever below zero.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting.aggregate import FoundBlock, utc_day
from hashquarry.accounting.ledger import POOL_ACCOUNT, credit_block, mature_block
from hashquarry.accounts.service import AccountsService
from hashquarry.chain.regtest import RegtestNode
from hashquarry.distribution.reserve import DividendReserve
from hashquarry.distribution.service import DistributionService
from hashquarry.payouts.engine import PayoutEngine, PayoutResult, PayoutTarget
from hashquarry.store import models as m
from hashquarry.store.engine import default_url, make_engine
from hashquarry.store.migrate import upgrade_async

from .payout_kit import audit, current_balances, make_payer, received

pytestmark = pytest.mark.e2e

DAY = 86_400
COIN_NAME = "bitcoin"
OLD = 20_000_000  # dated three days ago: no distribution covers it
YESTERDAY_PPS = 100_000_000
BLOCK = 40_000_000  # solo, found yesterday, matures later
TODAY_BLOCK = 50_000_000  # solo, found and matured today


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = default_url(tmp_path)
    await upgrade_async(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _revenue(store: AsyncEngine, amount: int, day: float, ref: str) -> None:
    async with store.begin() as conn:
        await conn.execute(m.ledger.insert(), [
            {"coin": COIN_NAME, "account": "alice", "kind": "revenue", "bucket": "balance",
             "amount": amount, "ref": ref, "created_at": time.time(),
             "mining_date": utc_day(day)}])  # fmt: skip


async def _block(store: AsyncEngine, block_id: int, found_at: float, income: int) -> None:
    b = FoundBlock(
        id=block_id, coin=COIN_NAME, seq=block_id, height=500 + block_id,
        hash=f"{block_id:064x}", network_difficulty=1.0, income=income, tx_fees=0,
        account="alice", worker="rig", found_at=found_at, round_id=1,
        round_started_at=found_at - 60, round_accepted=0, round_rejected=0, round_diff=0.0,
    )  # fmt: skip
    async with store.begin() as conn:
        await credit_block(conn, b, scheme="solo", fee_bps=0, pplns_n=1.0, now=found_at)


async def _mature(store: AsyncEngine, block_id: int) -> None:
    async with store.begin() as conn:
        await mature_block(conn, COIN_NAME, block_id, time.time())


async def _run(engine: PayoutEngine, store: AsyncEngine, now: float) -> PayoutResult | None:
    result = await engine.run_once(now)
    assert result is None or result.status == "sent", result
    # The pool account bears the network fees (fee policy "pool"); the users never go below 0.
    users = {a: v for a, v in (await current_balances(store)).items() if a != POOL_ACCOUNT}
    assert min(users.values()) >= 0, users
    return result


async def test_distributor_is_paid_what_is_not_owed_and_recipient_its_dividend(
    regtest: RegtestNode, store: AsyncEngine
) -> None:
    regtest.mine(101)
    now = time.time()
    today = now // DAY * DAY
    yesterday = today - DAY
    when = {"now": yesterday}
    accounts = AccountsService(store, {COIN_NAME: "regtest"}, clock=lambda: when["now"])
    await accounts.create_owner("acme")
    for user in ("alice", "ann"):
        await accounts.add_mining_user("acme", user)
    dist = DistributionService(store, accounts, clock=lambda: when["now"])
    await dist.revenue_add("acme", COIN_NAME, "alice", "ann", "0.3")  # from yesterday 00:00

    await _revenue(store, OLD, today - 3 * DAY, "old")
    await _revenue(store, YESTERDAY_PPS, yesterday, "pps")
    await _block(store, 1, yesterday + 3600, BLOCK)
    await _block(store, 2, today + 60, TODAY_BLOCK)
    await _mature(store, 2)
    addresses = {u: regtest.call("getnewaddress") for u in ("alice", "ann")}
    targets = [PayoutTarget(u, a, 1) for u, a in addresses.items()]
    engine, rpc = make_payer(
        store, regtest.rpc_url, regtest, targets, reserve=DividendReserve(store, COIN_NAME)
    )
    try:
        # Yesterday cannot be settled (block 1 is immature) and today is not over: only
        # the income from before the distribution is payable.
        first = await _run(engine, store, now)
        assert first is not None and first.items == {"alice": OLD}
        assert (await current_balances(store))["alice"] == YESTERDAY_PPS + TODAY_BLOCK

        # Block 1 matures: the next run settles yesterday first, then pays.
        await _mature(store, 1)
        second = await _run(engine, store, now + 1)
        dividend = (YESTERDAY_PPS + BLOCK) * 3 // 10
        assert second is not None
        assert second.items == {"alice": YESTERDAY_PPS + BLOCK - dividend, "ann": dividend}
        assert (await current_balances(store))["alice"] == TODAY_BLOCK

        # Tomorrow: today is over and final, so its dividend moves and both are paid.
        third = await _run(engine, store, today + DAY + 60)
        late = TODAY_BLOCK * 3 // 10
        assert third is not None and third.items == {"alice": TODAY_BLOCK - late, "ann": late}
    finally:
        await rpc.close()

    balances = await current_balances(store)
    assert (balances["alice"], balances["ann"]) == (0, 0)
    assert received(regtest, addresses["ann"]) == dividend + late
    assert received(regtest, addresses["alice"]) == OLD + YESTERDAY_PPS + BLOCK + TODAY_BLOCK - (
        dividend + late
    )
    result = await audit(store, regtest)
    assert result.sent == 3 and result.failed == 0
