"""Fee policies and wallet refusals against the real regtest wallet.

Balances are seeded as ledger entries (what accounting would have written), so
these tests look only at the payout side.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.accounting.ledger import POOL_ACCOUNT, balances
from hashquarry.chain.regtest import RegtestNode
from hashquarry.chain.rpc import NodeRpc
from hashquarry.payouts.engine import PayoutEngine, PayoutTarget
from hashquarry.payouts.tables import payout_items, payouts
from hashquarry.store import models as m
from hashquarry.store.engine import default_url, make_engine
from hashquarry.store.migrate import upgrade_async

pytestmark = pytest.mark.e2e


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = default_url(tmp_path)
    await upgrade_async(url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _seed(store: AsyncEngine, amounts: dict[str, int]) -> None:
    async with store.begin() as conn:
        await conn.execute(m.ledger.insert(), [
            {"coin": "bitcoin", "account": a, "kind": "revenue", "bucket": "balance",
             "amount": v, "ref": f"seed:{a}", "created_at": time.time()}
            for a, v in amounts.items()])  # fmt: skip


def _engine(
    store: AsyncEngine, node: RegtestNode, targets: list[PayoutTarget], **kw: object
) -> tuple[PayoutEngine, NodeRpc]:
    rpc = NodeRpc(node.rpc_url, node.user, node.password)

    async def get_targets() -> list[PayoutTarget]:
        return targets

    return PayoutEngine(store, rpc, coin="bitcoin", targets=get_targets, **kw), rpc  # type: ignore[arg-type]


async def test_fee_deducted_from_recipients(regtest: RegtestNode, store: AsyncEngine) -> None:
    regtest.mine(101)
    a, b = regtest.call("getnewaddress"), regtest.call("getnewaddress")
    await _seed(store, {"u1": 150_000_000, "u2": 70_000_000})
    engine, rpc = _engine(
        store, regtest, [PayoutTarget("u1", a, 1), PayoutTarget("u2", b, 1)], fee_policy="deducted"
    )
    try:
        result = await engine.run_once()
    finally:
        await rpc.close()
    assert result is not None and result.status == "sent"
    tx = regtest.call("gettransaction", result.txid)
    fee = -int(Decimal(str(tx["fee"])) * 100_000_000)
    assert fee > 0
    async with store.connect() as conn:
        items = {r.account: r for r in (await conn.execute(select(payout_items))).all()}
        row = (await conn.execute(select(payouts))).one()
        bal = await balances(conn, "bitcoin", time.time())
    # The recipients carried the fee between them; their balances are fully paid.
    assert items["u1"].paid + items["u2"].paid == 220_000_000 - fee
    assert items["u1"].paid < 150_000_000 and items["u2"].paid < 70_000_000
    assert row.tip == fee
    assert bal["u1"].balance == bal["u2"].balance == 0
    assert POOL_ACCOUNT not in bal  # the pool paid nothing


async def test_wallet_refusal_leaves_balances_and_keeps_the_reason(
    regtest: RegtestNode, store: AsyncEngine
) -> None:
    a = regtest.call("getnewaddress")
    await _seed(store, {"u1": 50_000_000})
    # No coin in the wallet has a million confirmations: the wallet refuses.
    engine, rpc = _engine(store, regtest, [PayoutTarget("u1", a, 1)], minconf=1_000_000)
    try:
        result = await engine.run_once()
    finally:
        await rpc.close()
    assert result is not None and result.status == "failed"
    assert result.error and "nsufficient" in result.error
    async with store.connect() as conn:
        row = (await conn.execute(select(payouts))).one()
        bal = await balances(conn, "bitcoin", time.time())
    assert row.status == "failed" and "nsufficient" in (row.error or "")
    assert bal["u1"].balance == 50_000_000 and bal["u1"].paid == 0

    # The next run, with a wallet that can pay, pays it.
    engine, rpc = _engine(store, regtest, [PayoutTarget("u1", a, 1)])
    try:
        again = await engine.run_once()
    finally:
        await rpc.close()
    assert again is not None and again.status == "sent"
