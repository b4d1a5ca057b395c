"""The node goes away, or its answer does: every payout still happens exactly once.

The node is really stopped and started again; answers are really lost by `RpcProxy`,
a relay that hands sendmany to the real wallet and then drops the connection. Nothing
stands in for the wallet. Each test ends with `audit`: per payout and per address,
what the ledger debited equals what the wallet sent, and no payout id is in two
wallet transactions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.chain.regtest import RegtestNode
from hashquarry.chain.rpc import NodeError
from hashquarry.payouts.engine import PayoutTarget
from hashquarry.payouts.tables import payouts
from hashquarry.store.engine import default_url, make_engine
from hashquarry.store.migrate import upgrade_async

from .payout_kit import RpcProxy, audit, current_balances, make_payer, received, seed

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


def _setup(node: RegtestNode) -> tuple[list[PayoutTarget], dict[str, int], dict[str, str]]:
    if node.call("getbalance") < 200:
        node.mine(110)
    wallets = {u: node.call("getnewaddress") for u in ("u1", "u2")}
    targets = [PayoutTarget(u, a, 1) for u, a in wallets.items()]
    return targets, {"u1": 41_000_000, "u2": 2_500_003}, wallets


async def _statuses(store: AsyncEngine) -> list[str]:
    async with store.connect() as conn:
        return sorted((await conn.execute(select(payouts.c.status))).scalars())


def _by_address(amounts: dict[str, int], wallets: dict[str, str]) -> dict[str, int]:
    return {wallets[u]: v for u, v in amounts.items()}


async def test_node_down_before_the_intent_leaves_balances_alone(
    regtest: RegtestNode, store: AsyncEngine
) -> None:
    targets, amounts, wallets = _setup(regtest)
    await seed(store, amounts)
    engine, rpc = make_payer(store, regtest.rpc_url, regtest, targets)
    try:
        await asyncio.to_thread(regtest.stop)
        try:
            with pytest.raises(NodeError):
                await engine.run_once()
            with pytest.raises(NodeError):
                await engine.withdraw(["u1"])
            # Nothing was written: no intent, every balance as it was.
            assert await _statuses(store) == []
            assert await current_balances(store) == amounts
        finally:
            await asyncio.to_thread(regtest.start)
        result = await engine.run_once()
        assert result is not None and result.status == "sent"
        assert result.items == amounts
        assert await engine.run_once() is None
    finally:
        await rpc.close()
    assert (await audit(store, regtest)).paid_to == _by_address(amounts, wallets)
    assert all(received(regtest, wallets[u]) == v for u, v in amounts.items())


async def test_node_stops_between_the_intent_and_sendmany(
    regtest: RegtestNode, store: AsyncEngine
) -> None:
    """The intent is written, then the node dies: the intent waits, debited, until the
    node can tell; it is reversed only after settle_after; the next run pays once."""
    targets, amounts, wallets = _setup(regtest)
    await seed(store, amounts)
    engine, rpc = make_payer(store, regtest.rpc_url, regtest, targets)

    async def stop_node(point: str) -> None:
        if point == "before_send":
            await asyncio.to_thread(regtest.stop)

    engine.fault = stop_node
    try:
        try:
            result = await engine.run_once()
            assert result is not None and result.status == "sending" and result.txid is None
            engine.fault = None
            assert await _statuses(store) == ["sending"]
            assert all(v == 0 for v in (await current_balances(store)).values())
            # While the node is down nothing is decided.
            with pytest.raises(NodeError):
                await engine.reconcile()
        finally:
            await asyncio.to_thread(regtest.start)
        # Back, but the sendmany could still be running: too soon to reverse, and the
        # debited balances are not due again.
        assert await engine.reconcile() == 0
        assert await engine.run_once() is None
        assert await _statuses(store) == ["sending"]
        # settle_after later: not in the wallet, so never paid; reversed, then paid once.
        engine.clock = lambda: time.time() + engine.settle_after + 1
        assert await engine.reconcile() == 1
        assert await current_balances(store) == amounts
        again = await engine.run_once()
        assert again is not None and again.status == "sent" and again.items == amounts
    finally:
        await rpc.close()
    result = await audit(store, regtest)
    assert result.paid_to == _by_address(amounts, wallets) and result.failed == 1
    assert all(received(regtest, wallets[u]) == v for u, v in amounts.items())


async def test_connection_lost_after_the_wallet_paid(
    regtest: RegtestNode, store: AsyncEngine
) -> None:
    """sendmany reaches the wallet, which pays; the answer is lost. The payer looks for
    the comment at once and records the payment."""
    targets, amounts, wallets = _setup(regtest)
    await seed(store, amounts)
    async with RpcProxy(regtest) as proxy:

        async def lose_answer(method: str) -> str:
            return "drop_after" if method == "sendmany" else "forward"

        proxy.rule = lose_answer
        engine, rpc = make_payer(store, proxy.url, regtest, targets)
        try:
            result = await engine.run_once()
            assert result is not None and result.status == "sent" and result.txid
            assert result.items == amounts
            assert proxy.seen.count("sendmany") == 1  # never sent twice
            proxy.rule = None
            assert await engine.run_once() is None
        finally:
            await rpc.close()
    result = await audit(store, regtest)
    assert result.paid_to == _by_address(amounts, wallets) and result.failed == 0


async def test_answer_lost_and_wallet_unreachable_then_found_by_paging(
    regtest: RegtestNode, store: AsyncEngine
) -> None:
    """The wallet pays, the answer is lost and the node stays unreachable; meanwhile the
    wallet gets many newer entries. When it answers again, reconcile pages back to the
    intent (here 5 entries a page, 40+ newer entries) and records the payment: it does
    not take "not among the newest entries" for "never paid"."""
    targets, amounts, wallets = _setup(regtest)
    await seed(store, amounts)
    async with RpcProxy(regtest) as proxy:
        cut = False

        async def cut_after_send(method: str) -> str:
            nonlocal cut
            if method == "sendmany":
                cut = True
                return "drop_after"
            return "drop" if cut else "forward"

        proxy.rule = cut_after_send
        engine, rpc = make_payer(store, proxy.url, regtest, targets, wallet_page=5)
        try:
            result = await engine.run_once()
            assert result is not None and result.status == "sending"
            with pytest.raises(NodeError):
                await engine.reconcile()
            assert await _statuses(store) == ["sending"]
            # The wallet did pay, once.
            assert all(received(regtest, wallets[u]) == v for u, v in amounts.items())
            await asyncio.to_thread(regtest.mine, 40)  # 40 newer wallet entries
            proxy.rule = None
            # Even long after settle_after, a payment in the wallet is found, not reversed.
            engine.clock = lambda: time.time() + engine.settle_after + 1
            assert await engine.reconcile() == 1
            assert proxy.seen.count("listtransactions") > 8
            assert await _statuses(store) == ["sent"]
            assert await engine.run_once() is None
        finally:
            await rpc.close()
    result = await audit(store, regtest)
    assert result.paid_to == _by_address(amounts, wallets) and result.failed == 0


async def test_payment_appearing_after_the_reversal_is_debited_again(
    regtest: RegtestNode, store: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """The worst case of waiting: the client times out, the wallet shows nothing for
    longer than settle_after, the intent is reversed, and only then does the node carry
    out the sendmany. The next reconcile finds the payment, debits it again and logs an
    error; the txid is kept and the address was paid once."""
    targets, amounts, wallets = _setup(regtest)
    await seed(store, amounts)
    async with RpcProxy(regtest) as proxy:
        release, forwarded = asyncio.Event(), asyncio.Event()

        async def hold_sendmany(method: str) -> str:
            if method == "sendmany":
                await release.wait()  # the client has long given up by then
                forwarded.set()
            return "forward"

        proxy.rule = hold_sendmany
        engine, rpc = make_payer(store, proxy.url, regtest, targets, timeout=1.0)
        try:
            result = await engine.run_once()
            assert result is not None and result.status == "sending"
            engine.clock = lambda: time.time() + engine.settle_after + 1
            assert await engine.reconcile() == 1
            assert await _statuses(store) == ["failed"]
            assert await current_balances(store) == amounts  # reversed
            release.set()
            await asyncio.wait_for(forwarded.wait(), 10)
            await asyncio.sleep(0.5)  # the node finishes the sendmany
            assert all(received(regtest, wallets[u]) == v for u, v in amounts.items())
            assert await engine.reconcile() == 1
            assert "debited u1, u2 again" in caplog.text
            assert await _statuses(store) == ["sent"]
            bals = await current_balances(store)
            assert bals["u1"] == bals["u2"] == 0
            assert await engine.run_once() is None
        finally:
            await rpc.close()
    result = await audit(store, regtest)
    assert result.paid_to == _by_address(amounts, wallets) and result.sent == 1
