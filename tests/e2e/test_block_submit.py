"""A block whose submitblock answer is lost: the node has it, the retry hears
"duplicate", and the pool must still count it as accepted (it asks the node's chain)."""

from __future__ import annotations

import asyncio

import pytest

from hashquarry.chain.regtest import RegtestNode
from hashquarry.miner.runner import MinerOptions, run_miner
from hashquarry.pool import Pool

from .conftest import pool_settings
from .helpers import wait_for
from .payout_kit import RpcProxy

pytestmark = pytest.mark.e2e


async def test_a_lost_submit_answer_is_settled_by_the_chain(regtest: RegtestNode) -> None:
    dropped: list[str] = []

    async def rule(method: str) -> str:
        # The first block reaches the node, which accepts it; its answer never comes back.
        if method == "submitblock" and not dropped:
            dropped.append(method)
            return "drop_after"
        return "forward"

    async with RpcProxy(regtest) as proxy:
        settings = pool_settings(regtest)
        settings.node.url = proxy.url
        proxy.rule = rule
        pool = Pool(settings)
        await pool.start()
        stop = asyncio.Event()
        url = f"stratum+tcp://127.0.0.1:{pool.ports[0]}"
        miner = asyncio.create_task(
            run_miner(MinerOptions(url=url, users=["alice.rig"]), stop=stop)
        )
        try:
            await wait_for(
                lambda: bool(pool.stats.blocks) and pool.stats.blocks[0].result is not None,
                120,
                "the first block's submit result",
            )
        finally:
            stop.set()
            await asyncio.wait_for(miner, 30)
            await pool.stop()
    assert dropped, "the relay never saw a submitblock"
    first = pool.stats.blocks[0]
    assert first.result == "accepted", first
    header = regtest.call("getblockheader", first.hash)
    assert header["confirmations"] >= 1
