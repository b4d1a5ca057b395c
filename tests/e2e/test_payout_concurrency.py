"""Payouts running at the same time never pay twice.

The payout loop, the API's withdraw and a CLI `hashquarry payout ...` in another
process can all work on one store. While one payer waits on the wallet's sendmany,
a reconcile must not judge its intent, and nobody may pay the same balance again.
Here one payer's sendmany is held up for real (a relay delays it, or the payer is
paused just before it) while others, in this process and in another, try their luck.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.chain.regtest import RegtestNode
from hashquarry.payouts.engine import PayoutError, PayoutTarget
from hashquarry.payouts.tables import payouts
from hashquarry.store.engine import default_url, make_engine
from hashquarry.store.migrate import upgrade_async

from .payout_kit import RpcProxy, audit, make_payer, received, seed

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


def _fund(node: RegtestNode) -> None:
    if node.call("getbalance") < 200:
        node.mine(110)


async def test_reconcile_and_withdraw_wait_for_a_slow_sendmany(
    regtest: RegtestNode, store: AsyncEngine
) -> None:
    """Two engines on one store (the pool's and, say, an admin tool's). A's sendmany
    takes two seconds; B reconciles, withdraws and runs meanwhile. Before the lock, B's
    reconcile reversed A's intent (not yet in the wallet) and paid it again."""
    _fund(regtest)
    wallets = {u: regtest.call("getnewaddress") for u in ("u1", "u2", "u3")}
    targets = [PayoutTarget(u, a, 1) for u, a in wallets.items()]
    amounts = {"u1": 12_000_000, "u2": 3_000_000, "u3": 999_999}
    await seed(store, amounts)
    async with RpcProxy(regtest) as proxy:
        in_flight = asyncio.Event()

        async def slow_send(method: str) -> str:
            if method == "sendmany":
                in_flight.set()
                await asyncio.sleep(2.0)
            return "forward"

        proxy.rule = slow_send
        a, rpc_a = make_payer(store, proxy.url, regtest, targets)
        # B would judge any intent at once: only the lock keeps it off A's.
        b, rpc_b = make_payer(store, regtest.rpc_url, regtest, targets, settle_after=0)
        try:
            paying = asyncio.create_task(a.run_once())
            await asyncio.wait_for(in_flight.wait(), 30)
            others = await asyncio.gather(
                b.reconcile(),
                b.withdraw(["u1"]),
                b.run_once(),
                a.withdraw(["u2"]),  # the same engine object, as the API and the loop share
                return_exceptions=True,
            )
            result = await paying
        finally:
            await rpc_a.close()
            await rpc_b.close()
    assert result is not None and result.status == "sent" and result.items == amounts
    reconciled, withdrawn, ran, withdrawn_again = others
    assert reconciled == 0
    assert isinstance(withdrawn, PayoutError) and "nothing to withdraw" in str(withdrawn)
    assert ran is None
    assert isinstance(withdrawn_again, PayoutError), withdrawn_again
    report = await audit(store, regtest)
    assert report.sent == 1 and report.failed == 0
    assert report.paid_to == {wallets[u]: v for u, v in amounts.items()}
    assert all(received(regtest, wallets[u]) == v for u, v in amounts.items())


async def test_cli_in_another_process_waits_for_the_payer(
    regtest: RegtestNode, store: AsyncEngine, tmp_path: Path
) -> None:
    """The payer stops just before sendmany (its intent is "sending"). A `payout
    reconcile` and a `payout withdraw` in other processes, told to judge at once
    (settle_after 0), must wait for it rather than reverse the intent and pay again."""
    _fund(regtest)
    address = regtest.call("getnewaddress")  # an address-mode account: paid to itself
    await seed(store, {address: 77_000_000})
    env = dict(os.environ)
    env.pop("HASHQUARRY_PAYOUT_FAULT", None)
    env.update({
        "HASHQUARRY_NODE__URL": regtest.rpc_url, "HASHQUARRY_NODE__USER": regtest.user,
        "HASHQUARRY_NODE__PASSWORD": regtest.password,
        "HASHQUARRY_POOL__ADDRESS": regtest.call("getnewaddress"),
        "HASHQUARRY_POOL__NETWORK": "regtest", "HASHQUARRY_DATA_DIR": str(tmp_path),
        "HASHQUARRY_PAYOUTS__ADDRESS_THRESHOLD": "1",
    })  # fmt: skip
    payer, rpc = make_payer(store, regtest.rpc_url, regtest, [PayoutTarget(address, address, 1)])
    at_send = asyncio.Event()
    go = asyncio.Event()

    async def pause(point: str) -> None:
        if point == "before_send":
            at_send.set()
            await go.wait()

    payer.fault = pause
    procs = []
    try:
        paying = asyncio.create_task(payer.run_once())
        await asyncio.wait_for(at_send.wait(), 30)
        async with store.connect() as conn:
            assert (await conn.execute(select(payouts.c.status))).scalars().all() == ["sending"]
        for args in (
            ["payout", "reconcile", "--settle-after", "0"],
            ["payout", "withdraw", address, "--settle-after", "0"],
        ):
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "hashquarry",
                    *args,
                    env=env,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            )
        await asyncio.sleep(4.0)  # time enough to start, reconcile and pay, were it free
        assert all(p.returncode is None for p in procs), "a CLI did not wait for the lock"
        go.set()
        result = await paying
        outs = [await asyncio.wait_for(p.communicate(), 120) for p in procs]
    finally:
        go.set()
        await rpc.close()
        for p in procs:
            if p.returncode is None:
                p.kill()
    assert result is not None and result.status == "sent"
    assert procs[0].returncode == 0, outs[0][1][-1500:]
    assert orjson.loads(outs[0][0]) == {"reconciled": 0}
    assert procs[1].returncode == 2 and b"nothing to withdraw" in outs[1][1]
    report = await audit(store, regtest)
    assert report.sent == 1 and report.paid_to == {address: 77_000_000}
    assert received(regtest, address) == 77_000_000
