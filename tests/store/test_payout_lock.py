"""The payout lock on SQLite and on PostgreSQL: one payer at a time, whoever asks.

On PostgreSQL two payers used to read the same balance in their own transactions,
both pass the re-check and both debit and pay. With the lock they take turns, the
second finds nothing left. The lock of a process killed with SIGKILL is free at once.
Payments go through a real regtest wallet.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.chain.regtest import RegtestNode
from hashquarry.payouts.engine import PayoutError, PayoutResult, PayoutTarget
from hashquarry.payouts.lock import LockTimeout, StoreLock
from tests.e2e.payout_kit import audit, current_balances, make_payer, received, seed

pytestmark = pytest.mark.e2e

HOLDER = """
import asyncio, sys
from hashquarry.payouts.lock import StoreLock
from hashquarry.store.engine import make_engine

async def main() -> None:
    engine = make_engine(sys.argv[1])
    async with StoreLock(engine, "payouts-bitcoin", timeout=10).hold():
        print("held", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def node() -> Iterator[RegtestNode]:
    with RegtestNode() as n:
        n.mine(110)
        yield n


async def test_lock_excludes_other_holders_and_dies_with_its_process(
    engine: AsyncEngine,
) -> None:
    name = "payouts-bitcoin"
    first, second = StoreLock(engine, name, timeout=0.3), StoreLock(engine, name, timeout=0.3)
    async with first.hold():
        with pytest.raises(LockTimeout):
            async with second.hold():
                pass
        async with StoreLock(engine, "payouts-other", timeout=0.3).hold():
            pass  # another coin's payouts are independent
    async with second.hold():
        pass

    url = engine.url.render_as_string(hide_password=False)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, url, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"held\n"
        with pytest.raises(LockTimeout):
            async with second.hold():
                pass
    finally:
        proc.kill()  # SIGKILL: no clean-up runs in the holder
        await proc.wait()
    async with StoreLock(engine, name, timeout=10).hold():
        pass


async def test_two_engines_pay_one_balance_once(engine: AsyncEngine, node: RegtestNode) -> None:
    wallets = {u: node.call("getnewaddress") for u in ("u1", "u2")}
    targets = [PayoutTarget(u, a, 1) for u, a in wallets.items()]
    a, rpc_a = make_payer(engine, node.rpc_url, node, targets)
    b, rpc_b = make_payer(engine, node.rpc_url, node, targets)
    try:
        await seed(engine, {"u1": 20_000_000}, tag="one")
        results = await asyncio.gather(
            a.withdraw(["u1"]), b.withdraw(["u1"]), return_exceptions=True
        )
        paid = [r for r in results if isinstance(r, PayoutResult)]
        refused = [r for r in results if isinstance(r, PayoutError)]
        assert len(paid) == 1 and paid[0].status == "sent", results
        assert len(refused) == 1 and "nothing to withdraw" in str(refused[0])

        await seed(engine, {"u1": 5_000_000, "u2": 6_000_000}, tag="two")
        runs = await asyncio.gather(a.run_once(), b.run_once(), a.run_once())
        done = [r for r in runs if r is not None]
        assert len(done) == 1 and done[0].items == {"u1": 5_000_000, "u2": 6_000_000}
    finally:
        await rpc_a.close()
        await rpc_b.close()
    assert received(node, wallets["u1"]) == 25_000_000
    assert received(node, wallets["u2"]) == 6_000_000
    bals = await current_balances(engine)
    assert bals["u1"] == bals["u2"] == 0
    report = await audit(engine, node)
    assert report.sent == 2 and report.failed == 0
