"""Following sent payouts on the node: confirmations up to the configured number, and
payouts whose transaction was abandoned or lost to a conflicting one are flagged.

The conflict is real: the node is restarted with `-walletbroadcast=0
-persistmempool=0`, so the payouts leave its mempool while staying in its wallet; one
is abandoned with `abandontransaction`, the other's input is spent by a transaction
mined in a block.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from hashquarry.chain.regtest import RegtestNode
from hashquarry.payouts import book
from hashquarry.payouts.engine import PayoutTarget, payout_entries
from hashquarry.payouts.tables import payouts
from hashquarry.store.engine import default_url, make_engine
from hashquarry.store.migrate import upgrade_async

from .payout_kit import current_balances, make_payer, seed

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


async def _rows(store: AsyncEngine) -> dict[str, Any]:
    async with store.connect() as conn:
        return {r.txid: r for r in (await conn.execute(select(payouts))).all()}


async def test_confirmations_followed_up_to_the_configured_number(
    regtest: RegtestNode, store: AsyncEngine
) -> None:
    regtest.mine(101)
    address = regtest.call("getnewaddress")
    await seed(store, {"u1": 10_000_000})
    engine, rpc = make_payer(
        store, regtest.rpc_url, regtest, [PayoutTarget("u1", address, 1)],
        confirmations_required=3,
    )  # fmt: skip
    try:
        result = await engine.run_once()
        assert result is not None and result.txid
        assert await engine.track() == 0
        regtest.mine(1)
        assert await engine.track() == 0  # one of three: still followed
        row = (await _rows(store))[result.txid]
        assert (row.status, row.confirmations) == ("sent", 1)
        regtest.mine(2)
        assert await engine.track() == 1
        row = (await _rows(store))[result.txid]
        assert (row.status, row.confirmations) == ("confirmed", 3)
        regtest.mine(1)
        assert await engine.track() == 0  # done with it
    finally:
        await rpc.close()


async def test_abandoned_and_conflicted_payouts_are_flagged(
    regtest: RegtestNode, store: AsyncEngine
) -> None:
    regtest.mine(101)
    wallets = {u: regtest.call("getnewaddress") for u in ("u1", "u2")}
    await seed(store, {"u1": 15_000_000, "u2": 16_000_000})
    engine, rpc = make_payer(
        store, regtest.rpc_url, regtest, [PayoutTarget(u, a, 1) for u, a in wallets.items()]
    )
    quiet = ["-walletbroadcast=0", "-persistmempool=0"]
    try:
        p1 = await engine.withdraw(["u1"])
        p2 = await engine.withdraw(["u2"])
        assert p1.txid and p2.txid
        # Out of the mempool, still in the wallet.
        regtest.stop()
        regtest.args = lambda binary: [*RegtestNode.args(regtest, binary), *quiet]  # type: ignore[method-assign]
        regtest.start()
        assert regtest.call("getrawmempool") == []

        regtest.call("abandontransaction", p1.txid)
        # Spend p2's first input elsewhere, in a block: p2 can never confirm now.
        vin = regtest.call("decoderawtransaction", regtest.call("gettransaction", p2.txid)["hex"])[
            "vin"
        ][0]
        value = regtest.call("gettxout", vin["txid"], vin["vout"])["value"]
        raw = regtest.call(
            "createrawtransaction",
            [{"txid": vin["txid"], "vout": vin["vout"]}],
            {regtest.call("getnewaddress"): round(float(value) - 0.001, 8)},
        )
        signed = regtest.call("signrawtransaction", raw)
        assert signed["complete"]
        regtest.call("sendrawtransaction", signed["hex"])
        regtest.mine(1)
        assert regtest.call("gettransaction", p2.txid)["confirmations"] < 0

        assert await engine.track() == 0
        rows = await _rows(store)
        assert rows[p1.txid].status == "abandoned" and "abandoned" in rows[p1.txid].error
        assert rows[p2.txid].status == "conflicted" and "conflicted" in rows[p2.txid].error
        # The money stays debited and visible as such, never silently back or gone.
        bals = await current_balances(store)
        assert bals["u1"] == bals["u2"] == 0
        async with store.connect() as conn:
            shown = {
                e["tx_id"]: e["status"]
                for u in ("u1", "u2")
                for e in await payout_entries(conn, "bitcoin", u)
            }
        assert shown == {p1.txid: "abandoned", p2.txid: "conflicted"}
        # The operator's list (`hashquarry payout list --status flagged`) has both, noted.
        async with store.connect() as conn:
            flagged = await book.listing(conn, "bitcoin", book.FLAGGED)
        assert [(f["txid"], f["status"]) for f in flagged] == [
            (p2.txid, "conflicted"),
            (p1.txid, "abandoned"),
        ]
        assert all("check and settle by hand" in f["error"] for f in flagged)
        # Neither is in the chain, nor in the mempool to get there.
        for txid in (p1.txid, p2.txid):
            assert regtest.call("gettransaction", txid)["confirmations"] <= 0
            assert txid not in regtest.call("getrawmempool")
        # Still followed on later runs, and still flagged.
        regtest.mine(1)
        assert await engine.track() == 0
        rows = await _rows(store)
        assert (rows[p1.txid].status, rows[p2.txid].status) == ("abandoned", "conflicted")
    finally:
        await rpc.close()
        regtest.stop()
        vars(regtest).pop("args", None)
        regtest.start()
