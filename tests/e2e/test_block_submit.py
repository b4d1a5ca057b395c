"""Block submission through a relay that interferes: a submitblock answer lost (the node
has the block, the retry hears "duplicate", and the pool must still count it as accepted
by asking the node's chain), and a first submission held while siblings queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from hashquarry.chain.regtest import RegtestNode
from hashquarry.miner.runner import MinerOptions, run_miner
from hashquarry.pool import SIBLING_NOT_SENT, FoundBlock, Pool

from .conftest import pool_settings
from .helpers import wait_for
from .payout_kit import RpcProxy, Rule

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def mining_through(regtest: RegtestNode, rule: Rule) -> AsyncIterator[Pool]:
    """A pool whose node calls pass a relay applying `rule`, and one miner on it, until
    the body is done."""
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
            yield pool
        finally:
            stop.set()
            await asyncio.wait_for(miner, 30)
            await pool.stop()


async def test_a_lost_submit_answer_is_settled_by_the_chain(regtest: RegtestNode) -> None:
    dropped: list[str] = []

    async def rule(method: str) -> str:
        # The first block reaches the node, which accepts it; its answer never comes back.
        if method == "submitblock" and not dropped:
            dropped.append(method)
            return "drop_after"
        return "forward"

    async with mining_through(regtest, rule) as pool:
        await wait_for(
            lambda: bool(pool.stats.blocks) and pool.stats.blocks[0].result is not None,
            120,
            "the first block's submit result",
        )
    assert dropped, "the relay never saw a submitblock"
    first = pool.stats.blocks[0]
    assert first.result == "accepted", first
    header = regtest.call("getblockheader", first.hash)
    assert header["confirmations"] >= 1


async def test_siblings_of_a_block_the_node_took_are_not_sent(regtest: RegtestNode) -> None:
    """While the first candidate at a height is with the node, the miner finds more at
    that height; once the node has taken the first, the others are recorded and never
    sent (the node would keep the first it saw anyway)."""
    sent: list[str] = []
    release = asyncio.Event()

    async def rule(method: str) -> str:
        if method == "submitblock":
            sent.append(method)
            if len(sent) == 1:  # hold the first until siblings have queued behind it
                await asyncio.wait_for(release.wait(), 60)
        return "forward"

    def at_first_height() -> list[FoundBlock]:
        blocks = pool.stats.blocks
        return [b for b in blocks if b.height == blocks[0].height] if blocks else []

    async with mining_through(regtest, rule) as pool:
        try:
            await wait_for(lambda: len(at_first_height()) >= 3, 120, "3 candidates at a height")
        finally:
            release.set()
        await wait_for(
            lambda: all(b.result is not None for b in at_first_height()[:3]),
            60,
            "the answers for them",
        )
    first, *siblings = at_first_height()[:3]
    assert first.result == "accepted", first
    assert regtest.call("getblockheader", first.hash)["confirmations"] >= 1
    for b in siblings:
        assert b.result == SIBLING_NOT_SENT, b
        with pytest.raises(Exception, match=r"not found|-5"):
            regtest.call("getblockheader", b.hash)  # the node never saw it
