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

from .payout_kit import audit, received

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
    assert (await audit(store, regtest)).paid_to == {a: items["u1"].paid, b: items["u2"].paid}


async def test_fee_borne_by_the_pool(regtest: RegtestNode, store: AsyncEngine) -> None:
    regtest.mine(101)
    a, b = regtest.call("getnewaddress"), regtest.call("getnewaddress")
    await _seed(store, {"u1": 120_000_000, "u2": 30_000_001, POOL_ACCOUNT: 5_000_000})
    engine, rpc = _engine(
        store, regtest, [PayoutTarget("u1", a, 1), PayoutTarget("u2", b, 1)], fee_policy="pool"
    )
    try:
        result = await engine.run_once()
    finally:
        await rpc.close()
    assert result is not None and result.status == "sent" and result.txid
    fee = -int(Decimal(str(regtest.call("gettransaction", result.txid)["fee"])) * 100_000_000)
    assert fee > 0
    # The recipients got their whole balances; the pool's account paid the network fee.
    assert received(regtest, a) == 120_000_000 and received(regtest, b) == 30_000_001
    async with store.connect() as conn:
        row = (await conn.execute(select(payouts))).one()
        items = {r.account: r for r in (await conn.execute(select(payout_items))).all()}
        tips = (
            await conn.execute(select(m.ledger).where(m.ledger.c.kind == "fee"))
        ).mappings().all()  # fmt: skip
        bal = await balances(conn, "bitcoin", time.time())
    assert row.tip == fee and row.fee_policy == "pool"
    assert items["u1"].paid == 120_000_000 and items["u2"].paid == 30_000_001
    assert [(t["account"], t["amount"], t["ref"]) for t in tips] == [
        (POOL_ACCOUNT, -fee, f"payout:{row.id}:tip")
    ]
    assert bal[POOL_ACCOUNT].balance == 5_000_000 - fee
    assert bal["u1"].balance == bal["u2"].balance == 0
    assert (await audit(store, regtest)).paid_to == {a: 120_000_000, b: 30_000_001}


async def test_balance_below_threshold_is_not_paid(
    regtest: RegtestNode, store: AsyncEngine
) -> None:
    regtest.mine(101)
    a, b, c = (regtest.call("getnewaddress") for _ in range(3))
    await _seed(store, {"below": 9_999, "above": 10_001, "equal": 10_000})
    targets = [
        PayoutTarget("below", a, 10_000),
        PayoutTarget("above", b, 10_000),
        PayoutTarget("equal", c, 10_000),
    ]
    engine, rpc = _engine(store, regtest, targets)
    try:
        result = await engine.run_once()
        assert result is not None and result.status == "sent"
        assert result.items == {"above": 10_001, "equal": 10_000}
        assert await engine.run_once() is None  # "below" is still below
        async with store.connect() as conn:
            bal = await balances(conn, "bitcoin", time.time())
        assert bal["below"].balance == 9_999 and bal["below"].paid == 0
        assert received(regtest, a) == 0
        # One more satoshi crosses the threshold: the whole balance is paid.
        async with store.begin() as conn:
            await conn.execute(m.ledger.insert(), [
                {"coin": "bitcoin", "account": "below", "kind": "revenue", "bucket": "balance",
                 "amount": 1, "ref": "seed:more", "created_at": time.time()}])  # fmt: skip
        again = await engine.run_once()
        assert again is not None and again.items == {"below": 10_000}
    finally:
        await rpc.close()
    assert (await audit(store, regtest)).paid_to == {a: 10_000, b: 10_001, c: 10_000}


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
    result = await audit(store, regtest)
    assert result.paid_to == {a: 50_000_000} and result.failed == 1
